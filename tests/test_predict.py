"""fer-predict on real images: one face, two faces, none, a corrupt file, a non-image, a huge image."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.classes import CLASSES
from fer_core.faces.detection import DEFAULT_MIN_CONFIDENCE, DETECTORS, ImageError, load_photo
from fer_core.faces.predict import find_faces
from fer_core.inference.calibration import with_temperature
from fer_core.inference.explain import grad_cam, spatial_transform
from fer_core.inference.loading import load_named_model
from fer_core.inference.probabilities import ensemble_probs
from fer_core.inference.registry import SHIPPED_MODELS_DIR, model_record, shipped_tta
from tests.conftest import detectable_faces, make_photo

FER_PREDICT = Path(sys.executable).parent / "fer-predict"
MODEL = "stcnn"


@pytest.fixture(scope="module")
def photos(fer2013, tmp_path_factory) -> dict[str, Path]:
    assert (SHIPPED_MODELS_DIR / f"{MODEL}.safetensors").exists(), "the shipped stcnn model is missing"
    d = tmp_path_factory.mktemp("photos")
    one, two = detectable_faces(fer2013, n=2)
    paths = {
        "one": d / "one.jpg",
        "two": d / "two.png",
        "none": d / "wall.jpg",
        "corrupt": d / "corrupt.jpg",
        "text": d / "notes.jpg",
        "huge": d / "huge.jpg",
    }
    make_photo([one]).save(paths["one"])
    make_photo([one, two], size=(900, 450)).save(paths["two"])
    Image.new("RGB", (640, 480), (90, 140, 200)).save(paths["none"])
    paths["corrupt"].write_bytes(paths["one"].read_bytes()[:600])
    paths["text"].write_text("this is not an image\n")
    make_photo([one], size=(6000, 6000), face_px=1800).save(paths["huge"], quality=80)
    return paths


def predict(*args) -> tuple[int, object, str]:
    result = subprocess.run(
        [str(FER_PREDICT), "--model", MODEL, "--json", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    return result.returncode, json.loads(result.stdout), result.stderr


@pytest.fixture(scope="module")
def every_photo(photos) -> tuple[int, dict[str, dict], str]:
    """One fer-predict over all the photos at once, as a user gives it a folder's worth: the exit
    status, each photo's result by kind, and stderr."""
    kinds = ["one", "two", "none", "corrupt", "text", "huge"]
    code, out, err = predict(*(photos[k] for k in kinds))
    assert isinstance(out, list) and [r["path"] for r in out] == [str(photos[k]) for k in kinds]
    return code, dict(zip(kinds, out, strict=True)), err


def check_face(face: dict) -> None:
    assert face["label"] in CLASSES and 0 < face["confidence"] <= 1
    assert set(face["probabilities"]) == set(CLASSES)
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)


def test_one_face(photos, every_photo):
    one = every_photo[1]["one"]
    assert one["path"] == str(photos["one"]) and len(one["faces"]) == 1
    check_face(one["faces"][0])
    x, y, w, h = one["faces"][0]["box"]
    assert 200 < x + w / 2 < 440 and 140 < y + h / 2 < 340  # around the pasted face


def test_the_cards_views_by_default(photos, every_photo):
    """Like fer-eval, fer-predict averages the views the shipped model's card chose on val, and
    there reports probabilities scaled by the temperature the card fitted for that view."""
    crops = np.stack([f.crop for f in find_faces(load_photo(photos["one"]))])
    model = load_named_model(MODEL, backend="torch")
    temperature = model_record(MODEL)["calibration"]["views"][shipped_tta(MODEL)]["temperature"]  # applied there
    _, tta_none, _ = predict(photos["one"], "--tta", "none")
    seen = []
    for out, view, t in ((every_photo[1]["one"], shipped_tta(MODEL), temperature), (tta_none, "none", 1.0)):
        expected = with_temperature(ensemble_probs([model], crops, tta=view), t)[0]
        assert out["tta"] == view
        seen.append(list(out["faces"][0]["probabilities"].values()))
        assert seen[-1] == pytest.approx(expected.tolist(), abs=2e-4)
    assert shipped_tta(MODEL) != "none" and seen[0] != pytest.approx(seen[1], abs=2e-3)


def test_two_faces_left_to_right(every_photo):
    two = every_photo[1]["two"]
    assert len(two["faces"]) == 2 and two["faces"][0]["box"][0] < two["faces"][1]["box"][0]
    for face in two["faces"]:
        check_face(face)


def test_no_face(photos, every_photo):
    assert every_photo[1]["none"]["faces"] == []
    code, out, _ = predict(photos["none"], "--whole-image")
    assert code == 0 and len(out["faces"]) == 1 and out["faces"][0]["box"] == [0, 0, 640, 480]


@pytest.mark.parametrize("kind,needle", [("corrupt", "not a readable image"), ("text", "not a readable image")])
def test_bad_files_get_a_clear_error(every_photo, kind, needle):
    code, results, err = every_photo
    assert code == 1  # some input failed; the others are still answered
    assert needle in results[kind]["error"] and results[kind]["faces"] == []
    assert [line for line in err.splitlines() if Path(results[kind]["path"]).name in line] == [
        f"fer-predict: {results[kind]['error']}"
    ]
    assert len(results["one"]["faces"]) == 1  # the good image in the same call is still classified


def test_detectors_and_their_confidence(photos):
    """Each detector finds the face; Haar reports confidence 1, the CNN its score, which
    --min-face-confidence thresholds."""
    image = load_photo(photos["one"])
    for detector in DETECTORS:
        [face] = find_faces(image, detector=detector)
        assert DEFAULT_MIN_CONFIDENCE <= face.confidence <= 1 and face.crop.shape == (48, 48)
        assert face.confidence == 1.0 or detector != "haar"
    scores = {d: find_faces(image, detector=d)[0].confidence for d in DETECTORS}
    graded = [d for d in DETECTORS if scores[d] < 1]  # the CNN detectors score their faces
    assert graded, scores
    for detector in graded:  # just above the face's score: dropped; at it: kept
        assert find_faces(image, detector=detector, min_confidence=(scores[detector] + 1) / 2) == []
        assert len(find_faces(image, detector=detector, min_confidence=scores[detector])) == 1
    code, out, _ = predict(photos["one"], "--detector", "haar")
    assert code == 0 and len(out["faces"]) == 1
    assert find_faces(Image.new("RGB", (64, 64)), whole_image=True)[0].confidence == 0


def test_huge_image(every_photo):
    huge = every_photo[1]["huge"]
    assert len(huge["faces"]) == 1
    x, y, w, h = huge["faces"][0]["box"]
    assert w > 1000 and 2000 < x + w / 2 < 4000


def test_load_photo_honours_exif_orientation(photos, tmp_path):
    image = Image.open(photos["one"])
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_photo(tmp_path / "rotated.jpg").size == (480, 640)
    with pytest.raises(ImageError, match="empty.jpg"):
        (tmp_path / "empty.jpg").write_bytes(b"")
        load_photo(tmp_path / "empty.jpg")


def test_grad_cam_and_spatial_transform(fer2013):
    model = load_named_model(MODEL, backend="torch")
    face = np.asarray(Image.open(detectable_faces(fer2013, n=1)[0]).convert("L"))
    cam = grad_cam(model, face)
    assert cam.shape == (48, 48) and cam.min() >= 0 and cam.max() == pytest.approx(1)
    transformed = spatial_transform(model, face)
    assert transformed.shape == (48, 48) and transformed.dtype == np.uint8
