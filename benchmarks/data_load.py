"""Loading the full FER2013 train split: first load (decode every JPEG) vs cached load.

    .venv/bin/python benchmarks/data_load.py [--data ../shared/data/fer2013]

Uses a fresh, temporary cache directory so the first load really decodes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["FER_CACHE_DIR"] = cache
        from fer_core.data.fer2013 import load_dataset

        times = []
        for _ in range(3):
            start = time.perf_counter()
            ds = load_dataset(args.data)
            times.append(time.perf_counter() - start)
        sizes = {name: len(split) for name, split in ds.splits.items()}
    print(f"dataset {args.data}: {sizes}")
    print("| load | seconds |\n|---|---|")
    print(f"| first (decode {sum(sizes.values())} images, write cache) | {times[0]:.2f} |")
    print(f"| cached (best of 2) | {min(times[1:]):.3f} |")
    print(f"speed-up: {times[0] / min(times[1:]):.0f}x")


if __name__ == "__main__":
    main()
