"""Grad-CAM on the shipped models and real FER2013 faces: every architecture's map shows
something (the ViT's used to be all zeros: its last block's patch tokens never reach the head)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fer_core.inference.explain import grad_cam, overlay, target_layer
from fer_core.inference.loading import load_named_model


@pytest.fixture(scope="module")
def real_faces(fer2013) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(f).convert("L"))
        for cls in ("happy", "surprise", "angry")
        for f in sorted((fer2013 / "val" / cls).iterdir())[:2]
    ]


@pytest.mark.parametrize("name", ["vit", "stcnn", "resnet50"])
def test_grad_cam_shows_where_the_evidence_is(name, real_faces):
    model = load_named_model(name, backend="torch")
    for face in real_faces:
        cam = grad_cam(model, face)  # the predicted class, as the Predict page asks (another class's
        assert cam.shape == (48, 48) and cam.dtype == np.float32  # map can be all zero: no evidence for it)
        assert np.isfinite(cam).all() and 0.0 <= cam.min() and cam.max() <= 1.0
        assert cam.max() == pytest.approx(1.0) and cam.std() > 0.05, f"{name}: a near-constant map"
        shown = overlay(face, cam)
        assert shown.shape == (48, 48, 3) and shown.dtype == np.uint8
    assert all(p.grad is None for p in model.parameters())  # Grad-CAM leaves no gradients behind


def test_the_vit_map_comes_from_patch_tokens_that_reach_the_head():
    vit = load_named_model("vit", backend="torch")
    assert target_layer(vit) is not vit.blocks[-1]
