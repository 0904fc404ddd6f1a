"""Per-face predictions: each face's true label and class probabilities, one row per face.

Curves and confusion matrices say how often a model is wrong; these rows say on which faces,
how sure it was, and whether its confidence means anything (calibration). A run keeps the
rows of its best checkpoint in `predictions/<split>-<tta>.parquet` (written at the end of
training and by `fer-eval --save`); a shipped model keeps its val rows in
`results/models/predictions/<name>-<split>-<tta>.parquet`. A face is named by its split and
its position in that split (`index`): for shipped models and `fer-eval --save`, the order
`fer_core.data.fer2013.load_dataset` reads it; for a run, the split as its training made it
(`prepare_splits`: after `--limit`, or val carved from train), so a gallery can show the face
itself from the dataset (and checks the labels match before it does).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..classes import CLASSES
from ..paths import SHIPPED_MODELS_DIR

PROB_COLUMNS = [f"p_{c}" for c in CLASSES]
SHIPPED_PREDICTIONS_DIR = SHIPPED_MODELS_DIR / "predictions"


def predictions_frame(
    labels: np.ndarray, probs: np.ndarray, split: str, tta: str, index: np.ndarray | None = None, **ids
) -> pd.DataFrame:
    """The rows for one split and view (faces `index` of the split, all by default); `ids`
    (run_id=..., model=..., epoch=...) fill constant columns.
    float16 probabilities keep a reference run's rows near 50 KB per split, which is small
    enough to commit and exact enough for accuracy, loss and calibration (3 decimal digits)."""
    probs = np.asarray(probs, dtype=np.float32)
    frame = pd.DataFrame(
        {
            **ids,
            "split": split,
            "tta": tta,
            "index": np.arange(len(labels), dtype=np.int32) if index is None else np.asarray(index, np.int32),
            "label": np.asarray(labels, dtype=np.int8),
            "pred": probs.argmax(1).astype(np.int8),
        }
    )
    for i, column in enumerate(PROB_COLUMNS):
        frame[column] = probs[:, i].astype(np.float16)
    return frame


def probabilities(frame: pd.DataFrame) -> np.ndarray:
    """[N, 7] float32 probabilities of the rows, renormalised (float16 storage rounds them)."""
    probs = frame[PROB_COLUMNS].to_numpy(np.float32)
    return probs / probs.sum(1, keepdims=True).clip(1e-12)


def file_name(split: str, tta: str) -> str:
    return f"{split}-{tta}.parquet"


def shipped_predictions(names: list[str] | None = None, split: str = "val") -> pd.DataFrame:
    """The stored rows of shipped models (every view), with a `model` column; empty if none."""
    frames = []
    for path in sorted(SHIPPED_PREDICTIONS_DIR.glob(f"*-{split}-*.parquet")):
        frame = pd.read_parquet(path)
        if names is None or frame["model"].iloc[0] in names:
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_shipped_predictions(frame: pd.DataFrame) -> None:
    """One file per (model, split, view), as `fer-eval --save` on a shipped model writes it."""
    for (model, split, tta), rows in frame.groupby(["model", "split", "tta"]):
        data = rows.to_parquet(index=False)
        path = SHIPPED_PREDICTIONS_DIR / f"{model}-{file_name(split, tta)}"
        atomic_write(path, lambda tmp, d=data: tmp.write_bytes(d))
