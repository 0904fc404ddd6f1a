"""Resuming a run, as a user does: a real `fer-train` killed mid-run and resumed (on local disk and
on S3) ends where the uninterrupted run ends; `--resume --epochs N` moves the end of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from fer_core.runs.presets import TrainConfig
from fer_core.runs.runstore import RunStore
from tests.conftest import SAMPLE_CSV, TINY_STCNN
from tests.test_training import BIN, cli, only_run


def _epoch_rows(runs: Path | str) -> pd.DataFrame:
    m = RunStore(runs).metrics()
    return m[m.tta == "none"].sort_values(["epoch", "split"]).reset_index(drop=True)


# With a weight average (--ema-decay), whose state must come back too: val measures the average.
RESUMED = ["--model", "stcnn", *TINY_STCNN, "--data", SAMPLE_CSV, "--epochs", 4, "--limit", 420, "--ema-decay", 0.9]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pd.DataFrame:
    """The epoch rows of a RESUMED run that nothing interrupted (trained once for both stores)."""
    runs = tmp_path_factory.mktemp("uninterrupted") / "runs"
    cli("fer-train", *RESUMED, "--no-progress", "--runs-dir", runs)
    return _epoch_rows(runs)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["local", "s3"])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, store, request, monkeypatch, uninterrupted):
    """Also with the run store on S3 and the resume on "another machine" (an empty local
    checkpoint cache): the checkpoints come back from the store."""
    args, reference = [*RESUMED, "--no-progress"], uninterrupted

    runs = tmp_path / "b" if store == "local" else request.getfixturevalue("s3_runs")
    proc = subprocess.Popen(
        [str(BIN / "fer-train"), *map(str, args), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        runs_now = RunStore(runs).list_runs()
        if runs_now and runs_now[0].get("epochs_completed", 0) >= 1:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = only_run(runs)
    assert run["status"] == "failed", "the trainer was meant to be killed mid-run"
    done = run["epochs_completed"]
    assert 1 <= done < 4
    assert len(_epoch_rows(runs)) == 2 * done  # every finished epoch is readable
    if store == "s3":
        monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "another-machine"))
    cli("fer-train", "--resume", run["run_id"], "--runs-dir", runs)
    assert only_run(runs)["status"] == "finished"
    resumed = _epoch_rows(runs)
    columns = ["epoch", "split", "loss", "accuracy", "macro_f1", "auc", "lr"]
    pd.testing.assert_frame_equal(resumed[columns], reference[columns], check_exact=False, rtol=1e-6)
    if store == "s3":  # the run's best checkpoint, fetched from the store, evaluates
        result = json.loads(
            cli(
                "fer-eval", "--model", run["run_id"], "--runs-dir", runs, "--data", SAMPLE_CSV, "--limit", 420, "--json"
            ).stdout
        )
        best = resumed[(resumed.split == "val") & (resumed.epoch == only_run(runs)["best_epoch"])]
        assert result["accuracy"] == pytest.approx(best.accuracy.iloc[0], abs=1e-9)


@pytest.mark.slow
def test_resume_with_epochs_moves_the_end_of_the_run(tmp_path, capsys):
    """How a long run is cut short or lengthened without starting over: the cosine schedule
    anneals to the new end from where the run stands, and run.json says what changed when."""
    from trainers.cli import train_main
    from trainers.epoch import lr_at

    runs = tmp_path / "runs"
    cli(
        "fer-train",
        "--model",
        "stcnn",
        *TINY_STCNN,
        "--data",
        SAMPLE_CSV,
        "--limit",
        70,
        "--epochs",
        1,
        "--runs-dir",
        runs,
        "--no-progress",
    )
    run_id = only_run(runs)["run_id"]
    cli("fer-train", "--resume", run_id, "--epochs", 2, "--runs-dir", runs, "--no-progress")
    run = only_run(runs)
    assert run["status"] == "finished" and run["epochs_completed"] == 2 and run["config"]["epochs"] == 2
    assert run["epochs_changed"] == [{"after_epoch": 1, "from": 1, "to": 2}]
    cfg = TrainConfig.from_dict(run["config"])
    batches = 70 // cfg.batch_size + (70 % cfg.batch_size >= 2)
    lr = _epoch_rows(runs).query("split == 'train'").set_index("epoch").lr
    assert lr[2] == pytest.approx(lr_at(cfg, 1 + (batches - 1) / batches), rel=1e-9)  # half-way down the cosine
    assert lr[2] == pytest.approx(cfg.lr / 2, rel=0.3)
    for args, needle in (
        (["--epochs", 1], "has already trained 2 epochs"),
        (["--lr", 0.1, "--epochs", 3], "--lr cannot change it"),
    ):
        with pytest.raises(SystemExit):
            train_main(["--resume", run_id, "--runs-dir", str(runs), *map(str, args)])
        assert needle in capsys.readouterr().err
    assert only_run(runs)["epochs_completed"] == 2
