"""The photo path's crop frames a face as FER2013's are framed: the landmarks (the mean of
MTCNN's and YuNet's) moved by one scale and a shift onto FER_LANDMARKS, not levelled, since
FER2013's faces were centred but not turned (benchmarks/framing.py, docs/faces.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.faces_dev import FACES_DEV
from fer_core.faces.detection import Detection, detect_faces, load_photo
from fer_core.faces.framing import FER_LANDMARKS, crop_face
from fer_core.faces.tracking import iou


def eye_dots(tilt_degrees: float) -> tuple[np.ndarray, Detection]:
    """A grey picture with two bright dots where a face's eyes are, the eye line turned by
    `tilt_degrees`, and a detection whose five landmarks follow the same turn."""
    gray = np.full((400, 400), 60, np.uint8)
    angle = math.radians(tilt_degrees)
    centre, template = np.array([200.0, 200.0]), (np.asarray(FER_LANDMARKS) - 24) * 5  # a face 5x FER2013's
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    marks = template @ turn.T + centre
    for x, y in marks[:2]:
        gray[int(y) - 4 : int(y) + 5, int(x) - 4 : int(x) + 5] = 255
    return gray, Detection((100, 100, 200, 200), 0.99, tuple(map(tuple, marks)))


def dots_in(crop: np.ndarray) -> list[tuple[float, float]]:
    ys, xs = np.nonzero(crop > 120)
    return [(xs[m].mean(), ys[m].mean()) for m in (xs < 24, xs >= 24)]


@pytest.mark.parametrize("tilt", [0, 15])
def test_the_crop_keeps_the_face_s_tilt_and_puts_it_where_fer2013_has_it(tilt):
    gray, face = eye_dots(tilt)
    (lx, ly), (rx, ry) = dots_in(crop_face(gray, face))
    assert math.degrees(math.atan2(ry - ly, rx - lx)) == pytest.approx(tilt, abs=3)
    # the five landmarks' centre lands on FER_LANDMARKS' centre, and the eyes turn about it
    centre, angle = np.mean(FER_LANDMARKS, axis=0), math.radians(tilt)
    turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    middle = centre + turn @ (np.mean(FER_LANDMARKS[:2], axis=0) - centre)
    assert math.dist(((lx + rx) / 2, (ly + ry) / 2), middle) < 1.0
    assert math.dist((lx, ly), (rx, ry)) == pytest.approx(math.dist(*FER_LANDMARKS[:2]), abs=1.5)


def test_level_turns_the_eyes_level():
    gray, face = eye_dots(15)
    (lx, ly), (rx, ry) = dots_in(crop_face(gray, face, level=True))
    assert abs(ry - ly) < 1.5
    for dot, where in zip(((lx, ly), (rx, ry)), FER_LANDMARKS[:2], strict=True):
        assert math.dist(dot, where) < 1.5


def test_the_pair_frames_its_crop_by_the_mean_of_mtcnn_s_and_yunet_s_landmarks():
    close_up = np.asarray(load_photo(FACES_DEV / "Tom_Cruise_avp_2014_4.jpg"))
    [pair] = detect_faces(close_up)
    [mtcnn] = [d for d in detect_faces(close_up, "mtcnn") if iou(d.box, pair.box) > 0.5]
    yunet = max(detect_faces(close_up, "yunet"), key=lambda d: iou(d.box, pair.box))
    assert pair.landmarks and pair.frame_landmarks  # the first MTCNN's (they follow a tilt), the crop's the mean
    pair_marks = np.asarray(pair.frame_landmarks)
    mtcnn_marks, yunet_marks = np.asarray(mtcnn.landmarks), np.asarray(yunet.landmarks)
    mean = (mtcnn_marks + yunet_marks) / 2

    def off(marks):  # mean distance of the pair's crop landmarks from these, in pixels
        return np.linalg.norm(pair_marks - marks, axis=1).mean()

    # MTCNN's pyramid starts at another face size inside the pair: near the mean, not exactly on it
    assert off(mean) < min(off(mtcnn_marks), off(yunet_marks)), (off(mean), off(mtcnn_marks), off(yunet_marks))
