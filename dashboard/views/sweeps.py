"""Sweeps: the trials of one `fer-sweep` side by side, and which hyperparameters mattered."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.common import runs_table, store
from dashboard.compare import fit_width
from fer_core.runs.presets import options

METRICS = {"best_val_accuracy": "best val accuracy", "val_macro_f1": "val macro F1", "val_auc": "val AUC"}
OPTIONS = options()


def readable(column: str) -> str:
    """A column's name for people: fer-train's own wording for an option, not its identifier."""
    if column in METRICS:
        return METRICS[column]
    if column.startswith("model_config."):
        return f"model {column.split('.', 1)[1].replace('_', ' ')}"
    return OPTIONS[column].label if column in OPTIONS else column.replace("_", " ")


def default_sweep(sweeps: dict[str, list[dict]]) -> str:
    """The paper's Table 1 when it has been swept (what a newcomer comes to compare), else the sweep
    with the most trials (the first id in the list was often a two-trial try-out)."""
    return max(sweeps, key=lambda sid: (sid.startswith("paper-table1"), len(sweeps[sid]), sid))


st.title("Sweeps")
sweeps = store().sweeps()
if not sweeps:
    st.info(
        "No sweeps yet. Run one with `fer-sweep`, e.g. `.venv/bin/fer-sweep sweeps/paper-table1.toml --wait` "
        "(see the README's Sweeps section); its trials appear here grouped by sweep id."
    )
    st.stop()

labels = {f"{sid} ({len(trials)} trials)": sid for sid, trials in sorted(sweeps.items(), reverse=True)}
first = list(labels.values()).index(default_sweep(sweeps))
sweep_id = labels[st.selectbox("Sweep", list(labels), index=first, key="sweep")]
trials = sweeps[sweep_id]

SKIP = {"name", "sweep", "data", "run_id", "runs_dir", "resume", "device"}


def hyperparameters(run: dict) -> dict:
    cfg = dict(run.get("config") or {})
    model_config = cfg.pop("model_config", None) or {}
    flat = {k: v for k, v in cfg.items() if k not in SKIP}
    flat.update({f"model_config.{k}": v for k, v in model_config.items()})
    return {k: (str(v) if isinstance(v, (list, dict)) else v) for k, v in flat.items()}


params = pd.DataFrame([hyperparameters(r) for r in trials])
varied = [c for c in params.columns if params[c].astype(str).nunique() > 1]
table = runs_table(trials).reset_index(drop=True)
# the varied settings right after the name, under their readable names (a column named
# "model_config.layers" showed empty cells: Streamlit reads a dot in a name as a path)
table = pd.concat(
    [
        table[["name"]],
        params[varied].rename(columns=readable),
        table[["best_val_accuracy", "val_macro_f1", "val_auc", "status", "progress", "minutes"]],
    ],
    axis=1,
)
statuses = ", ".join(f"{n} {status}" for status, n in table.status.value_counts().items())
st.caption(f"{len(trials)} trials; varied: {', '.join(map(readable, varied)) or 'nothing (repeats)'}. {statuses}.")
st.dataframe(
    table.sort_values("best_val_accuracy", ascending=False, na_position="last"),
    hide_index=True,
    column_config={
        "name": st.column_config.TextColumn("name", width=min(250, fit_width(table.name, "name"))),
        **{c: st.column_config.NumberColumn(label, format="%.4f") for c, label in METRICS.items()},
        "progress": st.column_config.TextColumn("epochs"),
        "minutes": st.column_config.NumberColumn("minutes", format="%.0f"),
    },
)

metric = st.selectbox("Metric", list(METRICS), format_func=readable, key="sweep_metric")
scored = table.dropna(subset=[metric])
if scored.empty or not varied:
    st.info(
        "The parallel-coordinates view appears once trials have finished an epoch and the sweep varies "
        "at least one hyperparameter."
    )
    st.stop()


def natural(text: str) -> list:
    """Sort key that puts paper-stcnn-b16 before paper-stcnn-b128."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def axis(name: str, values: pd.Series) -> dict:
    """A parcoords dimension under a readable label. Text values become evenly spaced ticks; a
    hyperparameter's few numbers are its ticks, as written (16, 0.0001); a metric gets 3 decimals
    (plotly's default showed six)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        steps = sorted(numeric.unique())
        if name in METRICS or len(steps) > 8:
            return {
                "label": readable(name),
                "values": numeric.tolist(),
                "tickformat": ".3f" if name in METRICS else "~g",
            }
        return {
            "label": readable(name),
            "values": numeric.tolist(),
            "tickvals": steps,
            "ticktext": [f"{v:g}" for v in steps],
        }
    categories = sorted(values.astype(str).unique(), key=natural)
    return {
        "label": readable(name),
        "values": [categories.index(v) for v in values.astype(str)],
        "tickvals": list(range(len(categories))),
        "ticktext": categories,
    }


dimensions = [axis(c, scored[readable(c)]) for c in varied] + [axis(metric, scored[metric])]
fig = go.Figure(
    go.Parcoords(
        line={
            "color": scored[metric],
            "colorscale": "Viridis",
            "showscale": scored[metric].nunique() > 1,  # one value got a made-up -0.2..0.6 scale
            "colorbar": {"tickformat": ".3f"},
        },
        dimensions=dimensions,
        labelfont={"size": 15},
        tickfont={"size": 13},
        rangefont={"size": 11},
    )
)
# the first axis's tick labels sit left of it: room for the longest, which was cut at 60 px ("er-stcnn-b64")
longest = max(map(len, dimensions[0].get("ticktext", [])), default=0)
fig.update_layout(height=440, margin={"t": 70, "l": max(60, 8 * longest + 20), "r": 70})
st.subheader("Hyperparameters against the metric")
st.plotly_chart(fig, width="stretch")
