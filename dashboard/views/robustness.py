"""Robustness: each architecture's accuracy under perturbations of the faces (one small chart per
perturbation), the spatial transformer's part (the same ST-CNN weights with it bypassed), example
faces with every model's answer and what the transformer made of them, the paper's recipe with and
without the transformer, and runs measured on demand.

The shipped models' results are read from results/models/robustness/ (scripts/robustness.py), so
the page loads no model and no PyTorch until a run is measured."""

from __future__ import annotations

import re

import numpy as np
import streamlit as st

from dashboard.common import FULL_DATA_HINT, data_path_hint, store
from dashboard.robustness_figures import (
    ABLATION,
    PROTOCOL,
    ST_RESPONSE,
    curves_figure,
    example_strip,
    middle_table,
    st_gap_table,
    st_response_table,
)
from fer_core.classes import CLASSES
from fer_core.data.perturb import PERTURBATIONS
from fer_core.evaluation import robustness
from fer_core.runs.status import COMPLETED

st.title("Robustness")
st.caption(
    "Does a model still recognise the expression when the face is turned, scaled, moved, partly covered or "
    f"degraded? {PROTOCOL} The paper argues the spatial transformer undoes geometric variation: if it does, "
    "the ST-CNN should lose less than the same weights without it under rotation, zoom and shift."
)


def folders() -> tuple:
    return (robustness.STORED_DIR, robustness.on_demand_dir())


def version() -> tuple:
    """Changes when a result is written, so the cache re-reads them."""
    return tuple(sorted((str(p), p.stat().st_mtime_ns) for folder in folders() for p in folder.glob("*.json")))


@st.cache_data(max_entries=2, show_spinner=False)
def results_of(version: tuple) -> list[dict]:
    return robustness.load_results(*folders())


@st.cache_data(show_spinner=False)
def results_of_ablation() -> list[dict]:
    """The committed paper-recipe ablation (read once: it changes only with a commit)."""
    return robustness.load_results(robustness.ABLATION_DIR)


def big(face: np.ndarray, times: int = 3) -> np.ndarray:
    return np.kron(face, np.ones((times, times), dtype=np.uint8))


def show_examples(results: list[dict]) -> None:
    st.subheader("Example faces")
    c1, c2 = st.columns(2)
    names = [n for n in PERTURBATIONS if n in results[0]["perturbations"]]
    name = c1.selectbox("Perturbation", names, format_func=lambda n: PERTURBATIONS[n].label, key="rob_perturbation")
    ids, labels = results[0]["examples"]["ids"], results[0]["examples"]["labels"]
    example = c2.selectbox(
        "Face", range(len(labels)), format_func=lambda i: f"{CLASSES[labels[i]]} (val face {ids[i]})", key="rob_example"
    )
    strip = example_strip(results, name, example)
    p = PERTURBATIONS[name]
    captions = ["clean", *(f"{s} ({p.unit})" for s in p.severities)]
    columns = st.columns(len(captions))
    for level, (column, caption) in enumerate(zip(columns, captions, strict=True)):
        column.image(big(strip["faces"][level]), caption=caption)
        lines = []
        for model, answers in strip["answers"].items():
            answer, confidence = answers[level]
            mark = ":green[right]" if answer == strip["label"] else ":red[wrong]"
            lines.append(f"**{model}**: {CLASSES[answer]} {confidence:.2f} {mark}")
        column.markdown("  \n".join(lines))
    for model, warped in strip["warped"].items():
        st.caption(f"What {model}'s spatial transformer made of each face above (the input its CNN classifies):")
        for column, face in zip(st.columns(len(warped)), warped, strict=True):
            column.image(big(face))


def measurable_runs() -> dict[str, str]:
    """Label -> run id of the runs with a best checkpoint."""
    runs = store().list_runs()
    done = [r for r in runs if r.get("status") in COMPLETED and store().has_checkpoint(r["run_id"])]
    return {f"{r.get('name') or r['run_id']} ({r.get('model')})": r["run_id"] for r in reversed(done)}


def measure_a_run() -> None:
    """Measure one run now: the page waits, with a progress bar, and keeps the result in the cache folder."""
    with st.expander("Measure a run", expanded=False):
        choices = measurable_runs()
        if not choices:
            st.info("No finished run with a checkpoint in the run store.")
            return
        label = st.selectbox("Run", list(choices), key="rob_run")
        c1, c2 = st.columns(2)
        faces = c1.number_input("Val faces (a stratified subset)", 50, 3589, 300, step=50, key="rob_faces")
        data = c2.text_input("Dataset", str(FULL_DATA_HINT), help=f"e.g. {data_path_hint()}", key="rob_data")
        bypass = st.checkbox("An ST-CNN also with its transformer bypassed", value=True, key="rob_bypass")
        st.caption(f"Measured into {robustness.on_demand_dir()}; keep this tab open until it is done.")
        if not st.button("Measure", type="primary", key="rob_measure"):
            return
        run_id = choices[label]
        run = store().read_run(run_id)
        key = re.sub(r"[^A-Za-z0-9._-]+", "-", run.get("name") or run_id)
        passes = [False, True] if bypass and run.get("model") == "stcnn" else [False]
        bar = st.progress(0.0, text="Loading the model and the faces...")
        try:
            for i, off in enumerate(passes):
                result = robustness.evaluate(
                    run_id,
                    data.strip(),
                    "val",
                    int(faces),
                    bypass=off,
                    runs_dir=store().uri,
                    key=key + (robustness.NO_ST if off else ""),
                    progress=lambda f, step, i=i: bar.progress(
                        (i + f) / len(passes), text=f"{'ST bypassed: ' if i else ''}{step}"
                    ),
                )
                robustness.save(result, robustness.on_demand_dir() / f"{result['key']}.json")
        except (ValueError, FileNotFoundError, OSError) as e:
            st.error(str(e))
            return
        st.rerun()


results = results_of(version())
if not results:
    st.info(
        "No robustness results yet. Compute the shipped models' with `scripts/robustness.py` (or `fer-eval "
        "--perturb all --out results/models/robustness/`), or measure a run below."
    )
else:
    labels = [robustness.label(r) for r in results]
    # keyed by the choices, so that a run just measured comes in selected
    picked = st.multiselect("Models", labels, default=labels, key=f"rob_models:{'|'.join(labels)}")
    shown = [r for r in results if robustness.label(r) in picked]
    if shown:
        st.subheader("At the middle severity")
        st.dataframe(middle_table(shown), hide_index=True, placeholder="-")
        gaps, response = st_gap_table(shown), st_response_table(shown)
        if gaps is not None or response is not None:
            st.subheader("The spatial transformer's part")
        if gaps is not None:
            st.caption(
                "Accuracy with the transformer minus the same weights with it bypassed (identity warp), in "
                "points. Where it undoes geometry, the gap grows with the severity of rotation, zoom and shift."
            )
            st.dataframe(gaps, hide_index=True, placeholder="-")
        if response is not None:
            st.caption(ST_RESPONSE[0].upper() + ST_RESPONSE[1:] + ".")
            st.dataframe(response, hide_index=True, placeholder="-")
        st.subheader("Accuracy against severity")
        st.plotly_chart(curves_figure(shown), key="rob_curves", width="stretch")
        show_examples(shown)
if ablation := results_of_ablation():
    st.subheader("The paper's recipe, with and without the transformer")
    st.caption(f"{ABLATION} At the middle severity, then against severity.")
    st.dataframe(middle_table(ablation), hide_index=True, placeholder="-")
    st.plotly_chart(curves_figure(ablation), key="rob_ablation_curves", width="stretch")
measure_a_run()
