"""FER2013 train pixel statistics (0-1 scale) that every model input is normalised with, fixed so
that a checkpoint needs no data. Here, without PyTorch, so that NumPy-only code (the perturbations
the dashboard redraws) can use them too."""

MEAN, STD = 0.508, 0.255
