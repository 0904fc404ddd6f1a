"""Compare runs: the runs table, learning curves, confusion heatmaps and the paper's tables."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from dashboard import compare
from dashboard.common import runs_table, store
from fer_core.classes import CLASSES
from fer_core.paper_compare import (
    MIN_EPOCHS,
    MIN_TRAIN_IMAGES,
    OUR_PROTOCOL,
    PAPER_PROTOCOL,
    TABLE1_BUDGET_NOTE,
    TABLE2_KEYS,
    headline_rows,
    table1_budget_rows,
    table1_rows,
    table2_rows,
)

COLOURS = qualitative.Plotly


def csv_button(frame: pd.DataFrame, name: str) -> None:
    """The data a chart or table shows, as CSV (no rerun on click: the page stays as it is)."""
    st.download_button(
        "Download CSV",
        frame.to_csv(index=False),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"csv_{name}",
        on_click="ignore",
        icon=":material/download:",
    )


st.title("Compare runs")
runs = store().list_runs()
if not runs:
    st.info("No runs yet. Start one on the **Train** page, or with `fer-train` on the command line.")
    st.stop()
info = {r["run_id"]: r for r in runs}

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
names = compare.chart_labels(table.run_id, table.name)

event = st.dataframe(
    table,
    key="runs_table",
    on_select="rerun",
    selection_mode="multi-row",
    hide_index=True,
    placeholder="",
    column_order=[
        "name",
        "model",
        "preset",
        "status",
        "best_val_accuracy",
        "val_macro_f1",
        "val_auc",
        *(["test_accuracy"] if table.test_accuracy.notna().any() else []),  # only runs on a CSV have a test split
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
        "name": st.column_config.TextColumn("name", width=compare.fit_width(table.name, "name", most=300)),
        "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.4f"),
        "val_macro_f1": st.column_config.NumberColumn("val macro-F1", format="%.4f"),
        "val_auc": st.column_config.NumberColumn("val AUC", format="%.4f"),
        "test_accuracy": st.column_config.NumberColumn(
            "test acc", format="%.4f", help="PrivateTest at the best epoch (runs on the FER2013 CSV only)"
        ),
        "progress": st.column_config.TextColumn("epochs", width=compare.fit_width(table.progress, "epochs")),
        "started_from": st.column_config.TextColumn(
            "started from", width=compare.fit_width(table.started_from, "started from")
        ),
        "distilled_from": st.column_config.TextColumn(
            "distilled from", width=compare.fit_width(table.distilled_from, "distilled from", most=300)
        ),
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

# -- settings of the selected runs ---------------------------------------------------------
settings = compare.settings_table([info[r] for r in selected])
if st.toggle("Only the settings that differ", value=True, key="settings_diff", help="between the selected runs"):
    settings = compare.differing(settings)
st.dataframe(settings, hide_index=True, placeholder="")

# -- tags, notes, delete -----------------------------------------------------------------
with st.expander("Tags, notes and delete"):
    target = st.selectbox("Run", selected, key="edit_run")
    if target:
        run_info = store().read_run(target)
        tags = st.text_input("Tags (comma separated)", ", ".join(run_info.get("tags") or []), key=f"tags_{target}")
        notes = st.text_area("Notes", run_info.get("notes", ""), key=f"notes_{target}")
        if st.button("Save tags and notes"):
            store().update(target, tags=[t.strip() for t in tags.split(",") if t.strip()], notes=notes)
            st.success("Saved.")
            st.rerun()
        confirm = st.checkbox(f"Yes, delete run {target} and its checkpoints", key=f"confirm_{target}")
        if st.button("Delete run", type="primary", disabled=not confirm):
            store().delete(target)
            st.success(f"Deleted {target}.")
            st.rerun()


# -- learning curves (live while jobs run) ------------------------------------------------
def curves_figure(plotted: pd.DataFrame, x: str, metric: str, grouped: bool) -> go.Figure:
    """One line per run and split (train dotted), or per group and split with a +-1 std band."""
    traces = []
    series = "group" if grouped else "run"
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(plotted[series].unique())}
    for (name, split), line in plotted.groupby([series, "split"], sort=False):
        colour = colours[name]
        y = line["mean"] if grouped else line[metric]
        if grouped and line["runs"].max() > 1:
            traces.append(
                go.Scatter(
                    x=pd.concat([line[x], line[x][::-1]]),
                    y=pd.concat([line["upper"], line["lower"][::-1]]),
                    fill="toself",
                    fillcolor=colour,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=f"{name} {split}",
                    name=f"{name} {split} +-1 std",
                )
            )
        traces.append(
            go.Scatter(
                x=line[x],
                y=y,
                mode="lines+markers",
                name=f"{name} {split}",
                legendgroup=f"{name} {split}",
                line={"dash": "dot" if split == "train" else "solid", "color": colour},
            )
        )
    fig = go.Figure(traces)
    fig.update_xaxes(dtick=1 if x == "epoch" and plotted.epoch.max() <= 20 else None)  # whole epochs
    x_title = next(label for label, column in compare.X_AXES.items() if column == x)
    fig.update_layout(
        xaxis_title=x_title, yaxis_title=metric, height=420, margin={"t": 30}, legend={"orientation": "h", "y": -0.2}
    )
    return fig


st.subheader("Learning curves")
c1, c2, c3, c4, c5 = st.columns([2, 2, 2, 2, 1.5])
metric = c1.selectbox("Metric", ["accuracy", "loss", "macro_f1", "auc", "lr", "images_per_second"], key="metric")
x_axis = c2.selectbox("x axis", list(compare.X_AXES), key="x_axis", help=compare.X_HELP)
group_by = c3.selectbox("Group runs", compare.GROUPINGS, key="group_by", help=compare.GROUP_HELP)
smoothing = c4.select_slider("Smoothing", ["off", "EMA 0.6", "EMA 0.3"], key="smoothing")
any_running = bool((table.status == "running").any())
live = c5.toggle("Live update", value=any_running, key="live", help="refresh every 2 s while runs are running")


@st.fragment(run_every=2 if live else None)
def learning_curves(run_ids: list[str], metric: str, x: str, group_by: str, smoothing: str) -> None:
    metrics = store().metrics(run_ids)  # unchanged Parquet files come from the cache
    if metrics.empty:
        st.info("No epoch finished yet in the selected runs.")
        return
    alpha = None if smoothing == "off" else float(smoothing.split()[1])
    plotted = compare.plotted_curves(compare.curve_points(metrics, info), metric, x, alpha, names)
    groups = compare.group_runs([r for r in runs if r["run_id"] in run_ids], group_by)  # oldest first
    if groups:
        alone = {names.get(r, r): [r] for r in run_ids if not any(r in ids for ids in groups.values())}
        plotted = compare.group_curves(plotted, groups | alone, x, metric)
    elif group_by != "none":
        shared = "differ only in the seed" if group_by == "seed set" else f"share a {group_by}"
        st.caption(f"No two selected runs {shared}; each is drawn alone.")
    st.plotly_chart(curves_figure(plotted, x, metric, bool(groups)), width="stretch")
    csv_button(plotted, "learning_curves")


learning_curves(selected, metric, compare.X_AXES[x_axis], group_by, smoothing)

# -- confusion heatmaps and per-class recall ------------------------------------------------
st.subheader("Confusion matrices (val, best epoch)")
normalise = st.radio("Show", ["row-normalised", "counts"], horizontal=True, key="confusion_mode")
shown = selected[:4]
confusion = store().confusion(shown, epochs={r: info[r].get("best_epoch") for r in shown})
matrices = {}
for run_id in shown:
    if confusion.empty:
        break
    cells = confusion[(confusion.run_id == run_id) & (confusion.split == "val") & (confusion.tta == "none")]
    if len(cells):  # not for a run still in its first epoch
        matrices[names.get(run_id, run_id)] = compare.confusion_matrix(cells)
if matrices:
    fig = make_subplots(
        rows=1, cols=len(matrices), subplot_titles=list(matrices), shared_yaxes=True, horizontal_spacing=0.03
    )
    for i, counts in enumerate(matrices.values(), 1):
        values = counts if normalise == "counts" else compare.row_shares(counts)
        fig.add_trace(
            go.Heatmap(
                z=values.values,
                x=list(CLASSES),
                y=list(CLASSES),
                coloraxis="coloraxis",
                text=values.values.round(0 if normalise == "counts" else 2),
                texttemplate="%{text}",
                hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
            ),
            1,
            i,
        )
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="true", row=1, col=1)  # shared: the labels and title once, on the left
    fig.update_xaxes(title_text="predicted")
    scale_title = "faces" if normalise == "counts" else "share of<br>true class"
    fig.update_layout(
        height=400,
        coloraxis={"colorscale": "Purples", "colorbar": {"title": {"text": scale_title}}},
        margin={"t": 40},
    )
    st.plotly_chart(fig, width="stretch")
    csv_button(compare.confusion_long(matrices), "confusion_matrices")

    recall = compare.recalls(matrices)
    bars = go.Figure(
        [go.Bar(x=group["class"], y=group.recall, name=run) for run, group in recall.groupby("run", sort=False)]
    )
    bars.update_layout(
        barmode="group",
        height=320,
        title="Per-class recall (val, best epoch)",
        yaxis_title="recall",
        legend_title="run",
    )
    st.plotly_chart(bars, width="stretch")
    csv_button(recall, "per_class_recall")

# -- the paper's tables beside ours ---------------------------------------------------------
st.subheader("The paper's tables beside ours")
st.caption(
    f"Row for row: the paper's number ({PAPER_PROTOCOL}) and our best comparable run's ({OUR_PROTOCOL}). "
    f"Left out: failed runs, runs on the bundled sample or on fewer than {MIN_TRAIN_IMAGES} training faces, "
    f"and runs of fewer than {MIN_EPOCHS} epochs. The splits differ, so a gap compares recipes, not one test set."
)
PAPER_COLUMNS = {
    "paper_accuracy": st.column_config.NumberColumn("paper acc", format="%.3f", help=PAPER_PROTOCOL),
    "our_accuracy": st.column_config.NumberColumn("our acc", format="%.3f", help=OUR_PROTOCOL),
    "accuracy_gap": st.column_config.NumberColumn("ours - paper", format="%+.3f"),
    **{
        f"{who}_{m}": st.column_config.NumberColumn(f"{who} {label}", format="%.3f")
        for who in ("paper", "our")
        for m, label in (("macro_f1", "F1"), ("loss", "loss"), ("auc", "AUC"))
    },
    "our_best_epoch": st.column_config.NumberColumn("best epoch"),
    "our_epochs": st.column_config.NumberColumn("epochs"),
    "our_train_images": st.column_config.NumberColumn("train faces"),
    "our_val_images": st.column_config.NumberColumn("val faces"),
    "train_faces": st.column_config.NumberColumn("train faces"),
    "val_faces": st.column_config.NumberColumn("val faces"),
    "epochs_done": st.column_config.NumberColumn("epochs done"),
}
for title, frame, keys, name, note in (
    ("Table 1 - ST-CNN, batch size (Adam 1e-4, L2 0.01)", table1_rows(runs), ["batch_size"], "paper_table1", ""),
    (
        "Table 1 at fixed budgets - each trial of the full-data sweep and of the quick version",
        table1_budget_rows(runs),
        ["budget", "preset"],
        "paper_table1_budgets",
        TABLE1_BUDGET_NOTE,
    ),
    ("Table 2 - ViT configurations", table2_rows(runs), TABLE2_KEYS, "paper_table2", ""),
    ("Headline - best accuracy per architecture, any recipe", headline_rows(runs), ["model"], "paper_headline", ""),
):
    st.markdown(f"**{title}**")
    if note:
        st.caption(note)
    shown_columns = [c for c in frame.columns if c not in ("our_run_id", "paper_protocol", "our_protocol")]
    config = PAPER_COLUMNS | {k: st.column_config.Column(pinned=True) for k in keys}  # keys stay in view
    config["our_run"] = st.column_config.TextColumn("our run", width=compare.fit_width(frame.our_run, "our run"))
    st.dataframe(frame, hide_index=True, column_order=shown_columns, column_config=config, placeholder="-")
    csv_button(frame, name)
