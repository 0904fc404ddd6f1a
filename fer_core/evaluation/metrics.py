"""Classification metrics for one split, computed by scikit-learn from labels and probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

from ..classes import CLASSES, NUM_CLASSES


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """accuracy, macro/weighted F1, macro one-vs-rest AUC, per-class precision/recall, confusion."""
    labels = np.asarray(labels)
    preds = probs.argmax(1)
    classes = list(range(NUM_CLASSES))
    precision, recall, _, _ = precision_recall_fscore_support(labels, preds, labels=classes, zero_division=0)
    out = {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=classes, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(labels, preds, labels=classes, average="weighted", zero_division=0)),
        "auc": macro_ovr_auc(labels, probs),
        "confusion": confusion_matrix(labels, preds, labels=classes),
    }
    for i, name in enumerate(CLASSES):
        out[f"precision_{name}"] = float(precision[i])
        out[f"recall_{name}"] = float(recall[i])
    return out


def macro_ovr_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes that occur (and do not fill the whole split)."""
    aucs = [
        roc_auc_score(labels == c, probs[:, c]) for c in range(NUM_CLASSES) if 0 < (labels == c).sum() < len(labels)
    ]
    return float(np.mean(aucs)) if aucs else float("nan")
