"""Sweeps: the trials of one `fer-sweep` side by side, and which hyperparameters mattered."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.common import runs_table, store

st.title("Sweeps")
sweeps = store().sweeps()
if not sweeps:
    st.info(
        "No sweeps yet. Run one with `fer-sweep`, e.g. `.venv/bin/fer-sweep sweeps/paper-table1.toml --wait` "
        "(see the README's Sweeps section); its trials appear here grouped by sweep id."
    )
    st.stop()

labels = {f"{sid} ({len(trials)} trials)": sid for sid, trials in sorted(sweeps.items(), reverse=True)}
sweep_id = labels[st.selectbox("Sweep", list(labels), key="sweep")]
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
table = pd.concat(
    [table[["name", "status", "progress", "best_val_accuracy", "val_macro_f1", "val_auc", "minutes"]], params[varied]],
    axis=1,
)
st.caption(
    f"{len(trials)} trials; varied: {', '.join(varied) or 'nothing (repeats)'}. "
    f"Statuses: {table.status.value_counts().to_dict()}."
)
st.dataframe(
    table.sort_values("best_val_accuracy", ascending=False, na_position="last"),
    hide_index=True,
    column_config={
        "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.4f"),
        "progress": st.column_config.TextColumn("epochs"),
    },
)

metric = st.selectbox("Metric", ["best_val_accuracy", "val_macro_f1", "val_auc"], key="sweep_metric")
scored = table.dropna(subset=[metric])
if scored.empty or not varied:
    st.info(
        "The parallel-coordinates view appears once trials have finished an epoch and the sweep varies "
        "at least one hyperparameter."
    )
    st.stop()


def axis(name: str, values: pd.Series) -> dict:
    """A parcoords dimension; text values become evenly spaced ticks."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return {"label": name, "values": numeric.tolist()}
    categories = sorted(values.astype(str).unique())
    return {
        "label": name,
        "values": [categories.index(v) for v in values.astype(str)],
        "tickvals": list(range(len(categories))),
        "ticktext": categories,
    }


dimensions = [axis(c, scored[c]) for c in varied] + [axis(metric, scored[metric])]
fig = go.Figure(
    go.Parcoords(line={"color": scored[metric], "colorscale": "Viridis", "showscale": True}, dimensions=dimensions)
)
fig.update_layout(height=420, margin={"t": 60, "l": 60, "r": 60})
st.subheader("Hyperparameters against the metric")
st.plotly_chart(fig, width="stretch")
