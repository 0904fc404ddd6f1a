"""Predict: drop photos or videos, see every face boxed and labelled, each model's probabilities and why."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from dashboard.common import get_model, get_recognizer, inference_lane, model_choices
from fer_core.classes import CLASSES
from fer_core.faces.detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, DETECTORS, ImageError, load_photo
from fer_core.faces.drawing import draw_tags, face_tag
from fer_core.faces.predict import Face
from fer_core.faces.video import (
    MIN_TRACK_SECONDS,
    VIDEO_SUFFIXES,
    VideoError,
    predict_video,
    result_rows,
    track_summaries,
)
from fer_core.inference.calibration import Blend
from fer_core.inference.explain import grad_cam, overlay, spatial_transform
from fer_core.inference.labels import top_two
from fer_core.inference.loading import BACKENDS
from fer_core.inference.registry import default_model, model_names, model_record

IMAGE_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]
VIDEO_TYPES = [suffix.lstrip(".") for suffix in VIDEO_SUFFIXES]
DISPLAY_MAX_SIDE = 1600  # a 100 MP photo is shown (and sent to the browser) at this size
MAX_TRACKS = 8  # timelines shown per video (the faces seen longest)


def models_help() -> str:
    """The Models box's help: the default, and how several chosen models are combined."""
    record = model_record("ensemble") or {}
    weights = record.get("weights") or {}
    running = ", ".join(f"{n} {w:g}" for n, w in weights.items() if w > 0)
    idle = [n for n, w in weights.items() if w == 0]
    text = (
        f"Starts with **{default_model()}**, the default of fer-predict: the cheapest model not significantly "
        "less accurate on val than the best (results/models/ensemble.md). Several chosen models are shown side by "
        "side, each with its own answer"
    )
    if running:
        text += f"; with all three shipped, the verdict is the calibrated ensemble, weighted {running}"
        text += f" ({', '.join(idle)}: weight 0, shown but not counted)" if idle else ""
    return text + "; any other set is combined by its plain mean."


def what_runs(recognizer) -> str:
    """One line: which models run, in which views, and how their answers become the verdict."""
    blend, views = recognizer.blend, recognizer.views
    ran = ", ".join(f"{spec} {views[spec]}" for spec in recognizer.models)
    if blend is None:
        how = "their plain mean" if len(views) > 1 else "its probabilities as they are (no temperature applied)"
    elif len(blend.weights) > 1:
        idle = [spec for spec in recognizer.models if spec not in blend.weights]
        how = "the calibrated ensemble: " + ", ".join(
            f"{n} weight {w:g}, T={blend.temperatures[n]:.2f}" for n, w in blend.weights.items()
        )
        how += f", then T={blend.temperature:.2f}" + (f"; {', '.join(idle)}: weight 0, not counted" if idle else "")
    else:
        [(name, t)] = blend.temperatures.items()
        how = f"probabilities scaled by T={t:.2f}, the temperature its card applies in this view"
    return f"Runs {ran}; the verdict is {how}. Fitted on val (scripts/calibrate_models.py); the label never changes."


st.title("Predict")
choices = model_choices()
if not choices:
    st.warning("No trained model yet: train one on the **Train** page.")
    st.stop()
default = [label for label in choices if choices[label] in model_names(default_model())] or list(choices)[:1]
picked = st.multiselect(
    "Models",
    list(choices),
    default=default,
    key="predict_models",
    help=models_help(),
)
c1, c2, c3 = st.columns(3)
detector = c1.selectbox(
    "Face detector",
    DETECTORS,
    index=DETECTORS.index(DEFAULT_DETECTOR),
    key="predict_detector",
    help=f"{DEFAULT_DETECTOR} is the default; haar is OpenCV's classic cascade",
)
min_confidence = c2.slider(
    "Minimum detection confidence",
    0.0,
    1.0,
    float(DEFAULT_MIN_CONFIDENCE),
    0.05,
    key="predict_min_confidence",
    help="faces the detector is less sure of are left out (for mtcnn+yunet: MTCNN's score; Haar reports 1.0 "
    "for every face). The default suits mtcnn+yunet; yunet alone needs about 0.8 (docs/faces.md)",
)
backend = c3.selectbox(
    "Runtime",
    BACKENDS,
    key="predict_backend",
    help="auto: the faster one ready - ONNX Runtime for the shipped models once exported into the cache "
    "(`make run` does it, `fer-export --cache`), else PyTorch, so no answer waits for an export; PyTorch for runs",
)
explain = st.toggle("Explain (Grad-CAM, and the ST-CNN's transformed input)", value=False, key="explain")
card_views = st.toggle(
    "Test-time augmentation as on the model cards",
    value=True,
    key="predict_tta",
    help="each shipped model averages the views its card chose on val (flip, or ten crops); "
    "runs, videos and the Live page classify one view",
)
files = st.file_uploader(
    "Drop face photos or videos here", type=IMAGE_TYPES + VIDEO_TYPES, accept_multiple_files=True, key="uploads"
)
status = st.empty()  # the hint, then the loading message, in one place (never one over the other)
if not picked or not files:
    status.info(
        f"Choose at least one model and drop one or more images ({', '.join(IMAGE_TYPES)}) "
        f"or videos ({', '.join(VIDEO_TYPES)})."
    )
    st.stop()
with status.container(), st.spinner("Loading the models..."):
    recognizer = get_recognizer([choices[label] for label in picked], card_views, backend).with_options(
        detector=detector, min_face_confidence=min_confidence
    )
status.caption(what_runs(recognizer))
models, tta = recognizer.models, recognizer.views
videos = [f for f in files if Path(f.name).suffix.lower() in VIDEO_SUFFIXES]
every = (
    st.columns(3)[0].number_input(
        "Videos: classify every Nth frame",
        1,
        300,
        10,
        key="predict_every",
        help="1 = every frame (slow: the three shipped models take ~0.1-0.4 s a "
        "frame on a 2-core CPU); 10 reads a 10 s clip at 30 fps in about 10 s",
    )
    if videos
    else 1
)


def draw_boxes(image: Image.Image, faces: list[Face]) -> Image.Image:
    """The photo at display size, each face boxed and tagged by fer_core.faces.drawing (as on Live)."""
    scale = min(1.0, DISPLAY_MAX_SIDE / max(image.size))
    canvas = image.resize((round(image.width * scale), round(image.height * scale))) if scale < 1 else image
    return draw_tags(canvas, [face_tag(face.box, face.combined(), i, scale) for i, face in enumerate(faces, 1)])


def probability_chart(face: Face) -> None:
    """Each model's probabilities (and their ensemble's) as grouped bars; plain plotly traces, a
    fifth of plotly express's CPU time per chart, which every answer pays once per face."""
    series = dict(face.probabilities)
    if len(series) > 1:
        series["ensemble"] = face.combined()
    fig = go.Figure(
        [
            go.Bar(x=[float(p) for p in probs], y=list(CLASSES), name=name, orientation="h")
            for name, probs in series.items()
        ]
    )
    fig.update_layout(
        barmode="group",
        height=260 + 30 * len(face.probabilities),
        margin={"t": 10, "b": 10},
        xaxis={"range": [0, 1], "title": {"text": "probability"}},
        yaxis={"categoryorder": "array", "categoryarray": list(CLASSES)[::-1], "title": {"text": "class"}},
        legend_title_text="model",
    )
    st.plotly_chart(fig, width="stretch")


def verdict_source() -> str:
    """After a face's confidence: what the verdict is made of, when several models are shown."""
    if len(models) == 1:
        return ""
    blend = recognizer.blend
    if blend is not None and len(blend.weights) > 1:
        return ", weighted ensemble of " + " + ".join(f"{n} {w:g}" for n, w in blend.weights.items())
    return f", mean of {len(models)}"


def show_photo(upload) -> None:
    data = upload.getvalue()
    if not data:
        st.error(f"{upload.name}: the file is empty, not a readable image.")
        return
    try:
        image = load_photo(data, name=upload.name)
    except ImageError as e:
        st.error(str(e))
        return
    with inference_lane():
        [faces] = recognizer.faces([image])
    if not faces:
        st.warning(f"No face found in {upload.name}.")
        if not st.checkbox("Classify the whole image as one face", key=f"whole_{upload.file_id}"):
            st.image(draw_boxes(image, []), width=320)
            return
        with inference_lane():
            [faces] = recognizer.with_options(whole_image=True).faces([image])
    c1, c2 = st.columns([1, 2])
    c1.image(draw_boxes(image, faces), caption=f"{len(faces)} face(s)", width="stretch")
    with c2:
        for i, face in enumerate(faces, 1):
            label, confidence = face.label()
            combined = verdict_source()
            ranked = top_two(face.combined())
            if len(ranked) > 1:  # below UNSURE_BELOW: the runner-up is said too, as on the tag
                combined += f"; unsure, next {ranked[1][0]} {ranked[1][1]:.0%}"
            st.markdown(f"**Face {i}: {label}** ({confidence:.0%}{combined})")
            probability_chart(face)
            if explain:
                columns = st.columns(len(models) + 1)
                columns[0].image(face.crop, caption="face (48x48)", width=120)
                for column, name in zip(columns[1:], models, strict=True):
                    model = get_model(name, backend="torch")  # whatever the runtime: Grad-CAM needs gradients
                    cls = int(np.argmax(face.probabilities[name]))
                    column.image(
                        overlay(face.crop, grad_cam(model, face.crop, cls)),
                        caption=f"{name}: Grad-CAM for {CLASSES[cls]}",
                        width=120,
                    )
                    transformed = spatial_transform(model, face.crop)
                    if transformed is not None:
                        column.image(transformed, caption=f"{name}: spatial transformer output", width=120)


@st.cache_data(max_entries=8, show_spinner=False)
def video_result(
    data: bytes,
    name: str,
    specs: tuple[str, ...],
    detector: str,
    min_confidence: float,
    every: int,
    _models: dict,
    _blend: Blend | None,
) -> dict:
    """predict_video on a temporary copy of the upload (cached per video, models and settings);
    messages and the result name the upload, not the temporary file."""
    fd, path = tempfile.mkstemp(suffix=Path(name).suffix.lower())
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        with inference_lane():
            result = predict_video(
                path,
                _models,
                dict.fromkeys(_models, "none"),
                detector=detector,
                min_confidence=min_confidence,
                every=every,
                blend=_blend,
            )
    except VideoError as e:
        raise VideoError(str(e).replace(path, name)) from None
    finally:
        os.unlink(path)
    if "warning" in result:
        result["warning"] = result["warning"].replace(path, name)
    return {**result, "path": name}


def timeline(rows: pd.DataFrame, track: dict, key: str) -> None:
    """Each emotion's probability over time for one tracked face, under its summary line."""
    face = rows[rows.track == track["track"]]
    long = face.melt(id_vars=["time"], value_vars=list(CLASSES), var_name="emotion", value_name="probability")
    fig = px.line(
        long,
        x="time",
        y="probability",
        color="emotion",
        markers=len(face) < 30,  # a few points still show as points
        range_y=[0, 1],
        height=300,
        labels={"time": "time (s)"},
        category_orders={"emotion": list(CLASSES)},
    )
    fig.update_layout(margin={"t": 10, "b": 10})
    st.markdown(
        f"**Track {track['track']}**: mostly {track['text']} "
        f"(mean of {track['frames']} frame(s), {track['start']:.1f}-{track['end']:.1f} s)"
    )
    st.plotly_chart(fig, width="stretch", key=key)


def show_video(upload) -> None:
    sampled = "every frame" if every == 1 else f"one frame in {every}"
    with st.spinner(f"Reading {upload.name}: {sampled}..."):
        try:
            result = video_result(
                upload.getvalue(),
                upload.name,
                (*models, backend, recognizer.blend),
                detector,
                float(min_confidence),
                int(every),
                recognizer.batch_models(),
                recognizer.blend,
            )
        except VideoError as e:
            st.error(str(e) if str(e).startswith(upload.name) else f"{upload.name}: {e}")
            return
    if "warning" in result:
        st.warning(result["warning"])
    info, rows = result["video"], result_rows(result)
    tracks = track_summaries(result)
    charted = sorted(
        sorted((t for t in tracks if t["long"]), key=lambda t: -t["frames"])[:MAX_TRACKS], key=lambda t: t["start"]
    )
    cuts = f", {len(result['cuts'])} scene cut(s)" if result.get("cuts") else ""
    c1, c2 = st.columns([1, 2])
    with c1:
        st.video(upload)
        st.caption(
            f"{info['frames']} frames ({info['fps']:.0f} fps, {info['width']}x{info['height']}), {sampled} "
            f"classified at {info['processed_fps']:.0f} frames/s; faces in {len(result['frames'])} "
            f"of them, {len(tracks)} track(s){cuts}"
        )
        st.download_button(
            "Download CSV (one row per face and frame)",
            rows.to_csv(index=False).encode(),
            file_name=f"{Path(upload.name).stem}-emotions.csv",
            mime="text/csv",
            key=f"csv_{upload.file_id}",
            disabled=rows.empty,
        )
    with c2:
        if rows.empty:
            st.warning(f"No face found in {upload.name}.")
        elif not charted:
            st.info(
                f"{len(tracks)} track(s), each shorter than {MIN_TRACK_SECONDS:g} s (a face seen for a moment, "
                "or a scene cut at nearly every frame): no timeline; their rows are in the CSV."
            )
        for track in charted:
            timeline(rows, track, key=f"timeline_{upload.file_id}_{track['track']}")
        hidden = len(tracks) - len(charted)
        if charted and hidden:
            st.caption(
                f"{hidden} other track(s), shorter than {MIN_TRACK_SECONDS:g} s or beyond the longest "
                f"{MAX_TRACKS}, are in the CSV only."
            )


for upload in files:
    st.subheader(upload.name)
    (show_video if upload in videos else show_photo)(upload)
