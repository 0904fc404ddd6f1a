"""The data behind the Compare runs page's charts and tables, shaped without Streamlit or plotly
so that each chart and its CSV download come from the same frame (and tests can check it)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from fer_core.classes import CLASSES

X_AXES = {"epoch": "epoch", "wall-clock hours": "hours", "images seen": "images_seen"}
X_HELP = (
    "**epoch**: finished epochs. **wall-clock hours**: the run's own training and validation time "
    "up to the end of that epoch (the sum of its metrics rows' `epoch_seconds`; start-up and "
    "checkpoint writes are not counted, nor the time of a run it started from). **images seen**: "
    "training images processed so far (the sum of the train rows' `n`, the faces trained on in "
    "each epoch; for runs whose rows lack it, the train-set size in run.json per epoch)."
)
GROUPINGS = ["none", "tag", "sweep", "seed set"]
GROUP_HELP = (
    "Draw one line per group: the mean over its selected runs at each epoch, with a band of "
    "plus or minus one standard deviation. **tag**: runs sharing a tag (a run with two tags is in "
    "both groups). **sweep**: the trials of one sweep. **seed set**: runs whose configuration "
    "differs only in the seed. Selected runs outside every group are drawn alone."
)
NOT_SETTINGS = ("name", "sweep")  # labels in the config, not training settings


def chart_labels(run_ids: pd.Series, names: pd.Series) -> dict[str, str]:
    """Run id -> how charts name the run: its name, with its start time where two runs share a
    name (else their lines would merge), its id when it has no name."""
    repeated = set(names[names.duplicated()].dropna())
    labels = {}
    for run_id, name in zip(run_ids, names, strict=True):
        name = name if isinstance(name, str) and name else run_id
        labels[run_id] = f"{name} ({run_id[:15]})" if name in repeated else name
    return labels


def curve_points(metrics: pd.DataFrame, runs: dict[str, dict]) -> pd.DataFrame:
    """The single-view metrics rows (every epoch's train and val rows and the final test row),
    each with its run's clock at the end of that epoch: `hours` and `images_seen` (see X_HELP)."""
    rows = metrics[metrics.tta == "none"]
    epochs = rows[rows.split.isin(["train", "val"])]
    epochs = epochs.assign(**{c: np.nan for c in ("epoch_seconds", "n") if c not in epochs})  # older rows
    seconds = epochs.groupby(["run_id", "epoch"]).epoch_seconds.sum(min_count=1)
    images = epochs[epochs.split == "train"].set_index(["run_id", "epoch"]).n
    train_size = [((runs.get(r) or {}).get("dataset") or {}).get("sizes", {}).get("train") for r, _ in images.index]
    clock = pd.DataFrame({"seconds": seconds, "images": images.fillna(pd.Series(train_size, images.index, float))})
    clock["hours"] = clock.groupby(level="run_id").seconds.cumsum() / 3600
    clock["images_seen"] = clock.groupby(level="run_id").images.cumsum()
    return rows.join(clock[["hours", "images_seen"]], on=["run_id", "epoch"])


def plotted_curves(points: pd.DataFrame, metric: str, x: str, alpha: float | None, names: dict) -> pd.DataFrame:
    """One row per point drawn: run, split, epoch, the x value and the metric (EMA-smoothed with
    `alpha` within each run and split when given)."""
    frame = points.dropna(subset=[metric]).sort_values(["run_id", "split", "epoch"])
    y = frame[metric]
    if alpha:
        y = frame.groupby(["run_id", "split"])[metric].transform(lambda s: s.ewm(alpha=alpha, adjust=False).mean())
    columns = {"run": frame.run_id.map(lambda r: names.get(r, r)), "run_id": frame.run_id, "split": frame.split}
    columns |= {"epoch": frame.epoch, x: frame[x], metric: y}
    return pd.DataFrame(columns).reset_index(drop=True)


def group_runs(runs: list[dict], by: str) -> dict[str, list[str]]:
    """Group label -> run ids, for the groupings in GROUPINGS; runs in no group are left out."""
    groups: dict[str, list[str]] = {}
    for run in runs:
        if by == "tag":
            keys = [f"tag {t}" for t in run.get("tags") or []]
        elif by == "sweep":
            keys = [f"sweep {run['sweep']}"] if run.get("sweep") else []
        elif by == "seed set":
            keys = [_without_seed(run)]
        else:
            keys = []
        for key in keys:
            groups.setdefault(key, []).append(run["run_id"])
    if by == "seed set":  # named after its first run; one run alone is no set
        names = {r["run_id"]: r.get("name") or r["run_id"] for r in runs}
        groups = {f"seeds of {names[ids[0]]} ({len(ids)})": ids for ids in groups.values() if len(ids) > 1}
    return groups


def _without_seed(run: dict) -> str:
    config = {k: v for k, v in (run.get("config") or {}).items() if k not in ("seed", *NOT_SETTINGS)}
    return json.dumps(config, sort_keys=True, default=str)


def group_curves(plotted: pd.DataFrame, groups: dict[str, list[str]], x: str, metric: str) -> pd.DataFrame:
    """Per group, split and epoch: the mean and standard deviation over the group's runs (and the
    mean x: runs of a group reach an epoch at slightly different hours)."""
    members = pd.DataFrame([(g, r) for g, ids in groups.items() for r in ids], columns=["group", "run_id"])
    joined = plotted.merge(members, on="run_id")
    aggregations = {"mean": (metric, "mean"), "std": (metric, "std"), "runs": ("run_id", "nunique")}
    if x != "epoch":
        aggregations = {x: (x, "mean"), **aggregations}
    frame = joined.groupby(["group", "split", "epoch"], sort=True).agg(**aggregations).reset_index()
    frame["std"] = frame["std"].fillna(0.0)  # one run at that epoch
    frame["lower"], frame["upper"] = frame["mean"] - frame["std"], frame["mean"] + frame["std"]
    return frame


def confusion_matrix(cells: pd.DataFrame) -> pd.DataFrame:
    """Counts, true classes as rows and predicted as columns, in CLASSES order."""
    matrix = cells.pivot_table(index="true", columns="pred", values="count", aggfunc="sum")
    return matrix.reindex(index=list(CLASSES), columns=list(CLASSES)).fillna(0)


def row_shares(matrix: pd.DataFrame) -> pd.DataFrame:
    """Each true class's row as shares of that class's faces (a class without faces stays 0)."""
    return matrix.div(matrix.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)


def confusion_long(matrices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Run name -> count matrix, as rows of run, true, pred, count, share of the true class."""
    frames = []
    for run, counts in matrices.items():
        long = counts.stack().rename("count").reset_index()
        long["share"] = row_shares(counts).stack().values
        frames.append(long.assign(run=run))
    if not frames:
        return pd.DataFrame(columns=["run", "true", "pred", "count", "share"])
    return pd.concat(frames, ignore_index=True)[["run", "true", "pred", "count", "share"]]


def recalls(matrices: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per run and class: the share of that class's faces predicted as it."""
    rows = []
    for run, counts in matrices.items():
        recall = np.diag(counts.values) / counts.sum(axis=1).replace(0, np.nan).values
        rows += [{"run": run, "class": c, "recall": r} for c, r in zip(CLASSES, recall, strict=True)]
    return pd.DataFrame(rows, columns=["run", "class", "recall"])


def settings_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run: its name and every training setting in its config, nested ones (model
    config, augmentation) as `model_config.layers` and the like."""
    rows = []
    for run in runs:
        settings = {k: v for k, v in (run.get("config") or {}).items() if k not in NOT_SETTINGS}
        rows.append({"name": run.get("name") or run["run_id"], **_flat(settings)})
    return pd.DataFrame(rows)


def differing(settings: pd.DataFrame) -> pd.DataFrame:
    """The name column and the settings not identical in every row (a setting some runs lack
    differs from one they have)."""
    same = [c for c in settings.columns[1:] if settings[c].astype(str).nunique() <= 1]
    return settings.drop(columns=same)


def settings_by_run(settings: pd.DataFrame) -> pd.DataFrame:
    """settings_table turned a quarter: a row per setting and a column per run (named by its
    `name` column), each value as text, so a few runs' settings fit the page's width."""
    by_run = settings.set_index("name").T
    by_run = by_run.apply(
        lambda column: column.map(lambda v: "" if v is None or v != v else f"{v:g}" if isinstance(v, float) else str(v))
    )
    return by_run.rename_axis("setting").reset_index()


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = json.dumps(value) if isinstance(value, list) else value
    return out


def fit_width(values: pd.Series, label: str, least: int = 70, most: int = 420) -> int:
    """A column width in pixels that shows the longest value (or label) in full."""
    longest = max([len(label), *(len(str(v)) for v in values.dropna())])
    return int(min(most, max(least, 7.5 * longest + 28)))
