"""Video speed: is `fer-predict clip.mp4` faster than real time at its default settings?

    .venv/bin/python benchmarks/video.py [--data ../shared/data/fer2013] [--seconds 8] [--fps 30]
                                         [--model ensemble] [--fp32]

Makes a 640x360 mp4 (mp4v) clip of one real FER2013 face (enlarged to 180 px, drifting
sideways) and runs fer_core.video.predict_video on it as fer-predict does by default (the
default detector at VIDEO_DETECT_MAX_SIDE, one view per model, every frame), on 1 and 2
threads (torch and OpenCV alike). Prints processed_fps against the clip's fps, and what
decoding + detection alone reach, so a shortfall can be put on detection or on the models.
The models run in batches of BATCH_FACES crops, in bf16 on CPUs with AMX / AVX512-BF16.
The last column is the 1-minute load average: on a shared machine, other work slows every row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as fer-predict sets it (fer_core/predict.py)

import cv2
import numpy as np
import torch
from PIL import Image

from fer_core import video
from fer_core.device import cpu_description
from fer_core.faces import DEFAULT_DETECTOR, VIDEO_DETECT_MAX_SIDE
from fer_core.loading import load_models
from fer_core.predict import find_faces
from fer_core.registry import model_names
from fer_core.video import BATCH_FACES, Video, predict_video

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def make_clip(data: Path, path: Path, seconds: float, fps: int) -> Path:
    """640x360 frames, one detectable val face drifting 2 px a frame, written with mp4v."""
    for f in sorted((data / "val" / "happy").iterdir()):
        face = Image.open(f).convert("L").resize((180, 180), Image.Resampling.BICUBIC)
        canvas = Image.new("L", (640, 360), 120)
        canvas.paste(face, (230, 90))
        first = np.asarray(canvas.convert("RGB"))
        if len(find_faces(first, max_side=VIDEO_DETECT_MAX_SIDE)) == 1:
            break
    else:
        raise SystemExit(f"no detectable face in {data / 'val' / 'happy'}")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 360))
    for i in range(int(seconds * fps)):
        writer.write(cv2.cvtColor(np.roll(first, 2 * (i % 40) - 40, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def decode_and_detect_fps(path: Path) -> float:
    clip, start = Video(path), time.perf_counter()
    for _, _, rgb in clip.frames():
        find_faces(rgb, max_side=VIDEO_DETECT_MAX_SIDE)
    clip.close()
    return clip.decoded / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=8.0, help="clip length (default 8)")
    parser.add_argument("--fps", type=int, default=30, help="clip frame rate (default 30)")
    parser.add_argument("--model", default="ensemble", help="as fer-predict --model (default ensemble)")
    parser.add_argument(
        "--fp32",
        action="store_true",
        help="classify in fp32 even where bf16 is fast (as on CPUs without AMX / AVX512-BF16)",
    )
    args = parser.parse_args()
    if args.fp32:
        video.VIDEO_DTYPE = None
    models = {f"m{i}": m for i, m in enumerate(load_models(args.model))}
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(args.data, Path(tmp) / "clip.mp4", args.seconds, args.fps)
        predict_video(clip, models)  # warm-up: first calls of each batch shape are slow
        print(
            f"CPU: {cpu_description()}, {torch.get_num_threads()} threads available; torch {torch.__version__}, "
            f"OpenCV {cv2.__version__}"
        )
        print(
            f"clip: 640x360, {args.seconds:g} s at {args.fps} fps, one face; model {args.model} "
            f"({', '.join(model_names(args.model))}), one view, {video.VIDEO_DTYPE or 'fp32'}, batches of "
            f"{BATCH_FACES} faces, detector {DEFAULT_DETECTOR} at {VIDEO_DETECT_MAX_SIDE} px, every frame\n"
        )
        print("| threads | decode + detect fps | processed_fps | clip fps | faster than real time | load average |")
        print("|---|---|---|---|---|---|")
        for threads in (1, 2):
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
            detect = decode_and_detect_fps(clip)
            result = predict_video(clip, models)
            found = sum(len(f["faces"]) == 1 for f in result["frames"])
            speed = result["video"]["processed_fps"]
            print(
                f"| {threads} | {detect:.1f} | {speed:.1f} | {args.fps} | {'yes' if speed >= args.fps else 'NO'} "
                f"({speed / args.fps:.2f}x; face in {found}/{result['video']['frames']} frames) | "
                f"{os.getloadavg()[0]:.1f} |"
            )


if __name__ == "__main__":
    main()
