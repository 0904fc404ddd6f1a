"""A training run's checkpoints and the bookkeeping saved with them.

`best.safetensors` is what val measured (the weight average with --ema-decay), saved when val
accuracy improves; the final evaluation and every later use of the run read it.
`last.safetensors`, `last_optimizer.safetensors` (optimizer, plateau schedule and the state
below) and `last_ema.safetensors` are saved after every epoch: all that --resume needs to go
on with the numbers an uninterrupted run would have given.

The state is a plain dict: the last finished epoch, the best val accuracy and its epoch, and
how many epochs in a row have not beaten it (for early stopping).
"""

from __future__ import annotations

import torch

from fer_core.runs.checkpoint import load_model, load_optimizer, save_checkpoint, save_optimizer
from fer_core.runs.presets import TrainConfig
from fer_core.runs.runwriter import RunWriter
from trainers.ema import WeightEMA


def resume_or_init(
    cfg: TrainConfig,
    writer: RunWriter,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    plateau,
    ema: WeightEMA | None,
    resuming: bool,
) -> dict:
    """Load where training starts: the last checkpoint when resuming, else --init-from's weights,
    else the model as made. Returns the state (epoch 0 unless resuming)."""
    state = {"epoch": 0, "best_accuracy": -1.0, "best_epoch": 0, "bad_epochs": 0}
    ckpt = writer.checkpoint_dir
    if resuming:
        # best too: when no later epoch beats it, the final evaluation reads the one saved before the stop
        writer.fetch_checkpoints("last.safetensors", "last_optimizer.safetensors", "best.safetensors")
    if resuming and (ckpt / "last.safetensors").exists():
        model.load_state_dict(load_model(ckpt / "last.safetensors").state_dict())
        state = load_optimizer(optimizer, ckpt / "last_optimizer.safetensors")
        if ema is not None:
            writer.fetch_checkpoints("last_ema.safetensors")
            ema.module.load_state_dict(load_model(ckpt / "last_ema.safetensors").state_dict())
        if plateau is not None:
            plateau.load_state_dict(state.pop("plateau"))
        print(f"resuming after epoch {state['epoch']}", flush=True)
    elif cfg.init_from:
        source = load_model(cfg.init_from)
        model.load_state_dict(source.state_dict())
        if ema is not None:
            ema.module.load_state_dict(source.state_dict())
        writer.update(init_from={"checkpoint": cfg.init_from, **source.checkpoint_info})
        print(f"starting from {cfg.init_from} ({source.checkpoint_info})", flush=True)
    return state


def track_best(state: dict, epoch: int, val_accuracy: float) -> bool:
    """Note this epoch's val accuracy in the state; True when it beats the best so far."""
    if val_accuracy > state["best_accuracy"]:
        state.update(best_accuracy=val_accuracy, best_epoch=epoch, bad_epochs=0)
        return True
    state["bad_epochs"] += 1
    return False


def stop_early(cfg: TrainConfig, state: dict) -> bool:
    """--early-stopping N: val accuracy has not improved for N epochs."""
    return bool(cfg.early_stopping) and state["bad_epochs"] >= cfg.early_stopping


def save_best(writer: RunWriter, evaluated: torch.nn.Module, epoch: int, val_accuracy: float) -> None:
    writer.check()  # a deleted run's folder is not made again by the checkpoint
    save_checkpoint(
        evaluated,
        writer.checkpoint_dir / "best.safetensors",
        epoch=epoch,
        val_accuracy=val_accuracy,
        run_id=writer.run_id,
    )
    writer.publish_checkpoints("best.safetensors")


def save_last(
    writer: RunWriter,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    plateau,
    ema: WeightEMA | None,
    state: dict,
) -> None:
    """After the epoch `state` ends on: the raw weights, the optimizer with the schedule and the
    state, and the weight average."""
    ckpt, epoch = writer.checkpoint_dir, state["epoch"]
    writer.check()
    save_checkpoint(model, ckpt / "last.safetensors", epoch=epoch, run_id=writer.run_id)
    save_optimizer(
        optimizer,
        ckpt / "last_optimizer.safetensors",
        dict(state, **({"plateau": plateau.state_dict()} if plateau else {})),
    )
    writer.publish_checkpoints("last.safetensors", "last_optimizer.safetensors")
    if ema is not None:
        save_checkpoint(ema.module, ckpt / "last_ema.safetensors", epoch=epoch, run_id=writer.run_id)
        writer.publish_checkpoints("last_ema.safetensors")
