"""Video speed: is `fer-predict clip.mp4` faster than real time at its default settings?

    .venv/bin/python benchmarks/video.py [--models ensemble stcnn] [--threads 2] [--fp32]

Runs fer_core.video.predict_video as fer-predict does by default (the default detector at
VIDEO_DETECT_MAX_SIDE, one view per model, every frame, the calibrated blend of the shipped
records) on the real-photo clip of benchmarks/real_clip.py: the faces-dev photographs filmed by
a moving camera, 640x360 at 30 fps, 13 s, 1-7 faces a frame (37-300 px) and 12 hard cuts. Prints
processed_fps against the clip's 30 fps for each model, and the milliseconds per frame of each
stage (decoding; detection with the crops, where MTCNN confirms only faces new since the last
frame, and on how many frames it ran; classification), so a shortfall can be put on the stage
that causes it. Threads: torch, OpenCV and yuface's OpenMP alike.
The models run in batches of BATCH_FACES crops, in bf16 on CPUs with AMX / AVX512-BF16, on a
second thread while the next frames are searched. "CPU ms / frame" is the process's CPU time
(all threads) per frame: less than 2 x 33 ms is the most two idle cores could turn into real
time, and it is less affected by other work than the wall-clock columns. The last column is the
1-minute load average: on a shared machine, other work slows every row.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as fer-predict sets it (fer_core/predict_cli.py)

import cv2  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.detectors import yuface_threads  # noqa: E402
from benchmarks.real_clip import FPS, make_clip  # noqa: E402
from fer_core.device import cpu_description  # noqa: E402
from fer_core.faces import detection as faces  # noqa: E402
from fer_core.faces import video  # noqa: E402
from fer_core.faces.detection import DEFAULT_DETECTOR, VIDEO_DETECT_MAX_SIDE  # noqa: E402
from fer_core.faces.predict import classify_faces  # noqa: E402
from fer_core.faces.recognizer import Recognizer  # noqa: E402
from fer_core.faces.video import BATCH_FACES, Video, predict_video  # noqa: E402
from fer_core.inference.registry import model_names  # noqa: E402


def stage_ms(path: Path, models, blend) -> tuple[float, float, float, int, int]:
    """Milliseconds per frame of decoding alone; of detection with the crops (the time spent in
    find_faces during a predict_video run, which confirms only new faces with MTCNN); of
    classifying the faces that run found, alone. Also the faces found and how many frames ran
    MTCNN."""
    clip, start = Video(path), time.perf_counter()
    for _ in clip.frames():
        pass
    clip.close()
    decode = (time.perf_counter() - start) * 1000 / clip.decoded
    found, detect, mtcnn_runs = [], [0.0], [0]
    find, mtcnn = video.find_faces, faces._mtcnn

    def timed_find(*args, **kwargs):
        start = time.perf_counter()
        result = find(*args, **kwargs)
        detect[0] += time.perf_counter() - start
        found.extend(result)
        return result

    def counted_mtcnn(*args, **kwargs):
        mtcnn_runs[0] += 1
        return mtcnn(*args, **kwargs)

    video.find_faces, faces._mtcnn = timed_find, counted_mtcnn
    try:
        frames = predict_video(path, models, blend=blend)["video"]["frames"]
    finally:
        video.find_faces, faces._mtcnn = find, mtcnn
    start = time.perf_counter()
    for i in range(0, len(found), BATCH_FACES):
        classify_faces(found[i : i + BATCH_FACES], models, dtype=video.VIDEO_DTYPE, blend=blend)
    classify = time.perf_counter() - start
    return decode, detect[0] * 1000 / frames, classify * 1000 / frames, len(found), mtcnn_runs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ensemble", "stcnn"], help="as fer-predict --model")
    parser.add_argument("--threads", nargs="+", type=int, default=[2])
    parser.add_argument(
        "--fp32",
        action="store_true",
        help="classify in fp32 even where bf16 is fast (as on CPUs without AMX / AVX512-BF16)",
    )
    args = parser.parse_args()
    if args.fp32:
        video.VIDEO_DTYPE = None
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "real_clip.mp4")
        print(
            f"CPU: {cpu_description()}, {os.cpu_count()} logical CPUs; torch {torch.__version__}, "
            f"OpenCV {cv2.__version__}"
        )
        print(
            f"clip: the real-photo clip, 640x360, {clip.frames} frames at {FPS} fps, {len(clip.cuts)} cuts; one view, "
            f"{video.VIDEO_DTYPE or 'fp32'}, batches of {BATCH_FACES} faces, detector {DEFAULT_DETECTOR} at "
            f"{VIDEO_DETECT_MAX_SIDE} px, every frame\n"
        )
        print(
            "| model | threads | decode ms / frame | detect ms / frame | frames that ran MTCNN "
            "| classify ms / frame | processed_fps | faster than real time | CPU ms / frame | load average |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for spec in args.models:
            recognizer = Recognizer(spec)  # as fer-predict: its batch models and calibrated blend
            models, blend, names = recognizer.batch_models(), recognizer.blend, model_names(spec)
            predict_video(clip.path, models, blend=blend)  # warm-up: first calls of each batch shape are slow
            for threads in args.threads:
                torch.set_num_threads(threads)
                cv2.setNumThreads(threads)
                yuface_threads(threads)
                decode, detect, classify, found, mtcnn_runs = stage_ms(clip.path, models, blend)
                cpu = time.process_time()
                result = predict_video(clip.path, models, blend=blend)
                cpu_ms = (time.process_time() - cpu) * 1000 / result["video"]["frames"]
                speed = result["video"]["processed_fps"]
                print(
                    f"| {spec} ({', '.join(names)}) | {threads} | {decode:.1f} | {detect:.1f} | {mtcnn_runs} "
                    f"| {classify:.1f} "
                    f"| {speed:.1f} | "
                    f"{'yes' if speed >= FPS else 'NO'} ({speed / FPS:.2f}x; {found} faces in "
                    f"{result['video']['frames']} frames) | {cpu_ms:.1f} | {os.getloadavg()[0]:.1f} |"
                )


if __name__ == "__main__":
    main()
