"""torch vs ONNX Runtime: per-face latency of the shipped models at batch 1 (and per-face time at batch 64).

    .venv/bin/python benchmarks/onnx_inference.py [--seconds 3] [--threads 1,2] [--models stcnn,resnet50,vit]

Each row times `predict_probs(model, one uint8 face)` - what fer-predict and the Live page do per
face (to_model_input, the model, softmax) - with the model being:
  torch fp32       fer_core.inference.loading.load_named_model (channels-last, fp32: what classify_faces runs)
  torch bf16       the same under bf16 autocast (what fer-eval uses on CPUs with AMX/AVX512-BF16)
  onnx fp32        fer_core.inference.onnx_cache.load_onnx_model (exported into the cache on first use)
  onnx int8        results/models/NAME.int8.onnx (ONNX Runtime static QDQ int8), where shipped
The figure is the median over many calls (robust to other load on a shared machine; the load
average before and after is printed: compare rows of one run, not runs of different loads).
Threads: torch.set_num_threads and ORT's intra_op_num_threads alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from fer_core.data.fer2013 import load_dataset
from fer_core.device import cpu_description
from fer_core.inference.loading import load_named_model
from fer_core.inference.onnx_cache import load_onnx_model
from fer_core.inference.onnx_export import OnnxModel
from fer_core.inference.probabilities import predict_probs
from fer_core.inference.registry import int8_path, resolve

DEFAULT_DATA = Path(os.environ.get("FER2013_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"))
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "fer2013_sample.csv.gz"


def median_ms(fn, seconds: float, per: int = 1) -> float:
    """Median wall time of fn() in ms over about `seconds` (3 warm-up calls first), divided by `per`."""
    for _ in range(3):
        fn()
    times, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / per


def variants(
    name: str, threads: int, candidates: dict[str, Path]
) -> dict[str, tuple[torch.nn.Module, torch.dtype | None]]:
    torch_model = load_named_model(name, backend="torch")
    out = {"torch fp32": (torch_model, None), "torch bf16": (torch_model, torch.bfloat16)}
    out["onnx fp32"] = (load_onnx_model(resolve(name), threads=threads), None)
    if int8_path(name).is_file():
        out["onnx int8"] = (OnnxModel(int8_path(name), threads=threads), None)
    if name in candidates:
        out[f"onnx int8 ({candidates[name].name})"] = (OnnxModel(candidates[name], threads=threads), None)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timing window per row (default 3)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--models", default="stcnn,resnet50,vit")
    parser.add_argument("--batch", type=int, default=64, help="second column: per-face ms at this batch (0: off)")
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="also time an int8 .onnx not shipped (yet) for model NAME",
    )
    args = parser.parse_args()
    candidates = {name: Path(file) for name, file in (c.split("=", 1) for c in args.candidate)}
    faces = load_dataset(DEFAULT_DATA if DEFAULT_DATA.exists() else SAMPLE).splits["val"].images[: max(args.batch, 1)]
    one = faces[:1]
    load_before = os.getloadavg()
    rows = []
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for name in args.models.split(","):
            for kind, (model, dtype) in variants(name, threads, candidates).items():
                latency = median_ms(lambda m=model, d=dtype: predict_probs(m, one, dtype=d), args.seconds)
                batched = (
                    median_ms(lambda m=model, d=dtype: predict_probs(m, faces, dtype=d), args.seconds, per=len(faces))
                    if args.batch
                    else None
                )
                rows.append((name, kind, threads, latency, batched))
                print(f"  {name} {kind} {threads} thread(s): {latency:.2f} ms", flush=True)
    load_after = os.getloadavg()
    import onnxruntime

    print(
        f"\nCPU: {cpu_description()}; torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}; load average (1/5/15 min) before {'/'.join(f'{v:.2f}' for v in load_before)}, "
        f"after {'/'.join(f'{v:.2f}' for v in load_after)}\n"
    )
    print(
        f"| model | backend | threads | per-face ms, batch 1 | per-face ms, batch {args.batch} "
        "| vs torch fp32 (batch 1) |"
    )
    print("|---|---|---|---|---|---|")
    base = {(n, t): lat for n, k, t, lat, _ in rows if k == "torch fp32"}
    for name, kind, threads, latency, batched in rows:
        b = f"{batched:.2f}" if batched is not None else "-"
        print(f"| {name} | {kind} | {threads} | {latency:.2f} | {b} | {base[(name, threads)] / latency:.2f}x |")


if __name__ == "__main__":
    main()
