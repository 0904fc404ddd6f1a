"""How a training run is measured: after each epoch the model on val, and at the end the best
checkpoint on val and test with each test-time view. Each measurement becomes one metrics row
and 49 confusion cells, the Parquet rows the Runs page reads.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from fer_core.classes import CLASSES, NUM_CLASSES
from fer_core.evaluation.metrics import classification_metrics
from fer_core.inference.probabilities import predict_probs
from fer_core.runs.checkpoint import load_model
from fer_core.runs.predictions import predictions_frame
from fer_core.runs.presets import TrainConfig


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


def val_probs(cfg: TrainConfig, model: torch.nn.Module, val, device, dtype) -> np.ndarray:
    """The model's probabilities for the val split's faces, in one view (no TTA)."""
    return predict_probs(
        model, val.images, device, dtype, batch_size=cfg.eval_batch_size, channels_last=cfg.channels_last
    )[0]


def val_accuracy(cfg: TrainConfig, model: torch.nn.Module, val, device, dtype) -> float:
    return (val_probs(cfg, model, val, device, dtype).argmax(1) == val.labels).mean()


def evaluate_epoch(
    cfg: TrainConfig, run_id: str, epoch: int, model, val, trained: tuple, lr: float, device, dtype
) -> tuple[list[dict], list[dict]]:
    """The epoch's metrics rows (train, then val) and confusion cells. `trained` is the train
    pass's (labels, probs, seconds); val is measured here, on `model` (the average with EMA)."""
    t0 = time.time()
    probs = val_probs(cfg, model, val, device, dtype)
    val_seconds = time.time() - t0
    rows, cells = [], []
    for split, labels, split_probs, seconds in (("train", *trained), ("val", val.labels, probs, val_seconds)):
        row, conf = split_rows(run_id, cfg.model, epoch, split, labels, split_probs, lr, seconds)
        rows.append(row)
        cells += conf
    return rows, cells


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
