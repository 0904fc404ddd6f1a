"""ONNX export (fer-export, fer_core/inference/onnx_export.py) and the ONNX Runtime backend, on real faces and
the real ONNX Runtime: every shipped model's export matches PyTorch on 256 val faces, runs any batch
size, carries its metadata; OnnxModel drops into predict_probs (TTA included); the shipped int8 ONNX
model is as accurate as it says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_core.classes import CLASSES
from fer_core.data.fer2013 import load_dataset
from fer_core.inference.loading import load_named_model
from fer_core.inference.onnx_cache import cache_key, load_onnx_model, onnx_cache_path
from fer_core.inference.onnx_export import (
    ExportError,
    OnnxModel,
    check_faces,
    compare_with_torch,
    export_model,
    read_metadata,
    source_metadata,
)
from fer_core.inference.onnx_int8 import val_accuracy
from fer_core.inference.probabilities import predict_probs
from fer_core.inference.registry import ENSEMBLE, int8_path, model_record, resolve, resolve_model_path, shipped_tta
from fer_core.models import create_model
from fer_core.runs.checkpoint import file_sha256, load_model, save_checkpoint
from tests.conftest import made_once

PROJECT = Path(__file__).resolve().parents[1]
INT8_ONNX = [name for name in ENSEMBLE if int8_path(name).is_file()]


def fer_export(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real fer-export CLI in a subprocess (the module, until the console script is installed)."""
    script = Path(sys.executable).parent / "fer-export"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "fer_core.programs.export"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=PROJECT)


@pytest.fixture(scope="session")
def exported(fer2013) -> tuple[Path, str]:
    """`fer-export --model stcnn,resnet50,vit`: one checked .onnx per shipped model, exported once per run
    (`--model ensemble` exports the members it runs: those of weight above 0); its folder and stdout."""

    def export(out: Path) -> None:
        result = fer_export("--model", ",".join(ENSEMBLE), "--format", "onnx", "--out", out, "--data", fer2013)
        assert result.returncode == 0, result.stdout + result.stderr
        (out / "stdout.txt").write_text(result.stdout)

    out = made_once("exported", export)
    return out, (out / "stdout.txt").read_text()


@pytest.mark.parametrize("name", ENSEMBLE)
def test_export_matches_pytorch_on_256_val_faces(name, exported, fer2013):
    out, stdout = exported
    line = next(row for row in stdout.splitlines() if row.startswith(f"{name}: wrote"))
    diff, same = re.search(r"max prob diff (\S+) .*same argmax (\d+)/256", line).groups()
    assert float(diff) <= 1e-4 and int(same) == 256, line
    result = compare_with_torch(
        load_named_model(name, backend="torch"), OnnxModel(out / f"{name}.onnx"), check_faces(fer2013)
    )
    assert result.faces == 256 and result.max_prob_diff <= 1e-4 and result.argmax_same == 256, str(result)


@pytest.mark.parametrize("name", ENSEMBLE)
def test_dynamic_batch(name, exported, fer2013):
    """Batch 1 and 7 (not the size it was traced with) run and match PyTorch's logits."""
    onnx_model, model = (
        OnnxModel(Path(exported[0]) / f"{name}.onnx", threads=2),
        load_named_model(name, backend="torch"),
    )
    faces = torch.from_numpy(check_faces(fer2013)[:7])
    from fer_core.data.augment import to_model_input

    for batch in (1, 7):
        x = to_model_input(faces[:batch])
        logits = onnx_model(x)
        assert logits.shape == (batch, len(CLASSES)) and logits.dtype == torch.float32
        with torch.inference_mode():
            assert torch.allclose(logits, model(x), atol=1e-3)


@pytest.mark.parametrize("name", ENSEMBLE)
def test_metadata_is_in_the_file(name, exported):
    import onnxruntime as ort

    path = Path(exported[0]) / f"{name}.onnx"
    meta = read_metadata(path)  # onnx
    record = model_record(name)
    assert meta["fer.classes"] == list(CLASSES)
    assert meta["fer.input_shape"] == ["N", 1, 48, 48] and meta["fer.input_dtype"] == "float32"
    assert float(meta["fer.input_mean"]) == 0.508 and float(meta["fer.input_std"]) == 0.255
    assert "already normalised" in meta["fer.input"] and meta["fer.output"].startswith("logits")
    assert meta["fer.tta"] == shipped_tta(name) == record["val"]["tta"]
    assert meta["fer.source_run_id"] == record["source"]["run_id"]
    assert int(meta["fer.source_epoch"]) == record["source"]["epoch"]
    assert meta["fer.weights_sha256"] == record["weights"]["sha256"] == file_sha256(resolve_model_path(name))
    assert meta["fer.precision"] == "fp32"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # onnxruntime
    assert json.loads(session.get_modelmeta().custom_metadata_map["fer.classes"]) == list(CLASSES)
    [inp], [out] = session.get_inputs(), session.get_outputs()
    assert inp.name == "input" and inp.shape[1:] == [1, 48, 48] and isinstance(inp.shape[0], str)
    assert out.name == "logits" and out.shape[1] == len(CLASSES)


def test_bad_model_is_one_clear_error_and_writes_nothing(tmp_path, fer2013):
    out = tmp_path / "out"
    result = fer_export("--model", "no-such-model", "--out", out, "--data", fer2013)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-model" in lines[0] and "error" in lines[0], result.stderr
    assert not out.exists() or not any(out.iterdir())


def tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("stcnn", widths=[8, 16, 32, 32], theta_limit=0.5)
    save_checkpoint(model.eval(), path, run_id="tiny-run", epoch=3)
    return path


@pytest.mark.slow
def test_failed_check_leaves_no_file(tmp_path, fer2013):
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    target = tmp_path / "out" / "tiny.onnx"
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_model(
            load_model(ckpt), target, source_metadata(resolve(str(ckpt))), check=check_faces(fer2013, 16), max_diff=-1.0
        )  # an impossible limit: the real check path fails
    assert list(target.parent.iterdir()) == []  # neither the file nor its temporary


@pytest.mark.slow
def test_load_onnx_model_exports_once_into_the_cache_and_serves_predict_probs(tmp_path, fer2013):
    """A checkpoint's first load exports it to cache/onnx/<digest of its key>.onnx; the next reuses it; OnnxModel
    gives predict_probs the same probabilities as torch, with test-time views too."""
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    model = load_onnx_model(resolve(str(ckpt)))
    cached = onnx_cache_path(cache_key(file_sha256(ckpt)))
    assert model.path == cached and cached.is_file()
    assert model.metadata["fer.source_run_id"] == "tiny-run" and model.metadata["fer.tta"] == "none"
    stamp = cached.stat().st_mtime_ns
    assert load_onnx_model(resolve(str(ckpt)), threads=1).path == cached and cached.stat().st_mtime_ns == stamp
    faces = load_dataset(fer2013).splits["val"].images[:20]
    for tta in ("none", "tencrop"):
        ours, theirs = predict_probs(model, faces, tta=tta)[0], predict_probs(load_model(ckpt), faces, tta=tta)[0]
        assert np.abs(ours - theirs).max() <= 1e-4


def test_int8_onnx_is_refused_where_not_shipped(tmp_path):
    """int8 ONNX models are shipped files (results/models/NAME.int8.onnx), never made on the fly."""
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors")
    with pytest.raises(FileNotFoundError, match="has no ONNX int8 model.*shipped with one: .*stcnn"):
        load_onnx_model(resolve(str(ckpt)), int8=True)


def test_stcnn_ships_an_int8_onnx_model():
    assert "stcnn" in INT8_ONNX


@pytest.mark.slow  # 700 faces
@pytest.mark.parametrize("name", INT8_ONNX)
def test_int8_onnx_accuracy_on_700_val_faces(name, fer2013):
    """The shipped ORT int8 model is int8 (QDQ), from the shipped weights, and reads the fixed 700-face
    val subset (stratified, seed 0, no TTA) as it recorded, within 0.5 point of the fp model's card."""
    import onnx

    model = load_onnx_model(resolve(name), int8=True)
    ops = {node.op_type for node in onnx.load(str(model.path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert model.metadata["fer.precision"] == "int8"
    assert model.metadata["fer.weights_sha256"] == model_record(name)["weights"]["sha256"]
    accuracy = val_accuracy(model, fer2013, limit=700)
    assert abs(accuracy - float(model.metadata["fer.int8_val_subset_accuracy"])) <= 0.005
    assert accuracy >= model_record(name)["val"]["subset"]["accuracy"] - 0.01


@pytest.mark.slow  # four CLI processes; the quick loop switches runtimes in the pages and the library
def test_backend_switch_in_the_clis_and_the_library(fer2013, tmp_path):
    """`--backend onnx` (fer-predict, fer-eval, Recognizer) gives the PyTorch answers."""
    from fer_core import Recognizer
    from tests.conftest import detectable_faces, make_photo

    photo = tmp_path / "face.png"
    make_photo(detectable_faces(fer2013, n=1)).save(photo)
    bin_dir = Path(sys.executable).parent
    answers = {}
    for backend in ("torch", "onnx"):
        predicted = subprocess.run(
            [str(bin_dir / "fer-predict"), str(photo), "--model", "stcnn", "--backend", backend, "--json"],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        evaluated = subprocess.run(
            [
                str(bin_dir / "fer-eval"),
                "--model",
                "vit",
                "--data",
                str(fer2013),
                "--split",
                "val",
                "--limit",
                "140",
                "--tta",
                "none",
                "--backend",
                backend,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        answers[backend] = json.loads(predicted.stdout)["faces"][0], json.loads(evaluated.stdout)
    (face_torch, eval_torch), (face_onnx, eval_onnx) = answers["torch"], answers["onnx"]
    assert face_onnx["label"] == face_torch["label"] == "happy"
    assert abs(face_onnx["confidence"] - face_torch["confidence"]) < 1e-3
    assert eval_onnx["backend"] == "onnx" and abs(eval_onnx["accuracy"] - eval_torch["accuracy"]) <= 1 / 140
    assert isinstance(next(iter(Recognizer("vit", backend="onnx").models.values())), OnnxModel)
    with pytest.raises(ValueError, match="backend must be one of"):
        Recognizer("vit", backend="tpu")
