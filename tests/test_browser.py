"""End to end in a real browser: `streamlit run` on localhost driven by Playwright + Debian's
Chromium, with Chromium's fake camera playing a video made from real FER2013 faces.

Screenshots of every page go to results/screenshots/.
"""

from __future__ import annotations

import io
import re
import time

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from fer_core.registry import shipped_tta
from fer_core.runstore import RunStore
from tests.conftest import PROJECT, chromium, detectable_faces, make_photo, streamlit_server, write_y4m

SCREENSHOTS = PROJECT / "results" / "screenshots"
PURPLE = np.array([123, 63, 160])  # the box and label colour the Live page draws

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dashboard(finished_runs, tmp_path_factory):
    """`streamlit run dashboard/app.py` on a free localhost port, on a private copy of two finished runs."""
    import shutil

    home = tmp_path_factory.mktemp("dashboard")
    shutil.copytree(finished_runs, home / "runs")
    with streamlit_server(home) as url:
        yield {"url": url, "runs": home / "runs", "jobs": home / "jobs"}
    from trainers.jobs import JobQueue

    queue = JobQueue(home / "jobs", RunStore(home / "runs"))
    for job in queue.jobs():
        if job["status"] in ("queued", "running"):
            queue.cancel(job["job_id"])


@pytest.fixture(scope="module")
def browser(fer2013, tmp_path_factory):
    faces = detectable_faces(fer2013, n=1)
    video = write_y4m([make_photo(faces)] * 20, tmp_path_factory.mktemp("camera") / "face.y4m")
    with chromium(video) as browser:
        yield browser


@pytest.fixture
def page(browser, dashboard):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


def open_page(page, dashboard, path: str = "") -> None:
    page.goto(f"{dashboard['url']}/{path}")
    page.get_by_test_id("stApp").wait_for()
    wait_idle(page)


def wait_idle(page) -> None:
    """Until Streamlit has finished the current script run."""
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)


def test_compare_runs_and_data_pages(page, dashboard):
    open_page(page, dashboard)
    page.get_by_role("heading", name="Compare runs").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 2  # learning curves, confusion heatmaps
    page.get_by_text("Table 1 - ST-CNN, batch size").wait_for()
    shot(page, "runs")
    open_page(page, dashboard, "data")
    page.get_by_text("train images").wait_for()
    shot(page, "data")


def test_a_deep_link_on_a_fresh_server_gets_the_app(browser, tmp_path):
    """A bookmarked /predict as the first request after a restart runs app.py (its navigation and
    wide layout), not the page file alone (Streamlit's legacy pages/ folder mode)."""
    with streamlit_server(tmp_path) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/predict")
        page.get_by_role("heading", name="Predict").wait_for(timeout=60_000)
        nav = page.get_by_test_id("stSidebarNav").inner_text()
        assert "Compare runs" in nav and "app" not in nav.split()
        page.close()


def test_sweeps_page(page, dashboard):
    runs = RunStore(dashboard["runs"])
    for run in runs.list_runs():
        if run.get("name") in ("b16", "b32"):  # the two batch-size runs as one sweep's trials
            runs.update(run["run_id"], sweep="paper-table1-demo")
    open_page(page, dashboard, "sweeps")
    page.get_by_text("2 trials; varied: preset, batch size.").wait_for()
    page.locator(".js-plotly-plot .parcoords").first.wait_for()  # the parallel-coordinates view
    shot(page, "sweeps")


def test_predict_an_uploaded_face(page, dashboard, fer2013, tmp_path):
    photo = tmp_path / "face.jpg"
    make_photo(detectable_faces(fer2013, n=1)).save(photo)
    open_page(page, dashboard, "predict")
    page.locator("input[type=file]").set_input_files(str(photo))
    verdict = page.get_by_text("Face 1:")
    verdict.wait_for()
    label = verdict.inner_text().split(":")[1].split("(")[0].strip()
    assert label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    page.locator(".js-plotly-plot").first.wait_for()  # the probability bars
    page.get_by_text(f"stcnn {shipped_tta('stcnn')}").wait_for()  # the card's views, on by default
    assert "1 face(s)" in page.get_by_test_id("stImage").first.inner_text() or page.get_by_text("1 face(s)").count()
    shot(page, "predict")


def test_a_bad_upload_beside_a_good_one(page, dashboard, fer2013, tmp_path):
    """A text file renamed .jpg and a 0-byte file get a message; the face beside them still gets its label."""
    (tmp_path / "notes.jpg").write_text("name,age\nbob,3\n")
    (tmp_path / "empty.png").write_bytes(b"")
    make_photo(detectable_faces(fer2013, n=1)).save(tmp_path / "face.jpg")
    open_page(page, dashboard, "predict")
    page.locator("input[type=file]").set_input_files(
        [str(tmp_path / n) for n in ("notes.jpg", "empty.png", "face.jpg")]
    )
    page.get_by_text("notes.jpg: not a readable image").wait_for()
    page.get_by_text("empty.png: ").first.wait_for()
    page.get_by_text("Face 1:").wait_for()
    assert page.get_by_test_id("stException").count() == 0


def test_train_from_the_form_then_cancel_another(page, dashboard):
    runs = RunStore(dashboard["runs"])
    before = {r["run_id"] for r in runs.list_runs()}
    open_page(page, dashboard, "train")
    form = page.get_by_test_id("stMain")  # the form moved out of the sidebar, to keep Start in view

    def submit(epochs: int, name: str) -> None:
        for label, value in (("Epochs", epochs), ("Use at most N images per split (0 = all)", 70)):
            field = form.get_by_role("spinbutton", name=label)  # not the "Help for ..." button
            field.fill(str(value))
            field.press("Tab")
        form.get_by_role("textbox", name="Run name (optional)").fill(name)
        form.get_by_role("button", name="Start training").click()
        form.get_by_text(re.compile(rf"^Queued \S*{name}")).wait_for()  # not a job's "queued" status

    form.get_by_text("Bundled sample (700 faces)").wait_for()
    submit(2, "browser-tiny")
    page.get_by_text("browser-tiny").first.wait_for()
    deadline = time.time() + 300
    while time.time() < deadline and not any(
        r.get("name") == "browser-tiny" and r["status"] == "finished" for r in runs.list_runs()
    ):
        time.sleep(1)
    tiny = next(r for r in runs.list_runs() if r.get("name") == "browser-tiny")
    assert tiny["status"] == "finished" and tiny["epochs_completed"] == 2
    page.locator("p", has_text="browser-tiny").filter(has_text="finished").first.wait_for()

    submit(200, "browser-long")
    training = re.compile(r"epoch \d+/200")  # in the job's progress bar (the hidden log tail has it too)
    page.get_by_test_id("stProgress").filter(has_text=training).first.wait_for(timeout=120_000)
    shot(page, "train")
    cancel = page.get_by_role("button", name="Cancel")
    assert cancel.count() == 1  # only the running job can be cancelled; the finished one offers Remove
    cancel.click()
    deadline = time.time() + 60
    while time.time() < deadline:
        long = [r for r in runs.list_runs() if r.get("name") == "browser-long"]
        if long and long[0]["status"] == "cancelled":
            break
        time.sleep(1)
    assert long and long[0]["status"] == "cancelled"
    page.locator("p", has_text="browser-long").filter(has_text="cancelled").first.wait_for()

    open_page(page, dashboard, "")
    page.get_by_text("4 runs; showing 3").wait_for()  # the two from the form join the two before
    assert {r["run_id"] for r in runs.list_runs()} - before == {tiny["run_id"], long[0]["run_id"]}
    page.locator(".js-plotly-plot .legendtext", has_text="browser-tiny val").first.wait_for()  # its curve


def purple_pixels(png: bytes) -> int:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int((np.abs(pixels - PURPLE).max(axis=2) < 40).sum())


def test_live_webcam_draws_a_label(page, dashboard):
    """A WebRTC connection can drop on a loaded 2-core machine (CI saw the video vanish once); the
    component then shows START again, and like a user the test presses it again, at most twice."""
    open_page(page, dashboard, "live")
    frame = page.frame_locator("iframe[title*='webrtc']").first
    start, video = frame.get_by_role("button", name="START"), frame.locator("video")
    start.click()
    video.wait_for()
    deadline = time.time() + 120
    found = restarts = 0
    while time.time() < deadline and found < 300:
        page.wait_for_timeout(1000)
        if video.count():
            try:
                found = purple_pixels(video.first.screenshot(timeout=10_000))
            except PlaywrightTimeout:  # it went between the count and the screenshot
                continue
        elif start.count() and restarts < 2:
            restarts += 1
            start.click()
            video.wait_for()
    shot(page, "live")
    assert found >= 300, f"no box or label drawn on the video ({restarts} restarts)"
