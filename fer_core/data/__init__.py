"""FER2013 itself: reading it, its pixel statistics, and the augmentations and perturbations of its faces."""
