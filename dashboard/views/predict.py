"""Predict: drop photos, see every face boxed and numbered, each model's probabilities and why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st
from PIL import Image, ImageDraw

from dashboard.common import get_model, model_choices
from fer_core.classes import CLASSES
from fer_core.explain import grad_cam, overlay, spatial_transform
from fer_core.faces import ImageError, load_photo
from fer_core.inference import shipped_tta
from fer_core.predict import Face, classify_faces, find_faces

st.title("Predict")
choices = model_choices()
if not choices:
    st.warning("No trained model yet: train one on the **Train** page.")
    st.stop()
default = [label for label in choices if label.endswith("(shipped)")] or list(choices)[:1]
picked = st.multiselect("Models", list(choices), default=default, key="predict_models",
                        help="several models are shown side by side, with their ensemble (mean)")
explain = st.toggle("Explain (Grad-CAM, and the ST-CNN's transformed input)", value=False, key="explain")
card_views = st.toggle("Test-time augmentation as on the model cards", value=True, key="predict_tta",
                       help="each shipped model averages the views its card chose on val (flip, or ten crops); "
                            "runs and the Live page classify one view")
files = st.file_uploader("Drop face photos here", type=["jpg", "jpeg", "png", "webp", "bmp"],
                         accept_multiple_files=True, key="uploads")
if not picked or not files:
    st.info("Choose at least one model and drop one or more images (jpg, png, webp, bmp).")
    st.stop()
models = {choices[label]: get_model(choices[label]) for label in picked}
tta = {spec: shipped_tta(spec) if card_views else "none" for spec in models}
if any(view != "none" for view in tta.values()):
    st.caption("Test-time views: " + ", ".join(f"{spec} {view}" for spec, view in tta.items()))


DISPLAY_MAX_SIDE = 1600  # a 100 MP photo is shown (and sent to the browser) at this size


def draw_boxes(image: Image.Image, faces: list[Face]) -> Image.Image:
    scale = min(1.0, DISPLAY_MAX_SIDE / max(image.size))
    canvas = image.resize((round(image.width * scale), round(image.height * scale))) if scale < 1 else image.copy()
    draw = ImageDraw.Draw(canvas)
    width = max(2, canvas.width // 200)
    for i, face in enumerate(faces, 1):
        x, y, w, h = (round(v * scale) for v in face.box)
        label, confidence = face.label()
        draw.rectangle([x, y, x + w, y + h], outline=(123, 63, 160), width=width)
        draw.text((x + width, max(0, y - 14 - width)), f"{i}: {label} {confidence:.0%}", fill=(123, 63, 160))
    return canvas


def probability_chart(face: Face) -> None:
    rows = [{"model": name, "class": c, "probability": float(p)}
            for name, probs in face.probabilities.items() for c, p in zip(CLASSES, probs)]
    if len(face.probabilities) > 1:
        rows += [{"model": "ensemble", "class": c, "probability": float(p)} for c, p in zip(CLASSES, face.combined())]
    fig = px.bar(pd.DataFrame(rows), x="probability", y="class", color="model", barmode="group", orientation="h",
                 range_x=[0, 1], height=260 + 30 * len(face.probabilities))
    fig.update_layout(margin={"t": 10, "b": 10}, yaxis={"categoryorder": "array", "categoryarray": list(CLASSES)[::-1]})
    st.plotly_chart(fig, width="stretch")


for upload in files:
    st.subheader(upload.name)
    try:
        image = load_photo(upload.getvalue(), name=upload.name)
    except ImageError as e:
        st.error(str(e))
        continue
    faces = find_faces(image)
    if not faces:
        st.warning(f"No face found in {upload.name}.")
        if not st.checkbox("Classify the whole image as one face", key=f"whole_{upload.file_id}"):
            st.image(draw_boxes(image, []), width=320)
            continue
        faces = find_faces(image, whole_image=True)
    classify_faces(faces, models, tta)
    c1, c2 = st.columns([1, 2])
    c1.image(draw_boxes(image, faces), caption=f"{len(faces)} face(s)", width="stretch")
    with c2:
        for i, face in enumerate(faces, 1):
            label, confidence = face.label()
            st.markdown(f"**Face {i}: {label}** ({confidence:.0%}"
                        f"{', ensemble of ' + str(len(models)) if len(models) > 1 else ''})")
            probability_chart(face)
            if explain:
                columns = st.columns(len(models) + 1)
                columns[0].image(face.crop, caption="face (48x48)", width=120)
                for column, (name, model) in zip(columns[1:], models.items()):
                    cls = int(np.argmax(face.probabilities[name]))
                    column.image(overlay(face.crop, grad_cam(model, face.crop, cls)),
                                 caption=f"{name}: Grad-CAM for {CLASSES[cls]}", width=120)
                    transformed = spatial_transform(model, face.crop)
                    if transformed is not None:
                        column.image(transformed, caption=f"{name}: spatial transformer output", width=120)
