"""Batch prediction over a folder: `fer-predict DIR --out` in one process against `--ray local`
(Ray Data, one actor per core, ONNX Runtime), both as real subprocesses.

    .venv/bin/python benchmarks/ray_predict.py [--images 200] [--model stcnn]

The folder holds 640x480 photos of real FER2013 val faces (one face each), written to a
temporary folder; the times include each command's start-up (and Ray's), as a user sees them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fer_core.device import cpu_description

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import FER2013, detectable_faces, make_photo  # noqa: E402

FER_PREDICT = Path(sys.executable).parent / "fer-predict"


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--model", default="stcnn")
    args = parser.parse_args()
    faces = detectable_faces(FER2013, n=8)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i in range(args.images):
            make_photo([faces[i % len(faces)]]).save(folder / f"{i:04d}.jpg")
        base = [str(FER_PREDICT), str(folder), "--model", args.model, "--tta", "none", "--no-progress"]
        single = timed([*base, "--out", f"{tmp}/single.parquet"])
        on_ray = timed([*base, "--ray", "local", "--out", f"{tmp}/ray.parquet"])
    print(
        f"CPU: {cpu_description()}, load {os.getloadavg()[0]:.2f}; "
        f"{args.images} photos 640x480, one face each, model {args.model}, one view\n"
    )
    print("| path | seconds | photos/s |\n|---|---|---|")
    for name, seconds in (("one process (PyTorch)", single), ("--ray local (Ray Data actors, ONNX Runtime)", on_ray)):
        print(f"| {name} | {seconds:.1f} | {args.images / seconds:.1f} |")
    print(f"\nRay / one process: {single / on_ray:.2f}x")


if __name__ == "__main__":
    main()
