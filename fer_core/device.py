"""Picking the device and the mixed-precision dtype that is fastest for it."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def select_device(name: str = "auto") -> torch.device:
    """cuda > mps > cpu for "auto"; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for, but no CUDA GPU is available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for, but Apple MPS is not available")
    return device


def cpu_has_fast_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for a device, or None for plain fp32.

    auto: bf16 on CPUs with AVX512-BF16/AMX (2-3x faster here), bf16 on CUDA GPUs that
    support it, else fp16 on CUDA; fp32 elsewhere (MPS autocast is still patchy).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def cpu_description() -> str:
    """The CPU's name and the features that decide its speed here, for every figure a benchmark prints."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )
    flags = set(info.split())
    features = [
        label
        for flag, label in (
            ("amx_tile", "AMX"),
            ("avx512_bf16", "AVX-512 bf16"),
            ("avx512f", "AVX-512"),
            ("avx2", "AVX2"),
        )
        if flag in flags
    ]
    return f"{name} ({', '.join(features[:2]) or 'no AVX2'}; {os.cpu_count()} logical CPUs)"
