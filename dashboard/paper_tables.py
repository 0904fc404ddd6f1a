"""The paper's Tables 1 and 2 and headline accuracies beside ours, as the Paper report shows them
(dashboard/report_html.py): each table in two parts that fit a page, accuracies with where each
was measured, then F1, loss and AUC."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from fer_core.evaluation import paper_compare
from fer_core.inference.registry import model_record
from fer_core.runs.runstore import RunStore

PAPER = "the authors' own 80:20 split of FER2013 train, as they report it"


@dataclass
class Section:
    """One part of the report: a title, a note, then tables (DataFrames) and plotly figures in order."""

    title: str
    note: str = ""
    items: list = field(default_factory=list)


# -- the paper beside ours ----------------------------------------------------------------------


def percent(x) -> float | None:
    return None if x is None or pd.isna(x) else round(100 * float(x), 2)


# Each accuracy column says in its name where it was measured (the notes say it in full).
PAPER_COLUMN = "paper % (80:20)"  # their own split of FER2013 train
OURS_COLUMN = "ours % (val)"  # FER2013 PublicTest, the run's best epoch, one view
SHIPPED_COLUMN = "shipped % (val)"  # FER2013 PublicTest, the shipped weights in their card's view
COUNTS = ["our_epochs", "our_train_images", "our_val_images", "our_best_epoch"]  # whole numbers


def readable(frame: pd.DataFrame, keys: list[str]) -> list[pd.DataFrame]:
    """paper_compare's columns as a reader wants them, in two tables that fit a page: the
    accuracies (in percent, each column named with where it was measured), the gap and how much
    training ours had; then F1, loss and AUC, the paper's beside ours, and which run is ours."""
    frame = frame.copy()
    for column in [c for c in frame.columns if c.endswith("accuracy") or c == "accuracy_gap"]:
        frame[column] = frame[column].map(percent)
    for column in [c for c in COUNTS if c in frame.columns]:
        frame[column] = frame[column].astype("Int64")  # 28709, not 2.871e+04
    names = {
        "paper_accuracy": PAPER_COLUMN,
        "our_accuracy": OURS_COLUMN,
        "shipped_accuracy": SHIPPED_COLUMN,
        "accuracy_gap": "gap (points)",
        "our_epochs": "our epochs",
        "our_train_images": "our train faces",
        "our_run": "our run",
    }
    first = [c for c in names if c in frame.columns and c != "our_run"]
    accuracy = [*keys, *first, *(["shipped_view"] if "shipped_view" in frame else [])]
    metrics = [f"{who}_{m}" for m in ("macro_f1", "loss", "auc") for who in ("paper", "our", "shipped")]
    metrics = [*keys, *(c for c in metrics if c in frame.columns and frame[c].notna().any()), "our_run"]
    plain = lambda c: names.get(c, c.replace("macro_f1", "F1").replace("auc", "AUC").replace("_", " "))  # noqa: E731
    return [frame[columns].rename(columns=plain) for columns in (accuracy, metrics)]


def shipped_columns(name: str) -> dict:
    """A shipped model's val numbers in its card's view, as its record has them."""
    record = model_record(name)
    if not record:
        return {}
    if "members" in record and "weights" in record:  # the calibrated, weighted ensemble: each member in its own view
        running = [m for m in record["members"] if record["weights"][m] > 0]
        return {
            "shipped_accuracy": record["calibration"]["in_sample"]["accuracy"],
            "shipped_view": " + ".join(f"{m} {record['views'][m]}" for m in running),
        }
    val = record["val"]
    metrics = val["metrics"][val["tta"]]
    return {
        "shipped_accuracy": metrics["accuracy"],
        "shipped_view": val["tta"],
        "shipped_macro_f1": metrics.get("macro_f1"),
        "shipped_auc": metrics.get("auc"),
    }


def headline_table(store: RunStore) -> list[pd.DataFrame]:
    """The paper's headline accuracy per architecture beside our best comparable run and the
    shipped model (which may be a warm restart or distillation of it), and the shipped ensemble."""
    frame = paper_compare.headline_rows(store.list_runs())
    shipped = pd.DataFrame([{"model": m, **shipped_columns(m)} for m in frame.model])
    ensemble = pd.DataFrame([{"model": "ensemble", **shipped_columns("ensemble")}])
    frame = pd.concat([frame.merge(shipped, on="model", how="left"), ensemble], ignore_index=True)
    return readable(frame, ["model"])


COLUMNS_NOTE = (
    f"{PAPER_COLUMN}: the paper's number, on {PAPER}. {OURS_COLUMN}: our best comparable run on FER2013 PublicTest "
    "(our val split, 3589 faces, which no model trained on), at its best epoch, one view, as the run logged it."
)


def headline_note() -> str:
    """The headline's note: what each column measured, and the ensemble's honest figure."""
    calibration = (model_record("ensemble") or {}).get("calibration") or {}
    chosen = [o for o in calibration.get("options", []) if o["option"] == calibration.get("chosen")]
    note = (
        f"{COLUMNS_NOTE} {SHIPPED_COLUMN}: the shipped model on PublicTest, its fp16 weights computed in fp32, in "
        "the test-time view its card chose on val (shipped view)."
    )
    if chosen:
        note += (
            " The ensemble has no paper number and no run of its own; its weights and temperatures were fitted on "
            f"val (the figure shown), where it reads {chosen[0]['calibrated_out_of_fold']['accuracy']:.2%} out of fold."
        )
    return note


def in_parts(frame: pd.DataFrame, keys: list[str], most: int = 7) -> list[pd.DataFrame]:
    """A wide table as tables of at most `most` columns that fit a page, each led by the key columns."""
    rest = [c for c in frame.columns if c not in keys]
    step = most - len(keys)
    return [frame[[*keys, *rest[i : i + step]]] for i in range(0, len(rest), step)]


def budget_table(runs: list[dict]) -> list[pd.DataFrame]:
    """Table 1 per trial of the full-data sweep and the quick version, each at its budget: what
    each trial was given and how far it got, then its accuracy beside the paper's."""
    frame = paper_compare.table1_budget_rows(runs)
    for column in ("paper_accuracy", "our_accuracy"):
        frame[column] = frame[column].map(percent)
    for column in [c for c in ("epochs", "train_faces", "our_best_epoch", "epochs_done") if c in frame]:
        frame[column] = frame[column].astype("Int64")
    keys = ["budget", "preset"]
    parts = [
        [*keys, "status", "epochs", "epochs_done", "train_faces"],
        [*keys, "paper_accuracy", "our_accuracy", "our_best_epoch", "our_run"],
    ]
    names = {"paper_accuracy": PAPER_COLUMN, "our_accuracy": OURS_COLUMN}
    plain = lambda c: names.get(c, c.replace("_", " "))  # noqa: E731
    return [frame.reindex(columns=columns).rename(columns=plain) for columns in parts]


def paper_tables(store: RunStore) -> list[Section]:
    """Tables 1 and 2 as the paper has them, ours row for row."""
    runs = store.list_runs()
    return [
        Section(
            "Table 1: ST-CNN, batch size",
            "The paper's rows, ours row for row: our best run with the paper's recipe at that batch size. "
            + COLUMNS_NOTE,
            readable(paper_compare.table1_rows(runs), ["batch_size"]),
        ),
        Section(
            "Table 1 at fixed budgets",
            paper_compare.TABLE1_BUDGET_NOTE,
            budget_table(runs),
        ),
        Section(
            "Table 2: ViT configurations",
            f"The paper's rows, ours row for row: our best patch-embedding ViT of that shape. {COLUMNS_NOTE}",
            readable(paper_compare.table2_rows(runs), paper_compare.TABLE2_KEYS),
        ),
    ]


# The Report page's shorter headers (its tables are narrower than the HTML file's), with the rest in the help.
PAGE_LABELS = {
    PAPER_COLUMN: ("paper %", f"the paper's, on {PAPER}"),
    OURS_COLUMN: ("ours %", "our best comparable run on FER2013 PublicTest (val), at its best epoch, one view"),
    SHIPPED_COLUMN: ("shipped %", "the shipped model on FER2013 PublicTest (val), in its card's view, fp32"),
    "gap (points)": ("gap", "ours minus the paper's, in points"),
    "our epochs": ("epochs", "epochs our run trained"),
    "our train faces": ("train faces", "faces our run trained on"),
    "patch size": ("patch", None),
    "hidden size": ("hidden", None),
    "mlp dim": ("MLP", None),
    "kernel init": ("init", "kernel initialiser"),
}
