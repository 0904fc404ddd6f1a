"""What a training run tells of its progress: to the run store (run.json's heartbeat,
`progress` and epoch summary, which the jobs panel and the Runs page read) and to the console.

The heartbeat is also how a stopped process is told from a running one: a run whose heartbeat
is older than STALE_SECONDS reads as failed (fer_core/runs/status.py).
"""

from __future__ import annotations

import time

from fer_core.runs.runwriter import RunWriter


def report_phase(writer: RunWriter, phase: str, epoch: int, epochs: int) -> None:
    """What the trainer does between batches (loading, evaluating, saving), for the jobs panel:
    without it the panel shows the last batch's numbers through long silent steps."""
    writer.heartbeat(
        {"phase": phase, "epoch": epoch, "epochs": epochs, "fraction": min(epoch / epochs, 1.0)}, force=True
    )


def report_batch(writer: RunWriter, progress_base: dict, epoch: int, epochs: int, batch: int, batches: int) -> None:
    """After each training batch (`batch` counts from 1): how far the run is and, from this
    process's pace since it started (`progress_base`), how long it has to go. The store is
    written every few seconds, and at once on an epoch's first batch."""
    done = (epoch - 1 + batch / batches) / epochs
    started, start_done = progress_base["started"], progress_base["done_at_start"]
    rate = (done - start_done) / max(time.time() - started, 1e-9)
    writer.heartbeat(
        {
            "phase": "training",
            "epoch": epoch,
            "epochs": epochs,
            "batch": batch,
            "batches": batches,
            "fraction": done,
            "eta_seconds": (1 - done) / rate if rate > 0 else None,
        },
        force=batch == 1,  # at once, not 2 s after the phase that came before
    )


def record_epoch(writer: RunWriter, epoch: int, state: dict, val: dict, started: float) -> None:
    """A finished epoch in run.json: how many are done, the best so far, this epoch's val
    numbers, and the training time (`started`: when the run would have started had it never stopped)."""
    summary = {k: val[k] for k in ("accuracy", "loss", "macro_f1", "auc")}
    writer.update(
        epochs_completed=epoch,
        best_epoch=state["best_epoch"],
        best_val_accuracy=state["best_accuracy"],
        **({"best_val": dict(summary, epoch=epoch)} if state["best_epoch"] == epoch else {}),
        last_val=dict(summary, epoch=epoch),
        train_seconds=time.time() - started,
    )


def print_epoch(epoch: int, epochs: int, train: dict, val: dict, lr: float, images_per_second: float) -> None:
    """The epoch's line in the log: its train and val metrics rows, the learning rate and the pace."""
    print(
        f"epoch {epoch}/{epochs}  train loss {train['loss']:.4f} acc {train['accuracy']:.4f}  "
        f"val loss {val['loss']:.4f} acc {val['accuracy']:.4f} f1 {val['macro_f1']:.4f}  "
        f"lr {lr:.2e}  {images_per_second:.0f} img/s",
        flush=True,
    )
