"""fer-sweep: specs and flags become validated trials; the local backend (the dashboard's job
queue) and the Ray backend (a real local Ray instance) both produce runs the run store lists
under one sweep id."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fer_core.runs.runstore import RunStore
from tests.conftest import FER2013, PROJECT, SAMPLE_CSV, TINY_STCNN
from trainers import sweep

FER_SWEEP = Path(sys.executable).parent / "fer-sweep"
TINY = ["--model", "stcnn", "--data", str(SAMPLE_CSV), "--epochs", "2", "--limit", "70", *TINY_STCNN]


def fer_sweep(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(FER_SWEEP), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)


def sweep_id(stdout: str) -> str:
    return re.search(r"^sweep (\S+): \d+ trials", stdout, re.M).group(1)


def in_process(capsys, *args) -> tuple[int, str, str]:
    """fer-sweep's own entry point in this process: (exit status, stdout, stderr). A fresh process
    per case costs seconds of imports; the real fer-sweep process is checked once below."""
    try:
        code = sweep.main([*map(str, args)])
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    "spec,presets",
    [
        ("paper-table1", ["paper-stcnn-b16", "paper-stcnn-b32", "paper-stcnn-b64", "paper-stcnn-b128"]),
        ("paper-table2", ["paper-vit-1", "paper-vit-2", "paper-vit-3", "paper-vit-4"]),
    ],
)
def test_the_paper_specs(tmp_path, monkeypatch, capsys, spec, presets):
    monkeypatch.chdir(tmp_path)  # the spec's paths are relative to the repo, not the cwd
    code, out, err = in_process(capsys, PROJECT / "sweeps" / f"{spec}.toml", "--dry-run")
    assert code == 0, err
    assert sweep_id(out).startswith(spec)
    commands = [line.split("fer-train ", 1)[1] for line in out.splitlines() if "fer-train " in line]
    assert [re.search(r"--preset (\S+)", c).group(1) for c in commands] == presets
    assert all(f"--data {FER2013.resolve()}" in c for c in commands)


def test_a_bad_trial_refuses_the_whole_sweep_before_anything_starts(tmp_path, monkeypatch, capsys):
    result = fer_sweep(  # the real process: exit status 2 and one line naming the trial
        "--grid",
        "batch_size=32,0",
        *TINY,
        "--runs-dir",
        tmp_path / "runs",
        "--jobs-dir",
        tmp_path / "jobs",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "trial t02 (batch_size=0)" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "jobs").exists()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "typo.toml").write_text('name = "x"\ngird = {lr = [1]}\n')
    for args, needle in (
        ([tmp_path / "typo.toml", *TINY], "unknown key(s) gird"),
        (["--random", "lr=0:0.1:log", *TINY, "--dry-run"], "0 < low < high"),
        (["--grid", "name=a,b", *TINY, "--dry-run"], "set by fer-sweep itself"),
    ):
        code, _, err = in_process(capsys, *args)
        assert code == 2 and needle in err, err


def test_grid_random_and_seeds_are_a_reproducible_product():
    spec = {
        "grid": {"batch_size": [16, 32]},
        "random": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "optimizer": ["adam", "sgd"]},
        "trials": 3,
        "seeds": [0, 1],
        "sample_seed": 7,
    }
    points = sweep.points(spec)
    assert len(points) == 2 * 3 * 2 and points == sweep.points(spec)
    assert all(1e-4 <= p["lr"] <= 1e-2 and p["optimizer"] in ("adam", "sgd") for p in points)
    assert {(p["batch_size"], p["seed"]) for p in points} == {(b, s) for b in (16, 32) for s in (0, 1)}
    assert sweep.to_argv({"batch_size": 16, "augment": True, "model_config.widths": [8, 16]}) == [
        "--batch-size",
        "16",
        "--augment",
        "--model-config",
        "widths=[8, 16]",
    ]


def check_sweep_runs(runs_dir: Path | str, sid: str) -> None:
    store = RunStore(runs_dir)
    runs = store.list_runs(sweep=sid)
    assert len(runs) == 2 and {r["status"] for r in runs} == {"finished"}
    assert sorted(r["config"]["batch_size"] for r in runs) == [16, 32]
    assert list(store.sweeps()) == [sid]
    val = store.metrics([r["run_id"] for r in runs]).query("split == 'val' and tta == 'none'")
    assert sorted(val.groupby("run_id").epoch.apply(list).tolist()) == [[1, 2], [1, 2]]


@pytest.mark.slow
def test_local_sweep_of_two_trials_through_the_job_queue(tmp_path):
    result = fer_sweep(
        "--grid",
        "batch_size=16,32",
        *TINY,
        "--runs-dir",
        tmp_path / "runs",
        "--jobs-dir",
        tmp_path / "jobs",
        "--wait",
        "--name",
        "local",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    check_sweep_runs(tmp_path / "runs", sweep_id(result.stdout))
    assert len(list((tmp_path / "jobs").glob("*.json"))) == 2  # the trials were jobs of the dashboard's queue


@pytest.mark.slow
def test_ray_sweep_of_two_trials_on_a_local_ray_instance(tmp_path, capsys, s3_runs):
    """As on a cluster without a shared disk: the trials write their runs to an object store
    (S3 here), where the run store - and so the dashboard - reads them."""
    ray = pytest.importorskip("ray") if sys.platform != "linux" else __import__("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        code = sweep.main(
            [
                "--grid",
                "batch_size=16,32",
                *TINY,
                "--backend",
                "ray",
                "--runs-dir",
                s3_runs,
                "--ray-storage",
                str(tmp_path / "ray"),
                "--name",
                "onray",
            ]
        )
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    assert code == 0, out
    check_sweep_runs(s3_runs, sweep_id(out))
    assert all(RunStore(s3_runs).has_checkpoint(r["run_id"]) for r in RunStore(s3_runs).list_runs())
