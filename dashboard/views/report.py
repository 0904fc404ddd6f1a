"""Paper report: the paper's Tables 1 and 2 and headline accuracies beside ours, each shipped
architecture's learning curves and confusion matrix, calibration, and all of it as one HTML
file that opens offline (dashboard/report_html.py builds both)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard.common import predictions_version, shipped_rows, store
from dashboard.paper_tables import PAGE_LABELS
from dashboard.report_html import paper_report, report_html

st.title("Paper report")
st.caption(
    "The paper measured on its own 80:20 split of FER2013 train; we measure on FER2013 PublicTest (our val "
    "split), which no model trained on. Each column's name says where its numbers were measured (hover for more); "
    "the notes say it in full."
)


@st.cache_data(max_entries=2, show_spinner="Building the report...")
def report(runs_dir: str, runs: tuple, version: tuple) -> list:
    """paper_report, rebuilt when a run, a shipped model's rows or its record changes."""
    return paper_report(store(), shipped_rows())


runs = tuple((r["run_id"], r.get("status"), r.get("epochs_completed")) for r in store().list_runs())
sections = report(store().uri, runs, predictions_version())
st.download_button(
    "Download the report (one HTML file, works offline)",
    data=lambda: report_html(sections),
    file_name="fer-paper-report.html",
    mime="text/html",
    on_click="ignore",
    icon=":material/download:",
    key="report_download",
)

for section in sections:
    st.subheader(section.title)
    if section.note:
        st.caption(section.note)
    for item in section.items:  # full width each: side by side, their axes and legends did not fit
        if isinstance(item, pd.DataFrame):
            config = {
                c: st.column_config.Column(PAGE_LABELS[c][0], help=PAGE_LABELS[c][1])
                for c in item.columns
                if c in PAGE_LABELS
            }
            st.dataframe(item, hide_index=True, placeholder="-", column_config=config)
        else:
            st.plotly_chart(item, width="stretch")
