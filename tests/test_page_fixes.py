"""Issue 50, what a new user hit on Train, Sweeps and Live: each fix checked so that the old page
fails. AppTest for what a page says; Chromium at 1400x900 for what must be in view without
scrolling (Train's Start and its message; Live's video and STOP: test_browser_video.py); one
real tiny training job for the phases the trainer reports between batches."""

from __future__ import annotations

import json
import os
import re
import time

import pytest
from streamlit.testing.v1 import AppTest

from fer_core.data.fer2013 import load_dataset
from fer_core.runs.presets import preset_config
from fer_core.runs.runstore import RunStore
from fer_core.runs.status import now_iso
from tests.conftest import PROJECT, SAMPLE_CSV, TINY_STCNN, app_page, open_in_browser
from trainers.jobs import JobQueue

SAMPLE = load_dataset(SAMPLE_CSV)
SAMPLE_FACES = sum(len(split) for split in SAMPLE.splits.values())


@pytest.fixture
def home(tmp_path, monkeypatch):
    """Empty runs and jobs folders that the dashboard pages use."""
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    return tmp_path


def finished_run(store: RunStore, preset: str, accuracy: float, **fields) -> str:
    """A run record as fer-train leaves it (no training: the pages read run.json only)."""
    config = dict(preset_config(preset).to_dict(), sweep=fields.get("sweep"))
    run_id = store.create(config, name=fields.pop("name", None)).run_id
    summary = {"accuracy": accuracy, "macro_f1": accuracy / 2, "auc": 0.7, "loss": 1.6, "epoch": 4}
    store.update(
        run_id,
        status="finished",
        started=now_iso(),
        epochs_completed=4,
        best_val_accuracy=accuracy,
        best_val=summary,
        progress={"fraction": 1.0, "epoch": 4, "epochs": 4},
        **fields,
    )
    return run_id


def fake_job(home, run_id: str | None, status: str = "running", args: tuple = ()) -> dict:
    """A job record as JobQueue keeps it; `running` ones are this test process (alive, not started)."""
    job = {
        "job_id": run_id or "job-without-a-run",
        "run_id": run_id or "job-without-a-run",
        "name": "demo",
        "model": "stcnn",
        "args": list(args),
        "key": "k",
        "status": status,
        "created": now_iso(),
        "started": now_iso(),
        "pid": os.getpid(),
    }
    (home / "jobs").mkdir(exist_ok=True)
    (home / "jobs" / f"{job['job_id']}.json").write_text(json.dumps(job))
    return job


def progress_labels(at: AppTest) -> list[str]:
    return [p.proto.text for p in at.get("progress")]


# -- Train -------------------------------------------------------------------------------------


def test_the_sample_size_is_counted_and_the_path_is_greyed_out_while_the_sample_is_chosen(home):
    at = app_page("train")
    source = at.radio(key="train_source")
    assert SAMPLE_FACES == 700 and source.options[0] == f"Bundled sample ({SAMPLE_FACES} faces)"  # it said 980
    assert source.value == source.options[0] and at.text_input(key="train_path").disabled  # was editable, ignored
    source.set_value(source.options[1]).run()
    assert not at.text_input(key="train_path").disabled


def test_the_jobs_panel_names_the_phase_and_the_epoch_total(home):
    store = RunStore(home / "runs")
    fake_job(home, None, args=("--preset", "stcnn", "--epochs", "7"))  # the trainer not yet started
    at = app_page("train")
    assert progress_labels(at) == ["starting the trainer (0/7 epochs done)"]  # was "epoch 0/? batch 0/?"

    run_id = store.create(preset_config("stcnn").to_dict(), name="demo").run_id
    fake_job(home, run_id)  # before the trainer writes `started`: the run record is the job's own
    store.update(
        run_id,
        pid=os.getpid(),
        started=now_iso(),
        heartbeat_unix=time.time(),
        progress={"phase": "final evaluation", "epoch": 7, "epochs": 7, "fraction": 1.0},
    )
    at.run()
    assert "epoch 7/7: final evaluation" in progress_labels(at)  # was the last batch's numbers


def test_a_finished_run_on_the_sample_says_near_chance_is_expected(home):
    store = RunStore(home / "runs")
    on_sample = finished_run(store, "stcnn", 0.143, name="tiny", dataset={"fingerprint": SAMPLE.fingerprint})
    fake_job(home, on_sample, status="finished")
    at = app_page("train")
    [note] = [i.value for i in at.info]
    assert "near-chance" in note and "expected" in note and f"{SAMPLE_FACES} faces" in note and "full FER2013" in note
    assert any("best val accuracy 14.3%" in label for label in progress_labels(at))

    elsewhere = finished_run(store, "stcnn", 0.68, name="full", dataset={"fingerprint": "another"})
    (home / "jobs" / f"{on_sample}.json").unlink()
    fake_job(home, elsewhere, status="finished")
    at.run()
    assert not [i.value for i in at.info if "near-chance" in i.value]  # only for the sample


@pytest.mark.slow
def test_a_real_training_job_reports_its_phases(home):
    """The trainer reports what it does between batches; the panel used to show the last batch
    through the final evaluation, and `epoch 0/?` before the first."""
    runs = RunStore(home / "runs")
    queue = JobQueue(home / "jobs", runs)
    args = ["--model", "stcnn", *TINY_STCNN, "--data", str(SAMPLE_CSV), "--epochs", "2", "--limit", "140"]
    job, _ = queue.submit(args, name="phases", model="stcnn")
    seen, deadline = set(), time.time() + 300
    while time.time() < deadline and queue.job(job["job_id"])["status"] == "running":
        if runs.exists(job["run_id"]):
            try:
                progress = runs.read_run(job["run_id"]).get("progress") or {}
            except ValueError:  # caught mid-write
                continue
            seen.add(progress.get("phase"))
            assert progress.get("epochs") in (None, 2), progress  # the real total, from the first report
        time.sleep(0.05)
    assert queue.job(job["job_id"])["status"] == "finished", queue.log_tail(job["job_id"])
    between = seen - {None, "training"}
    assert between <= {"loading data", "building model", "evaluating val", "saving", "final evaluation"}
    assert between, f"no phase besides training was reported (saw {seen})"


# -- Sweeps ------------------------------------------------------------------------------------


def sweep(store: RunStore, sweep_id: str, batches: list[int]) -> None:
    for i, batch in enumerate(batches):
        finished_run(store, f"paper-stcnn-b{batch}", 0.40 - i * 0.0123456, sweep=sweep_id, name=f"{sweep_id}-t{i}")


def test_sweeps_opens_on_the_papers_table_1_with_readable_axes(home):
    store = RunStore(home / "runs")
    sweep(store, "paper-table1-20261124-175650-ddf7", [16, 32, 64, 128])
    sweep(store, "resnet50-stems-20261124-185827-dd53", [16, 32, 64])
    sweep(store, "zz-try-out-20261203", [16, 32])  # newest and first in the list: it opened on this one
    at = app_page("sweeps")
    assert at.selectbox(key="sweep").value == "paper-table1-20261124-175650-ddf7 (4 trials)"
    assert "varied: preset, batch size." in at.caption[0].value  # not batch_size

    figure = json.loads(at.get("plotly_chart")[0].proto.spec)
    dimensions = figure["data"][0]["dimensions"]
    assert [d["label"] for d in dimensions] == ["preset", "batch size", "best val accuracy"]
    assert dimensions[0]["ticktext"] == [f"paper-stcnn-b{b}" for b in (16, 32, 64, 128)]
    assert dimensions[1]["ticktext"] == ["16", "32", "64", "128"] and dimensions[2]["tickformat"] == ".3f"
    assert figure["layout"]["margin"]["l"] >= 7 * len("paper-stcnn-b128")  # room for the longest tick text

    at.selectbox(key="sweep_metric").set_value("val_macro_f1").run()
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]["dimensions"][-1]["label"] == "val macro F1"


def test_without_table_1_sweeps_opens_on_the_largest(home):
    store = RunStore(home / "runs")
    sweep(store, "batch-sizes-1", [16, 32, 64])
    sweep(store, "zz-try-out-20261203", [16, 32])
    assert app_page("sweeps").selectbox(key="sweep").value == "batch-sizes-1 (3 trials)"


# -- in a real browser at 1400x900 --------------------------------------------------------------


def in_view(box: dict | None) -> bool:
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= 900


def test_start_and_its_message_are_in_view(page, committed_dashboard):
    open_in_browser(page, f"{committed_dashboard}/train")
    start = page.get_by_role("button", name="Start training")
    assert in_view(start.bounding_box()), (
        f"Start at {start.bounding_box()}"
    )  # was 400 px and more below, in the sidebar
    page.get_by_role("radio", name="A path on this machine").check(force=True)
    path = page.get_by_role("textbox", name="FER2013 CSV or image folder")
    missing = PROJECT / "data" / "nowhere" / "fer2013.csv"  # inside a data root, so named plainly
    path.fill(str(missing))
    path.press("Tab")
    start.click()
    message = page.get_by_text(f"{missing}: no such file or folder.")
    message.wait_for()
    assert in_view(message.bounding_box()), f"the message at {message.bounding_box()}"


def test_the_sweeps_axis_labels_are_not_cut(page, committed_dashboard):
    """On the committed paper-table1 sweep (trials paper-stcnn-b16 ... b128)."""
    open_in_browser(page, f"{committed_dashboard}/sweeps")
    plot = page.locator(".js-plotly-plot").first
    plot.locator(".parcoords").first.wait_for()
    plot.scroll_into_view_if_needed()
    left = plot.bounding_box()["x"]
    ticks = plot.locator(".parcoords .tick text")
    texts = ticks.all_text_contents()
    assert "paper-stcnn-b128" in texts  # whole
    assert any(re.fullmatch(r"0\.\d{3}", t) for t in texts), texts  # accuracies with three decimals
    assert min(ticks.nth(i).bounding_box()["x"] for i in range(ticks.count())) >= left  # none cut at the edge
