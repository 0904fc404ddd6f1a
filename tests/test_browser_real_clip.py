"""The real-photo clip on the Predict page in a real browser: `streamlit run` on localhost driven
by Playwright + Debian's Chromium, the clip of benchmarks/real_clip.py (the faces-dev photos
filmed by a moving camera, 12 hard cuts) uploaded as a user would. Its scene cuts are counted,
each timeline belongs to a track long enough to read and draws lines, none is empty, and the
summary lines say "mostly ..." by the mean. Screenshot: results/screenshots/predict_real_clip.png.
"""

from __future__ import annotations

import re

import pytest
from PIL import Image

from benchmarks.faces_dev import FACES_DEV
from benchmarks.real_clip import make_clip
from tests.conftest import PROJECT, browser_page, chromium, open_in_browser, streamlit_server, wait_idle, write_y4m

pytestmark = pytest.mark.slow
MAX_TRACKS = 8  # dashboard/views/predict.py: timelines shown per video


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    with streamlit_server(tmp_path_factory.mktemp("dashboard")) as url:
        yield url


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    camera = write_y4m([Image.new("RGB", (64, 48))], tmp_path_factory.mktemp("camera") / "blank.y4m")
    with chromium(camera) as browser, browser_page(browser, height=1200) as page:
        yield page


def test_the_real_photo_clip_gets_readable_timelines(page, dashboard, tmp_path):
    assert FACES_DEV.is_dir(), f"the faces-dev photos are expected at {FACES_DEV}"
    clip = make_clip(tmp_path / "real_clip.mp4")
    open_in_browser(page, f"{dashboard}/predict")
    page.locator("input[type=file]").set_input_files(str(clip.path))
    page.get_by_text("mostly").first.wait_for(timeout=600_000)
    wait_idle(page)
    assert page.get_by_test_id("stException").count() == 0 and page.get_by_test_id("stAlertContentError").count() == 0
    caption = page.get_by_text(re.compile(r"\d+ track\(s\), 12 scene cut\(s\)")).first
    caption.wait_for()
    tracks = int(re.search(r"(\d+) track\(s\), 12 scene cut", caption.inner_text()).group(1))
    summaries = page.get_by_text(re.compile(r"^Track \d+: mostly "))
    charts = page.locator(".js-plotly-plot")
    charts.nth(summaries.count() - 1).wait_for()
    n = summaries.count()
    charts.first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    (PROJECT / "results" / "screenshots").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=PROJECT / "results" / "screenshots" / "predict_real_clip.png", full_page=True)
    assert 1 <= n <= MAX_TRACKS and charts.count() == n, (n, charts.count())
    assert tracks > n  # short tracks (and any beyond the longest eight) have no chart...
    page.get_by_text(re.compile(r"other track\(s\), shorter than 0.5 s")).wait_for()  # ...and say so
    for i in range(n):
        lines = charts.nth(i).locator("path.js-line")
        assert lines.count() >= 7, f"timeline {i} draws {lines.count()} lines"  # one per emotion, not empty
        paths = lines.evaluate_all("ps => ps.map(p => p.getAttribute('d') || '')")
        assert sum(len(d) > 10 for d in paths) >= 7, paths
    for text in summaries.all_inner_texts():
        seconds = re.search(r"(\d+\.\d)-(\d+\.\d) s\)", text)
        assert seconds and float(seconds.group(2)) - float(seconds.group(1)) >= 0.3, text
