"""The Predict page through Streamlit's AppTest, with real FER2013 faces, real shipped
models and a real video: the detector choice and confidence slider, clear messages for files
that are not images or videos, Grad-CAM, and a video's emotion timeline. (The same video in
Chromium, and Live, which needs a browser's WebRTC: test_browser_video.py.)"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core.classes import CLASSES
from fer_core.faces.detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, DETECTORS, detect_faces
from tests.conftest import app_page, detectable_faces, make_photo, write_video


@pytest.fixture(scope="module")
def face_jpeg(fer2013) -> bytes:
    out = io.BytesIO()
    make_photo(detectable_faces(fer2013, n=1)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def face_video(fer2013, tmp_path_factory) -> Path:
    faces = detectable_faces(fer2013, cls="happy", n=1) + detectable_faces(fer2013, cls="surprise", n=1)
    return write_video(tmp_path_factory.mktemp("video") / "two-faces.mp4", faces)


@pytest.fixture
def no_runs(tmp_path, monkeypatch) -> None:
    """An empty run store: the pages offer the shipped models only."""
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))


def predict_page() -> AppTest:
    return app_page("predict")


def upload(at: AppTest, *files: tuple[str, bytes, str]) -> AppTest:
    at.file_uploader(key="uploads").set_value(list(files)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def verdicts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Face ")]


def test_predict_a_photo_with_each_detector_and_a_confidence_floor(no_runs, face_jpeg):
    at = upload(predict_page(), ("face.jpg", face_jpeg, "image/jpeg"))
    detector, floor = at.selectbox(key="predict_detector"), at.slider(key="predict_min_confidence")
    assert detector.options == list(DETECTORS) and detector.value == DEFAULT_DETECTOR
    assert floor.value == pytest.approx(DEFAULT_MIN_CONFIDENCE) and (floor.min, floor.max) == (0.0, 1.0)
    assert len(verdicts(at)) == 1 and verdicts(at)[0].split(":")[1].split("**")[0].strip() in CLASSES
    assert not at.error, [e.value for e in at.error]
    for name in DETECTORS:
        at.selectbox(key="predict_detector").set_value(name).run()
        assert not at.exception and len(verdicts(at)) == 1, (name, [e.value for e in at.exception])

    image = np.asarray(Image.open(io.BytesIO(face_jpeg)))
    scores = {d: max((f.confidence for f in detect_faces(image, d, min_confidence=0.0)), default=2) for d in DETECTORS}
    graded = next(d for d in DETECTORS if scores[d] < 1.0)  # a detector that grades its faces (Haar says 1.0)
    at.selectbox(key="predict_detector").set_value(graded)
    at.slider(key="predict_min_confidence").set_value(1.0).run()  # above the face's score: dropped
    assert not verdicts(at) and any("No face found in face.jpg" in w.value for w in at.warning)
    at.slider(key="predict_min_confidence").set_value(scores[graded] - 0.01).run()  # just below it: kept
    assert len(verdicts(at)) == 1


def test_the_shipped_three_answer_as_the_calibrated_ensemble(no_runs, face_jpeg):
    """With the three shipped models chosen, Predict says what runs (each member's weight and
    temperature, vit at weight 0 not counted) and labels each face by the blend."""
    from fer_core.faces.recognizer import Recognizer
    from fer_core.inference.registry import model_record

    at = predict_page()
    at.multiselect(key="predict_models").set_value([f"{n} (shipped)" for n in ("stcnn", "resnet50", "vit")])
    at = upload(at, ("face.jpg", face_jpeg, "image/jpeg"))
    record = model_record("ensemble")
    [caption] = [c.value for c in at.caption if c.value.startswith("Runs ")]
    running = {n: w for n, w in record["weights"].items() if w > 0}
    assert all(f"{n} weight {w:g}, T={record['temperatures'][n]:.2f}" in caption for n, w in running.items())
    assert all(f"{n}: weight 0, not counted" in caption for n in set(record["weights"]) - set(running))
    [verdict] = verdicts(at)
    assert "weighted ensemble of " + " + ".join(f"{n} {w:g}" for n, w in running.items()) in verdict
    [face] = Recognizer(["stcnn", "resnet50", "vit"])(Image.open(io.BytesIO(face_jpeg)))
    assert verdict.startswith(f"**Face 1: {face.label}** ({face.confidence:.0%}")


def test_files_that_are_not_images_say_so_by_name(no_runs, face_jpeg):
    at = upload(
        predict_page(),
        ("notes.jpg", b"name,age\nbob,3\n", "image/jpeg"),
        ("empty.png", b"", "image/png"),
        ("face.jpg", face_jpeg, "image/jpeg"),
    )
    errors = [e.value for e in at.error]
    assert len(errors) == 2, errors
    assert errors[0].startswith("notes.jpg: not a readable image") and errors[1].startswith("empty.png: ")
    assert not any("0x" in e or "object at" in e or "BytesIO" in e for e in errors), errors
    assert len(verdicts(at)) == 1  # the photo beside them still gets its label


def test_grad_cam_for_every_shipped_architecture(no_runs, face_jpeg):
    """The maps themselves (the ViT's is no longer blank) are checked in test_explain.py."""
    at = predict_page()
    at.multiselect(key="predict_models").set_value([f"{n} (shipped)" for n in ("stcnn", "resnet50", "vit")])
    at.toggle(key="explain").set_value(True)
    at = upload(at, ("face.jpg", face_jpeg, "image/jpeg"))
    captions = [c for image in at.image for c in image.captions]
    for name in ("stcnn", "resnet50", "vit"):
        assert any(c.startswith(f"{name}: Grad-CAM for ") for c in captions), captions
    assert "stcnn: spatial transformer output" in captions


def test_predict_a_video_shows_a_timeline_per_face_and_a_csv(no_runs, face_video):
    at = upload(predict_page(), ("two-faces.mp4", face_video.read_bytes(), "video/mp4"))
    assert at.number_input(key="predict_every").value >= 1
    assert not at.error, [e.value for e in at.error]
    assert at.get("video"), "no player"
    charts = at.get("plotly_chart")
    assert charts and any(c in charts[0].proto.spec for c in CLASSES)
    [csv] = at.download_button
    assert csv.label.startswith("Download CSV")
    assert any(m.value.startswith("**Track ") and "mostly" in m.value for m in at.markdown)

    at.number_input(key="predict_every").set_value(1).run()  # another sampling: read again, no error
    assert not at.exception and not at.error and at.get("plotly_chart")


def test_a_bad_video_gets_one_clear_line(no_runs, face_jpeg):
    at = upload(
        predict_page(), ("holiday.mp4", b"this is not a video\n" * 50, "video/mp4"), ("empty.webm", b"", "video/webm")
    )
    errors = [e.value for e in at.error]
    assert len(errors) == 2 and errors[0].startswith("holiday.mp4") and errors[1].startswith("empty.webm"), errors
    assert all("\n" not in e and "Traceback" not in e for e in errors)
