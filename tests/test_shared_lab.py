"""Several people on one lab: a run deleted while it trains, folders in the runs folder that are
no runs, and the Compare runs selection while others start and delete runs. Through the pages
(Streamlit's AppTest) and real `fer-train` processes, on a local folder and on S3."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.runs.runstore import RunStore
from fer_core.runs.status import RunActive, RunGone
from tests.conftest import PROJECT, SAMPLE_CSV, TINY_STCNN
from tests.test_jobs import wait_for
from trainers.jobs import JobQueue

APP = str(PROJECT / "dashboard" / "app.py")
FER_TRAIN = Path(sys.executable).parent / "fer-train"
READERS = ["runs", "faces", "report", "sweeps", "train", "predict"]  # every page that reads runs
LONG_TRAINING = ["--model", "stcnn", *TINY_STCNN, "--data", str(SAMPLE_CSV), "--epochs", "300", "--limit", "140"]


def page(name: str = "runs") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    if name != "runs":
        at.switch_page(f"views/{name}.py")
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def select_rows(at: AppTest, rows: list[int]) -> None:
    """What a click on the table's row checkboxes sends: row numbers of the table as shown."""
    at.session_state["runs_table"] = {"selection": {"rows": rows, "columns": []}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]


def plant_folders_that_are_no_runs(write) -> dict[str, str]:
    """What a runs folder may hold besides runs; `write(relative path, text)` puts a file there.
    The one that broke every page: a trainer's heartbeat writing into a deleted run."""
    write("deleted-while-training/run.json", json.dumps({"status": "running", "heartbeat_unix": time.time()}))
    write("deleted-while-training/metrics/epoch_0001.parquet", "not parquet either")
    write("half-written/run.json", '{"run_id": "half-written", "status"')
    write("a-list/run.json", "[1, 2, 3]")
    write("copied-from-another/run.json", json.dumps({"run_id": "the-original", "status": "finished"}))
    write("no-run-json/metrics/epoch_0001.parquet", "")
    write("my notes/todo.txt", "a folder someone keeps here")
    return {
        "deleted-while-training": "no run_id",
        "half-written": "not valid JSON",
        "a-list": "no JSON object",
        "copied-from-another": "names another run",
        "no-run-json": "no run.json",
        "my notes": "not a run folder name",
    }


def assert_named_once(at: AppTest, expected: dict[str, str]) -> None:
    [warning] = [w.value for w in at.warning if "do not read as runs" in w.value]
    for name, why in expected.items():
        assert f"`{name}` (" in warning and why in warning.split(f"`{name}` (")[1].split(")")[0], (name, warning)


def test_folders_that_are_no_runs_are_skipped_by_every_page_and_named_once(runs_copy):
    real = {r["run_id"] for r in RunStore(runs_copy).list_runs()}

    def write(relative: str, text: str) -> None:
        (runs_copy / relative).parent.mkdir(parents=True, exist_ok=True)
        (runs_copy / relative).write_text(text)

    expected = plant_folders_that_are_no_runs(write)
    runs, skipped = RunStore(runs_copy).scan()
    assert {r["run_id"] for r in runs} == real and set(skipped) == set(expected)
    for name in READERS:
        at = page(name)
        assert not at.exception, (name, [e.value for e in at.exception])
        if name == "runs":
            assert_named_once(at, expected)
            assert "2 runs; showing 2" in at.caption[0].value
            assert set(at.dataframe[0].value.run_id) == real
    assert JobQueue().jobs() == []


def test_folders_that_are_no_runs_are_skipped_on_s3(finished_runs, s3_runs, tmp_path, monkeypatch):
    fs, base = fsspec.core.url_to_fs(s3_runs, use_listings_cache=False)
    fs.put(str(finished_runs) + "/", base, recursive=True)
    expected = plant_folders_that_are_no_runs(lambda relative, text: fs.pipe_file(f"{base}/{relative}", text.encode()))
    monkeypatch.setenv("FER_RUNS_DIR", s3_runs)
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    runs, skipped = RunStore(s3_runs).scan()
    assert len(runs) == 2 and set(skipped) == set(expected)
    at = page("runs")
    assert_named_once(at, expected)
    assert "2 runs; showing 2" in at.caption[0].value
    with pytest.raises(RunGone):  # a heartbeat into a deleted run writes nothing
        RunStore(s3_runs).update("no-run-json", heartbeat_unix=time.time())
    assert not fs.exists(f"{base}/no-run-json/run.json")


def training(store: RunStore) -> dict | None:
    """The run once its trainer is at work (an epoch done, so its writes are under way)."""
    runs = store.list_runs()
    return runs[0] if runs and runs[0]["status"] == "running" and runs[0].get("epochs_completed") else None


@pytest.mark.slow
def test_deleting_a_training_run_is_refused_with_cancel_on_offer(tmp_path, monkeypatch):
    """Compare runs, a run the dashboard's queue is training: no Delete, a line that says why
    and a Cancel button; after Cancel the run (its epochs kept) can be deleted."""
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    store = RunStore(tmp_path / "runs")
    job, _ = JobQueue().submit([*LONG_TRAINING, "--name", "long"], name="long", model="stcnn")
    try:
        run = wait_for(lambda: training(store), what="the trainer's first epoch")
        at = page("runs")
        select_rows(at, [0])
        assert at.selectbox(key="edit_run").value == run["run_id"]
        [refusal] = [e.value for e in at.error if "cannot be deleted" in e.value]
        assert "long** is training" in refusal and "Cancel it first" in refusal
        assert not [b for b in at.button if b.label == "Delete run"]
        with pytest.raises(RunActive, match="cancel it first"):
            store.delete(run["run_id"])  # the same refusal for any other caller

        next(b for b in at.button if b.label == "Cancel its training").click().run()
        assert any("Asked the training of **long** to stop" in i.value for i in at.info)
        wait_for(lambda: store.read_run(run["run_id"])["status"] == "cancelled", 60, "the run to read cancelled")
        at.run()
        at.checkbox(key=f"confirm_{run['run_id']}").check().run()
        next(b for b in at.button if b.label == "Delete run").click().run()
        assert not at.exception and any("Deleted **long**" in s.value for s in at.success)
        assert store.list_runs() == [] and not (tmp_path / "runs" / run["run_id"]).exists()
    finally:
        JobQueue().cancel(job["job_id"])


def assert_trainer_stops_and_writes_nothing(proc: subprocess.Popen, is_back) -> None:
    out, err = proc.communicate(timeout=60)  # the keep-alive heartbeat finds it within 5 s
    assert proc.returncode == 1, out + err
    lines = [line for line in err.strip().splitlines() if line]
    assert lines[-1].startswith("fer-train: error: run ") and lines[-1].endswith(
        "was deleted while it trained; stopped"
    ), err
    assert "Traceback" not in err
    time.sleep(6)  # more than a heartbeat's interval: nothing comes back
    assert not is_back()


@pytest.mark.slow
def test_a_trainer_whose_run_is_deleted_stops_and_never_writes_it_again(tmp_path):
    """The run folder removed behind the trainer's back (by hand, or by a dashboard of an older
    version): the trainer stops with one line and the runs folder stays clean."""
    runs = tmp_path / "runs"
    command = [str(FER_TRAIN), *LONG_TRAINING, "--runs-dir", str(runs), "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run = wait_for(lambda: training(RunStore(runs)), what="the trainer's first epoch")
        shutil.rmtree(runs / run["run_id"])
        assert_trainer_stops_and_writes_nothing(proc, lambda: any(runs.iterdir()))
    finally:
        proc.kill()
    assert RunStore(runs).scan() == ([], {})


@pytest.mark.slow
def test_a_trainer_whose_run_is_deleted_on_s3_stops_and_never_writes_it_again(s3_runs):
    store = RunStore(s3_runs)
    fs, base = fsspec.core.url_to_fs(s3_runs, use_listings_cache=False)
    command = [str(FER_TRAIN), *LONG_TRAINING, "--runs-dir", s3_runs, "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        run = wait_for(lambda: training(store), what="the trainer's first epoch")
        with pytest.raises(RunActive):
            store.delete(run["run_id"])
        fs.rm(f"{base}/{run['run_id']}", recursive=True)  # another client, not through the store
        assert_trainer_stops_and_writes_nothing(proc, lambda: fs.find(base))
    finally:
        proc.kill()
    assert store.scan() == ([], {})


# -- Compare runs: the selection and the per-run controls follow run ids --------------------------


def test_the_selection_stays_on_its_run_while_others_start_and_delete_runs(runs_copy):
    store = RunStore(runs_copy)
    at = page("runs")
    table = at.dataframe[0].value  # newest first: b32, then b16
    select_rows(at, [1])
    chosen, name = table.run_id[1], table.name[1]
    assert "showing 1: selected" in at.caption[0].value and at.selectbox(key="edit_run").value == chosen

    newcomer = store.create({"model": "stcnn"}, name="newcomer")  # someone starts a run: it is row 0 now
    at.run()
    assert at.dataframe[0].value.run_id[0] == newcomer.run_id
    assert at.session_state["runs_table"]["selection"]["rows"] == [2]  # the table shows the same run selected
    assert "showing 1: selected" in at.caption[0].value and at.selectbox(key="edit_run").value == chosen
    assert list(at.dataframe[1].value.columns) == ["setting", name]  # the settings of the selected run, a column

    store.delete(newcomer.run_id)  # ...and deletes it again
    at.run()
    assert at.session_state["runs_table"]["selection"]["rows"] == [1] and at.selectbox(key="edit_run").value == chosen

    store.delete(chosen)  # someone deletes the selected run
    at.run()
    assert not at.exception
    [notice] = [w.value for w in at.warning if "dropped from your selection" in w.value]
    assert name in notice
    assert "showing 1: the newest" in at.caption[0].value and at.session_state["runs_table"]["selection"]["rows"] == []
    at.run()
    assert not [w for w in at.warning if "dropped" in w.value]  # said once


def test_notes_saved_to_a_run_deleted_meanwhile_say_so(runs_copy):
    store = RunStore(runs_copy)
    at = page("runs")
    select_rows(at, [0])
    chosen = at.selectbox(key="edit_run").value
    at.text_area(key=f"notes_{chosen}").set_value("an hour of careful notes")
    store.delete(chosen)  # meanwhile, in another tab
    next(b for b in at.button if b.label == "Save tags and notes").click().run()
    assert not at.exception
    assert any("its tags and notes were not saved" in e.value for e in at.error), [e.value for e in at.error]
    assert not (runs_copy / chosen).exists()  # no run.json written afresh


def test_delete_acts_on_the_run_it_names_while_rows_move(runs_copy):
    store = RunStore(runs_copy)
    at = page("runs")
    table = at.dataframe[0].value
    select_rows(at, [0, 1])
    target, other = table.run_id[1], table.run_id[0]
    at.selectbox(key="edit_run").set_value(target).run()
    at.checkbox(key=f"confirm_{target}").check().run()
    store.create({"model": "stcnn"}, name="newcomer")  # rows shift before the click arrives
    next(b for b in at.button if b.label == "Delete run").click().run()
    assert not at.exception
    left = {r["run_id"] for r in store.list_runs()}
    assert target not in left and other in left
    assert not [w for w in at.warning if "dropped" in w.value]  # your own delete is no surprise
