"""`python -m trainers ARGS` is `fer-train ARGS`: how the job queue and sweeps launch trainers."""

import sys

from trainers.cli import train_main

sys.exit(train_main())
