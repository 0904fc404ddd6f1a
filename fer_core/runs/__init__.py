"""Training runs: their configuration (presets), the run store, checkpoints and per-face predictions."""
