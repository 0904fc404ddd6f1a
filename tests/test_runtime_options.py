"""Options users pass, through what they type or call: `fer-predict --int8` and `--smooth` on the
command line, `fer-eval --uncalibrated`, and the Python API's int8, detector and
min_face_confidence. Each answer is checked against the library computing it another way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_core import Recognizer
from fer_core.classes import CLASSES
from fer_core.data.fer2013 import load_dataset, stratified_indices
from fer_core.faces.detection import DETECTORS, detect_faces
from fer_core.inference.calibration import expected_calibration_error, with_temperature
from fer_core.inference.loading import load_named_model
from fer_core.inference.onnx_export import OnnxModel
from fer_core.inference.probabilities import ensemble_probs
from fer_core.inference.registry import applied_temperature, default_model, int8_names, shipped_tta
from tests.conftest import detectable_faces, make_photo, write_clip

BIN = Path(sys.executable).parent


def run(tool: str, *args) -> dict | list:
    result = subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def close(a: dict, b: dict) -> bool:
    return a["label"] == b["label"] and all(abs(a["probabilities"][c] - b["probabilities"][c]) < 1e-4 for c in CLASSES)


@pytest.fixture(scope="module")
def photo(fer2013, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "face.png"
    make_photo(detectable_faces(fer2013, n=1)).save(path)
    return path


def test_fer_predict_int8_runs_the_int8_models(photo):
    """`fer-predict --int8 photo`: the default model, int8 wherever a member ships one."""
    out = run("fer-predict", "--int8", "--json", photo)
    library = Recognizer(int8=True)
    assert library.model == default_model()
    int8 = [name for name, m in library.models.items() if isinstance(m, OnnxModel) and m.precision == "int8"]
    assert int8 == [name for name in library.models if name in int8_names()] and int8
    [face] = out["faces"]
    assert close(face, library(photo)[0].to_dict())


def test_fer_predict_smooth_averages_each_track_over_k_frames(fer2013, tmp_path):
    """`--smooth 3`: each face's probabilities are the mean of its last 3 frames' (unsmoothed) ones."""
    happy, sad = detectable_faces(fer2013, n=1)[0], detectable_faces(fer2013, cls="sad", n=1)[0]
    frames = [np.asarray(make_photo([sad if i // 3 % 2 else happy], (480, 360), face_px=150)) for i in range(12)]
    clip = write_clip(tmp_path / "changing.avi", frames, fps=10)
    raw = run("fer-predict", "--model", "stcnn", "--json", clip)
    smooth = run("fer-predict", "--model", "stcnn", "--json", "--smooth", 3, clip)
    assert [f["frame"] for f in raw["frames"]] == [f["frame"] for f in smooth["frames"]] and len(raw["frames"]) >= 10
    probs = np.array([list(f["faces"][0]["probabilities"].values()) for f in raw["frames"]])
    assert len({f["faces"][0]["label"] for f in raw["frames"]}) > 1  # the expression changes
    for i, frame in enumerate(smooth["frames"]):
        expected = probs[max(0, i - 2) : i + 1].mean(axis=0)
        assert list(frame["faces"][0]["probabilities"].values()) == pytest.approx(expected.tolist(), abs=2e-4)


def test_fer_eval_uncalibrated_is_the_raw_probabilities(fer2013):
    """The shipped stcnn in its card's view: calibrated, its temperature scales the probabilities
    (ECE moves, the labels and accuracy do not); --uncalibrated leaves them raw."""
    common = ["--model", "stcnn", "--data", fer2013, "--split", "val", "--limit", 35, "--precision", "fp32", "--json"]
    calibrated, raw = run("fer-eval", *common), run("fer-eval", *common, "--uncalibrated")
    assert calibrated["calibrated"] is True and raw["calibrated"] is False
    val = load_dataset(fer2013).splits["val"]
    faces = val.subset(stratified_indices(val.labels, 35, seed=0))
    probs = ensemble_probs([load_named_model("stcnn", backend="torch")], faces.images, tta=shipped_tta("stcnn"))
    temperature = applied_temperature("stcnn", shipped_tta("stcnn"))  # the card's view (ten-crop): applied
    assert temperature is not None and temperature != 1.0
    assert raw["ece"] == pytest.approx(expected_calibration_error(faces.labels, probs), abs=2e-3)
    scaled = with_temperature(probs, temperature)
    assert calibrated["ece"] == pytest.approx(expected_calibration_error(faces.labels, scaled), abs=2e-3)
    assert calibrated["accuracy"] == raw["accuracy"] and calibrated["ece"] != raw["ece"]


def test_the_python_api_takes_int8_detector_and_min_face_confidence(photo):
    image = np.asarray(Image.open(photo).convert("RGB"))
    fp32 = Recognizer("stcnn", tta="none", backend="torch")  # not whatever the cache holds now
    int8 = Recognizer("stcnn", tta="none", int8=True)
    assert not isinstance(fp32.models["stcnn"], OnnxModel) and int8.models["stcnn"].precision == "int8"
    assert int8(image)[0].box == fp32(image)[0].box  # the same face, classified by the int8 model
    graded = 0
    for detector in DETECTORS:
        [found] = detect_faces(image, detector, min_confidence=0.0)
        [face] = Recognizer("stcnn", tta="none", detector=detector, min_face_confidence=0.0)(image)
        assert face.box == tuple(found.box) and face.detection_confidence == pytest.approx(found.confidence)
        at_score = Recognizer("stcnn", tta="none", detector=detector, min_face_confidence=found.confidence)
        assert len(at_score(image)) == 1
        if found.confidence < 1.0:  # a detector that grades its faces (Haar is sure of every one)
            graded += 1
            above = Recognizer("stcnn", tta="none", detector=detector, min_face_confidence=found.confidence + 1e-3)
            assert above(image) == []
    assert graded
    with pytest.raises(ValueError, match="unknown face detector"):
        Recognizer("stcnn", detector="no-such-detector")(image)


def test_a_ray_actor_gives_the_single_process_answer(photo, tmp_path):
    """What each `fer-predict --ray` actor runs (fer_core.programs.ray_predict.FilePredictor), called here
    without Ray: the same result as fer-predict's own path, and a file it cannot read named.
    Ray itself (a local instance, S3 inputs) is in test_ray_predict.py."""
    import pandas as pd

    from fer_core.programs.ray_predict import FILE_OPTIONS, FilePredictor

    options = {"tta": "none", "every": 1, "smooth": 0, "detector": DETECTORS[0], "min_face_confidence": 0.5}
    assert set(options) == set(FILE_OPTIONS)
    actor = FilePredictor({"model": "stcnn", "tta": "none", "backend": "onnx"}, options)
    missing = str(tmp_path / "gone.jpg")
    out = actor(pd.DataFrame({"path": [str(photo), missing]}))
    [face], gone = json.loads(out.result[0])["faces"], json.loads(out.result[1])
    assert close(face, run("fer-predict", "--model", "stcnn", "--tta", "none", "--json", photo)["faces"][0])
    assert gone["faces"] == [] and missing in gone["error"]


def test_python_m_trainers_is_fer_train(tmp_path, monkeypatch, capsys):
    """How the job queue and sweeps launch a trainer (trainers.jobs.FER_TRAIN): `python -m
    trainers` is fer-train, down to refusing a file that is not a dataset with one clear line."""
    import runpy

    (tmp_path / "fake.csv").write_text("name,age\nbob,3\n")
    argv = ["trainers", "--model", "cnn", "--data", str(tmp_path / "fake.csv"), "--runs-dir", str(tmp_path / "runs")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("trainers", run_name="__main__")
    assert stop.value.code == 2 and "fake.csv: missing column" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
