"""Emotions through a video: frames decoded with PyAV, faces followed by a small tracker.

`predict_video` is the one pipeline behind `fer-predict clip.mp4` and the dashboard's Predict
page. Each sampled frame goes through the photo pipeline of fer_core.predict (detection on the
frame shrunk to VIDEO_DETECT_MAX_SIDE, 48x48 crops); the crops of many frames are classified
together, because the models run several times faster per face on a batch than on one face,
and in bf16 where the CPU has it (VIDEO_DTYPE): that is what keeps the three-model ensemble
faster than real time on two cores.

PyAV rather than cv2.VideoCapture: it says *why* a file cannot be read (no moov atom, no
decoder for the codec, a damaged packet) instead of returning False, and keeps FFmpeg's own
log lines off stderr, so a bad file gets exactly one message from us.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..classes import CLASSES
from ..device import autocast_dtype
from ..inference.calibration import Blend
from ..inference.labels import label_text
from .detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_CONFIDENCE,
    VIDEO_DETECT_MAX_SIDE,
    ImageError,
    check_pixels,
    reduction,
    scale_box,
)
from .predict import Face, classify_faces, face_json, find_faces
from .tracking import CUT_THUMBNAIL, TRACK_MEMORY_SECONDS, CutDetector, Tracker

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
BATCH_FACES = 32  # crops classified in one forward pass per model
# bf16 where the CPU computes it natively (AMX / AVX512-BF16: the ensemble ~2.8x faster per face),
# as fer-eval does; fp32 elsewhere. Probabilities move by ~0.01, labels hardly ever.
VIDEO_DTYPE = autocast_dtype(torch.device("cpu"))
MIN_TRACK_SECONDS = 0.5  # shorter tracks stay in the JSON and CSV but get no timeline or summary line
PROGRESS_MIN_SECONDS = 5.0  # shorter clips finish before a progress bar would tell anything


class VideoError(ValueError):
    """A file that cannot be used as a video; the message names the file and says why."""


class Smoother:
    """Moving average of each track's probabilities over its last `k` processed frames: a
    frame-by-frame label flickers between close classes, a person's expression does not."""

    def __init__(self, k: int):
        self.k = k
        self.history: dict[int, deque] = {}

    def __call__(self, track: int, probs: np.ndarray) -> np.ndarray:
        if self.k <= 1:
            return probs
        recent = self.history.setdefault(track, deque(maxlen=self.k))
        recent.append(probs)
        return np.mean(recent, axis=0)


class Video:
    """An open video file: its stream facts, and its frames as upright RGB arrays."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            self.container = av.open(self.path)
        except (av.error.FFmpegError, OSError) as e:
            raise VideoError(f"{self.path}: not a readable video ({_reason(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{self.path}: no video stream (no frames)")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:
            self.container.close()
            raise VideoError(f"{self.path}: unsupported video codec (no decoder for it in this FFmpeg build)")
        self.stream.thread_type = "AUTO"  # FFmpeg's frame threads: large H.264/HEVC frames decode faster
        self.fps = float(self.stream.average_rate or self.stream.guessed_rate or 0)
        seconds = self.stream.duration * self.stream.time_base if self.stream.duration else None
        if seconds is None and self.container.duration:
            seconds = self.container.duration / av.time_base
        self.seconds = float(seconds or 0)
        self.expected_frames = self.stream.frames or int(round(self.seconds * self.fps))
        self.decoded = 0  # frames decoded so far (every one, sampled or not)
        self.cuts: list[int] = []  # frames that begin a new shot, among those decoded so far
        self._is_cut = CutDetector()
        self.damaged = 0  # packets the decoder refused
        self.size = (self.stream.codec_context.width, self.stream.codec_context.height)
        try:  # the image budget (faces/detection.py): larger frames refused, large ones reduced
            check_pixels(self.path, *self.size)
        except ImageError as e:
            self.container.close()
            raise VideoError(f"{e} per frame") from None
        factor = reduction(*self.size)
        self.working = {"width": -(-self.size[0] // factor), "height": -(-self.size[1] // factor)} if factor > 1 else {}
        self.scale = (1.0, 1.0)  # from a frame's pixels as yielded to the video's own

    def frames(self, every: int = 1):
        """(index, seconds from the first frame, RGB HxWx3) for every `every`-th frame.

        All frames are decoded (inter-frame codecs need them) and checked for scene cuts (`cuts`),
        but only sampled ones are converted. A damaged packet is skipped and counted, so a truncated file gives the
        frames before the damage; phone clips are turned upright by their display rotation.
        """
        start = None
        for packet in self.container.demux(self.stream):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                self.damaged += 1
                continue
            for frame in decoded:
                index = self.decoded
                self.decoded += 1
                # every frame, sampled or not: a camera pan over --every N frames looks like a cut
                thumbnail = frame.reformat(*CUT_THUMBNAIL, format="gray", interpolation="AREA").to_ndarray()
                if self._is_cut(thumbnail):
                    self.cuts.append(index)
                if index % every:
                    continue
                t = frame.time if frame.time is not None else index / (self.fps or 1)
                start = t if start is None else start
                rgb = frame.to_ndarray(format="rgb24", **self.working)  # scaled while converted
                if frame.rotation % 360:
                    rgb = np.ascontiguousarray(np.rot90(rgb, k=round(frame.rotation / 90) % 4))
                turned = round(frame.rotation / 90) % 2
                self.size = (frame.height, frame.width) if turned else (frame.width, frame.height)
                self.scale = (self.size[0] / rgb.shape[1], self.size[1] / rgb.shape[0])
                yield index, t - start, rgb

    def close(self) -> None:
        self.container.close()


def _reason(e: Exception) -> str:
    """FFmpeg's words without the errno and file name it repeats ('[Errno 1094995529] ...: path')."""
    text = getattr(e, "strerror", None) or str(e)
    return text.strip().rstrip(":").lower()


def predict_video(
    path: str | os.PathLike,
    models: dict[str, torch.nn.Module],
    tta: dict[str, str] | None = None,
    *,
    detector: str = DEFAULT_DETECTOR,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    every: int = 1,
    smooth: int = 0,
    progress: bool = False,
    blend: Blend | None = None,
) -> dict:
    """Faces, tracks and emotions of every `every`-th frame of a video file (see fer-predict).

    `frames` lists the frames where a face was found (none: an empty list, not an error);
    `cuts` the frames where a new shot begins (a hard cut ends every track: fer_core/tracking.py);
    `video.frames` counts all decoded frames and `processed_fps` is that count over the wall
    time, so processed_fps >= fps means faster than real time. `tta` maps a model name to its
    test-time views, one view when missing; `blend` combines the models (the recognizer's).
    Raises VideoError for a file that is not a video, has no decodable frame or an unsupported
    codec; ValueError for bad arguments. A file that decodes only in part (truncated, damaged)
    gets a `warning` beside its results.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, not {every}")
    if smooth < 0:
        raise ValueError(f"smooth must be 0 (off) or more, not {smooth}")
    begin = time.perf_counter()
    models, blend = _weighted_members(models, blend)
    video = Video(path)
    classifier = _BatchClassifier(models, tta, blend, Smoother(smooth))
    _follow_faces(video, every, detector, min_confidence, classifier, progress)
    if not video.decoded:
        detail = f"; {video.damaged} damaged packets" if video.damaged else ""
        raise VideoError(f"{video.path}: no decodable frames{detail}")
    return _video_result(path, video, classifier.frames, time.perf_counter() - begin)


def _weighted_members(models: dict[str, torch.nn.Module], blend: Blend | None):
    """The models and blend without the members the blend gives no weight (the shipped
    ensemble's vit): such a member changes no answer, so it is not run."""
    if blend is None or not set(blend.weights) <= set(models):
        return models, blend
    used = [name for name, weight in blend.weights.items() if weight > 0]
    models = {name: models[name] for name in used}
    return models, Blend({name: blend.weights[name] for name in used}, blend.temperatures, blend.temperature)


class _BatchClassifier:
    """The faces of many frames classified together, on a second thread while the next frames
    are decoded and searched: detection's small networks keep two cores only partly busy, so
    the two overlap (one batch at a time, in order). `frames` collects the classified frames."""

    def __init__(self, models, tta, blend: Blend | None, smoother: Smoother):
        self.models, self.tta, self.blend, self.smoother = models, tta, blend, smoother
        self.frames: list[dict] = []
        self.pending: list[tuple[int, float, list[Face], list[int]]] = []
        self.worker, self.job = ThreadPoolExecutor(1, thread_name_prefix="classify"), None

    def add(self, index: int, t: float, faces: list[Face], tracks: list[int]) -> None:
        """One frame's faces and their tracks; a full batch (BATCH_FACES) goes to the worker."""
        self.pending.append((index, t, faces, tracks))
        if sum(len(p[2]) for p in self.pending) >= BATCH_FACES:
            self.flush()

    def flush(self) -> None:
        """Waits for the batch in work, then hands it the pending frames (if any)."""
        if self.job is not None:
            self.job.result()
        self.job = self.worker.submit(self._classify, self.pending.copy()) if self.pending else None
        self.pending.clear()

    def finish(self) -> None:
        self.flush()
        self.flush()  # waits for the last batch

    def close(self) -> None:
        self.worker.shutdown(wait=True, cancel_futures=True)

    def _classify(self, batch) -> None:
        classify_faces([f for *_, faces, _ in batch for f in faces], self.models, self.tta, VIDEO_DTYPE, self.blend)
        for index, t, faces, tracks in batch:
            entries = []
            for face, track in zip(faces, tracks, strict=True):
                face.probabilities, face.blend = {"smoothed": self.smoother(track, face.combined())}, None
                entries.append({**face_json(face), "track": track})
            self.frames.append({"frame": index, "time": round(t, 3), "faces": entries})


def _follow_faces(
    video: Video, every: int, detector: str, min_confidence: float, classifier: _BatchClassifier, progress: bool
) -> None:
    """Every `every`-th frame's faces found, tracked across frames and handed to `classifier`;
    the video, the classifier and the progress bar are closed at the end."""
    # a track outlives a missed detection or two: 1 s, or 2.5 sampling intervals with a large `every`
    tracker = Tracker(max(TRACK_MEMORY_SECONDS, 2.5 * every / (video.fps or 25)))
    bar = tqdm(
        total=video.expected_frames or None,
        unit="frame",
        desc=Path(video.path).name,
        leave=False,
        disable=not progress or video.seconds < PROGRESS_MIN_SECONDS,
    )
    previous, previous_t = -1, None
    try:
        for index, t, rgb in video.frames(every):
            bar.update(video.decoded - bar.n)
            cut = bool(video.cuts) and video.cuts[-1] > previous  # a cut since the last sampled frame
            previous = index
            # a face continuing one seen in the last sampled frame was confirmed by the pair already:
            # YuNet alone follows it, MTCNN confirms only new faces (faces/detection.py)
            to_frame = (1 / video.scale[0], 1 / video.scale[1])
            seen = [] if cut else [scale_box(box, to_frame) for box in tracker.boxes_at(previous_t)]
            faces = find_faces(rgb, False, VIDEO_DETECT_MAX_SIDE, detector, min_confidence, confirmed=seen)
            for face in faces if video.scale != (1.0, 1.0) else []:  # a frame reduced to the image budget
                face.box = scale_box(face.box, video.scale)
            if faces:
                classifier.add(index, t, faces, tracker.update([f.box for f in faces], t, cut))
            previous_t = t
        classifier.finish()
    except av.error.FFmpegError as e:  # the container broke down between packets
        raise VideoError(f"{video.path}: not a readable video ({_reason(e)})") from None
    finally:
        classifier.close()
        bar.close()
        video.close()


def _video_result(path: str | os.PathLike, video: Video, frames: list[dict], seconds: float) -> dict:
    """predict_video's answer, with a `warning` when the file decoded only in part."""
    result = {
        "path": str(path),
        "video": {
            "fps": round(video.fps, 3),
            "frames": video.decoded,
            "width": video.size[0],
            "height": video.size[1],
            "processed_fps": round(video.decoded / seconds, 2),
        },
        "frames": frames,
        "cuts": video.cuts,
    }
    short = video.stream.frames - video.decoded > 2  # the header's count is exact for mp4, mov and avi
    if video.damaged or short:
        problem = (
            f"{video.damaged} damaged packet(s) skipped"
            if video.damaged
            else f"the stream ended after {video.decoded} of its {video.stream.frames} frames"
        )
        result["warning"] = (
            f"{video.path}: {problem} (truncated or corrupt file?); "
            f"results are for the {video.decoded} frames that decoded"
        )
    return result


def result_rows(result: dict) -> pd.DataFrame:
    """One row per (path, frame, face) of an image or video result (fer-predict --out).

    An image is frame 0 at time 0 with one track per face; a failed input has no rows.
    """
    if "frames" in result:
        items = [(f["frame"], f["time"], face) for f in result["frames"] for face in f["faces"]]
    else:
        items = [(0, 0.0, {**face, "track": i}) for i, face in enumerate(result.get("faces", []))]
    rows = [
        {
            "path": result["path"],
            "frame": frame,
            "time": t,
            "track": face["track"],
            **dict(zip("xywh", face["box"], strict=True)),
            "label": face["label"],
            "confidence": face["confidence"],
            **{c: face["probabilities"][c] for c in CLASSES},
        }
        for frame, t, face in items
    ]
    columns = ["path", "frame", "time", "track", "x", "y", "w", "h", "label", "confidence", *CLASSES]
    types = {
        "path": str,
        "frame": int,
        "time": float,
        "track": int,
        "x": int,
        "y": int,
        "w": int,
        "h": int,
        "label": str,
        "confidence": float,
        **dict.fromkeys(CLASSES, float),
    }
    return pd.DataFrame(rows, columns=columns).astype(types)


def track_summaries(result: dict) -> list[dict]:
    """Each track of a video result in order of first appearance: its frame count, time span,
    mean probabilities and the label they give (never a vote between frames, whose ties would
    be broken by order), and `long`: whether it lasts MIN_TRACK_SECONDS, enough for a timeline
    and a summary line (shorter ones are mostly a face seen for a moment, or a false box)."""
    rows = result_rows(result)
    frame_seconds = 1 / (result["video"]["fps"] or 25)
    summaries = []
    for track, face in rows.groupby("track", sort=False):
        mean = face[list(CLASSES)].mean().to_numpy()
        start, end = float(face.time.min()), float(face.time.max())
        summaries.append(
            {
                "track": int(track),
                "frames": len(face),
                "start": start,
                "end": end,
                "probabilities": dict(zip(CLASSES, mean.tolist(), strict=True)),
                "label": CLASSES[int(mean.argmax())],
                "text": label_text(mean),
                "long": len(face) >= 2 and end - start + frame_seconds >= MIN_TRACK_SECONDS,
            }
        )
    return summaries
