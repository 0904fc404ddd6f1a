"""Background trainers: the `fer-train` / `fer-eval` command-line programs and the training loop."""
