"""fer-train: train one model on FER2013 and record it in the run store.

One readable loop in the spirit of torchvision's reference script: the recipe pieces
(bf16 autocast + channels-last, label smoothing, class weights, warmup + cosine or
plateau schedules, early stopping) are switched by the config. Every epoch is seeded
from (seed, epoch), and the optimizer/scheduler state is checkpointed, so `--resume`
continues a stopped run with the same numbers an uninterrupted run would have given.

Here: the run's life (started, cancelled, failed, finished) and the loop, `_train`. Each part of
an epoch has a module of its own: the training steps (`epoch.py`), the val pass and its metrics
rows (`evaluate.py`), the last and best checkpoints with the early-stopping bookkeeping
(`checkpoints.py`), and what the run store and the console hear of it (`progress.py`).
"""

from __future__ import annotations

import _thread
import errno
import os
import platform
import sys
import time

import numpy as np
import torch

from fer_core.classes import NUM_CLASSES
from fer_core.data.fer2013 import load_dataset, prepare_splits
from fer_core.device import autocast_dtype, select_device
from fer_core.models import count_parameters, create_model
from fer_core.runs.presets import TrainConfig
from fer_core.runs.runstore import RunStore
from fer_core.runs.runwriter import RunWriter
from fer_core.runs.status import RunGone, now_iso
from trainers import distributed
from trainers.checkpoints import resume_or_init, save_best, save_last, stop_early, track_best
from trainers.distill import Distiller
from trainers.ema import WeightEMA
from trainers.epoch import Cancelled, stop_on_sigterm, train_one_epoch
from trainers.evaluate import evaluate_epoch, final_evaluation, val_accuracy
from trainers.progress import print_epoch, record_epoch, report_phase


def make_optimizer(cfg: TrainConfig, model: torch.nn.Module, fused: bool = True) -> torch.optim.Optimizer:
    """The preset's optimizer; fused (one kernel for all parameters) on CPU and CUDA, where
    torch's default is a Python loop over parameters, slow on channels-last weights."""
    params = list(model.parameters())
    fused = fused and all(p.device.type in ("cpu", "cuda") for p in params)
    localization = getattr(model, "localization", None)
    if localization is not None and cfg.localization_lr_scale != 1.0:
        loc_ids = {id(p) for p in localization.parameters()}
        params = [
            {"params": [p for p in params if id(p) not in loc_ids]},
            {
                "params": list(localization.parameters()),
                "lr": cfg.lr * cfg.localization_lr_scale,
                "lr_scale": cfg.localization_lr_scale,
            },
        ]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
            fused=fused,
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)


def class_weights(cfg: TrainConfig, labels: np.ndarray) -> torch.Tensor | None:
    if cfg.class_weights == "none":
        return None
    counts = np.bincount(labels, minlength=NUM_CLASSES).clip(min=1)
    weights = len(labels) / (NUM_CLASSES * counts)
    if cfg.class_weights == "sqrt":
        weights = np.sqrt(weights)
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def run_training(
    cfg: TrainConfig,
    store: RunStore,
    resume: str | None = None,
    show_bar: bool = True,
    run_id: str | None = None,
    epochs: int | None = None,
) -> str:
    """Train (or resume) one run to the end; returns its run id. Raises on failure (run marked failed).

    `epochs` with `resume` moves the run's end: a cosine schedule then anneals to the new end from
    where the run stands (epoch.py: lr_at is a function of the total), so a long run can be cut
    short or lengthened without starting over. run.json keeps each change under `epochs_changed`.
    """
    stop_on_sigterm()
    earlier = store.read_run(resume) if resume else {}  # the run so far, when resuming
    cfg = TrainConfig.from_dict(earlier["config"]) if resume else cfg.validate()
    changed = {}
    if resume and epochs and epochs != cfg.epochs:
        done = earlier.get("epochs_completed") or 0
        if epochs <= done:
            raise ValueError(f"--epochs {epochs}: run {resume} has already trained {done} epochs")
        history = earlier.get("epochs_changed", []) + [{"after_epoch": done, "from": cfg.epochs, "to": epochs}]
        cfg.epochs = epochs
        changed = {"config": cfg.to_dict(), "epochs_changed": history}
    distributed.init(cfg.device)
    lead = distributed.rank() == 0
    if resume:
        run_id = resume
    else:
        run_id = distributed.broadcast(
            store.create(cfg.to_dict(), name=cfg.name, run_id=run_id).run_id if lead else None
        )
    writer = RunWriter(store, run_id) if lead else FollowerWriter(store, run_id)
    if lead:
        print(f"run {writer.run_id}\n{writer.dir}", flush=True)
    started = time.time()
    writer.update(
        status="running",
        pid=os.getpid(),
        started=now_iso(),
        started_unix=started,
        heartbeat_unix=started,
        error=None,
        **changed,
    )
    writer.keep_alive(on_gone=_thread.interrupt_main)  # a deleted run stops the trainer mid-step
    done = earlier.get("epochs_completed") or 0
    try:
        report_phase(writer, "loading data", done, cfg.epochs)
        return _train(cfg, writer, resume is not None, show_bar, started - earlier.get("train_seconds", 0.0), done)
    except (RunGone, Cancelled, KeyboardInterrupt) as e:
        if isinstance(e, RunGone) or writer.gone.is_set():  # nothing more is written: the run stays gone
            raise TrainingFailed(f"run {writer.run_id} was deleted while it trained; stopped") from None
        _record_end(writer, status="cancelled", ended=now_iso())
        print(f"run {writer.run_id} cancelled; metrics so far are kept", flush=True)
        return writer.run_id
    except Exception as e:
        reason = failure_reason(e)
        _record_end(writer, status="failed", ended=now_iso(), error=reason)
        raise TrainingFailed(reason) from e
    finally:
        writer.stop_keep_alive()
        distributed.shutdown()


class FollowerWriter(RunWriter):
    """Ranks > 0 of a DDP run: they train and evaluate, rank 0 alone writes the run."""

    def update(self, **fields) -> dict:
        return {}

    def heartbeat(self, *args, **kwargs) -> None:
        pass

    def write_metrics(self, *args, **kwargs) -> None:
        pass

    def check(self) -> None:
        pass

    def drop_epochs_after(self, epoch: int) -> None:
        pass


class TrainingFailed(Exception):
    """The run failed; the message is the one-line reason also recorded in run.json."""


def failure_reason(e: BaseException) -> str:
    """One line a user can act on, for the failures that happen to long trainings."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, torch.OutOfMemoryError):
        return f"out of memory ({first}); try a smaller --batch-size, then --resume"
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"no space left on the device while writing {e.filename or 'the results'}; free space, then --resume"
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {e.filename or 'the results'}: {e.strerror} (read-only or not permitted)"
    return f"{type(e).__name__}: {first}"


def _record_end(writer: RunWriter, **fields) -> None:
    """Record how the run ended; when the results folder is what broke, readers see the stale
    heartbeat instead (the run reads as failed within STALE_SECONDS)."""
    try:
        writer.update(**fields)
    except RunGone:
        pass  # deleted meanwhile: nothing to record it in
    except OSError as e:
        print(f"fer-train: could not record the end of the run: {e}", file=sys.stderr, flush=True)


def _train(cfg: TrainConfig, writer: RunWriter, resuming: bool, show_bar: bool, started: float, done: int = 0) -> str:
    """Set up, then the loop: train an epoch, evaluate it, keep its checkpoints, record it.
    `started` is when the run would have started had it never stopped (train_seconds count on);
    `done` the epochs it had finished then."""
    device = distributed.device_for_rank(select_device(cfg.device))
    lead = not isinstance(writer, FollowerWriter)  # rank 0: the one that saves checkpoints and prints
    dtype = autocast_dtype(device, cfg.precision)
    dataset = load_dataset(cfg.data, cfg.fer_plus)
    splits = prepare_splits(dataset, cfg.limit, cfg.val_fraction, cfg.seed)
    report_phase(writer, "building model", done, cfg.epochs)
    model, optimizer, plateau, ema, criterion, distiller = _build(cfg, splits["train"].labels, device, dtype)
    state = resume_or_init(cfg, writer, model, optimizer, plateau, ema, resuming)
    if distiller is not None:
        writer.update(distill_from=distiller.record)
    writer.drop_epochs_after(state["epoch"])
    train_model = distributed.wrap(model)  # DDP under torchrun, else the model itself
    _record_setup(writer, device, dtype, model, dataset, splits)
    progress = {"show_bar": show_bar, "started": time.time(), "done_at_start": state["epoch"] / cfg.epochs}
    train_split, val_split = splits["train"], splits["val"]

    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        t0 = time.time()
        train_labels, train_probs = train_one_epoch(
            train_model, optimizer, criterion, cfg, train_split, epoch, device, dtype, writer, progress, ema, distiller
        )
        train_seconds = time.time() - t0
        distributed.sync_buffers(model)
        lr = optimizer.param_groups[0]["lr"]
        evaluated = model if ema is None else ema.module  # what val measures and `best` keeps
        report_phase(writer, "evaluating val", epoch, cfg.epochs)
        trained = (train_labels, train_probs, train_seconds)
        rows, cells = evaluate_epoch(cfg, writer.run_id, epoch, evaluated, val_split, trained, lr, device, dtype)
        train, val = rows
        if plateau is not None:
            plateau.step(val["loss"])
        if track_best(state, epoch, val["accuracy"]) and lead:
            save_best(writer, evaluated, epoch, val["accuracy"])
        state["epoch"] = epoch
        report_phase(writer, "saving", epoch, cfg.epochs)
        writer.write_metrics(f"epoch_{epoch:04d}", rows, cells)
        if lead:
            save_last(writer, model, optimizer, plateau, ema, state)
        record_epoch(writer, epoch, state, val, started)
        if lead:
            print_epoch(epoch, cfg.epochs, train, val, lr, len(train_labels) / train_seconds)
            if ema is not None:  # how much the average buys over the weights it averages
                raw_accuracy = val_accuracy(cfg, model, val_split, device, dtype)
                print(f"  val acc of the raw (not averaged) weights {raw_accuracy:.4f}", flush=True)
        if stop_early(cfg, state):
            print(f"early stopping: val accuracy has not improved for {cfg.early_stopping} epochs", flush=True)
            break

    if not lead:
        return writer.run_id
    report_phase(writer, "final evaluation", state["epoch"], cfg.epochs)
    final = final_evaluation(cfg, writer, splits, device, dtype, state)
    writer.update(
        status="finished",
        ended=now_iso(),
        final=final,
        progress={"fraction": 1.0, "epoch": state["epoch"], "epochs": cfg.epochs},
    )
    print(f"finished: best val accuracy {state['best_accuracy']:.4f} at epoch {state['best_epoch']}", flush=True)
    return writer.run_id


def _build(cfg: TrainConfig, train_labels: np.ndarray, device, dtype) -> tuple:
    """What the loop trains with: the model (seeded), its optimizer, the plateau schedule, the
    weight average, the loss and the teacher (schedule, average and teacher None unless asked for)."""
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_config).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
        if cfg.schedule == "plateau"
        else None
    )
    ema = WeightEMA(model, cfg.ema_decay, warmup=not cfg.init_from) if cfg.ema_decay else None
    weights = class_weights(cfg, train_labels)
    criterion = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device), label_smoothing=cfg.label_smoothing
    )
    distiller = (
        Distiller(cfg.distill_from, cfg.distill_weight, cfg.distill_temperature, device, dtype, cfg.channels_last)
        if cfg.distill_from
        else None
    )
    return model, optimizer, plateau, ema, criterion, distiller


def _record_setup(writer: RunWriter, device, dtype, model, dataset, splits) -> None:
    """What the run trains on and with, in run.json: for comparing runs and telling them apart later."""
    writer.update(
        device=str(device),
        processes=distributed.world_size(),
        precision=str(dtype).replace("torch.", "") if dtype else "float32",
        parameters=count_parameters(model),
        dataset={
            "source": dataset.source,
            "fingerprint": dataset.fingerprint,
            "sizes": {n: len(s) for n, s in splits.items()},
        },
        versions={"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
    )
