"""Compare runs: the runs table, learning curves, confusion heatmaps and the paper's tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard.common import runs_table, store
from fer_core.classes import CLASSES
from fer_core.paper import TABLE1_STCNN_BATCH, TABLE2_VIT

st.title("Compare runs")
runs = store().list_runs()
if not runs:
    st.info("No runs yet. Start one on the **Train** page, or with `fer-train` on the command line.")
    st.stop()

table = runs_table(runs)
with st.expander("Filters", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    models = c1.multiselect("Architecture", sorted(table.model.dropna().unique()))
    statuses = c2.multiselect("Status", sorted(table.status.dropna().unique()))
    sweep_ids = c3.multiselect("Sweep", sorted(table.sweep.dropna().unique()), key="filter_sweep")
    text = c4.text_input("Name, preset or tag contains")
if models:
    table = table[table.model.isin(models)]
if statuses:
    table = table[table.status.isin(statuses)]
if sweep_ids:
    table = table[table.sweep.isin(sweep_ids)]
if text:
    hay = table[["name", "preset", "tags", "run_id"]].astype(str).agg(" ".join, axis=1).str.lower()
    table = table[hay.str.contains(text.lower(), regex=False)]
table = table.sort_values("created", ascending=False).reset_index(drop=True)

event = st.dataframe(
    table,
    key="runs_table",
    on_select="rerun",
    selection_mode="multi-row",
    hide_index=True,
    column_order=[
        "name",
        "model",
        "preset",
        "status",
        "best_val_accuracy",
        "val_macro_f1",
        "val_auc",
        "test_accuracy",
        "progress",
        "minutes",
        "started_from",
        "distilled_from",
        "batch_size",
        "lr",
        "weight_decay",
        "model_config",
        "device",
        "sweep",
        "tags",
        "error",
        "run_id",
    ],
    column_config={
        "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.4f"),
        "val_macro_f1": st.column_config.NumberColumn("val macro-F1", format="%.4f"),
        "val_auc": st.column_config.NumberColumn("val AUC", format="%.4f"),
        "test_accuracy": st.column_config.NumberColumn("test acc", format="%.4f"),
        "progress": st.column_config.TextColumn("epochs"),
    },
)
rows = [i for i in event.selection.rows if i < len(table)]  # a selection can outlive a deleted run
selected = table.iloc[rows]["run_id"].tolist() if rows else table.run_id[:3].tolist()
st.caption(
    f"{len(table)} runs; showing {len(selected)}: {'selected' if rows else 'the newest (select rows to choose)'}."
)
for run in table[table.run_id.isin(selected) & (table.status == "failed")].itertuples():
    st.error(
        f"**{run.name}** failed: {run.error or 'the trainer stopped answering (stale heartbeat)'}. "
        "Resume it on the **Train** page or with `fer-train --resume`."
    )

# -- tags, notes, delete -----------------------------------------------------------------
with st.expander("Tags, notes and delete"):
    target = st.selectbox("Run", selected, key="edit_run")
    if target:
        info = store().read_run(target)
        tags = st.text_input("Tags (comma separated)", ", ".join(info.get("tags") or []), key=f"tags_{target}")
        notes = st.text_area("Notes", info.get("notes", ""), key=f"notes_{target}")
        if st.button("Save tags and notes"):
            store().update(target, tags=[t.strip() for t in tags.split(",") if t.strip()], notes=notes)
            st.success("Saved.")
            st.rerun()
        confirm = st.checkbox(f"Yes, delete run {target} and its checkpoints", key=f"confirm_{target}")
        if st.button("Delete run", type="primary", disabled=not confirm):
            store().delete(target)
            st.success(f"Deleted {target}.")
            st.rerun()


def ema(series: pd.Series, alpha: float) -> pd.Series:
    return series.ewm(alpha=alpha, adjust=False).mean()


def names_by_id() -> dict:
    return dict(zip(table.run_id, table.name, strict=True))


# -- learning curves (live while jobs run) ------------------------------------------------
st.subheader("Learning curves")
c1, c2, c3 = st.columns([2, 2, 1])
metric = c1.selectbox("Metric", ["accuracy", "loss", "macro_f1", "auc", "lr", "images_per_second"], key="metric")
smoothing = c2.select_slider("Smoothing", ["off", "EMA 0.6", "EMA 0.3"], key="smoothing")
any_running = bool((table.status == "running").any())
live = c3.toggle("Live update", value=any_running, key="live", help="refresh every 2 s while runs are running")


@st.fragment(run_every=2 if live else None)
def learning_curves(run_ids: list[str]) -> None:
    metrics = store().metrics(run_ids)  # unchanged Parquet files come from the cache
    if metrics.empty:
        st.info("No epoch finished yet in the selected runs.")
        return
    epochs = metrics[metrics.tta == "none"].sort_values("epoch")
    names = names_by_id()
    fig = go.Figure()
    for (run_id, split), group in epochs.groupby(["run_id", "split"]):
        y = group[metric]
        if smoothing != "off":
            y = ema(y, float(smoothing.split()[1]))
        fig.add_scatter(
            x=group.epoch,
            y=y,
            mode="lines+markers",
            name=f"{names.get(run_id, run_id)} {split}",
            line={"dash": "dot" if split == "train" else "solid"},
        )
    fig.update_xaxes(dtick=1 if epochs.epoch.max() <= 20 else None)  # whole epochs
    fig.update_layout(
        xaxis_title="epoch", yaxis_title=metric, height=420, margin={"t": 30}, legend={"orientation": "h", "y": -0.2}
    )
    st.plotly_chart(fig, width="stretch")


learning_curves(selected)

# -- confusion heatmaps and per-class recall ------------------------------------------------
st.subheader("Confusion matrices (val, best epoch)")
normalise = st.radio("Show", ["row-normalised", "counts"], horizontal=True, key="confusion_mode")
confusion = store().confusion(selected)
info = {r["run_id"]: r for r in runs}
if not confusion.empty:
    shown = selected[:4]
    fig = make_subplots(rows=1, cols=len(shown), subplot_titles=[names_by_id().get(r, r) for r in shown])
    recall_rows = []
    for i, run_id in enumerate(shown, 1):
        of_run = confusion[(confusion.run_id == run_id) & (confusion.split == "val") & (confusion.tta == "none")]
        if of_run.empty:  # a run still in its first epoch
            continue
        cells = of_run[of_run.epoch == (info[run_id].get("best_epoch") or of_run.epoch.max())]
        matrix = cells.pivot_table(index="true", columns="pred", values="count", aggfunc="sum")
        matrix = matrix.reindex(index=CLASSES, columns=CLASSES).fillna(0)
        values = (
            matrix.div(matrix.sum(axis=1).replace(0, np.nan), axis=0).fillna(0) if normalise != "counts" else matrix
        )
        fig.add_trace(
            go.Heatmap(
                z=values.values,
                x=list(CLASSES),
                y=list(CLASSES),
                coloraxis="coloraxis",
                text=np.round(values.values, 2),
                texttemplate="%{text}",
            ),
            1,
            i,
        )
        recall = np.diag(matrix.values) / matrix.sum(axis=1).replace(0, np.nan).values
        recall_rows += [
            {"run": names_by_id().get(run_id, run_id), "class": c, "recall": r}
            for c, r in zip(CLASSES, recall, strict=True)
        ]
    fig.update_yaxes(autorange="reversed", title_text="true")
    fig.update_xaxes(title_text="predicted")
    fig.update_layout(height=380, coloraxis={"colorscale": "Purples"}, margin={"t": 40})
    st.plotly_chart(fig, width="stretch")
    if recall_rows:
        st.plotly_chart(
            px.bar(
                pd.DataFrame(recall_rows),
                x="class",
                y="recall",
                color="run",
                barmode="group",
                height=320,
                title="Per-class recall (val, best epoch)",
            ),
            width="stretch",
        )

# -- the paper's tables, generated from our runs ----------------------------------------------
st.subheader("Hyperparameter tables (the shape of the paper's Tables 1 and 2)")
finished = [r for r in runs if r.get("best_val")]


def ours(model: str, keys: list[str], defaults: dict | None = None) -> pd.DataFrame:
    """Finished runs of `model`; `defaults` fills options that runs older than them lack."""
    rows = []
    for r in finished:
        if r.get("model") != model:
            continue
        cfg = {**(defaults or {}), **r["config"], **(r["config"].get("model_config") or {})}
        rows.append(
            {
                **{k: cfg.get(k) for k in keys},
                "preset": r.get("preset"),
                "name": r.get("name"),
                "accuracy": r["best_val"]["accuracy"],
                "loss": r["best_val"]["loss"],
                "auc": r["best_val"]["auc"],
                "macro_f1": r["best_val"]["macro_f1"],
                "epochs": r.get("epochs_completed"),
            }
        )
    return pd.DataFrame(rows)


c1, c2 = st.columns(2)
with c1:
    st.markdown("**Table 1 - ST-CNN, batch size** (paper, their 80:20 split)")
    st.dataframe(pd.DataFrame(TABLE1_STCNN_BATCH), hide_index=True)
    st.markdown("**Ours** (FER2013 PublicTest as val; best epoch)")
    st.dataframe(ours("stcnn", ["batch_size", "lr", "weight_decay"]), hide_index=True)
with c2:
    st.markdown("**Table 2 - ViT configurations** (paper)")
    st.dataframe(pd.DataFrame(TABLE2_VIT), hide_index=True)
    st.markdown("**Ours**")
    st.dataframe(
        ours(
            "vit",
            ["layers", "patch_size", "hidden_size", "heads", "mlp_dim", "kernel_init", "stem"],
            defaults={"stem": "patch"},
        ),
        hide_index=True,
    )
