"""Using a trained model: the registry of names, loading (PyTorch or ONNX Runtime), probabilities,
calibration, explanations and ONNX export."""
