"""Measuring models: metrics, robustness curves, and the paper's tables beside ours."""
