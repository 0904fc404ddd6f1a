"""Tracks through real-photo video: scene cuts end tracks, short tracks get no summary, a track's
summary is its mean probabilities, and bad videos give an empty result or one clear line.

Clips are made here by benchmarks/real_clip.py from the faces-dev photographs (a moving camera
over real photos, hard cuts between them) and from plain frames.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from benchmarks.faces_dev import FACES_DEV
from benchmarks.real_clip import make_clip
from fer_core.classes import CLASSES
from fer_core.faces.tracking import CutDetector, Tracker
from fer_core.faces.video import MIN_TRACK_SECONDS, Video, predict_video, result_rows, track_summaries
from fer_core.inference.loading import load_named_model
from tests.conftest import write_clip

FER_PREDICT = Path(sys.executable).parent / "fer-predict"
# Three photos whose faces sit in similar places: a tracker that ignores cuts carries ids across.
SHOTS = (("2008_002506.jpg", "zoom"), ("2008_001322.jpg", "pan"), ("2008_002506.jpg", "pan"))


@pytest.fixture(scope="module")
def models() -> dict:
    return {"stcnn": load_named_model("stcnn")}


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    assert FACES_DEV.is_dir(), f"the faces-dev photos are expected at {FACES_DEV}"
    return make_clip(tmp_path_factory.mktemp("real") / "cuts.mp4", shot_seconds=1.0, shots=SHOTS)


@pytest.fixture(scope="module")
def whole_clip(tmp_path_factory):
    return make_clip(tmp_path_factory.mktemp("real") / "all.mp4")  # every faces-dev photo, 1 s pans and zooms


@pytest.mark.parametrize("every", [1, 10])
def test_the_cut_detector_finds_every_cut_of_the_real_photo_clip_and_nothing_else(whole_clip, every):
    """Every decoded frame is checked, sampled or not: a pan over ten frames is no cut."""
    video = Video(whole_clip.path)
    sampled = [index for index, _, _ in video.frames(every)]
    video.close()
    assert len(whole_clip.cuts) == 12 and video.cuts == whole_clip.cuts
    assert sampled == list(range(0, whole_clip.frames, every))


def test_a_thumbnail_and_its_frame_give_the_same_verdicts():
    rng = np.random.default_rng(1)
    frames = [
        np.full((90, 160, 3), 100, np.uint8),
        np.full((90, 160, 3), 104, np.uint8),
        rng.integers(0, 255, (90, 160, 3), dtype=np.uint8),
    ]
    whole, small = CutDetector(), CutDetector()
    verdicts = [
        (whole(f), small(cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (16, 9), interpolation=cv2.INTER_AREA)))
        for f in frames
    ]
    assert verdicts == [(False, False), (False, False), (True, True)]


def test_a_cut_ends_every_track_and_a_track_survives_missed_frames():
    tracker = Tracker(memory=1.0)
    a, b = (100, 100, 80, 80), (300, 100, 80, 80)
    first = tracker.update([a, b], 0.0)
    assert tracker.update([], 0.1) == []  # two frames without a detection...
    assert tracker.update([(104, 100, 80, 80)], 0.2) == [first[0]]  # ...the face keeps its id
    again = tracker.update([(106, 100, 80, 80), b], 0.25, cut=True)  # same places, after a cut
    assert set(again).isdisjoint(first)
    assert tracker.update([(110, 100, 200, 200)], 0.3) != [again[0]]  # another size: another face


@pytest.mark.parametrize("every", [1, 10])
def test_track_ids_differ_across_a_hard_cut_in_real_video(cut_clip, models, every):
    result = predict_video(cut_clip.path, models, every=every)
    assert result["cuts"] == cut_clip.cuts
    rows = result_rows(result)
    shots = np.searchsorted(cut_clip.cuts, rows.frame, side="right")  # 0, 1, 2 for each row's shot
    by_shot = [set(rows.track[shots == s]) for s in range(len(cut_clip.cuts) + 1)]
    assert all(by_shot), by_shot  # faces found in every shot
    assert by_shot[0].isdisjoint(by_shot[1]) and by_shot[1].isdisjoint(by_shot[2])
    assert by_shot[0].isdisjoint(by_shot[2])  # the same photo coming back is a new track too
    # the three people of the first shot are followed through its zoom: one track each
    long = [t for t in track_summaries(result) if t["long"] and t["start"] < cut_clip.cuts[0] / 30]
    assert len(long) == 3, long


def result_with(tracks: dict[int, list[list[float]]], fps: float = 30) -> dict:
    """A video result of given per-frame probabilities per track (frames 0, 1, 2, ...)."""
    frames = {}
    for track, probs in tracks.items():
        for i, p in enumerate(probs):
            face = {
                "box": [0, 0, 10, 10],
                "label": CLASSES[int(np.argmax(p))],
                "confidence": max(p),
                "probabilities": dict(zip(CLASSES, p, strict=True)),
                "detection_confidence": 0.9,
                "track": track,
            }
            frames.setdefault(i, []).append(face)
    return {
        "path": "x.mp4",
        "video": {"fps": fps, "frames": len(frames), "width": 10, "height": 10, "processed_fps": 1.0},
        "frames": [{"frame": i, "time": i / fps, "faces": faces} for i, faces in sorted(frames.items())],
        "cuts": [],
    }


def one_hot(cls: str, p: float) -> list[float]:
    rest = (1 - p) / 6
    return [p if c == cls else rest for c in CLASSES]


def test_a_summary_is_the_mean_probabilities_not_a_vote():
    """Two frames narrowly happy and two clearly sad: a vote ties 2-2 (and used to pick whichever
    came first); the mean says sad."""
    probs = [one_hot("happy", 0.4), one_hot("happy", 0.4), one_hot("sad", 0.9), one_hot("sad", 0.9)] * 5
    [track] = track_summaries(result_with({0: probs}))
    assert track["label"] == "sad" and track["text"].startswith("sad")
    assert track["probabilities"]["sad"] == pytest.approx(np.mean([p[CLASSES.index("sad")] for p in probs]))


def test_short_tracks_are_kept_but_not_summarised():
    """At 30 fps a track needs 15 frames (0.5 s) for a timeline; shorter ones stay in the rows."""
    result = result_with({0: [one_hot("happy", 0.9)] * 15, 1: [one_hot("sad", 0.9)] * 14, 2: [one_hot("fear", 0.9)]})
    summaries = {t["track"]: t for t in track_summaries(result)}
    assert [summaries[k]["long"] for k in (0, 1, 2)] == [True, False, False]
    assert set(result_rows(result).track) == {0, 1, 2}
    assert MIN_TRACK_SECONDS == 0.5


def test_an_unsure_track_states_its_top_two():
    probs = [[0.05, 0.02, 0.03, 0.1, 0.35, 0.04, 0.41]] * 20  # neutral 41% / sad 35%
    [track] = track_summaries(result_with({0: probs}))
    assert track["text"] == "neutral 41% / sad 35%"


def frames_of(kind: str) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "black":
        return [np.zeros((360, 640, 3), np.uint8)] * 20
    if kind == "one-frame":
        return [np.full((360, 640, 3), 90, np.uint8)]
    return [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) * (i % 2) for i in range(20)]  # a cut every frame


@pytest.mark.parametrize("kind", ["black", "one-frame", "cut-every-frame"])
def test_bad_videos_give_an_empty_result_not_a_traceback(kind, models, tmp_path):
    path = write_clip(tmp_path / f"{kind}.avi", frames_of(kind))
    result = predict_video(path, models)
    assert result["video"]["frames"] == len(frames_of(kind))
    assert result["frames"] == [] and track_summaries(result) == []
    if kind == "cut-every-frame":
        assert len(result["cuts"]) >= 15
    run = subprocess.run([str(FER_PREDICT), "--model", "stcnn", str(path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    assert run.stdout.count("\n") == 1 and "no face found" in run.stdout


def test_real_faces_that_change_at_every_frame_give_only_short_tracks(models, tmp_path):
    """Each frame another faces-dev photo: every face is a track of one frame, none summarised."""
    photos = ["2008_002506.jpg", "2008_001322.jpg", "2009_004587.jpg", "2008_001009.jpg"]
    clip = make_clip(tmp_path / "flicker.mp4", shot_seconds=1 / 30, shots=[(p, "zoom") for p in photos * 3])
    result = predict_video(clip.path, models)
    tracks = track_summaries(result)
    assert len(result["cuts"]) == 11 and tracks and not any(t["long"] for t in tracks)
    run = subprocess.run(
        [str(FER_PREDICT), "--model", "stcnn", "--json", str(clip.path)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0 and json.loads(run.stdout)["cuts"] == result["cuts"]


def test_a_video_with_a_single_decodable_frame(models, tmp_path):
    """One frame in an mp4 container: a result with that frame, no cut, no error."""
    from PIL import Image

    path = tmp_path / "one.mp4"
    photo = np.asarray(Image.open(FACES_DEV / "2008_001009.jpg").convert("RGB"))  # 360x480, two people
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = photo.shape[1], photo.shape[0], "yuv420p"
        out.mux(stream.encode(av.VideoFrame.from_ndarray(photo)))
        out.mux(stream.encode())
    result = predict_video(path, models)
    assert result["video"]["frames"] == 1 and result["cuts"] == []
    assert len(result["frames"]) == 1 and len(result["frames"][0]["faces"]) == 2
    assert not any(t["long"] for t in track_summaries(result))
