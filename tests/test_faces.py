"""Face detection on real photographs (tests/data, public domain) and real FER2013 faces.

The default detector must box a real face and nothing in face-free photos, Haar must still
answer by name, and the eye levelling must turn a tilted face's crop upright.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core.faces.detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_CONFIDENCE,
    DETECTORS,
    VIDEO_DETECT_MAX_SIDE,
    Detection,
    detect_faces,
    to_gray,
)
from fer_core.faces.framing import crop_face
from tests.conftest import detectable_faces, make_photo

DATA = Path(__file__).parent / "data"


def photo(name: str) -> Image.Image:
    return Image.open(DATA / f"{name}.jpg").convert("RGB")


def centre(box) -> tuple[float, float]:
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(float) - a.mean(), b.astype(float) - b.mean()
    return float((a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum()))


def test_the_api_names():
    assert DEFAULT_DETECTOR == DETECTORS[0] and "haar" in DETECTORS
    assert 0 < DEFAULT_MIN_CONFIDENCE < 1


@pytest.mark.parametrize("max_side", [1024, VIDEO_DETECT_MAX_SIDE])
def test_default_detector_boxes_the_astronauts_face(max_side):
    [face] = detect_faces(np.asarray(photo("astronaut")), max_side=max_side)
    x, y, w, h = face.box
    cx, cy = centre(face.box)
    assert 195 < cx < 250 and 90 < cy < 140 and 60 < w < 130 and 70 < h < 150  # her face, not the flag or suit
    assert DEFAULT_MIN_CONFIDENCE <= face.confidence <= 1
    (rx, ry), (lx, ly) = face.landmarks[:2]
    assert x < rx < lx < x + w and y < ry < y + h / 2 and y < ly < y + h / 2  # eyes, image-left one first


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
@pytest.mark.parametrize("max_side", [1024, VIDEO_DETECT_MAX_SIDE])
def test_no_face_in_face_free_photos(name, max_side):
    assert detect_faces(np.asarray(photo(name)), max_side=max_side) == []


def test_grayscale_input_finds_the_same_face():
    rgb = np.asarray(photo("astronaut"))
    [a], [b] = detect_faces(rgb), detect_faces(to_gray(rgb))
    assert max(abs(p - q) for p, q in zip(a.box, b.box, strict=True)) <= 8


def test_haar_still_works_by_name():
    [face] = detect_faces(np.asarray(photo("astronaut")), detector="haar")
    assert face.confidence == 1.0 and face.landmarks is None
    cx, cy = centre(face.box)
    assert 195 < cx < 250 and 90 < cy < 140
    assert crop_face(to_gray(photo("astronaut")), face).shape == (48, 48)
    assert detect_faces(np.asarray(photo("coffee")), detector="haar") == []


def test_unknown_detector_is_a_value_error():
    with pytest.raises(ValueError, match="unknown face detector 'retina'"):
        detect_faces(np.asarray(photo("astronaut")), detector="retina")


def test_min_confidence_filters(fer2013):
    faces = sorted((fer2013 / "val" / "surprise").iterdir())[:4]
    image = np.asarray(make_photo(faces, size=(960, 300), face_px=160))
    low = detect_faces(image, min_confidence=0.3)
    assert low and all(f.confidence >= 0.3 for f in low)
    for threshold in sorted({f.confidence for f in low}):
        kept = detect_faces(image, min_confidence=threshold)
        assert kept == [f for f in low if f.confidence >= threshold]
    assert detect_faces(image, min_confidence=1.01) == []


@pytest.mark.parametrize("angle", [20, -20])
def test_levelling_turns_a_tilted_face_upright(angle):
    upright = photo("astronaut")
    [face] = detect_faces(np.asarray(upright))
    reference = crop_face(to_gray(upright), face)
    tilted = upright.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(128, 128, 128))  # anticlockwise
    [found] = detect_faces(np.asarray(tilted))
    (rx, ry), (lx, ly) = found.landmarks[:2]
    eye_line = math.degrees(math.atan2(ly - ry, lx - rx))  # image y points down: anticlockwise is negative
    assert abs(eye_line + angle) < 8
    gray = to_gray(tilted)
    levelled, as_is = crop_face(gray, found, level=True), crop_face(gray, found, align=False)
    assert levelled.shape == as_is.shape == (48, 48) and levelled.dtype == np.uint8
    assert correlation(levelled, reference) > 0.75 > correlation(as_is, reference) + 0.2


def test_crop_of_a_plain_box_is_unchanged_by_align():
    gray = to_gray(photo("astronaut"))
    box = (180, 60, 90, 115)
    assert np.array_equal(crop_face(gray, box), crop_face(gray, Detection(box, 1.0)))
    assert np.array_equal(crop_face(gray, box), crop_face(gray, box, align=False))


def test_fer2013_faces_pasted_into_a_photo_are_found(fer2013):
    files = sorted((fer2013 / "val" / "happy").iterdir())[:20]
    found = 0
    for f in files:
        faces = detect_faces(np.asarray(make_photo([f])))  # 180 px, centred in 640x480
        found += len(faces) == 1 and math.dist(centre(faces[0].box), (320, 240)) < 40
    assert found >= 17, f"{found} of {len(files)}"


def test_a_photo_of_two_faces_gives_two_boxes_left_to_right(fer2013):
    one, two = detectable_faces(fer2013, n=2)
    found = detect_faces(np.asarray(make_photo([one, two])))  # 180 px each, centred in each half of 640x480
    assert len(found) == 2, found
    left, right = sorted(found, key=lambda f: f.box[0])
    assert math.dist(centre(left.box), (160, 240)) < 40 and math.dist(centre(right.box), (480, 240)) < 40
    assert all(f.box[0] >= 0 and f.box[1] >= 0 for f in found)


@pytest.mark.parametrize("shape", [(1, 5000, 3), (5000, 1), (8, 8, 3)])
@pytest.mark.parametrize("detector", DETECTORS)
def test_an_image_too_thin_for_a_face_has_none(shape, detector):
    assert detect_faces(np.zeros(shape, np.uint8), detector) == []
