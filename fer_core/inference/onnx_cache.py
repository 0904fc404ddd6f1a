"""The cache of ONNX exports that `auto` runs on ONNX Runtime, keyed by everything that shaped them.

A shipped model, run or checkpoint is exported (fer_core/inference/onnx_export.py: checked against
PyTorch) into cache_dir()/onnx/ once, by `fer-export --cache` (which `make run` runs) or on the
first explicit `--backend onnx`; `--backend auto` uses an entry only when it is already there,
so no answer waits for an export. An entry's name is the digest of its key (cache_key), and the
key is also written into the file, so a change of weights, export code, torch, onnx,
onnxruntime, opset or quantization is a miss, never a stale file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from ..paths import cache_dir
from ..runs.checkpoint import file_sha256, load_model
from .onnx_export import OnnxModel, export_model, sample_faces, source_metadata
from .registry import ModelRef, int8_names, int8_path, resolve


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def weights_sha256(path: str | os.PathLike) -> str:
    """A weights file's SHA-256, hashed once per version of the file (the key is asked for often)."""
    stat = Path(path).stat()
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def cache_key(weights: str, quantization: dict | None = None) -> dict[str, str]:
    """Everything that shapes a cached export: the weights (their SHA-256), this module's
    FORMAT_VERSION (fer_core/inference/onnx_export.py), the versions of torch (the exporter),
    onnx (which writes the file) and onnxruntime (which checks it and runs it), the opset and
    the quantization settings (none for fp32). Any of them changed is another entry, so a cache
    never serves a stale file."""
    from importlib.metadata import version

    from .onnx_export import FORMAT_VERSION, OPSET

    return {
        "weights_sha256": weights,
        "export_code": FORMAT_VERSION,
        "torch": torch.__version__,
        "onnx": version("onnx"),
        "onnxruntime": version("onnxruntime"),
        "opset": str(OPSET),
        "quantization": json.dumps(quantization, sort_keys=True) if quantization else "none",
    }


def onnx_cache_path(key: dict[str, str]) -> Path:
    """cache_dir()/onnx/<digest of the key>.onnx; the key itself is in the file (fer.cache_key)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "onnx" / f"{digest[:40]}.onnx"


def cached_export(model: ModelRef) -> Path | None:
    """The cache entry of the model's fp32 export when it is there (no export, no check), else None.
    `auto` runs ONNX Runtime only then, so that no answer waits for an export."""
    path = onnx_cache_path(cache_key(weights_sha256(model.weights)))
    return path if path.is_file() else None


def load_onnx_model(model: ModelRef, threads: int | None = None, int8: bool = False) -> OnnxModel:
    """The ONNX Runtime version of a resolved model: a shipped name, run id, run folder or checkpoint.

    fp32: exported on first use into the cache (onnx_cache_path of cache_key: atomic write,
    checked against PyTorch on the 140 real val faces bundled in data/ - random images outside a
    checkout), reused afterwards - nothing shipped; an unreadable entry, or one whose recorded key
    differs, is exported again. `fer-export --cache` (run by `make run`) fills it ahead of use.
    int8: the shipped results/models/NAME.int8.onnx (FileNotFoundError if there is none), refused
    (ValueError) when it was quantized from other weights than the shipped ones.
    """
    sha = weights_sha256(model.weights)
    if int8:
        if model.int8 is None:
            raise FileNotFoundError(
                f"{model.spec!r} has no ONNX int8 model ({int8_path(model.name).name}); shipped with one: "
                f"{', '.join(int8_names()) or 'none'}"
            )
        session = OnnxModel(model.int8, threads)
        if session.metadata.get("fer.weights_sha256") != sha:
            raise ValueError(
                f"{model.int8} was quantized from other weights than {model.weights}: "
                f"fer-export --model {model.spec} --format onnx-int8 --out {model.int8.parent}"
            )
        return session
    key = cache_key(sha)
    target = onnx_cache_path(key)
    if target.is_file():
        try:
            session = OnnxModel(target, threads)
            if json.loads(session.metadata.get("fer.cache_key", "{}")) == key:
                return session
        except Exception:  # noqa: BLE001 - an unreadable cache entry is exported again
            pass
    metadata = {**source_metadata(model), "fer.cache_key": json.dumps(key, sort_keys=True)}
    export_model(load_model(model.weights), target, metadata=metadata, check=sample_faces())
    return OnnxModel(target, threads)


def fill_cache(names: list[str], runs_dir=None) -> list[tuple[str, Path, bool]]:
    """Export each of `names` into the cache unless it is there: (name, entry, exported now)."""
    done = []
    for name in names:
        model = resolve(name, runs_dir)
        ready = cached_export(model)
        done.append((name, ready or load_onnx_model(model).path, ready is None))
    return done
