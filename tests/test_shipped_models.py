"""Every shipped model (results/models/*.safetensors, and `ensemble`, their average) loads,
agrees with its model card on a fixed val subset, and reads a clear happy face as happy; so
does the int8 version of each model shipped with one (`NAME.int8.onnx`, ONNX Runtime)."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_core.classes import CLASSES
from fer_core.data.fer2013 import load_dataset, read_face_image, stratified_indices
from fer_core.evaluation.metrics import classification_metrics
from fer_core.inference.loading import load_models, load_named_model
from fer_core.inference.onnx_export import OnnxModel
from fer_core.inference.probabilities import ensemble_probs
from fer_core.inference.registry import (
    ENSEMBLE,
    SHIPPED_MODELS_DIR,
    int8_names,
    int8_path,
    model_names,
    model_record,
    shipped_names,
    shipped_tta,
)
from fer_core.runs.checkpoint import file_sha256, read_checkpoint_metadata
from fer_core.runs.runstore import RunStore

SHIPPED = shipped_names()
INT8 = int8_names()
CLEAR_HAPPY = "val/happy/PublicTest_10527411.jpg"  # a broad open-mouthed laugh, chosen by eye


def test_one_model_per_architecture_is_shipped_within_60_mb():
    assert set(ENSEMBLE) <= set(SHIPPED)
    assert (SHIPPED_MODELS_DIR / "ensemble.md").is_file() and model_record("ensemble")["members"] == list(ENSEMBLE)
    assert sum((SHIPPED_MODELS_DIR / f"{n}.safetensors").stat().st_size for n in SHIPPED) <= 60 * 2**20


def val_subset(fer2013):
    val = load_dataset(fer2013).splits["val"]
    return val.subset(stratified_indices(val.labels, 700, seed=0))


def val_subset_accuracy(models, fer2013) -> float:
    subset = val_subset(fer2013)
    return classification_metrics(subset.labels, ensemble_probs(models, subset.images))["accuracy"]


@functools.cache
def member_probs(name: str, fer2013: Path):
    """A shipped model's probabilities on the 700-face val subset, as `fer-eval --model NAME`
    loads it; computed once per session (the ensemble's card is checked on its members')."""
    return ensemble_probs(load_models(name), val_subset(fer2013).images)


@pytest.mark.slow  # 700 faces through each model; the quick loop has the clear smile below
@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_shipped_model_matches_its_card(name, fer2013):
    members = model_record(name).get("members") or [name]  # the card's subset figure: all three members' plain mean
    probs = np.mean([member_probs(m, fer2013) for m in members], axis=0)
    accuracy = classification_metrics(val_subset(fer2013).labels, probs)["accuracy"]
    assert abs(accuracy - model_record(name)["val"]["subset"]["accuracy"]) <= 0.005


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_the_cards_tta_is_its_best_val_row(name):
    """`fer-eval --model NAME` uses the record's chosen view, so it must be the val-best one."""
    accuracies = {tta: m["accuracy"] for tta, m in model_record(name)["val"]["metrics"].items()}
    assert list(accuracies) == ["none", "flip", "tencrop"]
    assert shipped_tta(name) == max(accuracies, key=accuracies.get)
    assert shipped_tta(f"{name},{name}") == "none"  # not a shipped name: no card to choose


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_shipped_model_sees_a_clear_smile(name, fer2013):
    probs = ensemble_probs(load_models(name), read_face_image(fer2013 / CLEAR_HAPPY)[None])[0]
    assert CLASSES[probs.argmax()] == "happy"


def test_stcnn_ships_with_an_int8_model():
    assert "stcnn" in INT8


@pytest.mark.slow  # 700 faces
@pytest.mark.parametrize("name", INT8)
def test_int8_model_is_int8_and_as_accurate(name, fer2013):
    """`--int8` really runs the quantized ONNX graph, matches what the record says of it, is
    within a point of the full-precision model, and still sees the smile."""
    models = load_models(name, int8=True)
    assert isinstance(models[0], OnnxModel) and models[0].path == int8_path(name)
    accuracy = val_subset_accuracy(models, fer2013)
    record = model_record(name)
    assert abs(accuracy - record["int8"]["val_subset_accuracy"]) <= 0.005
    assert abs(accuracy - record["val"]["subset"]["accuracy"]) <= 0.01
    assert models[0].metadata["fer.weights_sha256"] == record["weights"]["sha256"]
    probs = ensemble_probs(models, read_face_image(fer2013 / CLEAR_HAPPY)[None])[0]
    assert CLASSES[probs.argmax()] == "happy"


def test_int8_is_refused_where_there_is_no_int8_model():
    with pytest.raises(FileNotFoundError, match="no int8 model.*shipped with one: stcnn"):
        load_named_model("resnet50", int8=True)
    with pytest.raises(FileNotFoundError, match="none of resnet50 has an int8 model"):
        load_models("resnet50", int8=True)
    with pytest.raises(ValueError, match="int8 runs on ONNX Runtime"):
        load_named_model("stcnn", int8=True, backend="torch")


@pytest.mark.slow  # exports the members without an int8 model to ONNX (fp32)
def test_int8_ensemble_is_int8_where_shipped_and_full_precision_elsewhere():
    mixed = load_models("ensemble", int8=True, backend="onnx")
    assert [model.precision == "int8" for model in mixed] == [name in INT8 for name in model_names("ensemble")]


def test_fer_eval_int8(fer2013):
    fer_eval = Path(sys.executable).parent / "fer-eval"
    result = subprocess.run(
        [
            str(fer_eval),
            "--model",
            "stcnn",
            "--int8",
            "--data",
            str(fer2013),
            "--split",
            "val",
            "--limit",
            "140",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = json.loads(result.stdout)
    assert out["int8"] is True and out["n"] == 140 and out["accuracy"] > 0.5
    assert out["tta"] == shipped_tta("stcnn")  # no --tta: the card's choice


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_run_and_its_restarts_are_committed(name, committed_runs):
    """The dashboard shows how a shipped model was trained: its run, every run it was
    warm-restarted from (`init_from`) and its teachers' runs (`distill_from`) are in
    results/runs, and the card's training time is the sum of the chain's epoch times."""
    store = RunStore(committed_runs)
    run_id = read_checkpoint_metadata(SHIPPED_MODELS_DIR / f"{name}.safetensors")["info"]["run_id"]
    chain = [run_id]
    while source := store.read_run(chain[-1]).get("init_from"):
        assert store.exists(source["run_id"]), f"{name}: {chain[-1]} started from a run not in results/runs"
        chain.append(source["run_id"])
    for teacher in store.read_run(run_id).get("distill_from") or []:  # --distill-from: the teachers' runs too
        assert store.exists(teacher["run_id"]), f"{name}: distilled from a run not in results/runs"
    epochs = store.metrics(chain).query("tta == 'none'")
    assert set(epochs.run_id) == set(chain)
    hours = epochs.epoch_seconds.sum() / 3600
    source = model_record(name)["source"]
    assert [source["run_id"], *(s["run_id"] for s in source["started_from"])] == chain
    assert abs(source["hours_in_all"] - hours) < 0.051, (chain, hours)


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_card_is_generated_from_the_record(name):
    """Code reads the JSON record only; the Markdown card is rendered from it and must not drift."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_model", Path(__file__).parents[1] / "scripts" / "ship_model.py")
    ship_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_model)
    record = model_record(name)
    assert (SHIPPED_MODELS_DIR / f"{name}.md").read_text() == ship_model.render_card(record)
    if name != "ensemble":
        assert record["weights"]["sha256"] == file_sha256(SHIPPED_MODELS_DIR / record["weights"]["file"])
