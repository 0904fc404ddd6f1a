"""The facial-expression lab dashboard: `streamlit run dashboard/app.py` (or `make run`)."""

import os

import streamlit as st

# Before a page loads PyTorch: idle OpenMP threads sleep rather than spin, so sessions that
# take turns on the cores (dashboard/common.py, inference_lane) and pages that only read runs
# are not slowed by threads waiting for work (fer-predict does the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

st.set_page_config(page_title="facial-expression lab", page_icon=":performing_arts:", layout="wide")

pages = [
    st.Page("views/runs.py", title="Compare runs", icon=":material/monitoring:", default=True),
    st.Page("views/faces.py", title="Faces & errors", icon=":material/grid_view:"),
    st.Page("views/report.py", title="Paper report", icon=":material/description:"),
    st.Page("views/robustness.py", title="Robustness", icon=":material/shield:"),
    st.Page("views/sweeps.py", title="Sweeps", icon=":material/tune:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/predict.py", title="Predict", icon=":material/face:"),
    st.Page("views/live.py", title="Live", icon=":material/videocam:"),
    st.Page("views/data.py", title="Data", icon=":material/dataset:"),
]
st.navigation(pages).run()
