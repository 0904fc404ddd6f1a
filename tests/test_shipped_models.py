"""Every shipped model (results/models/*.safetensors) loads, agrees with its model card on a
fixed val subset, and reads a clear happy face as happy."""

from __future__ import annotations

import re

import pytest

from fer_core.classes import CLASSES
from fer_core.data import load_dataset, read_face_image, stratified_indices
from fer_core.inference import SHIPPED_MODELS_DIR, ensemble_probs, load_named_model
from fer_core.metrics import classification_metrics

SHIPPED = sorted(p.stem for p in SHIPPED_MODELS_DIR.glob("*.safetensors"))
CLEAR_HAPPY = "val/happy/PublicTest_10527411.jpg"  # a broad open-mouthed laugh, chosen by eye


def test_at_least_the_stcnn_is_shipped():
    assert "stcnn" in SHIPPED


def card_value(name: str, key: str) -> float:
    card = (SHIPPED_MODELS_DIR / f"{name}.md").read_text()
    return float(re.search(rf"^{key}: ([0-9.]+)", card, re.M).group(1))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_matches_its_card_and_sees_a_smile(name, fer2013):
    model = load_named_model(name)
    val = load_dataset(fer2013).splits["val"]
    subset = val.subset(stratified_indices(val.labels, 700, seed=0))
    accuracy = classification_metrics(subset.labels, ensemble_probs([model], subset.images))["accuracy"]
    assert abs(accuracy - card_value(name, "val_subset_accuracy")) <= 0.005
    probs = ensemble_probs([model], read_face_image(fer2013 / CLEAR_HAPPY)[None])[0]
    assert CLASSES[probs.argmax()] == "happy"
