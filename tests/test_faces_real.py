"""The default face detector on real photographs: ../shared/data/faces-dev (12 photos, 68
hand-checked faces, one photo of dogs and no person), the landmark geometry check, and the crop
that frames a face as FER2013's are framed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.faces_dev import FACES_DEV, NO_FACE_PHOTO, face_boxes, match
from fer_core.faces.detection import (
    DEFAULT_DETECTOR,
    DETECT_MAX_SIDE,
    Detection,
    detect_faces,
    load_photo,
    plausible_face,
    to_gray,
)
from fer_core.faces.framing import FER_LANDMARKS, crop_face


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    assert FACES_DEV.is_dir(), f"the faces-dev photos are expected at {FACES_DEV}"
    return {name: np.asarray(load_photo(FACES_DEV / name)) for name in face_boxes()}


@pytest.mark.parametrize("max_side", [DETECT_MAX_SIDE, 640])
def test_every_face_of_faces_dev_and_no_false_box(photos, max_side):
    """At the photo path's size and at 640 px: all 68 faces, no box on anything else."""
    found, false, missed = 0, 0, {}
    for name, faces in face_boxes().items():
        detections = sorted(detect_faces(photos[name], max_side=max_side), key=lambda d: -d.confidence)
        hit, wrong, lost = match([d.box for d in detections], faces)
        found, false = found + hit, false + wrong
        if lost:
            missed[name] = lost
    assert sum(map(len, face_boxes().values())) == 68
    assert found == 68 and not missed, missed
    assert false == 0


@pytest.mark.parametrize("detector", [DEFAULT_DETECTOR, "mtcnn", "yunet"])
def test_no_box_on_the_dogs(photos, detector):
    """The floor: a photo of four dogs has no face. Each CNN detector alone sometimes boxes a
    dog below its default threshold; the default pair boxes none even at its lowest."""
    floor = 0.0 if detector == DEFAULT_DETECTOR else {"mtcnn": 0.5, "yunet": 0.9}[detector]
    for max_side in (DETECT_MAX_SIDE, 640, 320):
        assert detect_faces(photos[NO_FACE_PHOTO], detector, floor, max_side) == [], (detector, max_side)


def test_yunet_by_name_finds_the_close_up(photos):
    [face] = detect_faces(photos["Tom_Cruise_avp_2014_4.jpg"], "yunet", 0.6)
    [truth] = face_boxes()["Tom_Cruise_avp_2014_4.jpg"]
    assert match([face.box], [truth])[0] == 1 and len(face.landmarks) == 5


FACE = ((40, 50), (80, 50), (60, 72), (45, 92), (75, 92))  # eyes, nose, mouth corners of a 100 px box


@pytest.mark.parametrize(
    "marks, plausible",
    [
        (FACE, True),
        (tuple((60 + (y - 60), 60 - (x - 60)) for x, y in FACE), False),  # on its side: 90 degrees
        ((FACE[0], FACE[1], (60, 40), FACE[3], FACE[4]), False),  # nose above the eyes
        ((FACE[0], FACE[1], FACE[2], (45, 66), (75, 66)), False),  # mouth above the nose
        (((55, 50), (58, 50), *FACE[2:]), False),  # eyes 3 px apart in a 100 px box
        ((FACE[0], FACE[1], FACE[2], (59, 92), (61, 92)), False),  # a mouth 2 px wide
    ],
)
def test_the_landmark_geometry_check(marks, plausible):
    assert plausible_face(marks, (10, 10, 100, 100)) is plausible


def test_geometry_check_keeps_every_face_the_detectors_find_on_faces_dev(photos):
    """The check is a floor under shapes no face has: on real faces it must cost nothing."""
    for name, faces in face_boxes().items():
        for detector in ("mtcnn", "yunet"):
            for d in detect_faces(photos[name], detector, 0.9):
                if match([d.box], faces)[0]:
                    assert plausible_face(d.landmarks, d.box), (name, detector, d)


def test_the_crop_puts_the_eyes_where_fer2013_has_them(photos):
    """Levelled, the close-up's crop has its eyes level, where FER2013 faces have theirs
    (FER_LANDMARKS); the default keeps the tilt (tests/test_face_framing.py)."""
    gray = to_gray(photos["Tom_Cruise_avp_2014_4.jpg"])
    [face] = detect_faces(gray)
    (rx, ry), (lx, ly) = face.landmarks[:2]
    crop = crop_face(gray, face, level=True)
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # draw two dots on the eyes, crop again, find them in the crop
    marked, r = gray.copy(), int(0.12 * math.dist((rx, ry), (lx, ly)))  # ~2 px across in the crop
    for x, y in ((rx, ry), (lx, ly)):
        marked[int(y) - r : int(y) + r + 1, int(x) - r : int(x) + r + 1] = 255
    difference = crop_face(marked, face, level=True).astype(int) - crop
    ys, xs = np.nonzero(difference > 40)
    assert len(xs), "the eye marks are not in the crop"
    left, right = xs < 24, xs >= 24
    eyes = [(xs[m].mean(), ys[m].mean()) for m in (left, right)]
    assert abs(eyes[0][1] - eyes[1][1]) < 2
    for eye, where in zip(eyes, FER_LANDMARKS[:2], strict=True):
        assert math.dist(eye, where) < 2.5, (eyes, FER_LANDMARKS[:2])


def test_a_box_without_landmarks_is_cropped_by_its_box():
    gray = np.tile(np.arange(200, dtype=np.uint8), (200, 1))
    assert np.array_equal(crop_face(gray, Detection((50, 50, 100, 100), 1.0)), crop_face(gray, (50, 50, 100, 100)))
