"""The first answer waits for nothing: with an empty cache `auto` answers on PyTorch and exports
nothing; `fer-export --cache` (what `make run` runs) exports the shipped models once, keyed by
everything that shaped them, so a changed key is a miss and never a stale file; after it the
same answer runs on ONNX Runtime. In Chromium, the first Predict answer after that set-up step
(an empty FER_CACHE_DIR before it) exports nothing either. Timings: benchmarks/first_answer.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fer_core.inference.onnx_export
from fer_core.inference.onnx_cache import cache_key, cached_export, load_onnx_model, onnx_cache_path
from fer_core.inference.onnx_export import OnnxModel
from fer_core.inference.registry import resolve, shipped_names
from fer_core.models import create_model
from fer_core.runs.checkpoint import file_sha256, save_checkpoint
from tests.conftest import PROJECT, detectable_faces, made_once, make_photo

BIN = Path(sys.executable).parent


@pytest.fixture
def empty_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("FER_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def prepared_cache() -> tuple[Path, str]:
    """The set-up step of `make run`, `fer-export --cache`, run once into an empty cache: the
    cache and what it printed (read only: copy it to use it)."""

    def prepare(folder: Path) -> None:
        env = dict(os.environ, FER_CACHE_DIR=str(folder / "cache"))
        out = subprocess.run([str(BIN / "fer-export"), "--cache"], capture_output=True, text=True, env=env, timeout=900)
        assert out.returncode == 0, out.stderr
        (folder / "stdout.txt").write_text(out.stdout)

    folder = made_once("prepared-cache", prepare)
    return folder / "cache", (folder / "stdout.txt").read_text()


def entries(cache: Path) -> dict[str, int]:
    """The cache's ONNX files and their modification times."""
    folder = cache / "onnx"
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.onnx")} if folder.is_dir() else {}


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(create_model("stcnn", widths=[8, 16, 32, 32]).eval(), path, run_id="tiny", epoch=1)
    return path


def test_every_part_of_the_key_names_another_entry():
    key = cache_key("a" * 64)
    assert set(key) == {"weights_sha256", "export_code", "torch", "onnx", "onnxruntime", "opset", "quantization"}
    assert key["torch"] == torch.__version__ and key["quantization"] == "none"
    paths = {onnx_cache_path(key)}
    for part in key:
        paths.add(onnx_cache_path({**key, part: key[part] + "-changed"}))
    paths.add(onnx_cache_path(cache_key("a" * 64, quantization={"format": "QDQ", "weights": "int8"})))
    assert len(paths) == len(key) + 2


@pytest.mark.slow  # exports three times
def test_a_changed_key_is_a_miss_and_exports_again(empty_cache, tmp_path, monkeypatch):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    first = load_onnx_model(resolve(str(checkpoint)))
    assert json.loads(first.metadata["fer.cache_key"]) == cache_key(file_sha256(checkpoint))
    assert cached_export(resolve(str(checkpoint))) == first.path and len(entries(empty_cache)) == 1

    monkeypatch.setattr(
        fer_core.inference.onnx_export, "FORMAT_VERSION", "changed-export-code"
    )  # as a new release would
    assert cached_export(resolve(str(checkpoint))) is None  # a miss: auto answers on PyTorch meanwhile
    second = load_onnx_model(resolve(str(checkpoint)))
    assert second.path != first.path and len(entries(empty_cache)) == 2
    assert json.loads(second.metadata["fer.cache_key"])["export_code"] == "changed-export-code"

    # a file at the right name whose recorded key differs (copied, or older) is exported again, not used
    shutil.copy(first.path, second.path)
    third = load_onnx_model(resolve(str(checkpoint)))
    assert json.loads(third.metadata["fer.cache_key"])["export_code"] == "changed-export-code"


@pytest.mark.slow  # exports the shipped models (prepared_cache)
def test_auto_answers_on_pytorch_until_the_cache_is_prepared(empty_cache, prepared_cache, fer2013):
    from fer_core.faces.recognizer import Recognizer

    photo = make_photo(detectable_faces(fer2013, n=1))
    cold = Recognizer("stcnn")
    assert not isinstance(cold.models["stcnn"], OnnxModel)
    [face] = cold(photo)
    assert entries(empty_cache) == {}  # the answer exported nothing

    prepared, printed = prepared_cache  # `fer-export --cache` into an empty cache, as `make run` does
    assert len(entries(prepared)) == len(shipped_names()) and printed.count("exported to") == len(shipped_names())
    shutil.copytree(prepared, empty_cache, dirs_exist_ok=True)
    again = subprocess.run([str(BIN / "fer-export"), "--cache"], capture_output=True, text=True, timeout=300)
    assert again.stdout.count("already in") == len(shipped_names())

    warm = Recognizer("stcnn")
    assert isinstance(warm.models["stcnn"], OnnxModel)
    [same] = warm(photo)
    assert same.label == face.label and abs(same.confidence - face.confidence) < 1e-3


def test_fer_predict_with_an_empty_cache_exports_nothing(empty_cache, fer2013, tmp_path):
    photo = tmp_path / "face.jpg"
    make_photo(detectable_faces(fer2013, n=1)).save(photo)
    out = subprocess.run([str(BIN / "fer-predict"), str(photo), "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["faces"]) == 1 and entries(empty_cache) == {}


def test_make_run_prepares_the_cache_before_the_dashboard():
    """The README's set-up command: `make run` runs `fer-export --cache` before `streamlit run`."""
    plan = subprocess.run(["make", "-n", "run"], capture_output=True, text=True, cwd=PROJECT).stdout
    lines = [line for line in plan.splitlines() if "fer-export" in line or "streamlit run" in line]
    assert lines and "fer-export --cache" in lines[0] and "streamlit run" in lines[-1]


@pytest.mark.slow
def test_the_first_predict_answer_in_chromium_exports_nothing(empty_cache, prepared_cache, browser, fer2013, tmp_path):
    """After the set-up step into an empty cache, the dashboard's first answer to an upload runs
    the default model on ONNX Runtime from that cache and exports nothing more."""
    from tests.conftest import browser_page, open_in_browser, streamlit_server

    shutil.copytree(prepared_cache[0], empty_cache, dirs_exist_ok=True)  # the set-up step's cache
    prepared = entries(empty_cache)
    photo = tmp_path / "face.jpg"
    make_photo(detectable_faces(fer2013, n=1)).save(photo)
    with streamlit_server(tmp_path) as url, browser_page(browser) as page:
        open_in_browser(page, f"{url}/predict")
        page.get_by_text("Choose at least one model").wait_for()
        page.locator("input[type=file]").set_input_files(str(photo))
        page.get_by_text("Face 1:").wait_for()
        caption = page.get_by_text("Runs stcnn").inner_text()
    assert caption.startswith("Runs stcnn tencrop;") and "resnet50" not in caption
    assert entries(empty_cache) == prepared  # nothing exported, nothing rewritten
