"""One run across two processes with PyTorch DDP (torchrun, gloo on CPU): one run in the
store, written by rank 0 only, with metrics of the same shape as a single-process run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fer_core.runs.runstore import RunStore
from tests.conftest import SAMPLE_CSV, TINY_STCNN, fer_train

BIN = Path(sys.executable).parent
ARGS = ["--model", "stcnn", *TINY_STCNN, "--epochs", "2", "--limit", "140", "--batch-size", "32", "--seed", "3"]
pytestmark = pytest.mark.slow


def test_two_process_ddp_run_on_cpu(tmp_path):
    ddp_runs, single_runs = tmp_path / "ddp", tmp_path / "single"
    result = subprocess.run(
        [
            sys.executable,  # torchrun, from whichever environment runs the tests
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--no-python",
            str(BIN / "fer-train"),
            "--data",
            str(SAMPLE_CSV),
            *ARGS,
            "--runs-dir",
            str(ddp_runs),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("finished: best val accuracy") == 1  # rank 0 reports, rank 1 trains quietly
    fer_train(*ARGS, runs_dir=single_runs)

    ddp, single = RunStore(ddp_runs), RunStore(single_runs)
    [run] = ddp.list_runs()
    [reference] = single.list_runs()
    assert run["status"] == "finished" and run["processes"] == 2 and reference["processes"] == 1
    assert run["epochs_completed"] == 2 and run["final"].keys() == reference["final"].keys()
    for kind in ("metrics", "confusion"):
        a, b = getattr(ddp, kind)([run["run_id"]]), getattr(single, kind)([reference["run_id"]])
        assert list(a.columns) == list(b.columns) and len(a) == len(b)
        assert sorted(map(tuple, a[["epoch", "split"]].values.tolist())) == sorted(
            map(tuple, b[["epoch", "split"]].values.tolist())
        )
    # the train metrics cover both processes' shares of every batch: as many images as one process sees
    train = ddp.metrics([run["run_id"]]).query("split == 'train'")
    assert train.n.tolist() == single.metrics([reference["run_id"]]).query("split == 'train'").n.tolist()
    assert sorted(p.name for p in (ddp_runs / run["run_id"] / "checkpoints").iterdir()) == [
        "best.safetensors",
        "last.safetensors",
        "last_optimizer.safetensors",
    ]
    assert not list(ddp_runs.rglob(".*.tmp"))
