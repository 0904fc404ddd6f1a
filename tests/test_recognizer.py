"""The library call, `fer_core.Recognizer`, on real faces: every input kind, batches, every
kind of model spec, and a clear error for what it cannot take."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_core import CLASSES, FaceResult, Recognizer
from fer_core.inference.registry import model_record
from tests.conftest import detectable_faces, make_photo


def same(a: list[FaceResult], b: list[FaceResult]) -> bool:
    """Equal up to float noise: a batch of one and of three may round differently."""
    return len(a) == len(b) and all(
        x.box == y.box
        and x.label == y.label
        and np.allclose(list(x.probabilities.values()), list(y.probabilities.values()), atol=1e-5)
        for x, y in zip(a, b, strict=True)
    )


@pytest.fixture(scope="module")
def recognize() -> Recognizer:
    return Recognizer("stcnn", tta="none")


@pytest.fixture(scope="module")
def photo(fer2013):
    return make_photo(detectable_faces(fer2013, n=1))


def test_path_pil_rgb_and_bgr_arrays_give_the_same_face(recognize, photo, tmp_path):
    path = tmp_path / "face.png"
    photo.save(path)
    rgb = np.asarray(photo)
    results = [
        recognize(path),
        recognize(str(path)),
        recognize(path.read_bytes()),
        recognize(photo),
        recognize(rgb),
        recognize(np.ascontiguousarray(rgb[..., ::-1]), color="bgr"),
    ]
    for faces in results:
        assert len(faces) == 1 and same(faces, results[0])
    face = results[0][0]
    assert isinstance(face, FaceResult) and face.label == "happy"
    assert list(face.probabilities) == list(CLASSES) and abs(sum(face.probabilities.values()) - 1) < 1e-4
    assert face.confidence == max(face.probabilities.values()) and 0 < face.detection_confidence <= 1
    x, y, w, h = face.box
    assert 0 <= x < x + w <= photo.width and 0 <= y < y + h <= photo.height
    assert json.loads(json.dumps(face.to_dict()))["label"] == "happy"


def test_batch_is_one_list_per_image_in_order(recognize, photo):
    blank = np.full((240, 320, 3), 128, np.uint8)
    batch = recognize.batch([photo, blank, photo])
    assert [len(faces) for faces in batch] == [1, 0, 1]
    assert same(batch[0], batch[2]) and same(batch[0], recognize(photo))


def test_model_specs_and_views(photo, finished_runs):
    run_id = sorted(p.name for p in finished_runs.iterdir())[0]
    ensemble = Recognizer("ensemble")
    record = model_record("ensemble")  # each member it runs (weight above 0), in its view
    running = [n for n, w in record["weights"].items() if w > 0]
    assert ensemble.views == {n: record["views"][n] for n in running} and list(ensemble.models) == running
    for spec in (run_id, str(finished_runs / run_id), str(finished_runs / run_id / "checkpoints" / "best.safetensors")):
        recognizer = Recognizer(spec, runs_dir=finished_runs)
        assert recognizer.tta == "none" and len(recognizer(photo)) == 1


def test_whole_image_fallback(recognize):
    wall = np.full((200, 200, 3), 90, np.uint8)
    assert recognize(wall) == []
    [face] = Recognizer("stcnn", whole_image=True)(wall)
    assert face.box == (0, 0, 200, 200) and face.detection_confidence == 0


@pytest.mark.parametrize(
    "image, color, message",
    [
        (np.zeros((10, 10, 3), np.float32), "rgb", "uint8"),
        (np.zeros((10, 10, 5), np.uint8), "rgb", "shape"),
        (np.zeros((10, 10, 3), np.uint8), "hsv", "color"),
        (b"not an image", "rgb", "not a readable image"),
    ],
)
def test_bad_input_is_a_clear_value_error(recognize, image, color, message):
    with pytest.raises(ValueError, match=message):
        recognize(image, color=color)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="shipped"):
        Recognizer("no-such-model")


@pytest.mark.parametrize("model", ["ensemble", ["stcnn", "vit"]])
def test_each_model_is_resolved_once(model, photo, monkeypatch):
    """A spec is looked up once (registry.resolve -> ModelRef) and the ModelRef is handed down to
    loading, the runtime choice, the views and the blend: no layer looks the name up again, also
    when the recognizer changes its view or loads its batch models."""
    from fer_core.inference import registry

    looked_up = []
    real = registry.resolve_model_path
    monkeypatch.setattr(registry, "resolve_model_path", lambda spec, *a: looked_up.append(str(spec)) or real(spec, *a))
    recognize = Recognizer(model, backend="torch")
    names = registry.model_names(model) if isinstance(model, str) else model
    assert sorted(looked_up) == sorted(names) and set(recognize.refs) == set(names)
    recognize(photo)
    recognize.batch_models()
    if isinstance(model, str):
        recognize.with_options(tta="none")(photo)
    assert sorted(looked_up) == sorted(names)  # nothing looked up again
