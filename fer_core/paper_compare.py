"""The paper's Tables 1 and 2 and its headline accuracies lined up with our runs, row for row.

Plain functions over run.json dicts (what `RunStore.list_runs()` returns), so the Compare runs
page and a report can show the same comparison. Each returns one row per row of the paper's
table: its key columns, the paper's accuracy and ours side by side with the gap, how much
training ours had and which run it is, then the other metrics in pairs (ours NaN where no
comparable run matches).

The two numbers in a row are not measured the same way: the paper reports its own 80:20 split
of FER2013; ours is the FER2013 PublicTest split (our val split) at the run's best epoch, one
view, no test-time augmentation. The `*_protocol` columns say so in every row.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .paper import HEADLINE, TABLE1_STCNN_BATCH, TABLE2_VIT
from .runstore import COMPLETED  # a cancelled run keeps its best epoch; a failed one may not

PAPER_PROTOCOL = "the authors' own 80:20 split of FER2013"
OUR_PROTOCOL = "FER2013 PublicTest as val, at the run's best epoch, one view"

MIN_EPOCHS = 3  # fewer finished epochs is a smoke test, not a result
MIN_TRAIN_IMAGES = 1000  # the bundled 700-face sample and `--limit` smoke runs are below this
SAMPLE_DATA_NAME = "fer2013_sample"  # data/fer2013_sample.csv.gz

# What Table 1 holds fixed while it varies the batch size (fer_core.presets' paper-stcnn-b* presets).
TABLE1_RECIPE = {"model": "stcnn", "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.01}
TABLE2_KEYS = ["layers", "patch_size", "hidden_size", "heads", "mlp_dim", "kernel_init"]
METRICS = ["accuracy", "macro_f1", "loss", "auc"]


def comparable(run: dict) -> bool:
    """Ended by its trainer with a best epoch, trained for at least MIN_EPOCHS epochs on at least
    MIN_TRAIN_IMAGES faces, and not on the bundled sample: a run whose number means something."""
    cfg = run.get("config") or {}
    train_images = ((run.get("dataset") or {}).get("sizes") or {}).get("train")
    return (
        run.get("status") in COMPLETED
        and bool((run.get("best_val") or {}).get("accuracy"))
        and (run.get("epochs_completed") or 0) >= MIN_EPOCHS
        and SAMPLE_DATA_NAME not in Path(str(cfg.get("data") or "")).name
        and (train_images is None or train_images >= MIN_TRAIN_IMAGES)
    )


def table1_rows(runs: list[dict]) -> pd.DataFrame:
    """Table 1 (ST-CNN, batch size): per paper batch size, our best comparable run trained with
    the paper's recipe (TABLE1_RECIPE) at that batch size."""

    def matches(run: dict, row: dict) -> bool:
        cfg = run.get("config") or {}
        return cfg.get("batch_size") == row["batch_size"] and all(
            _same(cfg.get(k), v) for k, v in TABLE1_RECIPE.items()
        )

    return _side_by_side(TABLE1_STCNN_BATCH, ["batch_size"], runs, matches)


def table2_rows(runs: list[dict]) -> pd.DataFrame:
    """Table 2 (ViT configurations): per paper row, our best comparable patch-embedding ViT with
    the same layers, patch size, hidden size, heads, MLP size and kernel initialiser."""

    def matches(run: dict, row: dict) -> bool:
        model_config = (run.get("config") or {}).get("model_config") or {}
        return (
            run.get("model") == "vit"
            and model_config.get("stem", "patch") == "patch"  # the paper's ViT embeds patches
            and all(_same(model_config.get(k), row[k]) for k in TABLE2_KEYS)
        )

    return _side_by_side(TABLE2_VIT, TABLE2_KEYS, runs, matches)


def headline_rows(runs: list[dict]) -> pd.DataFrame:
    """Per architecture the paper reports (HEADLINE): its best accuracy beside our best
    comparable run of that architecture, whatever its recipe."""
    paper = [{"model": model, "accuracy": accuracy} for model, accuracy in HEADLINE.items()]
    return _side_by_side(paper, ["model"], runs, lambda run, row: run.get("model") == row["model"])


def _side_by_side(paper_rows: list[dict], keys: list[str], runs: list[dict], matches) -> pd.DataFrame:
    candidates = [r for r in runs if comparable(r)]
    rows = []
    for paper in paper_rows:
        ours = max(
            (r for r in candidates if matches(r, paper)),
            key=lambda r: (r["best_val"]["accuracy"], r.get("created") or ""),
            default={},
        )
        best = ours.get("best_val") or {}
        sizes = (ours.get("dataset") or {}).get("sizes") or {}
        row = {k: paper[k] for k in keys}
        row |= {"paper_accuracy": paper["accuracy"], "our_accuracy": best.get("accuracy", math.nan)}
        row |= {
            "accuracy_gap": row["our_accuracy"] - row["paper_accuracy"],  # ours minus the paper's
            "our_epochs": ours.get("epochs_completed"),  # how much training ours had
            "our_train_images": sizes.get("train"),
            "our_val_images": sizes.get("val"),
            "our_run": ours.get("name"),
        }
        for metric in METRICS[1:]:
            row |= {f"paper_{metric}": paper.get(metric, math.nan), f"our_{metric}": best.get(metric, math.nan)}
        row |= {
            "our_best_epoch": best.get("epoch", ours.get("best_epoch")),
            "our_preset": ours.get("preset"),
            "our_run_id": ours.get("run_id"),
            "paper_protocol": PAPER_PROTOCOL,
            "our_protocol": OUR_PROTOCOL if ours else None,
        }
        rows.append(row)
    return pd.DataFrame(rows)


def _same(ours, theirs) -> bool:
    if isinstance(theirs, float) and isinstance(ours, int | float):
        return math.isclose(ours, theirs, rel_tol=1e-9)
    return ours == theirs
