"""The first answer: fer-predict on one photo, and the Predict page in Chromium, with an empty cache.

    .venv/bin/python benchmarks/first_answer.py [--repeats 3] [--no-browser]

fer-predict (a new process each time, the default model, one 640x480 photo with one real
FER2013 face), each repeat in a fresh FER_CACHE_DIR:
- cold: the empty cache (what a fresh clone sees: `auto` answers on PyTorch, exports nothing);
- again: the same command a second time (the cache still empty);
- set-up: `fer-export --cache`, the step `make run` adds (exports the shipped models once);
- warm: fer-predict after it (ONNX Runtime from the cache).
The target: cold <= 2 x warm + 3 s.

Predict in Chromium (Debian's, headless, 1400x900): a dashboard started on a fresh cache, with
and without the set-up step before it; the seconds from dropping the photo on the page (opened
and idle) to the first "Face 1:" verdict, then from dropping a second photo to its verdict (the
page's rerun redraws the first too). Target: the first within 5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))
BIN = Path(sys.executable).parent
DATA = PROJECT.parent / "shared" / "data" / "fer2013"


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, cwd=PROJECT)
    return time.perf_counter() - start


def cli(photo: Path, repeats: int, root: Path) -> dict[str, list[float]]:
    times = {"cold": [], "again": [], "set-up": [], "warm": []}
    for r in range(repeats):
        env = dict(os.environ, FER_CACHE_DIR=str(root / f"cli-{r}"))
        predict = [str(BIN / "fer-predict"), str(photo), "--json"]
        times["cold"].append(timed(predict, env))
        times["again"].append(timed(predict, env))
        times["set-up"].append(timed([str(BIN / "fer-export"), "--cache"], env))
        times["warm"].append(timed(predict, env))
    return times


def browser(photos: list[Path], root: Path, set_up: bool) -> list[float]:
    """Seconds from each drop to its verdict, on a dashboard over a fresh cache."""
    from tests.conftest import browser_page, chromium, open_in_browser, streamlit_server, write_y4m

    home = root / f"dashboard-{'set-up' if set_up else 'bare'}"
    home.mkdir()
    os.environ["FER_CACHE_DIR"] = str(home / "cache")
    if set_up:
        subprocess.run([str(BIN / "fer-export"), "--cache"], check=True, capture_output=True, cwd=PROJECT)
    camera = write_y4m([Image.new("RGB", (64, 48))], home / "camera.y4m")  # Predict uses no camera
    seconds = []
    with streamlit_server(home) as url, chromium(camera) as chrome, browser_page(chrome) as page:
        open_in_browser(page, f"{url}/predict")
        page.get_by_text("Choose at least one model").wait_for()
        for k, photo in enumerate(photos, 1):  # each drop adds a photo: its verdict is the k-th
            start = time.perf_counter()
            page.locator("input[type=file]").set_input_files(str(photo))
            page.get_by_text("Face 1:").nth(k - 1).wait_for()
            seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    from fer_core.device import cpu_description
    from tests.conftest import detectable_faces, make_photo

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        faces = detectable_faces(DATA, n=2)
        photos = []
        for k, face in enumerate(faces, 1):
            photos.append(root / f"face{k}.jpg")
            make_photo([face]).save(photos[-1])
        print(f"{cpu_description()}; fer-predict on one 640x480 photo, {args.repeats} repeats (median, min-max)\n")
        times = cli(photos[0], args.repeats, root)
        print("| fer-predict | seconds |\n|---|---|")
        for what, values in times.items():
            print(f"| {what} | {statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f}) |")
        cold, warm = statistics.median(times["cold"]), statistics.median(times["warm"])
        verdict = "met" if cold <= 2 * warm + 3 else "NOT met"
        print(f"\ncold {cold:.2f} s against 2 x warm + 3 = {2 * warm + 3:.2f} s: {verdict}")
        if args.no_browser:
            return
        print("\n| Predict in Chromium | first photo, s | a second photo (the page redraws both), s |\n|---|---|---|")
        for set_up in (True, False):
            first, second = browser(photos, root, set_up)
            label = "after `fer-export --cache` (make run)" if set_up else "no set-up step (empty cache)"
            print(f"| {label} | {first:.2f} | {second:.2f} |")


if __name__ == "__main__":
    main()
