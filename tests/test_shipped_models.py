"""Every shipped model (results/models/*.safetensors, and `ensemble`, their average) loads,
agrees with its model card on a fixed val subset, and reads a clear happy face as happy; so
does the int8 version of each model shipped with an int8 calibration (`NAME.int8.json`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fer_core.checkpoint import read_checkpoint_metadata
from fer_core.classes import CLASSES
from fer_core.data import load_dataset, read_face_image, stratified_indices
from fer_core.inference import (ENSEMBLE, SHIPPED_MODELS_DIR, ensemble_probs, int8_names, int8_path, load_models,
                                load_named_model, shipped_names, shipped_tta)
from fer_core.metrics import classification_metrics
from fer_core.runstore import RunStore

SHIPPED = shipped_names()
INT8 = int8_names()
CLEAR_HAPPY = "val/happy/PublicTest_10527411.jpg"  # a broad open-mouthed laugh, chosen by eye


def test_one_model_per_architecture_is_shipped_within_60_mb():
    assert set(ENSEMBLE) <= set(SHIPPED)
    assert (SHIPPED_MODELS_DIR / "ensemble.md").is_file()
    assert sum((SHIPPED_MODELS_DIR / f"{n}.safetensors").stat().st_size for n in SHIPPED) <= 60 * 2**20


def card_value(name: str, key: str) -> float:
    card = (SHIPPED_MODELS_DIR / f"{name}.md").read_text()
    return float(re.search(rf"^{key}: ([0-9.]+)", card, re.M).group(1))


def val_subset_accuracy(models, fer2013) -> float:
    val = load_dataset(fer2013).splits["val"]
    subset = val.subset(stratified_indices(val.labels, 700, seed=0))
    return classification_metrics(subset.labels, ensemble_probs(models, subset.images))["accuracy"]


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_shipped_model_matches_its_card(name, fer2013):
    accuracy = val_subset_accuracy(load_models(name), fer2013)  # what `fer-eval --model NAME` loads
    assert abs(accuracy - card_value(name, "val_subset_accuracy")) <= 0.005


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_the_cards_tta_is_its_best_val_row(name):
    """`fer-eval --model NAME` uses the card's `tta:` line, so it must be the val-best view."""
    rows = re.findall(r"^\| (none|flip|tencrop) \| ([0-9.]+) \|", (SHIPPED_MODELS_DIR / f"{name}.md").read_text(), re.M)
    accuracies = {tta: float(accuracy) for tta, accuracy in rows}
    assert list(accuracies) == ["none", "flip", "tencrop"]
    assert shipped_tta(name) == max(accuracies, key=accuracies.get)
    assert shipped_tta(f"{name},{name}") == "none"  # not a shipped name: no card to choose


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_shipped_model_sees_a_clear_smile(name, fer2013):
    probs = ensemble_probs(load_models(name), read_face_image(fer2013 / CLEAR_HAPPY)[None])[0]
    assert CLASSES[probs.argmax()] == "happy"


def test_stcnn_ships_with_an_int8_calibration():
    assert "stcnn" in INT8


@pytest.mark.parametrize("name", INT8)
def test_int8_model_is_int8_and_as_accurate(name, fer2013):
    """`--int8` really runs int8 convolutions, matches what its calibration file recorded, is
    within a point of the full-precision model on the card, and still sees the smile."""
    models = load_models(name, int8=True)
    assert any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in models[0].modules())
    accuracy = val_subset_accuracy(models, fer2013)
    assert abs(accuracy - json.loads(int8_path(name).read_text())["val_subset_accuracy"]) <= 0.005
    assert abs(accuracy - card_value(name, "val_subset_accuracy")) <= 0.01
    probs = ensemble_probs(models, read_face_image(fer2013 / CLEAR_HAPPY)[None])[0]
    assert CLASSES[probs.argmax()] == "happy"


def test_int8_is_refused_where_there_is_no_calibration():
    with pytest.raises(FileNotFoundError, match="no int8 calibration.*stcnn"):
        load_named_model("resnet50", int8=True)
    with pytest.raises(FileNotFoundError, match="none of resnet50, vit has an int8 calibration"):
        load_models("resnet50,vit", int8=True)
    mixed = load_models("ensemble", int8=True)  # int8 where calibrated, full precision elsewhere
    assert [any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in model.modules()) for model in mixed] == \
        [name in INT8 for name in ENSEMBLE]


def test_fer_eval_int8(fer2013):
    fer_eval = Path(sys.executable).parent / "fer-eval"
    result = subprocess.run([str(fer_eval), "--model", "stcnn", "--int8", "--data", str(fer2013), "--split", "val",
                             "--limit", "140", "--json"], capture_output=True, text=True, timeout=300, check=True)
    out = json.loads(result.stdout)
    assert out["int8"] is True and out["n"] == 140 and out["accuracy"] > 0.5
    assert out["tta"] == shipped_tta("stcnn")  # no --tta: the card's choice


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_run_and_its_restarts_are_committed(name):
    """The dashboard shows how a shipped model was trained: its run, every run it was
    warm-restarted from (`init_from`) and its teachers' runs (`distill_from`) are in
    results/runs, and the card's training time is the sum of the chain's epoch times."""
    store = RunStore()
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
    card = (SHIPPED_MODELS_DIR / f"{name}.md").read_text()
    stated = re.search(r"([0-9.]+) h of training in all" if len(chain) > 1 else r"([0-9.]+) h \(sum of epoch", card)
    assert stated and abs(float(stated.group(1)) - hours) < 0.051, (chain, hours)
