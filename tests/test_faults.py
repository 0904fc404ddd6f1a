"""Faults a long training meets: out of memory, a full or read-only results disk, the dataset
deleted, and three trainers writing while a dashboard polls. Real `fer-train` processes;
full and read-only disks are real tmpfs mounts in a private mount namespace (`unshare`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fer_core.runs.runstore import RunStore
from tests.conftest import SAMPLE_CSV, TINY_STCNN

FER_TRAIN = Path(sys.executable).parent / "fer-train"
SOAK_EPOCHS = 2  # epochs each trainer finishes while the soak polls
pytestmark = pytest.mark.slow


def tiny_args(runs: Path, epochs: int = 3, data: Path = SAMPLE_CSV, limit: int = 140) -> list[str]:
    return [
        str(FER_TRAIN),
        "--model",
        "stcnn",
        *TINY_STCNN,
        "--data",
        str(data),
        "--epochs",
        str(epochs),
        "--limit",
        str(limit),
        "--runs-dir",
        str(runs),
        "--no-progress",
    ]


def only_run(runs: Path) -> dict:
    [run] = RunStore(runs).list_runs()
    return run


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.startswith("fer-train: error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_out_of_memory_fails_with_one_clear_line_then_resumes(tmp_path):
    runs = tmp_path / "runs"
    result = subprocess.run(
        tiny_args(runs), capture_output=True, text=True, timeout=300, env=dict(os.environ, FER_INJECT_FAULT="oom@2")
    )
    assert result.returncode == 1
    line = error_line(result.stderr)
    assert "out of memory" in line and "smaller --batch-size" in line
    run = only_run(runs)
    assert run["status"] == "failed" and run["error"] in line and run["epochs_completed"] == 1
    RunStore(runs).update(run["run_id"], train_seconds=1000.0)  # as if the failed session had run long
    resumed = subprocess.run(
        [str(FER_TRAIN), "--resume", run["run_id"], "--runs-dir", str(runs), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    run = only_run(runs)
    assert run["status"] == "finished" and run["epochs_completed"] == 3 and not run.get("error")
    assert 1000 < run["train_seconds"] < 2000  # the time before the failure still counts (once)


def in_private_mount(tmp_path: Path, script: str) -> None:
    """Run a shell script in its own user + mount namespace with a 4 MB tmpfs at $MNT; the
    script copies what the test should see to $OUT before the namespace (and mount) ends."""
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed for the disk tests")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "out").mkdir()
    env = dict(
        os.environ,
        MNT=str(tmp_path / "mnt"),
        OUT=str(tmp_path / "out"),
        TRAIN=" ".join(tiny_args(tmp_path / "mnt" / "runs", epochs=40)),
    )
    prelude = 'set -u\nmount -t tmpfs -o size=4m tmpfs "$MNT"\n'
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", prelude + script], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr


WAIT_FOR_EPOCH_1 = """
$TRAIN > "$OUT/stdout" 2> "$OUT/stderr" &
pid=$!
until ls "$MNT"/runs/*/checkpoints/last_optimizer.safetensors >/dev/null 2>&1; do sleep 0.2; done
"""
COLLECT = """
wait $pid; echo $? > "$OUT/rc"
cp -a "$MNT/runs" "$OUT/runs"
"""


def test_results_disk_full(tmp_path):
    in_private_mount(
        tmp_path,
        WAIT_FOR_EPOCH_1
        + """
kill -STOP $pid                                                 # so the trainer cannot fail before the
dd if=/dev/zero of="$MNT/ballast" bs=16k 2>/dev/null || true   # disk is full but for
truncate -s -48K "$MNT/ballast"                                 # room for run.json, not for a checkpoint
kill -CONT $pid
"""
        + COLLECT,
    )
    out = tmp_path / "out"
    assert (out / "rc").read_text().strip() == "1"
    assert "no space left on the device" in error_line((out / "stderr").read_text())
    run = only_run(out / "runs")
    assert run["status"] == "failed" and "no space left" in run["error"]
    done = run["epochs_completed"]
    assert done >= 1 and len(RunStore(out / "runs").metrics().query("split == 'val'")) >= done
    assert not list((out / "runs").rglob(".*.tmp")), "a failed write left a temporary file behind"


def test_results_disk_turns_read_only(tmp_path):
    in_private_mount(
        tmp_path,
        WAIT_FOR_EPOCH_1
        + """
mount -o remount,ro "$MNT"
"""
        + COLLECT,
    )
    out = tmp_path / "out"
    assert (out / "rc").read_text().strip() == "1"
    assert "Read-only file system" in error_line((out / "stderr").read_text())
    run = only_run(out / "runs")  # it could not record its end: the dead trainer reads as failed
    assert run["status"] == "failed" and run["epochs_completed"] >= 1
    assert "trainer stopped" in run["error"]


def test_read_only_results_refused_before_start(tmp_path):
    in_private_mount(
        tmp_path,
        """
mkdir "$MNT/runs"; mount -o remount,ro "$MNT"
$TRAIN > "$OUT/stdout" 2> "$OUT/stderr"; echo $? > "$OUT/rc"
""",
    )
    out = tmp_path / "out"
    assert (out / "rc").read_text().strip() == "1"
    assert "Read-only file system" in error_line((out / "stderr").read_text())


def test_dataset_deleted_mid_training_then_resume(tmp_path):
    data = tmp_path / "fer2013.csv.gz"
    shutil.copy(SAMPLE_CSV, data)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        tiny_args(runs, epochs=30, data=data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 120
    while not list(runs.glob("*/checkpoints/last_optimizer.safetensors")) and time.time() < deadline:
        time.sleep(0.2)
    done = only_run(runs)["epochs_completed"]
    data.unlink()  # the trainer holds the decoded data in memory: it carries on, epoch after epoch
    deadline = time.time() + 300
    while only_run(runs)["epochs_completed"] < done + 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None and only_run(runs)["epochs_completed"] >= done + 2
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run_id = only_run(runs)["run_id"]
    result = subprocess.run(
        [str(FER_TRAIN), "--resume", run_id, "--runs-dir", str(runs), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "no such file or folder" in error_line(result.stderr)
    run = only_run(runs)
    assert run["status"] == "failed" and "no such file or folder" in run["error"]


def test_three_trainers_and_a_polling_dashboard(tmp_path):
    """A bounded soak: every poll reads every run and every Parquet row without an error, and
    at the end each run has exactly one row per finished epoch and split. It goes on for
    FER_SOAK_SECONDS (20; 3600 makes it a real soak) and until the polls have seen every run
    grow by SOAK_EPOCHS epochs, so that reads really met writes however loaded the machine."""
    soak_seconds = float(os.environ.get("FER_SOAK_SECONDS", 20))
    runs = tmp_path / "runs"
    procs = [
        subprocess.Popen(
            tiny_args(runs, epochs=400, limit=280) + ["--name", f"soak{i}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for i in range(3)
    ]
    errors, polls, grown = [], 0, {}  # run -> the epochs it finished while being polled
    started, first_seen = time.time(), {}
    try:
        while time.time() - started < soak_seconds or len(grown) < 3 or min(grown.values()) < SOAK_EPOCHS:
            assert time.time() - started < 900, f"the trainers made no progress ({grown})"
            store = RunStore(runs)  # a fresh reader each time, like a restarted dashboard
            try:
                listed = store.list_runs()
                metrics = store.metrics([r["run_id"] for r in listed])
                store.confusion([r["run_id"] for r in listed])
                if not metrics.empty:
                    keys = metrics[["run_id", "epoch", "split", "tta"]]
                    assert not keys.duplicated().any(), "duplicated epoch rows"
                for run in listed:
                    first_seen.setdefault(run["run_id"], run.get("epochs_completed", 0))
                    grown[run["run_id"]] = run.get("epochs_completed", 0) - first_seen[run["run_id"]]
            except Exception as e:  # noqa: BLE001 - the soak counts every read error
                errors.append(repr(e))
            polls += 1
            time.sleep(0.5)
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
    assert not errors, errors[:3]
    store = RunStore(runs)
    listed = store.list_runs()
    assert len(listed) == 3 and all(r["status"] == "cancelled" for r in listed)
    metrics = store.metrics()
    for run in listed:
        epochs = sorted(metrics[(metrics.run_id == run["run_id"]) & (metrics.split == "val")].epoch)
        assert epochs == list(range(1, run["epochs_completed"] + 1)), "lost or duplicated epochs"
    print(
        json.dumps(
            {
                "soak_seconds": round(time.time() - started),
                "polls": polls,
                "rows_checked": len(metrics),
                "epochs": sum(r["epochs_completed"] for r in listed),
                "read_errors": len(errors),
            }
        )
    )
