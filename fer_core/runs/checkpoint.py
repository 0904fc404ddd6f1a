"""Checkpoints in safetensors: weights plus the model name and config in the header.

No pickle anywhere: a checkpoint alone rebuilds its model (`load_model`), and the
trainer's resume state (optimizer tensors) is a second safetensors file whose
non-tensor parts are JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from ..atomic import atomic_write
from ..models import create_model


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    data = save(tensors, metadata=metadata)  # bytes, so a full disk raises a plain OSError naming the file
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, dtype: torch.dtype | None = None, **info) -> None:
    """Weights (optionally cast, e.g. fp16 for shipping) and {model, config, **info} as metadata."""
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    metadata = {"model": model.name, "config": json.dumps(model.config), "info": json.dumps(info)}
    _atomic_save(tensors, Path(path), metadata)


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "model" not in meta:
        raise ValueError(f"{path}: not a fer-lab checkpoint (no model name in its header)")
    return {
        "model": meta["model"],
        "config": json.loads(meta.get("config", "{}")),
        "info": json.loads(meta.get("info", "{}")),
    }


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model recorded in a checkpoint and load its weights (fp32), in eval mode."""
    meta = read_checkpoint_metadata(path)
    model = create_model(meta["model"], **meta["config"])
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    model.load_state_dict(state)
    model.checkpoint_info = meta["info"]
    return model.to(device).eval()


def check_fits(path: str | os.PathLike, model_name: str, model_config: dict) -> None:
    """Refuse (ValueError) a checkpoint whose weights do not fit `model_name` built with
    `model_config`, so that --init-from fails before a run starts. Options without weights
    (dropout) may differ; layer shapes may not."""
    source = load_model(path)
    if source.name != model_name:
        raise ValueError(f"it is a {source.name}, not a {model_name}")
    try:
        create_model(model_name, **model_config).load_state_dict(source.state_dict())
    except RuntimeError:
        raise ValueError(f"its layers do not fit this {model_name}: {source.config} against {model_config}") from None


def save_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike, extra: dict) -> None:
    """Optimizer tensors as safetensors; param groups and `extra` (trainer state) as JSON metadata."""
    state = optimizer.state_dict()
    tensors = {
        f"{idx}.{key}": value.detach().cpu().contiguous().clone()
        for idx, slots in state["state"].items()
        for key, value in slots.items()
        if isinstance(value, torch.Tensor)
    }
    scalars = {
        f"{idx}.{key}": value
        for idx, slots in state["state"].items()
        for key, value in slots.items()
        if not isinstance(value, torch.Tensor)
    }
    metadata = {
        "param_groups": json.dumps(state["param_groups"]),
        "scalars": json.dumps(scalars),
        "extra": json.dumps(extra),
    }
    _atomic_save(tensors, Path(path), metadata)


def load_optimizer(optimizer: torch.optim.Optimizer, path: str | os.PathLike) -> dict:
    """Restore an optimizer saved by `save_optimizer`; returns the trainer's `extra` state."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state: dict = {}
    for key, value in list(tensors.items()) + list(json.loads(meta["scalars"]).items()):
        idx, slot = key.split(".", 1)
        state.setdefault(int(idx), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    # Saved tensors are contiguous; a channels-last parameter's momentum must get its strides
    # back, because fused optimizers walk parameter and state memory in lockstep.
    for param, slots in optimizer.state.items():
        for slot, value in slots.items():
            if isinstance(value, torch.Tensor) and value.shape == param.shape and value.stride() != param.stride():
                slots[slot] = torch.empty_like(param, dtype=value.dtype).copy_(value)
    return json.loads(meta["extra"])


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
