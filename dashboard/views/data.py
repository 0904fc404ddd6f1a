"""Data: what a dataset holds - split sizes, class distribution (the paper's Fig. 4), sample faces (Fig. 5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from dashboard.common import SAMPLE_DATA, data_path_hint, dataset_refusal, dataset_summary
from fer_core.classes import CLASSES
from fer_core.data.fer2013 import FerDataError

st.title("Data")
path = st.text_input(
    "Dataset (FER2013 CSV or image folder)",
    value=str(SAMPLE_DATA),
    key="data_path",
    help=f"for the full dataset, e.g. {data_path_hint()}",
)
refusal = dataset_refusal(path.strip())
if refusal:
    st.error(refusal)
    st.stop()
try:
    info = dataset_summary(path.strip())
except FerDataError as e:
    st.error(str(e))
    st.stop()

summary = info["summary"]
st.caption(f"Source: {info['source']}")
columns = st.columns(len(summary))
for column, (split, s) in zip(columns, summary.items(), strict=True):
    column.metric(f"{split} images", f"{s['n']:,}")

counts = pd.DataFrame(
    [{"split": split, "class": c, "images": n} for split, s in summary.items() for c, n in s["class_counts"].items()]
)
counts["share"] = counts.images / counts.groupby("split").images.transform("sum")
fig = px.bar(
    counts,
    x="class",
    y="images",
    color="split",
    barmode="group",
    hover_data={"share": ":.1%"},
    category_orders={"class": list(CLASSES)},
    title="Class distribution",
)
st.plotly_chart(fig, width="stretch")

split = st.radio("Sample faces from", list(info["samples"]), horizontal=True, key="data_split")
for c, name in enumerate(CLASSES):
    faces = info["samples"][split][c]
    st.markdown(f"**{name}**")
    if len(faces):
        st.image(np.concatenate(list(faces), axis=1), width=48 * len(faces) * 2)
    else:
        st.caption("no images")
