"""In a video, MTCNN confirms new faces only: a face that continues one seen in the last sampled
frame was confirmed by the pair already and is followed by YuNet alone (fer_core/faces.py,
fer_core/video.py). Counted as calls to MTCNN, on real photographs and the real-photo clip."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.faces_dev import FACES_DEV, NO_FACE_PHOTO, face_boxes, hits
from benchmarks.real_clip import make_clip
from fer_core.faces import detection as faces
from fer_core.faces.detection import VIDEO_DETECT_MAX_SIDE, detect_faces, load_photo
from fer_core.faces.tracking import iou
from fer_core.faces.video import predict_video
from fer_core.inference.loading import load_named_model

GROUP = "2008_001322.jpg"  # a group photo of faces-dev whose faces the pair finds at 320 px
SHOTS = (("2008_002506.jpg", "zoom"), ("2008_001322.jpg", "pan"), ("2008_002506.jpg", "pan"))


@pytest.fixture
def mtcnn_calls(monkeypatch) -> list[int]:
    """The real MTCNN, each call counted (with the smallest face it was asked to search)."""
    calls, real = [], faces._mtcnn

    def counted(image, scale, min_face=20):
        calls.append(min_face)
        return real(image, scale, min_face)

    monkeypatch.setattr(faces, "_mtcnn", counted)
    return calls


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    assert FACES_DEV.is_dir(), f"the faces-dev photos are expected at {FACES_DEV}"
    return np.asarray(load_photo(FACES_DEV / GROUP))


def test_confirmed_faces_are_followed_without_mtcnn(group, mtcnn_calls):
    first = detect_faces(group, max_side=VIDEO_DETECT_MAX_SIDE)
    assert len(mtcnn_calls) == 1 and len(first) >= 3
    assert all(any(hits(d.box, face) for d in first) for face in face_boxes()[GROUP])

    again = detect_faces(group, max_side=VIDEO_DETECT_MAX_SIDE, confirmed=[d.box for d in first])
    assert len(mtcnn_calls) == 1  # every face continues a confirmed one: YuNet alone
    assert len(again) == len(first)
    assert all(max(iou(d.box, e.box) for e in again) >= 0.5 for d in first)
    assert all(d.landmarks and len(d.landmarks) == 5 for d in again)  # YuNet's, for the crop

    one_new = detect_faces(group, max_side=VIDEO_DETECT_MAX_SIDE, confirmed=[d.box for d in first[1:]])
    assert len(mtcnn_calls) == 2  # the one face not confirmed before sends the frame to MTCNN
    assert len(one_new) == len(first)
    assert max(iou(d.box, first[0].box) for d in one_new) >= 0.8  # found again, by the pair


def test_a_dog_yunet_boxes_is_new_and_mtcnn_turns_it_down(mtcnn_calls):
    """YuNet alone boxes a dog of the dogs photo (0.87); with no face seen before, MTCNN is asked
    and the pair keeps no box, frame after frame."""
    dogs = np.asarray(load_photo(FACES_DEV / NO_FACE_PHOTO))
    assert [d for d in detect_faces(dogs, "yunet", max_side=VIDEO_DETECT_MAX_SIDE) if d.confidence >= 0.6]
    for _ in range(2):
        assert detect_faces(dogs, max_side=VIDEO_DETECT_MAX_SIDE, confirmed=[]) == []
    assert len(mtcnn_calls) == 2


@pytest.mark.slow
def test_a_video_runs_mtcnn_on_new_faces_only(tmp_path, mtcnn_calls):
    """Three shots of real photos (a zoom, a pan, a pan), 90 frames, 2 cuts: MTCNN runs on the
    first frame and after each cut (every face there is new), and then only where a face enters,
    not on every frame; every box is still on a face, and no track crosses a cut."""
    clip = make_clip(tmp_path / "cuts.mp4", shot_seconds=1.0, shots=SHOTS)
    result = predict_video(clip.path, {"stcnn": load_named_model("stcnn")})
    assert clip.frames == 90 and len(result["cuts"]) == 2
    assert 3 <= len(mtcnn_calls) <= clip.frames // 3, len(mtcnn_calls)
    boxes = [(f["frame"], face) for f in result["frames"] for face in f["faces"]]
    truth = sum(len(f) for f in clip.faces)
    assert len(boxes) >= 0.95 * truth
    assert all(any(hits(face["box"], box) for _, box in clip.faces[frame]) for frame, face in boxes)
    spans = {}
    for frame, face in boxes:
        start, end = spans.get(face["track"], (frame, frame))
        spans[face["track"]] = (min(start, frame), max(end, frame))
    assert not [s for s in spans.values() if any(s[0] < cut <= s[1] for cut in result["cuts"])]
