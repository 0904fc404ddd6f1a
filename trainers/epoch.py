"""One epoch of training: one pass over the train split, batch by batch.

Every epoch is seeded from (seed, epoch) (the order, the augmentation, dropout), so an epoch
run again after `--resume` gives the numbers it gave the first time. Between batches the loop
looks for a stop request (SIGTERM: the jobs panel's Cancel) and, for the fault tests, an
injected out-of-memory error.
"""

from __future__ import annotations

import math
import os
import signal
import sys

import numpy as np
import torch
from tqdm import tqdm

from fer_core.classes import NUM_CLASSES
from fer_core.data.augment import AugmentConfig, augment_batch, batch_mixer, to_model_input
from fer_core.inference.probabilities import autocast
from fer_core.runs.presets import TrainConfig
from trainers import distributed
from trainers.distill import Distiller
from trainers.ema import WeightEMA
from trainers.progress import report_batch


class Cancelled(Exception):
    """SIGTERM/SIGINT asked the trainer to stop; the run ends as `cancelled`."""


_stop_requested = False


def _request_stop(signum, frame):
    global _stop_requested
    _stop_requested = True


def stop_on_sigterm() -> None:
    """From now on SIGTERM stops training at the next batch (raising Cancelled there), not mid-step."""
    global _stop_requested
    _stop_requested = False
    signal.signal(signal.SIGTERM, _request_stop)


# A testing hook: FER_INJECT_FAULT=oom@EPOCH fails that epoch the way a GPU out of memory does.
_fault = os.environ.get("FER_INJECT_FAULT", "")
INJECTED_OOM_EPOCH = int(_fault[4:]) if _fault.startswith("oom@") and _fault[4:].isdigit() else None


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


def lr_at(cfg: TrainConfig, t: float) -> float:
    """Learning rate after t epochs (fractional) for the constant/cosine schedules with warmup."""
    if cfg.warmup_epochs and t < cfg.warmup_epochs:
        return cfg.lr * (t + 1e-3) / cfg.warmup_epochs
    if cfg.schedule == "cosine":
        progress = min(1.0, (t - cfg.warmup_epochs) / max(1e-9, cfg.epochs - cfg.warmup_epochs))
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr


def train_step(model, optimizer, criterion, x, y, device, dtype, scaler, channels_last=True):
    """Forward (autocast, channels-last), backward, step; returns (logits, loss)."""
    x, y = x.to(device), y.to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(device, dtype):
        logits = model(x)
    loss = criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logits, loss


def train_one_epoch(
    model,
    optimizer,
    criterion,
    cfg,
    split,
    epoch,
    device,
    dtype,
    writer,
    progress_base,
    ema: WeightEMA | None = None,
    distiller: Distiller | None = None,
):
    """One pass over the training split; returns (labels, probs) seen, for the train metrics."""
    torch.manual_seed(epoch_seed(cfg.seed, epoch))  # dropout
    generator = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch))
    images, labels = torch.from_numpy(split.images), torch.from_numpy(split.labels)
    order = torch.randperm(len(labels), generator=generator)
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2 * distributed.world_size():
        batches.pop()  # BatchNorm cannot train on a batch of one (per process)
    aug = AugmentConfig(**cfg.augment)
    mixer = batch_mixer(cfg.mixup_alpha, cfg.cutmix_alpha, NUM_CLASSES)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and dtype == torch.float16)
    model.train()
    seen_labels, seen_probs = [], []
    bar = tqdm(
        batches,
        desc=f"epoch {epoch}/{cfg.epochs}",
        unit="batch",
        leave=False,
        mininterval=1.0,
        disable=not progress_base["show_bar"],
        file=sys.stdout,
    )
    for i, index in enumerate(bar):
        if distributed.any_rank(_stop_requested):  # all processes of a DDP run stop at the same batch
            raise Cancelled()
        if INJECTED_OOM_EPOCH == epoch and i == 1:
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB (injected by FER_INJECT_FAULT)"
            )
        if cfg.schedule != "plateau":
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, epoch - 1 + i / len(batches)) * group.get("lr_scale", 1.0)
        x = augment_batch(to_model_input(images[index]), aug, generator)  # the whole global batch, for the RNG
        y = target = labels[index]
        if mixer is not None:  # soft targets for the loss; train metrics use each image's own label
            x, target = mixer(x, y)
        x, y, target = distributed.shard(x), distributed.shard(y), distributed.shard(target)
        loss_of = criterion if distiller is None else distiller.criterion(criterion, x)
        logits, loss = train_step(model, optimizer, loss_of, x, target, device, dtype, scaler, cfg.channels_last)
        if ema is not None:
            ema.update(step=(epoch - 1) * len(batches) + i)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss became {loss.item()} at epoch {epoch}, batch {i + 1}; try a lower learning rate"
            )
        seen_labels.append(y.numpy())
        seen_probs.append(torch.softmax(logits.detach().float(), 1).cpu().numpy())
        report_batch(writer, progress_base, epoch, cfg.epochs, i + 1, len(batches))
    return distributed.gather(np.concatenate(seen_labels)), distributed.gather(np.concatenate(seen_probs))
