"""Inference speed: per-face latency and end-to-end frames/second on a 640x480 frame with one face.

    .venv/bin/python benchmarks/inference.py [--data ../shared/data/fer2013] [--seconds 5] [--detector mtcnn]

End to end = what the Live page does per frame: face detection with `--detector` (default: the
default detector of fer_core/faces/detection.py; on the frame shrunk to 320 px, as Live does), 48x48 crop
(eyes levelled where the detector gives them),
classification (bf16 autocast + channels-last where the CPU supports it). Shipped models
are used where present; otherwise the architecture of our preset with untrained weights
(same cost). Measured on one thread and on all threads (torch and OpenCV alike).
"NAME int8": a shipped model with int8 convolutions (`--int8`: ONNX Runtime QDQ, fer_core/inference/onnx_export.py).
"% of fp32 peak": the model's FLOPs per face over its latency, against this CPU's fp32
matmul rate on as many threads (benchmarks/ceiling.py): near 100%, only a cheaper
precision or a smaller model can make it faster.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from ceiling import fp32_peak_gflops, gflop_per_image
from PIL import Image

from fer_core.faces.detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, DETECTORS, VIDEO_DETECT_MAX_SIDE
from fer_core.faces.predict import Face, classify_faces, find_faces
from fer_core.inference.loading import load_named_model
from fer_core.inference.registry import ENSEMBLE, SHIPPED_MODELS_DIR, int8_names
from fer_core.models import create_model
from fer_core.runs.presets import preset_config

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def model_for(name: str) -> tuple[torch.nn.Module, str]:
    if (SHIPPED_MODELS_DIR / f"{name}.safetensors").exists():
        return load_named_model(name, backend="torch"), "shipped"
    cfg = preset_config(name)
    model = create_model(cfg.model, **cfg.model_config).eval().to(memory_format=torch.channels_last)
    return model, "untrained"


def frame_with_face(data: Path, detector: str) -> np.ndarray:
    """A 640x480 RGB frame with one real FER2013 face (enlarged to 200 px) the detector finds."""
    for f in sorted((data / "val" / "happy").iterdir()):
        canvas = Image.new("L", (640, 480), 110)
        canvas.paste(Image.open(f).convert("L").resize((200, 200), Image.Resampling.BICUBIC), (220, 140))
        frame = np.asarray(canvas.convert("RGB"))
        if len(find_faces(frame, max_side=VIDEO_DETECT_MAX_SIDE, detector=detector)) == 1:
            return frame
    raise SystemExit("no detectable face found in the val split")


def rate(fn, seconds: float) -> float:
    """Calls per second of fn over about `seconds` (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR)
    args = parser.parse_args()
    frame = frame_with_face(args.data, args.detector)
    find = functools.partial(find_faces, max_side=VIDEO_DETECT_MAX_SIDE, detector=args.detector)
    all_threads = torch.get_num_threads()
    models = {name: model_for(name) for name in ENSEMBLE}
    gflop = {name: gflop_per_image(model, train=False) for name, (model, _) in models.items()}
    gflop["ensemble"] = sum(gflop.values())
    for name in ENSEMBLE:  # the same arithmetic on ONNX Runtime (fp32), and in int8 where shipped
        gflop[f"{name} onnx"] = gflop[f"{name} int8"] = gflop[name]
    rows, peaks = [], {}
    for threads in (1, all_threads):
        peaks[threads] = fp32_peak_gflops(threads)
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        for name in ENSEMBLE:  # ONNX Runtime takes its thread count when the session is made
            models[f"{name} onnx"] = load_named_model(name, backend="onnx"), "shipped, fp32 (ONNX Runtime)"
        for name in int8_names():
            models[f"{name} int8"] = load_named_model(name, int8=True), "shipped, int8 (ONNX Runtime)"
        detect = rate(lambda: find(frame), args.seconds)
        rows.append((f"face detection only ({args.detector})", "-", threads, None, detect))
        for name in [*models, "ensemble"]:
            chosen = {n: models[n][0] for n in (ENSEMBLE if name == "ensemble" else [name])}
            kind = ", ".join(sorted({models[n][1] for n in chosen}))
            face = find(frame)[0]
            one = [Face(face.box, face.crop)]
            per_face = rate(functools.partial(classify_faces, one, chosen), args.seconds)
            fps = rate(lambda chosen=chosen: classify_faces(find(frame), chosen), args.seconds)
            rows.append((name, kind, threads, 1000 / per_face, fps))
    print(
        f"torch {torch.__version__}, OpenCV {cv2.__version__}, 640x480 frame, one face, face detector "
        f"{args.detector} (min confidence {DEFAULT_MIN_CONFIDENCE}) on the frame shrunk to "
        f"{VIDEO_DETECT_MAX_SIDE} px, fp32 matmul peak "
        + ", ".join(f"{peak:.0f} GFLOP/s on {threads}" for threads, peak in peaks.items())
        + "\n"
    )
    print("| model | weights | GFLOP/face | threads | per-face latency ms | % of fp32 peak | end-to-end fps |")
    print("|---|---|---|---|---|---|---|")
    for name, kind, threads, latency, fps in rows:
        if latency is None:
            print(f"| {name} | {kind} | - | {threads} | - | - | {fps:.1f} |")
        else:
            share = gflop[name] / (latency / 1000) / peaks[threads]
            print(f"| {name} | {kind} | {gflop[name]:.2f} | {threads} | {latency:.1f} | {share:.0%} | {fps:.1f} |")


if __name__ == "__main__":
    main()
