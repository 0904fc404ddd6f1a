"""fer-predict on real videos and folders: clips made here from real FER2013 faces.

Tracks, --every, --smooth, --out (csv, parquet), folders with junk, broken and odd files
(truncated, zero frames, random bytes, unknown codec, 4K), the progress bar and the default
settings. Speed (real time at the default settings) is benchmarks/video.py's.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from fer_core.classes import CLASSES
from fer_core.faces.video import VideoError, predict_video, result_rows
from fer_core.inference.loading import load_named_model
from fer_core.inference.registry import SHIPPED_MODELS_DIR
from fer_core.programs.predict import main as fer_predict_main
from tests.conftest import detectable_faces, make_photo, write_clip

FER_PREDICT = Path(sys.executable).parent / "fer-predict"
MODEL = "stcnn"
COLUMNS = ["path", "frame", "time", "track", "x", "y", "w", "h", "label", "confidence", *CLASSES]


def drifting(photo, n: int) -> list[np.ndarray]:
    """n frames of a photo sliding right and back 2 px a frame: a face that moves a little."""
    base = np.asarray(photo)
    return [np.roll(base, 2 * (i % 20) - 20, axis=1) for i in range(n)]


@pytest.fixture(scope="module")
def clips(fer2013, tmp_path_factory) -> dict[str, Path]:
    assert (SHIPPED_MODELS_DIR / f"{MODEL}.safetensors").exists(), "the shipped stcnn model is missing"
    d = tmp_path_factory.mktemp("clips")
    one, two = detectable_faces(fer2013, n=2)
    sad = detectable_faces(fer2013, cls="sad", n=1)[0]
    size = (640, 360)
    paths = {
        "one": write_clip(d / "one.mp4", drifting(make_photo([one], size), 60), fps=30),
        "speed": write_clip(d / "speed.mp4", drifting(make_photo([one], size), 75), fps=25),  # 3 s
        "two": write_clip(d / "two.avi", drifting(make_photo([one, two], size), 30)),
        "long": write_clip(d / "long.mp4", drifting(make_photo([one], size), 60), fps=10),  # 6 s
        # one person changing expression: sad for 4 frames, happy for 4, ...
        "changing": write_clip(
            d / "changing.avi", [np.asarray(make_photo([one if i // 4 % 2 else sad], size)) for i in range(24)]
        ),
        "noface": write_clip(d / "noface.avi", [np.full((360, 640, 3), 128, np.uint8)] * 10),
        "4k": write_clip(d / "4k.avi", [np.asarray(make_photo([one], (3840, 2160), face_px=900))] * 2),
    }
    paths["zero"] = d / "zero.avi"
    cv2.VideoWriter(str(paths["zero"]), cv2.VideoWriter_fourcc(*"MJPG"), 25, size).release()  # header, no frames
    paths["truncated"] = d / "truncated.mp4"
    paths["truncated"].write_bytes(paths["one"].read_bytes()[:4000])
    paths["random"] = d / "random.mp4"
    paths["random"].write_bytes(np.random.default_rng(0).bytes(20000))
    paths["codec"] = d / "codec.avi"  # an AVI whose fourcc no decoder knows
    paths["codec"].write_bytes(paths["two"].read_bytes().replace(b"MJPG", b"QQQQ"))
    paths["half"] = d / "half.mp4"  # moov atom first (as web video is), cut in the middle
    with av.open(str(d / "whole.mp4"), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.gop_size = 5  # frequent key frames: the bytes spread evenly over the frames
        for frame in drifting(make_photo([one], (320, 180), face_px=90), 50):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame)))
        out.mux(stream.encode())
    data = (d / "whole.mp4").read_bytes()
    paths["half"].write_bytes(data[: len(data) // 2])
    paths["photo"] = d / "photo.jpg"
    make_photo([one, two], size=(900, 450)).save(paths["photo"])
    return paths


@pytest.fixture(scope="module")
def models() -> dict:
    return {MODEL: load_named_model(MODEL)}


def fer_predict(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(FER_PREDICT), *map(str, args)], capture_output=True, text=True, timeout=timeout)


def check_face(face: dict) -> None:
    assert face["label"] in CLASSES and 0 < face["confidence"] <= 1 and isinstance(face["track"], int)
    assert list(face["probabilities"]) == list(CLASSES)
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)


def test_json_tracks_and_progress_bar(clips):
    """One face: found in most frames under one track; two faces: two tracks, left one first.
    The progress bar shows for the 6 s clip only."""
    run = fer_predict("--model", MODEL, "--json", "--progress", clips["one"], clips["two"], clips["long"])
    assert run.returncode == 0, run.stderr
    one, two, _ = json.loads(run.stdout)
    assert one["path"] == str(clips["one"]) and set(one) >= {"path", "video", "frames"}
    assert one["video"]["fps"] == 30 and one["video"]["frames"] == 60
    assert (one["video"]["width"], one["video"]["height"]) == (640, 360) and one["video"]["processed_fps"] > 0
    assert len(one["frames"]) >= 54 and {f["frame"] for f in one["frames"]} <= set(range(60))
    for frame in one["frames"]:
        assert frame["time"] == pytest.approx(frame["frame"] / 30, abs=0.002) and len(frame["faces"]) == 1
        check_face(frame["faces"][0])
        x, y, w, h = frame["faces"][0]["box"]
        assert 200 < x + w / 2 < 440 and 120 < y + h / 2 < 240
    assert {f["faces"][0]["track"] for f in one["frames"]} == {0}
    both = [f for f in two["frames"] if len(f["faces"]) == 2]
    assert len(both) >= 27
    assert all([face["track"] for face in f["faces"]] == [0, 1] for f in both)  # each face keeps its id
    assert "long.mp4" in run.stderr and "frame" in run.stderr and "one.mp4" not in run.stderr
    assert "Traceback" not in run.stderr


def test_out_csv_with_every(clips, tmp_path):
    """--out: one row per (path, frame, face), images at frame 0; --every 3 samples frames 0, 3, 6, ..."""
    out = tmp_path / "rows.csv"
    run = fer_predict("--model", MODEL, "--out", out, "--every", 3, clips["one"], clips["photo"])
    assert run.returncode == 0, run.stderr
    assert f"{clips['one']}: 60 frames at 30 fps" in run.stdout and "track 0" in run.stdout
    rows = pd.read_csv(out)
    assert list(rows.columns) == COLUMNS
    video, photo = rows[rows.path == str(clips["one"])], rows[rows.path == str(clips["photo"])]
    assert 18 <= len(video) <= 20 and (video.frame % 3 == 0).all() and video.frame.is_monotonic_increasing
    assert video.time.tolist() == pytest.approx((video.frame / 30).tolist(), abs=0.002)
    assert (video.track == 0).all()
    assert len(photo) == 2 and photo.frame.tolist() == [0, 0] and photo.track.tolist() == [0, 1]
    assert photo.x.iloc[0] < photo.x.iloc[1]
    assert rows[list(CLASSES)].sum(axis=1).to_numpy() == pytest.approx(1, abs=1e-3)
    assert (rows.label == rows[list(CLASSES)].idxmax(axis=1)).all()
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]


def test_folder_with_junk_to_parquet(clips, tmp_path):
    """Images and a video in a folder tree are processed, junk skipped with one note, a broken
    file reported; the parquet holds the rows of all good files."""
    folder = tmp_path / "media"
    (folder / "sub").mkdir(parents=True)
    (folder / "photo.jpg").write_bytes(clips["photo"].read_bytes())
    (folder / "sub" / "clip.avi").write_bytes(clips["two"].read_bytes())
    (folder / "notes.txt").write_text("not media\n")
    (folder / "sub" / "table.csv").write_text("a,b\n1,2\n")
    (folder / "sub" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out" / "rows.parquet"
    run = fer_predict("--model", MODEL, "--json", "--out", out, folder)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    results = json.loads(run.stdout)
    assert [Path(r["path"]).name for r in results] == ["photo.jpg", "broken.png", "clip.avi"]
    assert "not a readable image" in results[1]["error"]
    lines = run.stderr.splitlines()
    assert sum("broken.png" in line for line in lines) == 1
    assert sum("notes.txt" in line and "sub/table.csv" in line for line in lines) == 1
    rows = pd.read_parquet(out)
    assert list(rows.columns) == COLUMNS
    assert len(rows) == 2 + sum(len(f["faces"]) for f in results[2]["frames"])
    assert set(rows.path) == {str(folder / "photo.jpg"), str(folder / "sub" / "clip.avi")}


def test_bad_videos_get_one_clear_line(clips, tmp_path):
    """Each unusable file gets one line naming it and why, no traceback; a video without faces is
    an empty result; --out that cannot be written leaves nothing behind, not half a file."""
    taken = tmp_path / "taken.csv"
    taken.mkdir()  # the rename into place fails
    bad = {
        "truncated": "not a readable video",
        "zero": "no decodable frames",
        "random": "not a readable video",
        "codec": "unsupported video codec",
    }
    run = fer_predict(
        "--model", MODEL, "--json", "--out", taken, *(clips[k] for k in bad), clips["noface"], clips["half"]
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    results = json.loads(run.stdout)
    lines = run.stderr.splitlines()
    for (kind, needle), result in zip(bad.items(), results[:-2], strict=True):
        assert needle in result["error"] and result["error"].startswith(str(clips[kind]))
        assert [line for line in lines if clips[kind].name in line] == [f"fer-predict: {result['error']}"]
    noface, half = results[-2:]
    assert noface["frames"] == [] and noface["video"]["frames"] == 10 and "error" not in noface
    assert "noface.avi" not in run.stderr
    assert 5 < half["video"]["frames"] < 45 and len(half["frames"]) > 0  # the frames before the cut
    assert [line for line in lines if "half.mp4" in line] == [f"fer-predict: warning: {half['warning']}"]
    assert f"ended after {half['video']['frames']} of its 50 frames" in half["warning"]
    assert sum("cannot write" in line for line in lines) == 1
    assert list(tmp_path.iterdir()) == [taken] and not list(taken.iterdir())


def test_interrupted_run_writes_nothing(clips, tmp_path):
    """Ctrl-C in the middle of a video: exit 130, one line, no --out file (not even a partial one)."""
    out = tmp_path / "rows.csv"
    proc = subprocess.Popen(
        [str(FER_PREDICT), "--model", MODEL, "--progress", "--out", str(out), str(clips["long"]), str(clips["long"])],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # even if ours is ignored
    seen = ""
    while "frame" not in seen:  # the progress bar: frames are being processed
        char = proc.stderr.read(1)
        assert char, f"fer-predict ended before any progress: {seen}"
        seen += char
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130
    assert "fer-predict: interrupted; nothing written" in rest and "Traceback" not in seen + rest
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_exit_2(clips):
    for args in (["--every", "0"], ["--out", "rows.txt"], ["--min-face-confidence", "2"], ["--detector", "nope"]):
        with pytest.raises(SystemExit) as stop:
            fer_predict_main([*args, str(clips["one"])])
        assert stop.value.code == 2
    run = fer_predict("--model", "no-such-model", clips["one"])
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "no-such-model" in run.stderr


def test_smoothing_is_a_moving_average_per_track(clips, models):
    raw = predict_video(clips["changing"], models)
    smooth = predict_video(clips["changing"], models, smooth=3)
    assert [f["frame"] for f in raw["frames"]] == [f["frame"] for f in smooth["frames"]]
    assert len(raw["frames"]) >= 20
    probs = np.array([list(f["faces"][0]["probabilities"].values()) for f in raw["frames"]])
    labels = [f["faces"][0]["label"] for f in raw["frames"]]
    assert len(set(labels)) > 1, "the clip should change expression"
    for i, frame in enumerate(smooth["frames"]):
        face = frame["faces"][0]
        expected = probs[max(0, i - 2) : i + 1].mean(axis=0)
        assert list(face["probabilities"].values()) == pytest.approx(expected.tolist(), abs=2e-4)
        assert face["label"] == CLASSES[int(expected.argmax())]
    flips = sum(a != b for a, b in pairwise(labels))
    smooth_labels = [f["faces"][0]["label"] for f in smooth["frames"]]
    assert sum(a != b for a, b in pairwise(smooth_labels)) <= flips


def test_4k_frames_are_downscaled_for_detection(clips, models):
    result = predict_video(clips["4k"], models)
    assert (result["video"]["width"], result["video"]["height"]) == (3840, 2160)
    assert len(result["frames"]) == 2
    x, y, w, h = result["frames"][0]["faces"][0]["box"]
    assert w > 500 and 1500 < x + w / 2 < 2300 and 700 < y + h / 2 < 1400  # in the 4K frame's pixels
    rows = result_rows(result)
    assert list(rows.columns) == COLUMNS and len(rows) == 2


def test_phone_clip_is_turned_upright(fer2013, models, tmp_path):
    """A portrait phone clip is stored sideways with a display rotation; faces are found upright."""
    upright = np.asarray(make_photo(detectable_faces(fer2013, n=1), size=(360, 640)))
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.set_display_rotation(90)  # show turned 90 degrees counter-clockwise
        for _ in range(3):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(upright, -1)))))
        out.mux(stream.encode())
    result = predict_video(path, models)
    assert (result["video"]["width"], result["video"]["height"]) == (360, 640)
    assert len(result["frames"]) == 3 and all(len(f["faces"]) == 1 for f in result["frames"])
    x, y, w, h = result["frames"][0]["faces"][0]["box"]
    assert 100 < x + w / 2 < 260 and 220 < y + h / 2 < 420


def test_api_errors(clips, models, tmp_path):
    with pytest.raises(VideoError, match="random.mp4: not a readable video"):
        predict_video(clips["random"], models)
    with pytest.raises(VideoError, match="missing.mp4"):
        predict_video(tmp_path / "missing.mp4", models)
    with pytest.raises(ValueError, match="every"):
        predict_video(clips["one"], models, every=0)


def test_default_settings_classify_every_frame_with_the_default_model(clips):
    """`fer-predict clip.mp4` as a user types it: the default model (registry.default_model) on
    every frame, one track for the one face. Whether that keeps up with real time is a speed,
    measured by benchmarks/video.py (docs/performance.md), not asserted here."""
    from fer_core import Recognizer

    run = fer_predict("--json", clips["speed"])
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["video"]["fps"] == 25 and result["video"]["frames"] == 75
    assert len(result["frames"]) >= 70 and {f["frame"] for f in result["frames"]} <= set(range(75))
    assert {face["track"] for f in result["frames"] for face in f["faces"]} == {0}
    for frame in result["frames"]:
        check_face(frame["faces"][0])
    default = Recognizer()  # registry.default_model(), as fer-predict loads it
    expected = predict_video(
        clips["speed"], default.batch_models(), dict.fromkeys(default.models, "none"), blend=default.blend
    )
    labels = [[face["label"] for face in f["faces"]] for f in result["frames"]]
    assert labels == [[face["label"] for face in f["faces"]] for f in expected["frames"]]
