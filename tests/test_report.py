"""The paper report (dashboard/report_html.py and the Report page) on the committed results:
the paper's numbers beside ours, each with its protocol, and one HTML file that needs no network."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.paper_tables import PAPER_COLUMN, SHIPPED_COLUMN
from dashboard.report_html import paper_report, report_html, source_chain
from fer_core.evaluation.paper import HEADLINE
from fer_core.inference.registry import ENSEMBLE, model_record
from fer_core.runs.predictions import shipped_predictions
from fer_core.runs.runstore import RunStore
from tests.conftest import PROJECT

APP = str(PROJECT / "dashboard" / "app.py")
EXTERNAL = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//", re.I)


@pytest.fixture(scope="module")
def sections(committed_runs):
    return paper_report(RunStore(committed_runs), shipped_predictions())


@pytest.fixture(scope="module")
def html(sections) -> str:
    return report_html(sections)


def shipped_accuracy(name: str) -> float:
    """In the card's view; the weighted ensemble's as its calibration fitted it (each member's view)."""
    record = model_record(name)
    if "members" in record and "weights" in record:
        return round(100 * record["calibration"]["in_sample"]["accuracy"], 2)
    val = record["val"]
    return round(100 * val["metrics"][val["tta"]]["accuracy"], 2)


def test_the_headline_puts_the_paper_beside_ours_with_protocols(sections):
    """Each accuracy column is named by where it was measured, and the note says it in full."""
    headline = sections[0].items[0]
    rows = headline.set_index("model")
    for arch in ENSEMBLE:
        assert rows.loc[arch, PAPER_COLUMN] == pytest.approx(100 * HEADLINE[arch])
        assert rows.loc[arch, SHIPPED_COLUMN] == pytest.approx(shipped_accuracy(arch))
        assert rows.loc[arch, "shipped view"] == model_record(arch)["val"]["tta"]
    assert rows.loc["ensemble", SHIPPED_COLUMN] == pytest.approx(shipped_accuracy("ensemble"))
    assert pd.isna(rows.loc["ensemble", PAPER_COLUMN])
    assert "80:20" in sections[0].note and "PublicTest" in sections[0].note and "fp32" in sections[0].note


def test_tables_1_and_2_keep_the_papers_rows(sections):
    titles = [s.title for s in sections]
    table1 = sections[titles.index("Table 1: ST-CNN, batch size")]
    table2 = sections[titles.index("Table 2: ViT configurations")].items[0]
    assert table1.items[0]["batch size"].tolist() == [16, 32, 64, 128]
    assert table1.items[0][PAPER_COLUMN].tolist() == [75.0, 74.0, 78.0, 78.5]
    assert table2[PAPER_COLUMN].tolist() == [39.27, 40.0, 26.0, 25.0]
    assert "80:20" in table1.note
    assert table1.items[1]["paper F1"].tolist() == [0.72, 0.72, 0.75, 0.76]  # the other metrics, beside ours


def test_learning_curves_join_warm_restarts(sections, committed_runs):
    """The vit's weights came through three warm restarts: its curves run end to end, and the
    star sits at the shipped epoch after all the epochs taken from its parents."""
    curves = next(s for s in sections if s.title == "Learning curves").items
    assert len(curves) == 3
    record = model_record("vit")
    chain = source_chain(record)
    assert [run_id for run_id, _ in chain][-1] == record["source"]["run_id"] and len(chain) == 4
    star = next(t for t in curves[ENSEMBLE.index("vit")].data if t.name.startswith("shipped"))
    assert list(star.x) == [sum(epoch for _, epoch in chain)]
    metrics = RunStore(committed_runs).metrics([record["source"]["run_id"]])
    at = metrics[(metrics.split == "val") & (metrics.tta == "none") & (metrics.epoch == record["source"]["epoch"])]
    assert list(star.y) == pytest.approx(at.accuracy.tolist())


def test_the_html_file_holds_the_numbers_and_needs_no_network(html, sections):
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<td>78.5</td>" in html  # the paper's ST-CNN headline
    for arch in ENSEMBLE:
        assert f"<td>{shipped_accuracy(arch):.4g}</td>" in html  # ours
    assert "PublicTest" in html and "80:20" in html
    assert html.count("<table") == sum(isinstance(i, pd.DataFrame) for s in sections for i in s.items)
    figures = sum(not isinstance(i, pd.DataFrame) for s in sections for i in s.items)
    assert html.count('class="plotly-graph-div"') == figures >= 4  # three learning curves, the confusion matrices
    assert html.count("plotly.js v") == 1  # plotly.js inlined once
    assert not EXTERNAL.findall(html), EXTERNAL.findall(html)[:3]


def test_the_report_page_shows_the_same(on_committed_runs):
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("views/report.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Paper report"
    headline = at.dataframe[0].value.set_index("model")
    assert headline.loc["stcnn", PAPER_COLUMN] == 78.5
    assert headline.loc["stcnn", SHIPPED_COLUMN] == pytest.approx(shipped_accuracy("stcnn"))
    assert [h.value for h in at.subheader][:4] == [
        "Headline accuracies",
        "Table 1: ST-CNN, batch size",
        "Table 1 at fixed budgets",
        "Table 2: ViT configurations",
    ]
    assert len(at.get("plotly_chart")) >= 4  # learning curves and confusion matrices
    assert at.get("download_button")
