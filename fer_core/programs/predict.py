"""`fer-predict`: find faces in images, videos and folders of them, and classify their emotion."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Before torch loads OpenMP: idle OpenMP threads sleep instead of spinning. On two cores shared
# with other work, spinning threads made the models ~3x and the (OpenMP) yuface detector ~15x
# slower on 2 threads than on 1 (measured 2026-12-03). fer-predict is its own process, so this is
# its choice; where torch is already loaded (the dashboard, tests) it changes nothing.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from ..faces.detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, DETECTORS, detect_faces  # noqa: E402
from ..faces.video import MIN_TRACK_SECONDS, track_summaries  # noqa: E402
from ..inference.loading import add_runtime_options  # noqa: E402
from ..inference.registry import default_model  # noqa: E402
from .files import OUT_SUFFIXES, expand_inputs, predict_one, write_out  # noqa: E402

PROGRESS_MIN_FILES = 10  # fewer files finish before a bar over them would tell anything


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="fer-predict",
        description="Find faces in images and videos and classify their emotion.",
        epilog="Exit status: 0 when every input was fine; 1 when any failed or was damaged "
        "(the others are still processed and written); 2 for bad arguments or model.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="PATH",
        help="image files (jpg, png, webp, ...), videos (mp4, avi, mov, mkv, webm) or folders of them",
    )
    p.add_argument(
        "--model",
        default=default_model(),
        help="shipped name (stcnn, resnet50, vit, ensemble), run id, run folder or checkpoint; "
        "several joined by commas are averaged (default: %(default)s, the best on val as its card says)",
    )
    p.add_argument("--whole-image", action="store_true", help="classify the whole image when no face is found")
    p.add_argument("--json", action="store_true", help="print JSON (a list when several inputs or a folder)")
    add_runtime_options(p)
    p.add_argument(
        "--tta",
        default="auto",
        choices=["auto", "none", "flip", "tencrop"],
        help="test-time augmentation (default auto: for images the one a shipped model's card chose "
        "on val, as fer-eval; for videos one view, to keep up with real time, classified in "
        "bf16 where the CPU has it)",
    )
    p.add_argument(
        "--detector", default=DEFAULT_DETECTOR, choices=DETECTORS, help=f"face detector (default {DEFAULT_DETECTOR})"
    )
    p.add_argument(
        "--min-face-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        metavar="X",
        help=f"drop detections less confident than X in [0, 1] (default {DEFAULT_MIN_CONFIDENCE})",
    )
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: classify every Nth frame (default 1)")
    p.add_argument(
        "--smooth",
        type=int,
        default=0,
        metavar="K",
        help="videos: average each face's probabilities over its last K processed frames (default off)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="also write one row per (path, frame, face) to FILE.csv or FILE.parquet",
    )
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run on Ray Data: 'local' starts Ray here, else a cluster address (auto, ray://HOST:10001); "
        "inputs may be object-store prefixes (s3://bucket/faces/); needs --out FILE.parquet",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr for long videos and many files (default: when stderr is a terminal)",
    )
    args = p.parse_args(argv)
    if not 0 <= args.min_face_confidence <= 1:
        p.error(f"--min-face-confidence must be in [0, 1], not {args.min_face_confidence}")
    if args.every < 1:
        p.error(f"--every must be at least 1, not {args.every}")
    if args.smooth < 0:
        p.error(f"--smooth must be 0 (off) or more, not {args.smooth}")
    if args.out and args.out.suffix.lower() not in OUT_SUFFIXES:
        p.error(f"--out must end in {' or '.join(OUT_SUFFIXES)}: {args.out}")
    if args.ray and (not args.out or args.out.suffix.lower() != ".parquet"):
        p.error("--ray writes its rows to Parquet: give --out FILE.parquet")
    if args.progress is None:
        args.progress = sys.stderr.isatty()
    return args


def print_text(r: dict) -> None:
    if "error" in r:
        return
    if "video" in r:
        v, tracks = r["video"], track_summaries(r)
        found = f"{len(tracks)} face track(s)" if tracks else "no face found"
        cuts = f", {len(r['cuts'])} scene cut(s)" if r.get("cuts") else ""
        print(
            f"{r['path']}: {v['frames']} frames at {v['fps']:g} fps, {v['width']}x{v['height']}, "
            f"processed at {v['processed_fps']:g} fps; {found}{cuts}"
        )
        for track in tracks:
            if track["long"]:
                print(
                    f"{r['path']}: track {track['track']}: {track['frames']} frames, "
                    f"{track['start']:.1f}-{track['end']:.1f} s, mostly {track['text']} (mean)"
                )
        short = sum(not track["long"] for track in tracks)
        if short:
            print(f"{r['path']}: {short} track(s) shorter than {MIN_TRACK_SECONDS:g} s (in --json and --out only)")
        return
    if not r["faces"]:
        print(f"{r['path']}: no face found (try --whole-image)")
    for i, f in enumerate(r["faces"], 1):
        print(f"{r['path']}: face {i} at {tuple(f['box'])}: {f['label']} ({f['confidence']:.0%})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("fer-predict: interrupted; nothing written", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..faces.recognizer import Recognizer

    files, notes = expand_inputs(args.inputs)
    for note in notes:
        print(f"fer-predict: {note}", file=sys.stderr)
    if not files:
        print(f"fer-predict: no images or videos in {', '.join(args.inputs)}", file=sys.stderr)
    try:
        detect_faces(np.zeros((32, 32), np.uint8), args.detector)  # a missing detector package: say so now
        if args.ray:
            from .ray_predict import predict_on_ray

            results = predict_on_ray(files, args, args.ray) if files else []
        else:
            recognizer = Recognizer(
                args.model,
                tta=args.tta,
                int8=args.int8,
                backend=args.backend,
                detector=args.detector,
                min_face_confidence=args.min_face_confidence,
                whole_image=args.whole_image,
            )
            bar = tqdm(files, unit="file", leave=False, disable=not args.progress or len(files) < PROGRESS_MIN_FILES)
            results = [predict_one(recognizer, path, args) for path in bar]
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"fer-predict: error: {e}", file=sys.stderr)
        return 2
    failed = False
    for result in results:
        if "error" in result or "warning" in result:  # a warning: kept, but the file is broken (exit 1)
            failed = True
            print(f"fer-predict: {result.get('error') or 'warning: ' + result['warning']}", file=sys.stderr)
    done = [r for r in results if "error" not in r]
    if args.out and (done or not failed):  # when every input failed there is nothing to write
        try:
            print(f"fer-predict: wrote {write_out(args.out, done)} rows to {args.out}", file=sys.stderr)
        except OSError as e:
            print(f"fer-predict: cannot write {args.out} ({e.strerror or e})", file=sys.stderr)
            failed = True
    if args.json:
        several = len(results) != 1 or any(Path(a).is_dir() or "://" in a for a in args.inputs)
        print(json.dumps(results if several else results[0]))
    else:
        for r in results:
            print_text(r)
    return 1 if failed else 0
