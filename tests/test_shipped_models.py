"""Every shipped model (results/models/*.safetensors, and `ensemble`, their average) loads,
agrees with its model card on a fixed val subset, and reads a clear happy face as happy."""

from __future__ import annotations

import re

import pytest

from fer_core.checkpoint import read_checkpoint_metadata
from fer_core.classes import CLASSES
from fer_core.data import load_dataset, read_face_image, stratified_indices
from fer_core.inference import ENSEMBLE, SHIPPED_MODELS_DIR, ensemble_probs, load_models, shipped_names
from fer_core.metrics import classification_metrics
from fer_core.runstore import RunStore

SHIPPED = shipped_names()
CLEAR_HAPPY = "val/happy/PublicTest_10527411.jpg"  # a broad open-mouthed laugh, chosen by eye


def test_one_model_per_architecture_is_shipped_within_60_mb():
    assert set(ENSEMBLE) <= set(SHIPPED)
    assert (SHIPPED_MODELS_DIR / "ensemble.md").is_file()
    assert sum((SHIPPED_MODELS_DIR / f"{n}.safetensors").stat().st_size for n in SHIPPED) <= 60 * 2**20


def card_value(name: str, key: str) -> float:
    card = (SHIPPED_MODELS_DIR / f"{name}.md").read_text()
    return float(re.search(rf"^{key}: ([0-9.]+)", card, re.M).group(1))


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_shipped_model_matches_its_card(name, fer2013):
    models = load_models(name)  # what `fer-eval --model NAME` loads
    val = load_dataset(fer2013).splits["val"]
    subset = val.subset(stratified_indices(val.labels, 700, seed=0))
    accuracy = classification_metrics(subset.labels, ensemble_probs(models, subset.images))["accuracy"]
    assert abs(accuracy - card_value(name, "val_subset_accuracy")) <= 0.005


@pytest.mark.parametrize("name", [*SHIPPED, "ensemble"])
def test_shipped_model_sees_a_clear_smile(name, fer2013):
    probs = ensemble_probs(load_models(name), read_face_image(fer2013 / CLEAR_HAPPY)[None])[0]
    assert CLASSES[probs.argmax()] == "happy"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_run_and_its_restarts_are_committed(name):
    """The dashboard shows how a shipped model was trained: its run and every run it was
    warm-restarted from (`init_from`) are in results/runs, and the card's training time is
    the sum of all their epoch times."""
    store = RunStore()
    run_id = read_checkpoint_metadata(SHIPPED_MODELS_DIR / f"{name}.safetensors")["info"]["run_id"]
    chain = [run_id]
    while source := store.read_run(chain[-1]).get("init_from"):
        assert store.exists(source["run_id"]), f"{name}: {chain[-1]} started from a run not in results/runs"
        chain.append(source["run_id"])
    epochs = store.metrics(chain).query("tta == 'none'")
    assert set(epochs.run_id) == set(chain)
    hours = epochs.epoch_seconds.sum() / 3600
    card = (SHIPPED_MODELS_DIR / f"{name}.md").read_text()
    stated = re.search(r"([0-9.]+) h of training in all" if len(chain) > 1 else r"([0-9.]+) h \(sum of epoch", card)
    assert stated and abs(float(stated.group(1)) - hours) < 0.051, (chain, hours)
