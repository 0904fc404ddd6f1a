"""Faces & errors: which faces the models get wrong, where the three architectures disagree,
and whether their confidence can be taken at its word, from the per-face rows that shipped
models and finished runs keep (fer_core/runs/predictions.py)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image
from plotly.subplots import make_subplots

from dashboard.common import (
    FULL_DATA_HINT,
    calibration_of,
    ensemble_calibration,
    faces_of,
    predictions_version,
    shipped_rows,
    store,
)
from dashboard.report_html import calibration_row, card_views, confusion_counts, confusion_figure
from fer_core.classes import CLASSES
from fer_core.inference import calibration
from fer_core.inference.registry import ENSEMBLE, model_record
from fer_core.runs.predictions import probabilities

PER_PAGE, COLUMNS = 32, 8
HARDEST = 96

st.title("Faces & errors")
shipped = shipped_rows()
runs = {r["run_id"]: r for r in store().list_runs()}
run_rows = store().predictions()
if shipped.empty and run_rows.empty:
    st.info(
        "No per-face predictions yet. `fer-eval --model stcnn --split val --save` keeps a shipped model's; "
        "runs keep theirs when training ends."
    )
    st.stop()

views = card_views(shipped) if not shipped.empty else {}
shipped_names = [n for n in ENSEMBLE if n in views] + sorted(set(views) - set(ENSEMBLE))
choices = {f"{name} (shipped)": ("model", name) for name in shipped_names}
for run_id in run_rows.run_id.unique() if not run_rows.empty else []:
    choices[f"{runs.get(run_id, {}).get('name', run_id)} (run)"] = ("run_id", run_id)

c1, c2, c3 = st.columns(3)
choice = c1.selectbox("Model", list(choices), key="faces_model")
column, who = choices[choice]
name = choice.rsplit(" (", 1)[0]
of_model = (shipped if column == "model" else run_rows).query(f"{column} == @who")
split = c2.selectbox("Split", sorted(of_model.split.unique(), key=lambda s: s != "val"), key=f"faces_split_{who}")
view_options = sorted(of_model[of_model.split == split].tta.unique())
card = views.get(who, "none")
view = c3.selectbox(
    "View",
    view_options,
    index=view_options.index(card) if card in view_options else 0,
    key=f"faces_view_{who}_{split}",
    help="The test-time view (none, flip, tencrop); a shipped model starts in its card's.",
)
chosen = of_model[(of_model.split == split) & (of_model.tta == view)].sort_values("index").reset_index(drop=True)
config = runs.get(who, {}).get("config") if column == "run_id" else None
faces, face_labels, data = faces_of(chosen, config)

# Every shipped architecture's answer per face (each in its card's view), for the captions.
answers = {}
for arch in [a for a in ENSEMBLE if a in views]:
    rows = shipped[(shipped.model == arch) & (shipped.tta == views[arch])]
    probs = probabilities(rows)
    answers[arch] = pd.DataFrame({"pred": rows.pred.to_numpy(), "conf": probs.max(1)}, index=rows["index"].to_numpy())
same_faces = column == "model" or (split == "val" and not (config or {}).get("limit") and data == str(FULL_DATA_HINT))
own = chosen.set_index("index")


def caption(i: int, note: str = "") -> str:
    lines = [f"#{i} true **{CLASSES[face_labels[i]]}**" + (f", {note}" if note else "")]
    if column == "run_id":
        lines.append(f"this run: {CLASSES[own.pred[i]]} {probabilities(own.loc[[i]]).max():.2f}")
    if same_faces:
        lines += [f"{arch}: {CLASSES[a.pred[i]]} {a.conf[i]:.2f}" for arch, a in answers.items() if i in a.index]
    return "  \n".join(lines)


def gallery(index: np.ndarray, key: str, notes: dict | None = None) -> None:
    """The faces `index` of the split, PER_PAGE at a time, each with every architecture's answer."""
    if faces is None:
        st.warning(
            f"The faces themselves are not on this machine: the gallery needs the FER2013 folders at "
            f"{FULL_DATA_HINT} (or the data this run trained on); the bundled sample holds other faces."
        )
        return
    if len(index) == 0:
        st.info("No faces here.")
        return
    pages = math.ceil(len(index) / PER_PAGE)
    page = st.columns([1, 4])[0].number_input(f"Page (of {pages})", 1, pages, 1, key=f"{key}_page") if pages > 1 else 1
    shown = index[(page - 1) * PER_PAGE : page * PER_PAGE]
    for start in range(0, len(shown), COLUMNS):  # a row of columns per row of faces: rows stay level
        for column, i in zip(st.columns(COLUMNS), shown[start : start + COLUMNS], strict=False):
            with column:
                st.image(Image.fromarray(faces[i]).resize((96, 96), Image.Resampling.BICUBIC), width="stretch")
                st.caption(caption(int(i), (notes or {}).get(int(i), "")))


def clickable(fig: go.Figure, counts: np.ndarray) -> go.Figure:
    """Plotly's heatmaps report no selection to Streamlit (streamlit#8760), so an invisible
    marker sits on every cell: clicking a cell selects its marker."""
    x, y = np.meshgrid(CLASSES, CLASSES)
    heatmap = fig.data[0]
    fig.add_scatter(
        x=x.ravel(),
        y=y.ravel(),
        mode="markers",
        marker={"size": 44, "symbol": "square", "opacity": 0},
        text=counts.ravel(),
        customdata=np.asarray(heatmap.customdata).ravel(),
        hovertemplate=heatmap.hovertemplate,
        showlegend=False,
    )
    heatmap.hoverinfo = "skip"
    heatmap.hovertemplate = None
    return fig


def reliability_figure(labels: np.ndarray, curves: dict[str, np.ndarray]) -> go.Figure:
    """Accuracy against confidence per bin (on the diagonal when calibrated), faces per bin below."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.05)
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dash", "color": "grey"}, name="calibrated")
    for name, probs in curves.items():
        table = calibration.reliability(labels, probs)
        fig.add_scatter(x=table.confidence, y=table.accuracy, mode="lines+markers", name=name, row=1, col=1)
        fig.add_bar(x=(table.bin_low + table.bin_high) / 2, y=table.faces, name=f"{name}: faces", row=2, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="faces", row=2, col=1)
    fig.update_xaxes(title_text="confidence (top class probability)", range=[0, 1], row=2, col=1)
    fig.update_layout(height=520, margin={"t": 20}, barmode="group", legend={"orientation": "h", "y": -0.15})
    return fig


truth, probs = chosen.label.to_numpy(int), probabilities(chosen)
st.caption(
    f"{len(chosen)} faces of {split} in the {view} view; {float((chosen.label == chosen.pred).mean()):.2%} right."
    + (f" Faces from {data}." if data else "")
)
confusion_tab, disagree_tab, hardest_tab, calibration_tab = st.tabs(
    ["Confusion", "Where the architectures disagree", "Hardest faces", "Calibration"]
)

with confusion_tab:
    counts = confusion_counts(chosen)
    if "faces_true" not in st.session_state:  # start on the most frequent mistake
        off = counts - np.diag(np.diag(counts))
        t, p = np.unravel_index(off.argmax(), off.shape)
        st.session_state.faces_true, st.session_state.faces_pred = CLASSES[t], CLASSES[p]
    st.markdown("Click a cell (or pick a true and a predicted class) to see its faces.")
    event = st.plotly_chart(
        clickable(confusion_figure(counts, height=460), counts),
        on_select="rerun",
        selection_mode="points",
        key=f"confusion_{who}_{split}_{view}",
    )
    points = event.selection.points if event else []
    if points and st.session_state.get("faces_clicked") != (points[0]["y"], points[0]["x"]):
        st.session_state.faces_clicked = (points[0]["y"], points[0]["x"])  # a new click moves the pickers
        st.session_state.faces_true, st.session_state.faces_pred = st.session_state.faces_clicked
    c1, c2 = st.columns(2)
    true = c1.selectbox("True class", CLASSES, key="faces_true")
    pred = c2.selectbox("Predicted class", CLASSES, key="faces_pred")
    t, p = CLASSES.index(true), CLASSES.index(pred)
    cell = chosen[(chosen.label == t) & (chosen.pred == p)]["index"].to_numpy()
    st.markdown(f"**{len(cell)} faces** of true class **{true}** that {name} ({view}) predicts as **{pred}**.")
    gallery(cell, f"cell_{who}_{split}_{view}_{t}_{p}")

with disagree_tab:
    missing = [a for a in ENSEMBLE if a not in answers]
    if missing:
        st.info(f"Waiting for the shipped per-face rows of {', '.join(missing)} (results/models/predictions/).")
    else:
        first = shipped[(shipped.model == ENSEMBLE[0]) & (shipped.tta == views[ENSEMBLE[0]])]
        table = pd.DataFrame({a: answers[a].pred for a in ENSEMBLE}).assign(true=first.set_index("index").label)
        differ = table[table[list(ENSEMBLE)].nunique(axis=1) > 1]
        none_right = int((differ[list(ENSEMBLE)].ne(differ.true, axis=0)).all(axis=1).sum())
        st.markdown(
            f"**{len(differ)} of {len(table)} faces** get different labels from "
            + ", ".join(f"{a} ({views[a]})" for a in ENSEMBLE)
            + f"; on {none_right} of them none of the three is right."
        )
        pair = st.selectbox(
            "Compare two", [f"{a} vs {b}" for i, a in enumerate(ENSEMBLE) for b in ENSEMBLE[i + 1 :]], key="faces_pair"
        )
        a, b = pair.split(" vs ")
        pairs = confusion_counts(pd.DataFrame({"label": table[a], "pred": table[b]}))
        np.fill_diagonal(pairs, 0)
        st.markdown(f"{a} and {b} differ on **{int(pairs.sum())} faces**: {a}'s label down, {b}'s across.")
        fig = confusion_figure(pairs, height=400)
        fig.update_yaxes(title_text=f"{a} says")
        fig.update_xaxes(title_text=f"{b} says")
        st.plotly_chart(fig, key="faces_pair_heatmap")
        combos = (
            differ.groupby(list(ENSEMBLE)).size().rename("faces").reset_index().sort_values("faces", ascending=False)
        )
        shown = combos.assign(**{a: combos[a].map(lambda c: CLASSES[c]) for a in ENSEMBLE}).reset_index(drop=True)
        st.markdown("Each combination of the three labels; select a row for its faces (all of them otherwise).")
        picked = st.dataframe(
            shown, key="faces_combos", on_select="rerun", selection_mode="single-row", hide_index=True, height=240
        )
        rows_picked = [r for r in picked.selection.rows if r < len(shown)] if picked else []
        subset = differ
        if rows_picked:
            combo = combos.iloc[rows_picked[0]]
            subset = differ[(differ[list(ENSEMBLE)] == combo[list(ENSEMBLE)].to_numpy()).all(axis=1)]
        st.markdown(f"**{len(subset)} faces** where they disagree.")
        gallery(subset.index.to_numpy(), f"disagree_{rows_picked[:1]}")

with hardest_tab:
    loss = -np.log(np.clip(probs[np.arange(len(chosen)), truth], 1e-12, None))
    order = np.argsort(-loss, kind="stable")[:HARDEST]
    st.markdown(
        f"The **{len(order)} faces** {name} ({view}) finds hardest: the highest loss, -log p(true class) "
        f"(mean over all {len(chosen)}: {loss.mean():.3f})."
    )
    index = chosen["index"].to_numpy()
    gallery(index[order], f"hardest_{who}_{split}_{view}", {int(index[k]): f"loss {loss[k]:.1f}" for k in order})

with calibration_tab:
    table = calibration_of(shipped[shipped.split == "val"]) if not shipped.empty else pd.DataFrame()
    if not run_rows.empty:
        of_runs = calibration_of(run_rows[run_rows.split == "val"], "run_id")
        of_runs.insert(0, "model", of_runs.pop("run_id").map(lambda r: f"{runs.get(r, {}).get('name', r)} (run)"))
        table = pd.concat([table, of_runs], ignore_index=True)
    if split == "val":
        mine = table[(table.model == (who if column == "model" else f"{runs.get(who, {}).get('name', who)} (run)"))]
        choice = mine[mine.view == view].iloc[0].to_dict()
    else:
        choice = calibration_row(truth, probs)
    temperature, applied = float(choice["temperature"]), choice["applied"] == "yes"
    scaled = calibration.with_temperature(probs, temperature)
    with_t = f"ECE {choice['ECE with T, out of fold']:.4f} and NLL {choice['NLL with T, out of fold']:.4f}"
    verdict = (
        f"applied: scored out of fold it gives {with_t} against {choice['ECE']:.4f} and {choice['NLL']:.4f} "
        "without it, so the probabilities shown elsewhere are scaled"
        if applied
        else f"**not applied**: scored out of fold it gives {with_t} against {choice['ECE']:.4f} and "
        f"{choice['NLL']:.4f} without it, so the raw probabilities are kept"
    )
    st.markdown(
        f"**{name}, {view} view, {split}**: ECE {calibration.expected_calibration_error(truth, probs):.4f}. "
        f"Temperature T = {temperature:.3f}, fitted on {split}, {verdict}. "
        "A calibrated model's points lie on the diagonal: of the faces it gives 0.8, 80 % are right."
    )
    st.plotly_chart(
        reliability_figure(truth, {"as trained": probs, f"T = {temperature:.2f} (in-sample)": scaled}),
        key="faces_reliability",
    )
    st.markdown(
        "**Calibration per model and view on val** (15-bin ECE, NLL): a temperature fitted on val is applied only "
        "where, scored out of fold (5 folds: each scaled by the T fitted on the other four), it lowers both."
    )
    st.dataframe(
        table,
        hide_index=True,
        key="faces_calibration",
        column_config={
            c: st.column_config.NumberColumn(format="%.4f")
            for c in ("accuracy", "ECE", "NLL", "ECE with T, out of fold", "NLL with T, out of fold")
        }
        | {"temperature": st.column_config.NumberColumn(format="%.3f")},
    )
    ensemble = ensemble_calibration(predictions_version())
    if ensemble is not None:
        st.markdown("**The ensemble on val**: the plain mean of the three against a calibrated weighted blend.")
        st.dataframe(
            ensemble,
            hide_index=True,
            key="faces_ensemble",
            column_config={c: st.column_config.NumberColumn(format="%.4f") for c in ("accuracy", "ECE")},
        )
    else:
        st.info("The ensemble's table waits for the per-face rows of all three members in their views.")
    chosen_by = (model_record("ensemble") or {}).get("calibration") or {}
    if chosen_by.get("options"):  # what scripts/calibrate_models.py compared when it fitted the record
        st.markdown(
            f"**How the record chose the members' views** ({chosen_by.get('folds', 5)}-fold, out of fold on val): "
            f"{chosen_by.get('chosen')}. {model_record('ensemble').get('default_reason', '')}"
        )
        st.dataframe(
            pd.DataFrame(
                {
                    "views": o["option"],
                    "plain mean accuracy": o["plain_mean"]["accuracy"],
                    "plain mean ECE": o["plain_mean"]["ece"],
                    "calibrated accuracy": o["calibrated_out_of_fold"]["accuracy"],
                    "calibrated ECE": o["calibrated_out_of_fold"]["ece"],
                }
                for o in chosen_by["options"]
            ),
            hide_index=True,
            key="faces_view_options",
        )
