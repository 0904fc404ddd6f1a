"""Table 1 at fixed budgets: each trial of the full-data sweep (sweeps/paper-table1-full.toml) and of
the quick one, with its status, budget and best val epoch beside the paper's number."""

from __future__ import annotations

import math
import os
import socket
import time

import pytest
from streamlit.testing.v1 import AppTest

from fer_core.evaluation.paper import TABLE1_STCNN_BATCH
from fer_core.evaluation.paper_compare import sweep_spec, sweep_trials, table1_budget_rows
from fer_core.runs.runstore import RunStore
from tests.conftest import PROJECT, TINY_STCNN, fer_train

FULL_PRESETS = ["paper-stcnn-b128", "paper-cnn-b128", "paper-stcnn-b64", "paper-stcnn-b32", "paper-stcnn-b16"]
FULL_EPOCHS = 5  # the full-data sweep's fixed budget (sweeps/paper-table1-full.toml)
PAPER = {row["batch_size"]: row["accuracy"] for row in TABLE1_STCNN_BATCH}


def test_the_full_sweeps_rows_come_from_its_spec():
    spec = sweep_spec("paper-table1-full")
    assert spec["grid"]["preset"] == FULL_PRESETS and spec["base"]["epochs"] == FULL_EPOCHS
    rows = table1_budget_rows([])
    assert rows.budget.tolist() == ["full data"] * 5 + ["quick version"] * 4
    assert (rows.status == "not yet run").all() and rows.our_accuracy.isna().all()
    full = rows[rows.budget == "full data"].set_index("preset")
    assert full.epochs.tolist() == [FULL_EPOCHS] * 5
    assert full.batch_size.tolist() == [128, 128, 64, 32, 16]
    assert full.loc["paper-stcnn-b64", "paper_accuracy"] == PAPER[64]
    assert math.isnan(full.loc["paper-cnn-b128", "paper_accuracy"])  # the paper gives the plain CNN no number


def test_the_committed_trials_show_at_their_budgets():
    """The quick sweep (4 epochs, 3,000 faces) is labelled so; full-data trials copied into
    results/runs show with their best epoch (finished, or stopped after some epochs), the others
    as not yet run."""
    runs = RunStore(PROJECT / "results" / "runs").list_runs()
    rows = table1_budget_rows(runs)
    quick = rows[rows.budget == "quick version"]
    assert quick.preset.tolist() == [f"paper-stcnn-b{b}" for b in (16, 32, 64, 128)]
    assert (quick.status == "finished").all() and (quick.epochs == 4).all() and (quick.train_faces == 3000).all()
    by_id = {r["run_id"]: r for r in runs}
    for row in quick.itertuples():
        assert row.our_accuracy == by_id[row.our_run_id]["best_val"]["accuracy"]
        assert row.paper_accuracy == PAPER[row.batch_size]
    full = rows[rows.budget == "full data"]
    assert full.preset.tolist() == FULL_PRESETS
    assert len(sweep_trials(runs, "paper-table1-full")) == full.our_run_id.notna().sum()
    for row in full.itertuples():
        if row.status == "not yet run":
            assert math.isnan(row.our_accuracy)
        else:
            done = "finished" if row.epochs_done == row.epochs else f"stopped after epoch {row.epochs_done:.0f} of 5"
            assert row.status == done and row.epochs == FULL_EPOCHS and row.train_faces == 28709
            assert 1 <= row.our_best_epoch <= row.epochs_done


@pytest.mark.slow
def test_a_full_data_trial_shows_running_then_finished(tmp_path, monkeypatch):
    """A real (tiny) trial of a sweep named paper-table1-full: finished, with its best val epoch;
    then, as its trainer records it while training, running. The Compare runs page and the report
    show the same rows."""
    runs = tmp_path / "runs"
    sweep = "paper-table1-full-20261205-120000-ab12"
    fer_train(
        "--preset", "paper-cnn-b128", "--epochs", 2, "--limit", 140, "--name", f"{sweep}-t02", "--sweep", sweep,
        *TINY_STCNN, runs_dir=runs,
    )  # fmt: skip
    store = RunStore(runs)
    [run] = store.list_runs()
    rows = table1_budget_rows(store.list_runs()).set_index(["budget", "preset"])
    cnn = rows.loc[("full data", "paper-cnn-b128")]
    assert cnn.status == "finished" and cnn.model == "cnn" and cnn.our_run == f"{sweep}-t02"
    assert cnn.our_accuracy == run["best_val"]["accuracy"] and cnn.our_best_epoch == run["best_epoch"]
    assert cnn.epochs == 2 and cnn.epochs_done == 2 and cnn.train_faces == 140
    others = rows.loc["full data"].drop(index="paper-cnn-b128")
    assert (others.status == "not yet run").all()

    monkeypatch.setenv("FER_RUNS_DIR", str(runs))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    at = AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    [shown] = [df.value for df in at.dataframe if "budget" in df.value.columns]
    assert shown[shown.preset == "paper-cnn-b128"].status.tolist() == ["finished"]
    assert any("cannot show" in c.value for c in at.caption)

    from dashboard.report_html import paper_tables

    [budgets] = [s for s in paper_tables(store) if s.title == "Table 1 at fixed budgets"]
    status, accuracy = budgets.items  # what each trial was given and got, then its accuracy
    assert accuracy["our run"].tolist().count(f"{sweep}-t02") == 1
    assert status[status.preset == "paper-cnn-b128"].status.tolist() == ["finished"]

    # while training, the trainer keeps run.json's status, progress and heartbeat fresh
    store.update(
        run["run_id"],
        status="running",
        pid=os.getpid(),
        host=socket.gethostname(),
        heartbeat_unix=time.time(),
        progress={"phase": "training", "epoch": 2, "epochs": 2},
    )
    rows = table1_budget_rows(store.list_runs())
    assert rows[rows.preset == "paper-cnn-b128"].status.tolist() == ["running: epoch 2 of 2"]
