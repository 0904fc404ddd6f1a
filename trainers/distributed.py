"""One run over several processes with PyTorch DDP, when launched by `torchrun`:

    torchrun --nproc-per-node 2 --no-python .venv/bin/fer-train --model stcnn --data ...

Each process trains on its share of every global batch (so `--batch-size` keeps meaning the
batch the optimizer steps on, and the run's numbers compare with single-process runs); DDP
averages the gradients; every process evaluates the same synchronised model; only rank 0
writes the run store and checkpoints. Without torchrun's environment (WORLD_SIZE unset)
every function here is a no-op, so the single-process trainer pays nothing.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_name: str) -> None:
    """Join the process group torchrun set up: NCCL across GPUs, gloo on CPUs."""
    if launched() and not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if use_cuda else "gloo")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def device_for_rank(device: torch.device) -> torch.device:
    """One GPU per process on a multi-GPU machine."""
    if dist.is_initialized() and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def broadcast(value):
    """Rank 0's value on every rank (a run id, say)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(x: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a global batch."""
    return x[rank() :: world_size()] if dist.is_initialized() else x


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any (a stop request reaching one process first)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(array: np.ndarray) -> np.ndarray:
    """Every rank's rows, concatenated on every rank (for the epoch's train metrics)."""
    if not dist.is_initialized():
        return array
    parts = [None] * world_size()
    dist.all_gather_object(parts, array)
    return np.concatenate(parts)


def wrap(model: torch.nn.Module) -> torch.nn.Module:
    if not dist.is_initialized():
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = model_device(model)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def sync_buffers(model: torch.nn.Module) -> None:
    """BatchNorm running statistics from rank 0, so every rank evaluates the same model and
    takes the same scheduler and early-stopping decisions."""
    if dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
