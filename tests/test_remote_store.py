"""The run store on an object store: the same API over S3 (a real S3 endpoint on localhost),
as trainers on a cluster without a shared disk and the dashboard would use it."""

from __future__ import annotations

import fsspec
import pandas as pd
import pytest

from fer_core.inference.loading import load_named_model
from fer_core.runs.runstore import RunStore
from tests.conftest import PROJECT


def epoch_rows(run_id: str, epoch: int) -> list[dict]:
    return [{"run_id": run_id, "epoch": epoch, "split": s, "accuracy": epoch / 10} for s in ("train", "val")]


def test_create_list_read_tail_update_delete_on_s3(s3_runs):
    writer = RunStore(s3_runs).create({"model": "stcnn", "sweep": "s1"}, name="on s3")
    reader = RunStore(s3_runs)  # a second client, as the dashboard would be
    assert writer.dir == f"{s3_runs}/{writer.run_id}"
    for epoch in (1, 2, 3):
        writer.write_metrics(
            f"epoch_{epoch:04d}",
            epoch_rows(writer.run_id, epoch),
            [{"run_id": writer.run_id, "epoch": epoch, "split": "val", "true": "happy", "pred": "sad", "count": epoch}],
        )
        # a reader polling while the trainer writes sees every new epoch at once (no stale listing)
        assert reader.metrics().epoch.max() == epoch and len(reader.tail(writer.run_id, after_epoch=epoch - 1)) == 2
    assert [r["run_id"] for r in reader.list_runs(sweep="s1")] == [writer.run_id]
    assert list(reader.sweeps()) == ["s1"]
    assert reader.confusion([writer.run_id])["count"].tolist() == [1, 2, 3]

    writer.drop_epochs_after(1)  # what a resume from epoch 1 does
    assert sorted(reader.metrics().epoch.unique()) == [1]
    reader.update(writer.run_id, tags=["cloud"], notes="hello")
    assert writer.update(status="finished")["tags"] == ["cloud"]  # read-modify-write keeps the reader's tag
    assert reader.read_run(writer.run_id)["status"] == "finished"

    fs, base = fsspec.core.url_to_fs(s3_runs, use_listings_cache=False)
    names = [p.rsplit("/", 1)[-1] for p in fs.find(base)]
    assert names and not [n for n in names if n.startswith(".")]  # no temporary objects
    plain = pd.concat(pd.read_parquet(f"s3://{p}") for p in fs.glob(f"{base}/*/metrics/*.parquet"))
    assert len(plain) == 2  # readable by plain pandas too

    with pytest.raises(FileExistsError):
        RunStore(s3_runs).create({"model": "stcnn"}, run_id=writer.run_id)
    reader.delete(writer.run_id)
    assert reader.list_runs() == [] and not fs.exists(f"{base}/{writer.run_id}/run.json")
    with pytest.raises(ValueError, match="invalid run id"):
        reader.read_run("../elsewhere")


def test_checkpoints_are_published_and_fetched_into_the_local_cache(s3_runs, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "trainer"))
    writer = RunStore(s3_runs).create({"model": "stcnn"})
    writer.checkpoint_dir.mkdir(parents=True)
    (writer.checkpoint_dir / "best.safetensors").write_bytes(b"version 1")
    writer.publish_checkpoints("best.safetensors")

    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "dashboard"))
    reader = RunStore(s3_runs)
    assert reader.has_checkpoint(writer.run_id) and not reader.has_checkpoint(writer.run_id, "last")
    local = reader.checkpoint(writer.run_id)
    assert local.is_relative_to(tmp_path / "dashboard") and local.read_bytes() == b"version 1"
    (writer.checkpoint_dir / "best.safetensors").write_bytes(b"version 2, a better epoch")
    writer.publish_checkpoints("best.safetensors")
    assert reader.checkpoint(writer.run_id).read_bytes() == b"version 2, a better epoch"  # refetched when changed


def test_dashboard_reads_runs_from_s3(finished_runs, s3_runs, tmp_path, monkeypatch):
    """FER_RUNS_DIR=s3://... : Compare runs shows the runs, Predict offers their checkpoints."""
    from streamlit.testing.v1 import AppTest

    fs, base = fsspec.core.url_to_fs(s3_runs, use_listings_cache=False)
    fs.put(str(finished_runs) + "/", base, recursive=True)
    monkeypatch.setenv("FER_RUNS_DIR", s3_runs)
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    at = AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "2 runs; showing 2" in at.caption[0].value
    at.switch_page("views/predict.py").run()
    assert not at.exception
    labels = [o for o in at.multiselect(key="predict_models").options if "(stcnn, run)" in o]
    assert len(labels) == 2
    run_id = RunStore(s3_runs).list_runs()[0]["run_id"]
    model = load_named_model(run_id)  # what Predict and Live load for a run: fetched into the cache
    assert model.name == "stcnn" and (tmp_path / "cache").is_dir()
