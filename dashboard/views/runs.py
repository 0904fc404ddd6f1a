"""Compare runs: the runs table, learning curves, confusion heatmaps and the paper's tables."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import compare, compare_figures
from dashboard.common import queue, runs_table, shipped_runs, store
from fer_core.evaluation.paper_compare import (
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
from fer_core.runs.status import RunActive, RunGone


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


def chosen_runs(table: pd.DataFrame, existing: set[str], names: dict[str, str]) -> list[str]:
    """The ids of the runs the user selected in the table. Streamlit reports a table's selection
    as row numbers, and the rows move when others start or delete runs; so the choice is kept
    by run id, and the table's selection set to where those runs are now. A selected run that is
    gone is dropped with a notice."""
    state = st.session_state
    shown_before = state.get("runs_shown", {})  # run id -> name, in the order last shown
    rows = list((state.get("runs_table") or {}).get("selection", {}).get("rows", []))
    chosen = state.get("runs_chosen", {})  # run id -> name
    if rows != state.get("runs_rows", []):  # a click in the table as it was shown
        order = list(shown_before)
        chosen = {r: n for r, n in chosen.items() if r not in shown_before}  # kept while filtered out
        chosen |= {order[i]: shown_before[order[i]] for i in rows if i < len(order)}
    gone = [name for run_id, name in chosen.items() if run_id not in existing]
    if gone:
        st.warning(
            f"No longer in the runs folder (deleted, perhaps from another tab or by someone else), so dropped "
            f"from your selection: {', '.join(gone)}."
        )
    chosen = {r: n for r, n in chosen.items() if r in existing}
    positions = [i for i, run_id in enumerate(table.run_id) if run_id in chosen]
    if positions != rows:
        state["runs_table"] = {"selection": {"rows": positions, "columns": []}}
    state.update(runs_chosen=chosen, runs_rows=positions, runs_shown={r: names[r] for r in table.run_id})
    return [table.run_id[i] for i in positions]


def save_tags_and_notes(run_id: str, name: str) -> None:
    """On Save (before the page reruns, so a run deleted meanwhile is still named): merge into run.json."""
    tags = st.session_state.get(f"tags_{run_id}", "")
    try:
        store().update(
            run_id,
            tags=[t.strip() for t in tags.split(",") if t.strip()],
            notes=st.session_state.get(f"notes_{run_id}"),
        )
    except RunGone:
        tell("error", f"**{name}** no longer exists (deleted meanwhile): its tags and notes were not saved.")
    else:
        tell("success", f"Saved the tags and notes of **{name}**.")


def delete_run(run_id: str, name: str) -> None:
    try:
        store().delete(run_id)
    except RunActive as e:
        tell("error", f"Not deleted: {e}.")
    except RunGone:
        tell("warning", f"**{name}** was already deleted.")
    else:
        tell("success", f"Deleted **{name}** ({run_id}).")
    st.session_state.get("runs_chosen", {}).pop(run_id, None)  # no "dropped from your selection" for it


def cancel_job(job_id: str, name: str) -> None:
    queue().cancel(job_id)
    tell("info", f"Asked the training of **{name}** to stop; once it reads *cancelled* it can be deleted.")


def tell(kind: str, text: str) -> None:
    st.session_state.setdefault("runs_messages", []).append((kind, text))


st.title("Compare runs")
runs, skipped = store().scan()
if skipped:  # a foreign folder, a run.json that is not a run's: left alone, skipped by every page
    st.warning(
        f"{len(skipped)} folder(s) in the runs folder `{store().uri}` do not read as runs and are left out: "
        + "; ".join(f"`{name}` ({why})" for name, why in skipped.items())
        + ". Move or remove them by hand if they are not needed."
    )
for kind, text in st.session_state.pop("runs_messages", []):
    getattr(st, kind)(text)
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
table["label"] = table.run_id.map(names)  # two runs of one name get their start time too
chosen = chosen_runs(table, set(info), names)
all_columns = st.toggle(
    "All columns", value=False, key="runs_all_columns", help="every setting and detail (the table then scrolls)"
)
st.dataframe(
    table,
    key="runs_table",
    on_select="rerun",
    selection_mode="multi-row",
    hide_index=True,
    placeholder="",
    column_order=[
        "label",
        "model",
        "status",
        "best_val_accuracy",
        *(["val_macro_f1"] if all_columns else []),
        *(["val_auc", "preset"] if all_columns else []),
        *(["test_accuracy"] if table.test_accuracy.notna().any() else []),  # only runs on a CSV have a test split
        "progress",
        "minutes",
        "shipped_as",
        *(
            [
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
            ]
            if all_columns
            else []
        ),
    ],
    column_config={
        "label": st.column_config.TextColumn(
            "name",
            width=compare.fit_width(table.label, "name", most=300),
            help="a name two runs share is followed by the run's start time",
        ),
        "status": st.column_config.TextColumn(
            "status",
            help="cancelled: stopped by hand; a stopped run keeps every finished epoch and its best checkpoint",
        ),
        "best_val_accuracy": st.column_config.NumberColumn("best val acc", format="%.4f"),
        "val_macro_f1": st.column_config.NumberColumn("val macro-F1", format="%.4f"),
        "val_auc": st.column_config.NumberColumn("val AUC", format="%.4f"),
        "test_accuracy": st.column_config.NumberColumn(
            "test acc", format="%.4f", help="PrivateTest at the best epoch (runs on the FER2013 CSV only)"
        ),
        "progress": st.column_config.TextColumn("epochs", width=compare.fit_width(table.progress, "epochs", most=170)),
        "minutes": st.column_config.NumberColumn("minutes", format="%.0f"),
        "shipped_as": st.column_config.TextColumn(
            "shipped as", help="the shipped model made from this run, and the epoch taken (results/models/NAME.md)"
        ),
        "started_from": st.column_config.TextColumn(
            "started from", width=compare.fit_width(table.started_from, "started from")
        ),
        "distilled_from": st.column_config.TextColumn(
            "distilled from", width=compare.fit_width(table.distilled_from, "distilled from", most=300)
        ),
    },
)
selected = chosen or table.run_id[:3].tolist()
st.caption(
    f"{len(table)} runs; showing {len(selected)}: {'selected' if chosen else 'the newest (select rows to choose)'}."
)
for run in table[table.shipped_as.notna() & (table.status != "finished")].itertuples():
    source = shipped_runs()[run.run_id]
    st.caption(
        f"**{run.label}** shows `{run.status}`: it was stopped after {source['epochs_completed']} of "
        f"{source['epochs']} epochs. A stopped run keeps its best checkpoint, and its epoch {source['epoch']} is the "
        f"shipped `{source['name']}` (card: results/models/{source['name']}.md)."
    )
for run in table[table.run_id.isin(selected) & (table.status == "failed")].itertuples():
    st.error(
        f"**{run.name}** failed: {run.error or 'the trainer stopped answering (stale heartbeat)'}. "
        "Resume it on the **Train** page or with `fer-train --resume`."
    )

# -- settings of the selected runs ---------------------------------------------------------
settings = compare.settings_table([info[r] for r in selected]).assign(name=[names.get(r, r) for r in selected])
if st.toggle("Only the settings that differ", value=True, key="settings_diff", help="between the selected runs"):
    settings = compare.differing(settings)
st.dataframe(compare.settings_by_run(settings), hide_index=True, placeholder="")  # a column per run: it fits

# -- tags, notes, delete -----------------------------------------------------------------
with st.expander("Tags, notes and delete"):
    target = st.selectbox("Run", selected, key="edit_run")  # a run id: it stays on its run as rows move
    if target:  # every control below is keyed by the run's id, and acts on that run only
        run_info, name = info[target], names.get(target, target)
        st.text_input("Tags (comma separated)", ", ".join(run_info.get("tags") or []), key=f"tags_{target}")
        st.text_area("Notes", run_info.get("notes", ""), key=f"notes_{target}")
        st.button("Save tags and notes", key=f"save_{target}", on_click=save_tags_and_notes, args=(target, name))
        if run_info.get("status") == "running":
            job = queue().active_job(target)
            where = "" if job else f" where it was started (host {run_info.get('host')}, process {run_info.get('pid')})"
            st.error(
                f"**{name}** is training, so it cannot be deleted: its trainer still writes to it. "
                f"Cancel it first{where} (it keeps the epochs done so far), then delete it."
            )
            if job:
                st.button(
                    "Cancel its training", key=f"cancel_{target}", on_click=cancel_job, args=(job["job_id"], name)
                )
        else:
            confirm = st.checkbox(f"Yes, delete run {target} and its checkpoints", key=f"confirm_{target}")
            st.button(
                "Delete run",
                key=f"delete_{target}",
                type="primary",
                disabled=not confirm,
                on_click=delete_run,
                args=(target, name),
            )


# -- learning curves (live while jobs run) ------------------------------------------------
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
    st.plotly_chart(compare_figures.curves_figure(plotted, x, metric, bool(groups)), width="stretch")
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
    st.plotly_chart(compare_figures.confusion_figure(matrices, counts=normalise == "counts"), width="stretch")
    csv_button(compare.confusion_long(matrices), "confusion_matrices")

    recall = compare.recalls(matrices)
    st.plotly_chart(compare_figures.recall_figure(recall), width="stretch")
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
    "our_epochs": st.column_config.NumberColumn("epochs", help="epochs our run trained"),
    "our_train_images": st.column_config.NumberColumn("train faces", help="faces our run trained on"),
    "our_val_images": st.column_config.NumberColumn("val faces"),
    **{k: st.column_config.Column(k.replace("_size", "").replace("_", " ")) for k in TABLE2_KEYS},
    "batch_size": st.column_config.Column("batch size"),
    "train_faces": st.column_config.NumberColumn("train faces"),
    "val_faces": st.column_config.NumberColumn("val faces"),
    "epochs_done": st.column_config.NumberColumn("epochs done"),
}
OTHER_METRICS = [f"{who}_{m}" for m in ("macro_f1", "loss", "auc") for who in ("paper", "our")]
MAIN_METRICS = ["paper_accuracy", "our_accuracy", "accuracy_gap", "our_epochs", "our_train_images", "our_run"]
BUDGET_COLUMNS = ["status", "epochs", "epochs_done", "train_faces", "paper_accuracy", "our_accuracy", "our_run"]
other_metrics = st.toggle(
    "F1, loss and AUC too", value=False, key="paper_other_metrics", help="the paper's and ours, beside accuracy"
)
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
    columns = BUDGET_COLUMNS if name == "paper_table1_budgets" else OTHER_METRICS if other_metrics else MAIN_METRICS
    shown = [c for c in [*keys, *columns] if c in frame.columns]
    config = PAPER_COLUMNS | {
        "our_run": st.column_config.TextColumn("our run", width=min(200, compare.fit_width(frame.our_run, "our run")))
    }
    st.dataframe(frame, hide_index=True, column_order=shown, column_config=config, placeholder="-")
    csv_button(frame, name)
