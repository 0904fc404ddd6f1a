"""`fer-export`: a shipped model, run or checkpoint to ONNX (fp32 or int8), checked against
PyTorch on real val faces; `--cache` fills the cache that `--backend auto` runs from.

The export itself is fer_core/inference/onnx_export.py (its docstring describes the files), int8
fer_core/inference/onnx_int8.py."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ..inference import onnx_export
from ..inference.onnx_cache import fill_cache
from ..inference.onnx_export import (
    CHECK_FACES,
    MAX_PROB_DIFF,
    ExportError,
    check_faces,
    default_data,
    export_model,
    source_metadata,
)
from ..inference.onnx_int8 import CALIBRATION_FACES, export_int8
from ..inference.registry import SHIPPED_MODELS_DIR, ModelRef, model_names, resolve, shipped_names
from ..runs.checkpoint import load_model


def _out_name(spec: str, model: torch.nn.Module) -> str:
    if (SHIPPED_MODELS_DIR / f"{spec}.safetensors").is_file():
        return spec
    info = getattr(model, "checkpoint_info", {}) or {}
    if info.get("run_id"):
        return info["run_id"] + (f"-e{info['epoch']}" if info.get("epoch") is not None else "")
    return Path(spec).stem


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-export", description=onnx_export.__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        help="shipped name (stcnn, resnet50, vit), ensemble (one file per "
        "member), a run id, a run folder or a checkpoint file (with --cache: default every shipped model)",
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="export into the cache that --backend auto runs ONNX Runtime from (FER_CACHE_DIR), skipping "
        "what is there already; checked on the bundled sample's faces. `make run` does this once",
    )
    parser.add_argument(
        "--format",
        default="onnx",
        choices=["onnx", "onnx-int8"],
        help="onnx: fp32 graph (default); onnx-int8: ONNX Runtime static int8 (QDQ), calibrated on "
        f"{CALIBRATION_FACES} stratified train faces",
    )
    parser.add_argument("--out", type=Path, help="folder for NAME.onnx / NAME.int8.onnx (needed without --cache)")
    parser.add_argument(
        "--data",
        default=None,
        help="FER2013 CSV or folder for the check (default: FER2013_DIR or ../shared/data/fer2013)",
    )
    parser.add_argument("--faces", type=int, default=CHECK_FACES, help=f"val faces to check on (default {CHECK_FACES})")
    parser.add_argument(
        "--calibration",
        default="minmax",
        choices=["minmax", "percentile", "entropy"],
        help="onnx-int8: how activation ranges are calibrated (default minmax, the best measured for stcnn and vit)",
    )
    parser.add_argument(
        "--percentile",
        type=float,
        default=99.999,
        help="onnx-int8 with --calibration percentile: the percentile kept (default 99.999; "
        "99.9 is the best measured for resnet50)",
    )
    parser.add_argument("--runs-dir", default=None)
    return parser


def export_main(argv: list[str] | None = None) -> int:
    """`fer-export`: a model to ONNX, checked against PyTorch on real val faces."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.cache:
        return _fill_cache(args.model, args.runs_dir)
    if not args.model or not args.out:
        parser.error("--model and --out are needed (or --cache)")

    data = args.data or default_data()
    if data is None or not Path(data).expanduser().exists():
        print(
            f"fer-export: error: --data {data}: no such file or folder (each export is checked on real val faces)",
            file=sys.stderr,
        )
        return 2
    try:
        names = model_names(args.model)
        models = [resolve(name, args.runs_dir) for name in names]
    except (FileNotFoundError, ValueError) as e:
        print(f"fer-export: error: --model {args.model}: {e}", file=sys.stderr)
        return 2
    try:
        faces = check_faces(data, args.faces)
    except (KeyError, ValueError, OSError) as e:
        print(f"fer-export: error: --data {data}: no val faces to check on ({e})", file=sys.stderr)
        return 2
    return _export(args, data, names, models, faces)


def _export(args: argparse.Namespace, data, names: list[str], models: list[ModelRef], faces) -> int:
    """Each resolved model exported (fp32 checked on `faces`, or int8) into args.out: 1 if any failed."""
    failed = False
    for name, source in zip(names, models, strict=True):
        model = load_model(source.weights)
        stem = _out_name(name, model)
        start = time.perf_counter()
        try:
            if args.format == "onnx":
                target = args.out / f"{stem}.onnx"
                result = export_model(model, target, source_metadata(source), check=faces)
                print(
                    f"{name}: wrote {target} ({target.stat().st_size / 2**20:.1f} MB, "
                    f"{time.perf_counter() - start:.0f} s); vs PyTorch on {result.faces} val faces: "
                    f"max prob diff {result.max_prob_diff:.2e} (limit {MAX_PROB_DIFF:.0e}), "
                    f"same argmax {result.argmax_same}/{result.faces}"
                )
            else:
                target = args.out / f"{stem}.int8.onnx"
                export_int8(source, target, data, method=args.calibration, percentile=args.percentile)
        except ExportError as e:
            print(f"fer-export: error: {e}; nothing written", file=sys.stderr)
            failed = True
    return 1 if failed else 0


def _fill_cache(spec: str | None, runs_dir) -> int:
    """fer-export --cache: onnx_cache.fill_cache for `spec`'s models, or every shipped one."""
    start = time.perf_counter()
    try:
        done = fill_cache(model_names(spec) if spec else shipped_names(), runs_dir)
    except (FileNotFoundError, ValueError, ExportError) as e:
        print(f"fer-export: error: {e}", file=sys.stderr)
        return 1
    for name, path, exported in done:
        print(f"{name}: {'exported to' if exported else 'already in'} {path}")
    print(f"fer-export --cache: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(export_main())
