"""End to end in a real browser: `streamlit run` on localhost driven by Playwright + Debian's
Chromium (the session's `browser`): Compare runs, Data, Sweeps and Predict as `make run` shows
them (the session's copy of results/runs), a deep link on a fresh server, and the Train form
on a server of its own (it starts real trainings).

Screenshots go to FER_SCREENSHOT_DIR (`make screenshots` refreshes results/screenshots/).
"""

from __future__ import annotations

import re
import shutil

import pytest

from fer_core.inference.registry import shipped_tta
from fer_core.runs.runstore import RunStore
from tests.conftest import detectable_faces, make_photo, open_in_browser, screenshot, streamlit_server, wait_for

pytestmark = pytest.mark.slow


def test_compare_runs_and_data_pages(page, committed_dashboard):
    open_in_browser(page, committed_dashboard)
    page.get_by_role("heading", name="Compare runs").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    assert page.locator(".js-plotly-plot").count() >= 2  # learning curves, confusion heatmaps
    page.get_by_text("Table 1 - ST-CNN, batch size").wait_for()
    screenshot(page, "runs")
    open_in_browser(page, f"{committed_dashboard}/data")
    page.get_by_text("train images").wait_for()
    page.locator(".js-plotly-plot").first.wait_for()  # the class distribution
    page.get_by_test_id("stImage").nth(6).wait_for()  # a row of sample faces per class
    assert page.get_by_test_id("stImage").count() == 7
    screenshot(page, "data")


def test_a_deep_link_on_a_fresh_server_gets_the_app(page, tmp_path):
    """A bookmarked /predict as the first request after a restart runs app.py (its navigation and
    wide layout), not the page file alone (Streamlit's legacy pages/ folder mode)."""
    with streamlit_server(tmp_path) as url:
        page.goto(f"{url}/predict")
        page.get_by_role("heading", name="Predict").wait_for(timeout=60_000)
        nav = page.get_by_test_id("stSidebarNav").inner_text()
        assert "Compare runs" in nav and "app" not in nav.split()


def test_sweeps_page(page, committed_dashboard):
    open_in_browser(page, f"{committed_dashboard}/sweeps")
    page.get_by_text("4 trials; varied: preset, batch size.").wait_for()  # the paper's Table 1 sweep
    page.locator(".js-plotly-plot .parcoords").first.wait_for()  # the parallel-coordinates view
    screenshot(page, "sweeps")


def test_predict_an_uploaded_face(page, committed_dashboard, fer2013, tmp_path):
    photo = tmp_path / "face.jpg"
    make_photo(detectable_faces(fer2013, n=1)).save(photo)
    open_in_browser(page, f"{committed_dashboard}/predict")
    page.locator("input[type=file]").set_input_files(str(photo))
    verdict = page.get_by_text("Face 1:")
    verdict.wait_for()
    label = verdict.inner_text().split(":")[1].split("(")[0].strip()
    assert label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    page.locator(".js-plotly-plot").first.wait_for()  # the probability bars
    page.get_by_text(f"stcnn {shipped_tta('stcnn')}").wait_for()  # the card's views, on by default
    page.get_by_text("1 face(s)").wait_for()  # the photo's caption
    screenshot(page, "predict")


def test_a_bad_upload_beside_a_good_one(page, committed_dashboard, fer2013, tmp_path):
    """A text file renamed .jpg and a 0-byte file get a message; the face beside them still gets its label."""
    (tmp_path / "notes.jpg").write_text("name,age\nbob,3\n")
    (tmp_path / "empty.png").write_bytes(b"")
    make_photo(detectable_faces(fer2013, n=1)).save(tmp_path / "face.jpg")
    open_in_browser(page, f"{committed_dashboard}/predict")
    page.locator("input[type=file]").set_input_files(
        [str(tmp_path / n) for n in ("notes.jpg", "empty.png", "face.jpg")]
    )
    page.get_by_text("notes.jpg: not a readable image").wait_for()
    page.get_by_text("empty.png: ").first.wait_for()
    page.get_by_text("Face 1:").wait_for()
    assert page.get_by_test_id("stException").count() == 0


@pytest.fixture
def train_dashboard(finished_runs, tmp_path):
    """A server of its own on a copy of the two finished runs: the Train form starts real jobs."""
    shutil.copytree(finished_runs, tmp_path / "runs")
    with streamlit_server(tmp_path) as url:
        yield {"url": url, "runs": RunStore(tmp_path / "runs")}
    from trainers.jobs import JobQueue

    queue = JobQueue(tmp_path / "jobs", RunStore(tmp_path / "runs"))
    for job in queue.jobs():
        if job["status"] in ("queued", "running"):
            queue.cancel(job["job_id"])


def test_train_from_the_form_then_cancel_another(page, train_dashboard):
    runs = train_dashboard["runs"]
    before = {r["run_id"] for r in runs.list_runs()}
    open_in_browser(page, f"{train_dashboard['url']}/train")
    form = page.get_by_test_id("stMain")  # the form moved out of the sidebar, to keep Start in view

    def submit(epochs: int, name: str) -> None:
        for label, value in (("Epochs", epochs), ("Use at most N images per split (0 = all)", 70)):
            field = form.get_by_role("spinbutton", name=label)  # not the "Help for ..." button
            field.fill(str(value))
            field.press("Tab")
        form.get_by_role("textbox", name="Run name (optional)").fill(name)
        form.get_by_role("button", name="Start training").click()
        form.get_by_text(re.compile(rf"^Queued \S*{name}")).wait_for()  # not a job's "queued" status

    def run_named(name: str, status: str) -> dict | None:
        return next((r for r in runs.list_runs() if r.get("name") == name and r["status"] == status), None)

    form.get_by_text("Bundled sample (700 faces)").wait_for()
    submit(2, "browser-tiny")
    page.get_by_text("browser-tiny").first.wait_for()
    tiny = wait_for(lambda: run_named("browser-tiny", "finished"), 300, "browser-tiny to finish")
    assert tiny["epochs_completed"] == 2
    page.locator("p", has_text="browser-tiny").filter(has_text="finished").first.wait_for()

    submit(200, "browser-long")
    training = re.compile(r"epoch \d+/200")  # in the job's progress bar (the hidden log tail has it too)
    page.get_by_test_id("stProgress").filter(has_text=training).first.wait_for(timeout=120_000)
    screenshot(page, "train")
    cancel = page.get_by_role("button", name="Cancel")
    assert cancel.count() == 1  # only the running job can be cancelled; the finished one offers Remove
    cancel.click()
    long = wait_for(lambda: run_named("browser-long", "cancelled"), 60, "browser-long to be cancelled")
    page.locator("p", has_text="browser-long").filter(has_text="cancelled").first.wait_for()

    open_in_browser(page, train_dashboard["url"])
    total = len(before) + 2  # the two from the form join those before
    page.get_by_text(re.compile(rf"^{total} runs; showing \d+")).wait_for()
    assert {r["run_id"] for r in runs.list_runs()} - before == {tiny["run_id"], long["run_id"]}
    page.locator(".js-plotly-plot .legendtext", has_text="browser-tiny val").first.wait_for()  # its curve


CURVES = "[...document.querySelectorAll('.js-plotly-plot')].flatMap(p => p._fullData || [])"


def wait_for_points(page, name: str, points: int, timeout: int = 180_000) -> None:
    """Until the plotted trace called NAME has POINTS points, as plotly drew them (_fullData: the
    figure's numeric arrays arrive base64-encoded and are decoded there)."""
    page.wait_for_function(
        f"([name, n]) => {CURVES}.some(t => t.name === name && t.x.length === n)", arg=[name, points], timeout=timeout
    )


def test_compare_runs_follows_a_running_run_without_a_reload(page, committed_runs, tmp_path):
    """A run still training (this process stands in for its trainer, heartbeat and all) finishes
    an epoch while the page is open: with Live update on by itself, the new point appears."""
    import os
    import time

    from fer_core.runs.runwriter import RunWriter

    [source] = [r for r in RunStore(committed_runs).list_runs() if r["name"] == "ref-stcnn-kd2"]  # 3 epochs
    run_id, runs = source["run_id"], tmp_path / "runs"
    shutil.copytree(committed_runs / run_id, runs / run_id)
    later = sorted((runs / run_id / "metrics").glob("epoch_*.parquet"))[1:]
    for f in later:
        f.rename(tmp_path / f.name)
    store = RunStore(runs)
    store.update(run_id, status="running", pid=os.getpid(), heartbeat_unix=time.time(), epochs_completed=1)
    trainer = RunWriter(store, run_id)
    trainer.keep_alive(every=2)
    try:
        with streamlit_server(tmp_path, runs) as url:
            open_in_browser(page, url)
            page.get_by_role("switch", name="Live update").wait_for(state="attached")
            assert page.get_by_role("switch", name="Live update").is_checked()
            wait_for_points(page, "ref-stcnn-kd2 val", 1)
            (tmp_path / later[0].name).rename(later[0])  # the trainer writes its second epoch
            store.update(run_id, epochs_completed=2)
            wait_for_points(page, "ref-stcnn-kd2 val", 2)  # a rerun every 2 s; a loaded machine is slow, not wrong
    finally:
        trainer.stop_keep_alive()
