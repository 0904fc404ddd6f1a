"""Per-face predictions (runs, fer-eval --save) and calibration: ECE, temperature, ensemble fitting."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.classes import CLASSES
from fer_core.data.fer2013 import load_dataset
from fer_core.inference.calibration import (
    combine,
    cross_validate_ensemble,
    expected_calibration_error,
    fit_ensemble,
    fit_temperature,
    reliability,
    with_temperature,
)
from fer_core.runs.predictions import PROB_COLUMNS, probabilities
from fer_core.runs.runstore import RunStore
from tests.conftest import SAMPLE_CSV

BIN = Path(sys.executable).parent


def softmax(z):
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def drawn_labels(probs, rng):
    """Labels drawn from `probs`: a perfectly calibrated model by construction."""
    return np.array([rng.choice(7, p=p) for p in probs])


def test_calibrated_probabilities_have_small_ece_and_overconfident_ones_large():
    rng = np.random.default_rng(0)
    probs = softmax(rng.normal(scale=2.0, size=(4000, 7)))
    labels = drawn_labels(probs, rng)
    assert expected_calibration_error(labels, probs) < 0.03
    overconfident = with_temperature(probs, 0.4)
    assert expected_calibration_error(labels, overconfident) > 0.10
    table = reliability(labels, overconfident)
    assert table.faces.sum() == 4000 and (table.confidence > table.accuracy).mean() > 0.8


def test_fitted_temperature_undoes_a_known_one_and_keeps_every_prediction():
    rng = np.random.default_rng(1)
    truth = softmax(rng.normal(scale=2.0, size=(4000, 7)))
    labels = drawn_labels(truth, rng)
    sharpened = with_temperature(truth, 0.5)  # a model twice as sure as it should be
    t = fit_temperature(labels, sharpened)
    assert 1.7 < t < 2.3
    fixed = with_temperature(sharpened, t)
    assert (fixed.argmax(1) == sharpened.argmax(1)).all()
    assert expected_calibration_error(labels, fixed) < expected_calibration_error(labels, sharpened) / 3


def test_ensemble_silences_a_member_that_knows_nothing_and_cv_is_honest():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 3000)
    good = softmax(rng.normal(size=(3000, 7)) + 3.0 * np.eye(7)[labels])
    noise = softmax(rng.normal(scale=3.0, size=(3000, 7)))  # knows nothing
    fitted = fit_ensemble(labels, [good, noise])
    assert fitted["temperatures"][1] > 5  # flattened towards uniform: whatever its weight, it cannot sway a vote
    in_sample = (combine([good, noise], **fitted).argmax(1) == labels).mean()
    assert in_sample >= (good.argmax(1) == labels).mean()
    out_of_fold = (cross_validate_ensemble(labels, [good, noise]).argmax(1) == labels).mean()
    assert abs(out_of_fold - (good.argmax(1) == labels).mean()) < 0.02
    assert out_of_fold <= in_sample + 1e-9  # never better than scoring on the faces it was fitted on


def test_training_keeps_each_val_face_of_its_best_checkpoint(finished_runs):
    store = RunStore(finished_runs)
    run = store.list_runs()[0]
    faces = store.predictions([run["run_id"]])
    val = load_dataset(SAMPLE_CSV).splits["val"]
    assert sorted(faces.tta.unique()) == ["flip", "none", "tencrop"]
    rows = faces[(faces.split == "val") & (faces.tta == "none")].sort_values("index")
    assert list(rows["index"]) == list(range(len(val)))
    assert (rows.label.to_numpy() == val.labels).all()
    assert np.allclose(probabilities(rows).sum(1), 1, atol=1e-6)
    accuracy = (probabilities(rows).argmax(1) == rows.label.to_numpy()).mean()
    assert accuracy == pytest.approx(run["final"]["val_accuracy"], abs=2 / len(val))  # float16 storage
    size = sum(p.stat().st_size for p in (finished_runs / run["run_id"] / "predictions").iterdir())
    assert size < 60_000 * 3  # small enough to commit with a reference run


def test_fer_eval_save_writes_a_subset_with_its_face_indices(runs_copy):
    run_id = RunStore(runs_copy).list_runs()[0]["run_id"]
    command = [BIN / "fer-eval", "--model", run_id, "--runs-dir", runs_copy, "--data", SAMPLE_CSV]
    out = subprocess.run(
        [*map(str, command), "--split", "train", "--limit", "70", "--save", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    rows = RunStore(runs_copy).predictions([run_id]).query("split == 'train'")
    train = load_dataset(SAMPLE_CSV).splits["train"]
    assert len(rows) == 70 == result["n"] and rows["index"].is_unique
    assert (train.labels[rows["index"].to_numpy()] == rows.label.to_numpy()).all()
    assert list(rows.columns[-len(CLASSES) - 1 : -1]) == PROB_COLUMNS


def test_fer_eval_save_refuses_a_bare_checkpoint_before_any_work(finished_runs):
    run_id = RunStore(finished_runs).list_runs()[0]["run_id"]
    checkpoint = finished_runs / run_id / "checkpoints" / "best.safetensors"
    out = subprocess.run(
        [str(BIN / "fer-eval"), "--model", str(checkpoint), "--data", str(SAMPLE_CSV), "--save"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "neither" in out.stderr and "Traceback" not in out.stderr


# -- the shipped models' predictions, temperatures and the default model -------------------------

SHIPPED = ["stcnn", "resnet50", "vit"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_predictions_agree_with_the_card_and_its_temperature(name):
    from fer_core.inference.registry import model_record
    from fer_core.runs.predictions import shipped_predictions

    record, rows = model_record(name), shipped_predictions([name])
    for view, metrics in record["val"]["metrics"].items():
        faces = rows[rows.tta == view].sort_values("index")
        assert len(faces) == record["val"]["faces"] and list(faces["index"]) == list(range(len(faces)))
        accuracy = (probabilities(faces).argmax(1) == faces.label.to_numpy()).mean()
        assert accuracy == pytest.approx(metrics["accuracy"], abs=0.0006)  # float16 storage may flip a tie
    for view, calibration in record["calibration"]["views"].items():  # each view's temperature and its choice
        faces = rows[rows.tta == view]
        labels, probs = faces.label.to_numpy(np.int64), probabilities(faces)
        assert fit_temperature(labels, probs) == pytest.approx(calibration["temperature"], abs=2e-3)
        assert expected_calibration_error(labels, probs) == pytest.approx(calibration["ece"], abs=1e-4)
        c = calibration
        assert c["applied"] == (c["ece_out_of_fold"] < c["ece"] and c["nll_out_of_fold"] < c["nll"])


def test_the_default_model_is_the_ensemble_cards_choice():
    """One source (the ensemble's record; its rule: tests/test_default_model.py) for every entry point."""
    from fer_core.faces.recognizer import Recognizer
    from fer_core.inference.registry import default_model, model_record
    from fer_core.programs.predict import parse_args

    expected = model_record("ensemble")["default_choice"]["default"]
    assert default_model() == model_record("ensemble")["default_model"] == expected
    assert parse_args(["x.jpg"]).model == expected
    assert Recognizer().model == expected


def test_the_ensemble_recognizer_applies_the_fitted_blend(fer2013):
    from fer_core.faces.predict import Face
    from fer_core.faces.recognizer import Recognizer
    from fer_core.inference.loading import load_named_model
    from fer_core.inference.registry import model_record
    from tests.conftest import make_photo

    photo = make_photo([fer2013 / "val" / "happy" / sorted(p.name for p in (fer2013 / "val" / "happy").iterdir())[0]])
    recognizer = Recognizer("ensemble", whole_image=True)
    record = model_record("ensemble")
    running = [n for n in SHIPPED if record["weights"][n] > 0]  # a member at weight 0 is not run
    assert recognizer.views == {n: record["views"][n] for n in running}
    assert recognizer.blend.weights == {n: record["weights"][n] for n in running}
    [face] = recognizer.faces([photo])[0]
    raw = {
        name: predict_one_face(load_named_model(name, backend="torch"), face.crop, record["views"][name])
        for name in SHIPPED
    }
    assert set(face.probabilities) == set(running)
    for name in running:  # the members' runtime (auto) is within float error of PyTorch
        assert np.abs(face.probabilities[name] - raw[name]).max() < 1e-3
    expected = combine(
        [raw[n] for n in SHIPPED],
        [record["weights"][n] for n in SHIPPED],
        [record["temperatures"][n] for n in SHIPPED],
        record["temperature"],
    )[0]
    assert np.abs(face.combined() - expected).max() < 2e-3
    plain = Face(face.box, face.crop, probabilities=face.probabilities)  # no blend: the mean
    assert np.abs(plain.combined() - np.mean(list(face.probabilities.values()), axis=0)).max() < 1e-6
    uncalibrated = Recognizer("ensemble", whole_image=True, calibrated=False)
    assert uncalibrated.blend is None


def predict_one_face(model, crop, view):
    from fer_core.inference.probabilities import predict_probs

    return predict_probs(model, crop[None], tta=view)[0]


def test_auto_backend_is_onnx_for_prepared_shipped_models_and_torch_for_runs(finished_runs):
    """auto runs ONNX Runtime for a shipped model once `fer-export --cache` has exported it (no
    answer waits for an export: before that, PyTorch), PyTorch for runs."""
    from fer_core.inference.loading import load_named_model, resolve_backend
    from fer_core.inference.onnx_cache import fill_cache
    from fer_core.inference.onnx_export import OnnxModel

    run_id = RunStore(finished_runs).list_runs()[0]["run_id"]
    fill_cache(["stcnn", "vit"])
    assert resolve_backend("stcnn") == "onnx" and isinstance(load_named_model("vit"), OnnxModel)
    assert resolve_backend("stcnn", backend="torch") == "torch" and resolve_backend("stcnn", int8=True) == "onnx"
    assert resolve_backend(run_id) == "torch"
    assert not isinstance(load_named_model(run_id, runs_dir=finished_runs), OnnxModel)
    assert resolve_backend("stcnn", device="cuda") == "torch"


@pytest.mark.slow  # exports stcnn into the cache
def test_batched_work_runs_where_batches_are_faster():
    """Video frames go through batch_models(): PyTorch bf16 where the CPU has fast bf16 (faster
    per face at batch 64), else the same ONNX Runtime sessions; loaded once, shared by copies."""
    from fer_core.device import cpu_has_fast_bf16
    from fer_core.faces.recognizer import Recognizer
    from fer_core.inference.onnx_cache import fill_cache
    from fer_core.inference.onnx_export import OnnxModel

    fill_cache(["stcnn"])
    recognizer = Recognizer("stcnn")
    assert isinstance(recognizer.models["stcnn"], OnnxModel)
    batch = recognizer.batch_models()
    assert isinstance(batch["stcnn"], OnnxModel) != cpu_has_fast_bf16()
    assert recognizer.with_options(detector="haar").batch_models() is batch
