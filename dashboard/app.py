"""The facial-expression lab dashboard: `streamlit run dashboard/app.py` (or `make run`)."""

import streamlit as st

st.set_page_config(page_title="facial-expression lab", page_icon=":performing_arts:", layout="wide")

pages = [
    st.Page("pages/runs.py", title="Compare runs", icon=":material/monitoring:", default=True),
    st.Page("pages/sweeps.py", title="Sweeps", icon=":material/tune:"),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/face:"),
    st.Page("pages/live.py", title="Live", icon=":material/videocam:"),
    st.Page("pages/data.py", title="Data", icon=":material/dataset:"),
]
st.navigation(pages).run()
