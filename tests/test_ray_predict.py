"""`fer-predict --ray`: the same rows as the single-process path, on a real local Ray instance
with Ray Data actors, from a folder and from an object-store prefix (moto's S3 on localhost)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import detectable_faces, make_photo, write_video

pytestmark = pytest.mark.slow
FER_PREDICT = Path(sys.executable).parent / "fer-predict"


def fer_predict(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(FER_PREDICT), *map(str, args), "--model", "stcnn", "--tta", "none", "--no-progress"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def folder(fer2013, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray") / "in"
    (root / "sub").mkdir(parents=True)
    faces = detectable_faces(fer2013, n=2)
    for i in range(6):
        make_photo([faces[i % 2]]).save(root / ("sub" if i % 3 == 0 else ".") / f"face{i}.jpg")
    write_video(root / "clip.avi", faces, seconds=2, fps=5)
    (root / "notes.txt").write_text("not a photo")
    (root / "broken.jpg").write_bytes(b"not a photo either")
    return root


def test_ray_gives_the_single_process_rows(folder, tmp_path):
    single = fer_predict(folder, "--out", tmp_path / "single.parquet", cwd=tmp_path)
    on_ray = fer_predict(folder, "--ray", "local", "--out", tmp_path / "ray.parquet", cwd=tmp_path)
    for run in (single, on_ray):
        assert run.returncode == 1 and "broken.jpg: not a readable image" in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
    a, b = (pd.read_parquet(tmp_path / f"{name}.parquet") for name in ("single", "ray"))
    assert len(a) == len(b) >= 6 + 8 and set(a.path) == set(b.path)
    key = ["path", "frame", "track"]
    a, b = a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True)
    assert (a[key + ["label"]] == b[key + ["label"]]).all().all()
    assert (a.happy - b.happy).abs().max() < 0.01  # ONNX Runtime fp32 on the actors; PyTorch (bf16 for video) here


def test_ray_needs_a_parquet_out(folder, tmp_path):
    refused = fer_predict(folder, "--ray", "local", cwd=tmp_path)
    assert refused.returncode == 2 and "--out FILE.parquet" in refused.stderr


def test_ray_reads_an_object_store_prefix(s3_server, folder, tmp_path):
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for path in (folder / "sub").iterdir():
        fs.put_file(str(path), f"fer-runs/faces/{path.name}")
    fs.put_file(str(folder / "clip.avi"), "fer-runs/faces/clip.avi")
    run = fer_predict("s3://fer-runs/faces/", "--ray", "local", "--out", tmp_path / "s3.parquet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rows = pd.read_parquet(tmp_path / "s3.parquet")
    assert set(rows.path) == {f"s3://fer-runs/faces/{p.name}" for p in (folder / "sub").iterdir()} | {
        "s3://fer-runs/faces/clip.avi"
    }
    assert (rows.label == "happy").mean() > 0.5
