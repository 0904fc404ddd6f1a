"""Every shipped model (results/models/*.safetensors, and `ensemble`, their average) loads,
agrees with its model card on a fixed val subset, and reads a clear happy face as happy."""

from __future__ import annotations

import re

import pytest

from fer_core.classes import CLASSES
from fer_core.data import load_dataset, read_face_image, stratified_indices
from fer_core.inference import ENSEMBLE, SHIPPED_MODELS_DIR, ensemble_probs, load_models, shipped_names
from fer_core.metrics import classification_metrics

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
