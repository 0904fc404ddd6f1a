"""fer-train: train one model on FER2013 and record it in the run store.

One readable loop in the spirit of torchvision's reference script: the recipe pieces
(bf16 autocast + channels-last, label smoothing, class weights, warmup + cosine or
plateau schedules, early stopping) are switched by the config. Every epoch is seeded
from (seed, epoch), and the optimizer/scheduler state is checkpointed, so `--resume`
continues a stopped run with the same numbers an uninterrupted run would have given.
"""

from __future__ import annotations

import _thread
import errno
import math
import os
import platform
import signal
import sys
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from fer_core.classes import CLASSES, NUM_CLASSES
from fer_core.data.augment import AugmentConfig, augment_batch, batch_mixer, to_model_input
from fer_core.data.fer2013 import load_dataset, prepare_splits
from fer_core.device import autocast_dtype, select_device
from fer_core.evaluation.metrics import classification_metrics
from fer_core.inference.probabilities import autocast, predict_probs
from fer_core.models import count_parameters, create_model
from fer_core.runs.checkpoint import load_model, load_optimizer, save_checkpoint, save_optimizer
from fer_core.runs.predictions import predictions_frame
from fer_core.runs.presets import TrainConfig
from fer_core.runs.runstore import RunGone, RunStore, now_iso
from fer_core.runs.runwriter import RunWriter
from trainers import distributed
from trainers.distill import Distiller
from trainers.ema import WeightEMA


class Cancelled(Exception):
    """SIGTERM/SIGINT asked the trainer to stop; the run ends as `cancelled`."""


_stop_requested = False


def _request_stop(signum, frame):
    global _stop_requested
    _stop_requested = True


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


def split_rows(
    run_id: str,
    model_name: str,
    epoch: int,
    split: str,
    labels: np.ndarray,
    probs: np.ndarray,
    lr: float,
    seconds: float,
    tta: str = "none",
) -> tuple[dict, list[dict]]:
    """One metrics row and the long-form confusion rows for one split."""
    m = classification_metrics(labels, probs)
    confusion = m.pop("confusion")
    loss = float(F.nll_loss(torch.log(torch.as_tensor(probs).clamp_min(1e-12)), torch.as_tensor(labels)))
    row = {
        "run_id": run_id,
        "model": model_name,
        "epoch": epoch,
        "split": split,
        "tta": tta,
        "loss": loss,
        **m,
        "lr": lr,
        "epoch_seconds": seconds,
        "images_per_second": len(labels) / max(seconds, 1e-9),
    }
    cells = [
        {
            "run_id": run_id,
            "epoch": epoch,
            "split": split,
            "tta": tta,
            "true": CLASSES[t],
            "pred": CLASSES[p],
            "count": int(confusion[t, p]),
        }
        for t in range(NUM_CLASSES)
        for p in range(NUM_CLASSES)
    ]
    return row, cells


def report_phase(writer, phase: str, epoch: int, epochs: int) -> None:
    """What the trainer does between batches (loading, evaluating, saving), for the jobs panel:
    without it the panel shows the last batch's numbers through long silent steps."""
    writer.heartbeat(
        {"phase": phase, "epoch": epoch, "epochs": epochs, "fraction": min(epoch / epochs, 1.0)}, force=True
    )


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
        done = (epoch - 1 + (i + 1) / len(batches)) / cfg.epochs
        started, start_done = progress_base["started"], progress_base["done_at_start"]
        rate = (done - start_done) / max(time.time() - started, 1e-9)
        writer.heartbeat(
            {
                "phase": "training",
                "epoch": epoch,
                "epochs": cfg.epochs,
                "batch": i + 1,
                "batches": len(batches),
                "fraction": done,
                "eta_seconds": (1 - done) / rate if rate > 0 else None,
            },
            force=i == 0,  # at once, not 2 s after the phase that came before
        )
    return distributed.gather(np.concatenate(seen_labels)), distributed.gather(np.concatenate(seen_probs))


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
    where the run stands (lr_at is a function of the total), so a long run can be cut short or
    lengthened without starting over. run.json keeps each change under `epochs_changed`.
    """
    global _stop_requested
    _stop_requested = False
    signal.signal(signal.SIGTERM, _request_stop)
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
    """`started` is when the run would have started had it never stopped (train_seconds count on);
    `done` the epochs it had finished then."""
    device = distributed.device_for_rank(select_device(cfg.device))
    lead = not isinstance(writer, FollowerWriter)
    dtype = autocast_dtype(device, cfg.precision)
    dataset = load_dataset(cfg.data, cfg.fer_plus)
    splits = prepare_splits(dataset, cfg.limit, cfg.val_fraction, cfg.seed)
    report_phase(writer, "building model", done, cfg.epochs)
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
    weights = class_weights(cfg, splits["train"].labels)
    criterion = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(device), label_smoothing=cfg.label_smoothing
    )
    distiller = (
        Distiller(cfg.distill_from, cfg.distill_weight, cfg.distill_temperature, device, dtype, cfg.channels_last)
        if cfg.distill_from
        else None
    )
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
    if distiller is not None:
        writer.update(distill_from=distiller.record)
    writer.drop_epochs_after(state["epoch"])
    train_model = distributed.wrap(model)  # DDP under torchrun, else the model itself
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
    progress = {"show_bar": show_bar, "started": time.time(), "done_at_start": state["epoch"] / cfg.epochs}

    def val_probs_of(m: torch.nn.Module) -> np.ndarray:
        return predict_probs(
            m, splits["val"].images, device, dtype, batch_size=cfg.eval_batch_size, channels_last=cfg.channels_last
        )[0]

    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        t0 = time.time()
        train_labels, train_probs = train_one_epoch(
            train_model,
            optimizer,
            criterion,
            cfg,
            splits["train"],
            epoch,
            device,
            dtype,
            writer,
            progress,
            ema,
            distiller,
        )
        train_seconds = time.time() - t0
        distributed.sync_buffers(model)
        lr = optimizer.param_groups[0]["lr"]
        evaluated = model if ema is None else ema.module  # what val measures and `best` keeps
        report_phase(writer, "evaluating val", epoch, cfg.epochs)
        t0 = time.time()
        val_probs = val_probs_of(evaluated)
        val_seconds = time.time() - t0
        rows, cells = [], []
        for split, labels, probs, seconds in (
            ("train", train_labels, train_probs, train_seconds),
            ("val", splits["val"].labels, val_probs, val_seconds),
        ):
            row, conf = split_rows(writer.run_id, cfg.model, epoch, split, labels, probs, lr, seconds)
            rows.append(row)
            cells += conf
        val = rows[1]
        if plateau is not None:
            plateau.step(val["loss"])
        if val["accuracy"] > state["best_accuracy"]:
            state.update(best_accuracy=val["accuracy"], best_epoch=epoch, bad_epochs=0)
            if lead:
                writer.check()  # a deleted run's folder is not made again by the checkpoint
                save_checkpoint(
                    evaluated,
                    ckpt / "best.safetensors",
                    epoch=epoch,
                    val_accuracy=val["accuracy"],
                    run_id=writer.run_id,
                )
                writer.publish_checkpoints("best.safetensors")
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        report_phase(writer, "saving", epoch, cfg.epochs)
        writer.write_metrics(f"epoch_{epoch:04d}", rows, cells)
        if lead:
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
        summary = {k: val[k] for k in ("accuracy", "loss", "macro_f1", "auc")}
        writer.update(
            epochs_completed=epoch,
            best_epoch=state["best_epoch"],
            best_val_accuracy=state["best_accuracy"],
            **({"best_val": dict(summary, epoch=epoch)} if state["best_epoch"] == epoch else {}),
            last_val=dict(summary, epoch=epoch),
            train_seconds=time.time() - started,
        )
        if lead:
            print(
                f"epoch {epoch}/{cfg.epochs}  train loss {rows[0]['loss']:.4f} acc {rows[0]['accuracy']:.4f}  "
                f"val loss {val['loss']:.4f} acc {val['accuracy']:.4f} f1 {val['macro_f1']:.4f}  "
                f"lr {lr:.2e}  {len(train_labels) / train_seconds:.0f} img/s",
                flush=True,
            )
            if ema is not None:  # how much the average buys over the weights it averages
                raw_accuracy = (val_probs_of(model).argmax(1) == splits["val"].labels).mean()
                print(f"  val acc of the raw (not averaged) weights {raw_accuracy:.4f}", flush=True)
        if cfg.early_stopping and state["bad_epochs"] >= cfg.early_stopping:
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


def final_evaluation(cfg, writer, splits, device, dtype, state) -> dict:
    """The best checkpoint on val (with TTA) and on test if the dataset has one."""
    model = load_model(writer.checkpoint_dir / "best.safetensors", device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    rows, cells, faces, final = [], [], [], {"best_epoch": state["best_epoch"], "epochs_completed": state["epoch"]}
    evaluations = [("val", "none"), ("val", "flip"), ("val", "tencrop")]
    if "test" in splits:
        evaluations += [("test", "none"), ("test", "flip"), ("test", "tencrop")]
    for split, tta in evaluations:
        t0 = time.time()
        probs, _ = predict_probs(
            model,
            splits[split].images,
            device,
            dtype,
            tta=tta,
            batch_size=cfg.eval_batch_size,
            channels_last=cfg.channels_last,
        )
        row, conf = split_rows(
            writer.run_id,
            cfg.model,
            state["best_epoch"],
            split,
            splits[split].labels,
            probs,
            0.0,
            time.time() - t0,
            tta=tta,
        )
        suffix = "" if tta == "none" else f"_{tta}"
        final.update(
            {
                f"{split}_accuracy{suffix}": row["accuracy"],
                f"{split}_macro_f1{suffix}": row["macro_f1"],
                f"{split}_auc{suffix}": row["auc"],
                f"{split}_loss{suffix}": row["loss"],
            }
        )
        if split == "test" or tta != "none":  # val/none at the best epoch is already an epoch row
            rows.append(row)
            cells += conf
        faces.append(predictions_frame(splits[split].labels, probs, split, tta, run_id=writer.run_id))
    writer.write_metrics("final", rows, cells)
    writer.store.write_predictions(writer.run_id, pd.concat(faces, ignore_index=True))
    return final
