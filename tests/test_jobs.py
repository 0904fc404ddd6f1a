"""The job queue the dashboard uses: real `fer-train` processes, a concurrency cap, cancel,
and a registry on disk that a restarted dashboard finds again."""

from __future__ import annotations

import os
import signal

import pytest

from fer_core.runs.runstore import RunStore
from tests.conftest import SAMPLE_CSV, TINY_STCNN, wait_for
from trainers.jobs import JobQueue


def long_job(name: str, epochs: int = 40) -> list[str]:
    return [
        "--model",
        "stcnn",
        "--data",
        str(SAMPLE_CSV),
        "--epochs",
        str(epochs),
        "--limit",
        "280",
        "--name",
        name,
        *TINY_STCNN,
    ]


@pytest.mark.slow
def test_cap_cancel_and_a_restarted_dashboard(tmp_path):
    runs = RunStore(tmp_path / "runs")
    queue = JobQueue(tmp_path / "jobs", runs)
    assert queue.max_running == 1
    first, created = queue.submit(long_job("first"), name="first", model="stcnn")
    assert created and first["status"] == "running"
    second, _ = queue.submit(long_job("second"), name="second", model="stcnn")
    assert queue.job(second["job_id"])["status"] == "queued"  # the cap holds it back

    wait_for(
        lambda: runs.exists(first["run_id"]) and runs.read_run(first["run_id"]).get("epochs_completed", 0) >= 1,
        what="the first epoch",
    )
    restarted = JobQueue(tmp_path / "jobs", RunStore(tmp_path / "runs"))  # a new dashboard process
    assert [j["status"] for j in restarted.jobs()] == ["running", "queued"]
    assert runs.read_run(first["run_id"])["progress"]["epochs"] == 40

    restarted.cancel(first["job_id"])
    wait_for(lambda: restarted.job(first["job_id"])["status"] == "cancelled", what="cancelled")
    run = runs.read_run(first["run_id"])
    assert run["status"] == "cancelled" and run["epochs_completed"] >= 1
    assert len(runs.metrics([first["run_id"]]).query("split == 'val'")) == run["epochs_completed"]

    restarted.tick()  # a slot is free: the second starts
    assert restarted.job(second["job_id"])["status"] == "running"
    restarted.cancel(second["job_id"])
    wait_for(lambda: restarted.job(second["job_id"])["status"] == "cancelled", what="second cancelled")
    with pytest.raises(ValueError):
        restarted.forget(restarted.submit(long_job("third"), name="third")[0]["job_id"])  # active: not removable
    restarted.cancel(restarted.jobs()[-1]["job_id"])
    restarted.forget(first["job_id"])
    assert first["job_id"] not in [j["job_id"] for j in restarted.jobs()] and runs.exists(first["run_id"])


@pytest.mark.slow
def test_a_killed_trainer_shows_as_failed_and_resumes(tmp_path):
    runs = RunStore(tmp_path / "runs")
    queue = JobQueue(tmp_path / "jobs", runs)
    job, _ = queue.submit(long_job("killed", epochs=6), name="killed", model="stcnn")
    wait_for(
        lambda: runs.exists(job["run_id"]) and runs.read_run(job["run_id"]).get("epochs_completed", 0) >= 1,
        what="the first epoch",
    )
    os.killpg(job["pid"], signal.SIGKILL)
    wait_for(lambda: queue.job(job["job_id"])["status"] == "failed", seconds=60, what="failed job")
    run = runs.read_run(job["run_id"])
    assert run["status"] == "failed" and run["epochs_completed"] >= 1
    # An epoch's metrics are written before run.json counts it, so a kill between the two leaves
    # one epoch more in the metrics; resuming trains that epoch again and replaces its row (1..6 below).
    extra = len(runs.metrics([job["run_id"]]).query("split == 'val'")) - run["epochs_completed"]
    assert extra in (0, 1)

    resumed, created = queue.resume(job["run_id"])
    assert created and resumed["run_id"] == job["run_id"] and resumed["status"] == "running"
    assert not queue.resume(job["run_id"])[1]  # a second click: the same job
    wait_for(lambda: queue.job(resumed["job_id"])["status"] == "finished", what="resumed run finished")
    run = runs.read_run(job["run_id"])
    assert run["status"] == "finished" and run["epochs_completed"] == 6
    assert sorted(runs.metrics([job["run_id"]]).query("split == 'val' and tta == 'none'").epoch) == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="only failed or cancelled"):
        queue.resume(job["run_id"])


def test_jobs_queued_in_one_second_start_in_the_order_queued(tmp_path, monkeypatch):
    """A sweep queues its trials within a second: they start as the spec lists them (t01 first),
    not in the order of their ids' random suffixes."""
    import trainers.jobs

    queue = JobQueue(tmp_path / "jobs", RunStore(tmp_path / "runs"))
    busy = {"job_id": "busy", "run_id": "busy", "name": "busy", "model": "stcnn", "args": [], "key": "k"}
    queue._save(busy | {"status": "running", "created": "2026-01-01T00:00:00+00:00", "pid": os.getpid()})
    monkeypatch.setattr(trainers.jobs, "now_iso", lambda: "2026-01-01T00:00:01+00:00")  # all in one second
    names = [f"paper-table1-full-20260101-000001-ab12-t{i:02d}" for i in range(1, 7)]  # ids cut the name short
    for name in names:
        job, created = queue.submit(["--name", name], name=name, model="stcnn")
        assert created and job["status"] == "queued"  # the running job holds the one slot
    assert [j["name"] for j in queue.jobs()] == ["busy", *names]
