"""The run store API: create, list, read, update, delete, stale runs and unsafe ids."""

from __future__ import annotations

import os
import threading
import time

import pandas as pd
import pytest

from fer_core.runs.runstore import RunStore
from fer_core.runs.status import STALE_SECONDS
from tests.conftest import wait_for


def test_create_list_read_update_delete(tmp_path):
    store = RunStore(tmp_path)
    writer = store.create({"model": "stcnn", "preset": "stcnn"}, name="first try")
    assert "first-try" in writer.run_id
    writer.write_metrics(
        "epoch_0001",
        [{"run_id": writer.run_id, "epoch": 1, "split": "val", "accuracy": 0.5}],
        [{"run_id": writer.run_id, "epoch": 1, "split": "val", "true": "happy", "pred": "sad", "count": 3}],
    )
    assert [r["run_id"] for r in store.list_runs()] == [writer.run_id]
    assert store.metrics().accuracy.tolist() == [0.5]
    assert store.confusion([writer.run_id])["count"].tolist() == [3]
    assert not list(writer.dir.rglob(".*"))  # no temporary file left behind
    store.update(writer.run_id, tags=["baseline"], notes="hello")
    assert store.read_run(writer.run_id)["tags"] == ["baseline"]
    assert len(store.tail(writer.run_id, after_epoch=1)) == 0
    store.delete(writer.run_id)
    assert store.list_runs() == [] and tmp_path.exists()


def test_parquet_readable_by_plain_pandas_glob(tmp_path):
    store = RunStore(tmp_path)
    for _ in range(2):
        w = store.create({"model": "vit"})
        for epoch in (1, 2):
            w.write_metrics(f"epoch_{epoch:04d}", [{"run_id": w.run_id, "epoch": epoch, "split": "train"}], [])
    frame = pd.concat(pd.read_parquet(f) for f in tmp_path.glob("*/metrics/*.parquet"))
    assert len(frame) == 4 and frame.groupby("run_id").size().tolist() == [2, 2]


def test_stale_or_dead_trainer_reads_as_failed(tmp_path):
    store = RunStore(tmp_path)
    w = store.create({"model": "stcnn"})
    w.update(status="running", pid=os.getpid(), heartbeat_unix=time.time())
    assert store.read_run(w.run_id)["status"] == "running"
    w.update(heartbeat_unix=time.time() - STALE_SECONDS - 1)
    assert store.read_run(w.run_id)["status"] == "failed"
    w.update(heartbeat_unix=time.time(), pid=2**22 + 12345)  # no such process
    info = store.read_run(w.run_id)
    assert info["status"] == "failed" and "heartbeat" in info["error"]


def test_keep_alive_heartbeats_while_the_trainer_is_busy_elsewhere(tmp_path):
    """A trainer in its final ten-crop evaluation writes no batch progress for minutes; the
    keep-alive thread keeps it reading as running (seen: a live trainer shown as failed)."""
    store = RunStore(tmp_path)
    w = store.create({"model": "stcnn"})
    w.update(status="running", pid=os.getpid(), heartbeat_unix=time.time() - STALE_SECONDS - 1)
    assert store.read_run(w.run_id)["status"] == "failed"
    beats = {thread.ident for thread in threading.enumerate()}
    w.keep_alive(every=0.05)
    [beating] = [thread for thread in threading.enumerate() if thread.ident not in beats]
    wait_for(lambda: store.read_run(w.run_id)["status"] == "running", 60, "a heartbeat")
    last = store.read_run(w.run_id)["heartbeat_unix"]
    wait_for(lambda: store.read_run(w.run_id)["heartbeat_unix"] > last, 60, "another heartbeat")
    w.stop_keep_alive()
    beating.join(timeout=30)
    assert not beating.is_alive()  # stopped: no beat after this


@pytest.mark.parametrize("bad", ["../x", "..", "/etc", "a/b", "a\0b", "", ".hidden", "x" * 200, "a..b"])
def test_run_ids_cannot_escape(tmp_path, bad):
    store = RunStore(tmp_path / "runs")
    with pytest.raises(ValueError):
        store.run_dir(bad)
    with pytest.raises(ValueError):
        store.delete(bad)


def test_symlinked_run_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "run.json").write_text("{}")
    store = RunStore(tmp_path / "runs")
    store.root.mkdir()
    (store.root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        store.delete("link")
    assert (outside / "run.json").exists() and store.list_runs() == []


def test_delete_removes_only_the_runs_own_folder(tmp_path):
    store = RunStore(tmp_path / "runs")
    keep, gone = store.create({"model": "stcnn"}, name="keep"), store.create({"model": "stcnn"}, name="gone")
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    (gone.dir / "link-to-outside").symlink_to(outside)  # a link planted inside the run folder
    store.delete(gone.run_id)
    assert (outside / "data.txt").read_text() == "keep me"
    assert [r["run_id"] for r in store.list_runs()] == [keep.run_id] and keep.dir.exists()
    for bad in ("../precious", str(outside), ".", ""):
        with pytest.raises(ValueError):
            store.delete(bad)
    assert outside.exists() and keep.dir.exists()
