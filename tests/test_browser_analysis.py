"""Faces & errors and Paper report in a real browser: `streamlit run` on localhost driven by
Playwright + Debian's Chromium. Clicking a confusion cell shows that cell's faces; the report
downloads as one HTML file that renders its tables and plotly figures with the network off.

On the session's committed_dashboard (the report's learning curves come from the committed runs).
Screenshots faces.png and report.png go to FER_SCREENSHOT_DIR (`make screenshots`).
"""

from __future__ import annotations

import pandas as pd
import pytest

from fer_core.classes import CLASSES
from fer_core.inference.registry import model_record
from fer_core.runs.predictions import SHIPPED_PREDICTIONS_DIR
from tests.conftest import open_in_browser, screenshot, wait_idle

pytestmark = pytest.mark.slow


def test_click_a_confusion_cell_to_see_its_faces(page, committed_dashboard, fer2013):
    view = model_record("stcnn")["val"]["tta"]
    rows = pd.read_parquet(SHIPPED_PREDICTIONS_DIR / f"stcnn-val-{view}.parquet")
    true, pred = "fear", "sad"
    expected = int(((rows.label == CLASSES.index(true)) & (rows.pred == CLASSES.index(pred))).sum())
    open_in_browser(page, f"{committed_dashboard}/faces")
    page.get_by_role("heading", name="Faces & errors").wait_for()
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    cells = plot.locator(".nsewdrag").first.bounding_box()  # the plotting area: 7 x 7 cells
    column, row = CLASSES.index(pred), CLASSES.index(true)
    page.mouse.click(cells["x"] + (column + 0.5) * cells["width"] / 7, cells["y"] + (row + 0.5) * cells["height"] / 7)
    wait_idle(page)
    summary = page.get_by_text(f"{expected} faces of true class {true} that stcnn ({view}) predicts as {pred}")
    summary.wait_for()
    panel = page.get_by_role("tabpanel").first
    images = panel.get_by_test_id("stImage").locator("img")
    assert images.count() == min(expected, 32)
    images.last.scroll_into_view_if_needed()
    page.wait_for_function(
        "n => [...document.querySelectorAll('[role=tabpanel] [data-testid=stImage] img')]"
        ".filter(i => i.complete && i.naturalWidth === 96).length >= n",
        arg=min(expected, 32),
    )
    assert page.get_by_text(f"true {true}").count() >= min(expected, 32)  # the captions
    plot.evaluate("e => e.scrollIntoView({block: 'start'})")  # the heatmap above the gallery's first rows
    screenshot(page, "faces")


def test_download_the_report_and_open_it_offline(page, browser, committed_dashboard, tmp_path):
    open_in_browser(page, f"{committed_dashboard}/report")
    page.get_by_role("heading", name="Paper report").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    screenshot(page, "report")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the report").click()
    saved = tmp_path / "report.html"
    download.value.save_as(saved)
    assert saved.stat().st_size > 1_000_000  # plotly.js is inside

    offline = browser.new_context(viewport={"width": 1400, "height": 900}, offline=True)
    requests = []
    offline.on("request", lambda r: requests.append(r.url))
    report = offline.new_page()
    report.goto(saved.as_uri())
    report.get_by_role("heading", name="Headline accuracies").wait_for()
    report.locator("table td", has_text="78.5").first.wait_for()
    assert report.locator("table").count() >= 4
    report.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=60_000)  # drawn by the inlined plotly.js
    assert report.locator(".js-plotly-plot").count() >= 5  # curves, the confusion figure, robustness
    assert report.locator(".js-plotly-plot .heatmaplayer").count() >= 3  # the confusion matrices
    assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests
    offline.close()
