"""Loading the models a spec names, on PyTorch or ONNX Runtime, behind one torch interface.

Above the registry (which resolves names to files) and the ONNX module (which exports and
runs them): `fer-eval`, `fer-predict`, the Recognizer and the dashboard load models here.
"""

from __future__ import annotations

import argparse
import importlib.util

import torch

from ..device import cpu_has_fast_bf16
from ..runs.checkpoint import load_model
from .registry import ModelRef, int8_names, int8_path, resolve, resolve_models, shipped_names

BACKENDS = ("auto", "torch", "onnx")


def resolve_backend(
    spec: str | ModelRef,
    device: torch.device | str = "cpu",
    int8: bool = False,
    backend: str = "auto",
    batched: bool = False,
    runs_dir=None,
) -> str:
    """The runtime that `backend` means for `spec` here (choose_runtime); a run or checkpoint is
    not looked up for it (`auto` runs those on PyTorch)."""
    shipped = isinstance(spec, ModelRef) or str(spec) in shipped_names()
    return choose_runtime(resolve(spec, runs_dir) if shipped else None, device, int8, backend, batched)


def choose_runtime(
    model: ModelRef | None,
    device: torch.device | str = "cpu",
    int8: bool = False,
    backend: str = "auto",
    batched: bool = False,
) -> str:
    """`auto` is the runtime measured faster for the work (benchmarks/onnx_inference.py, docs/performance.md)
    among those ready now: ONNX Runtime for the shipped models on a CPU - per face at batch 1, 1.5-2.2x
    faster than PyTorch for stcnn, resnet50 and vit - once their export is in the cache
    (fer_core/inference/onnx_cache.py: `fer-export --cache`, which `make run` runs), else PyTorch, so that no
    answer waits for an export; for `batched` work (video frames) PyTorch in bf16 where the CPU has
    fast bf16 (stcnn at batch 64: 2.2 against ONNX Runtime's 5.3 ms per face). int8 runs on ONNX
    Runtime (shipped files). PyTorch for runs and checkpoints (not measured, and they change), on
    GPUs, and where onnxruntime is not installed."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {backend!r})")
    if backend != "auto":
        return backend
    if int8:
        return "onnx"
    if torch.device(device).type != "cpu" or batched and cpu_has_fast_bf16():
        return "torch"
    if model is None or not model.shipped or not importlib.util.find_spec("onnxruntime"):
        return "torch"
    from .onnx_cache import cached_export

    return "onnx" if cached_export(model) else "torch"


def load_named_model(
    spec: str | ModelRef,
    device: torch.device | str = "cpu",
    runs_dir=None,
    int8: bool = False,
    backend: str = "auto",
    batched: bool = False,
) -> torch.nn.Module:
    """A model in eval mode: PyTorch, or an ONNX Runtime session behind the same interface."""
    if int8 and backend == "torch":
        raise ValueError("int8 runs on ONNX Runtime: use --backend onnx (or auto)")
    model = resolve(spec, runs_dir)  # a ModelRef comes back as it is
    if choose_runtime(model, device, int8, backend, batched) == "torch":
        return load_model(model.weights, device).to(memory_format=torch.channels_last)
    if torch.device(device).type != "cpu":
        raise ValueError(f"ONNX Runtime runs here on the CPU only (asked for {device})")
    if int8 and model.int8 is None:
        raise FileNotFoundError(
            f"{model.spec!r} has no int8 model ({int8_path(model.name).name}); shipped with one: "
            f"{', '.join(int8_names()) or 'none'}"
        )
    from .onnx_cache import load_onnx_model  # onnxruntime and onnx only when asked for

    return load_onnx_model(model, threads=torch.get_num_threads(), int8=int8)


def load_models(
    spec: str | dict[str, ModelRef],
    device: torch.device | str = "cpu",
    runs_dir=None,
    int8: bool = False,
    backend: str = "auto",
    batched: bool = False,
) -> list[torch.nn.Module]:
    """One model, or several for an ensemble: "ensemble" or names/paths joined by commas, or
    the models such a spec stands for, already resolved (registry.resolve_models).

    "ensemble" is the shipped stcnn + resnet50 + vit; while not all three are shipped yet it
    averages those that are. With int8, the models shipped with an int8 version run in int8 and
    the others in full precision (an error if none has one).
    """
    models = resolve_models(spec, runs_dir) if isinstance(spec, str) else spec
    if int8 and not any(model.int8 for model in models.values()):
        raise FileNotFoundError(
            f"none of {', '.join(models)} has an int8 model; shipped with one: {', '.join(int8_names()) or 'none'}"
        )
    return [
        load_named_model(model, device, int8=model.int8 is not None and int8, backend=backend, batched=batched)
        for model in models.values()
    ]


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """`--int8` and `--backend`, the same in fer-predict and fer-eval."""
    parser.add_argument(
        "--int8",
        action="store_true",
        help="int8 inference (ONNX Runtime) for the shipped models with an int8 version; others stay fp",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="torch or onnx (ONNX Runtime, exported once into the cache); auto: the faster one ready now - "
        "onnx for the shipped models on a CPU once `fer-export --cache` (make run) has exported them, else "
        "torch; torch for runs and checkpoints",
    )
