"""Trackers and cut detectors compared on the real-photo clip (benchmarks/real_clip.py).

    .venv/bin/python benchmarks/tracking.py --save /tmp/detections.json
    /tmp/tvenv/bin/python benchmarks/tracking.py --load /tmp/detections.json

The first run makes the clip (13 shots of the faces-dev photos, 12 hard cuts), runs the
default face detector on every frame as fer-predict does (VIDEO_DETECT_MAX_SIDE) and saves the
boxes; the second reads them in another environment, where the libraries that cannot join the
project's venv are installed: `pip install norfair "supervision==0.29.*" "scenedetect[opencv]"`
(norfair pins numpy<2; scenedetect pulls in the non-headless opencv-python; supervision
0.30+ moved ByteTrack to the `trackers` package). Each run prints the rows it can.

The ground truth is each face's box in each frame with an identity per (shot, face). Columns:
tracks made; tracks of at least half a second (the ones a timeline shows); tracks that run
across a cut (wrong: the faces after a cut are other people); tracks that mix two people;
people seen for half a second or more whose frames are split over several tracks; and the
tracker's own time per frame. Cut detectors: cuts found, false cuts, time per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.faces_dev import hits, iou  # noqa: E402
from fer_core.faces.tracking import TRACK_MEMORY_SECONDS, CutDetector, Tracker  # noqa: E402

FPS = 30
MIN_FRAMES = FPS // 2  # half a second


def detect(path: Path) -> tuple[list[list], list[bool]]:
    """Per frame: [(box, confidence)] from the default detector, and the own cut detector's verdict."""
    from fer_core.faces.detection import VIDEO_DETECT_MAX_SIDE, detect_faces
    from fer_core.faces.video import Video

    video, cut, frames, cuts = Video(path), CutDetector(), [], []
    for _, _, rgb in video.frames():
        frames.append([(list(d.box), d.confidence) for d in detect_faces(rgb, max_side=VIDEO_DETECT_MAX_SIDE)])
        cuts.append(cut(rgb))
    video.close()
    return frames, cuts


def own(frames, cuts, use_cuts: bool):
    tracker, out = Tracker(TRACK_MEMORY_SECONDS), []
    for i, boxes in enumerate(frames):
        out.append(tracker.update([tuple(b) for b, _ in boxes], i / FPS, cut=use_cuts and cuts[i]))
    return out


def with_resets(make, step, frames, cuts, use_cuts: bool):
    """A library tracker, made anew at each cut (ids offset so they stay unique)."""
    out, tracker, offset, seen = [], make(), 0, 0
    for i, boxes in enumerate(frames):
        if use_cuts and cuts[i]:
            tracker, offset = make(), seen + 1
        ids = step(tracker, boxes)
        ids = [None if k is None else k + offset for k in ids]
        seen = max([seen, *(k for k in ids if k is not None)])
        out.append(ids)
    return out


def bytetrack():
    import warnings

    import supervision as sv

    warnings.simplefilter("ignore")

    def make():
        return sv.ByteTrack(lost_track_buffer=FPS, frame_rate=FPS, minimum_consecutive_frames=1)

    def step(tracker, boxes):
        if not boxes:
            tracker.update_with_detections(sv.Detections.empty())
            return []
        xyxy = np.array([[x, y, x + w, y + h] for (x, y, w, h), _ in boxes], np.float32)
        found = tracker.update_with_detections(
            sv.Detections(
                xyxy=xyxy, confidence=np.array([c for _, c in boxes], np.float32), class_id=np.zeros(len(boxes), int)
            )
        )
        ids = [None] * len(boxes)
        for box, k in zip(found.xyxy, found.tracker_id, strict=True):
            ids[int(np.abs(xyxy - box).sum(1).argmin())] = int(k)
        return ids

    return make, step


def norfair_tracker():
    import norfair

    def make():
        return norfair.Tracker(
            distance_function="iou", distance_threshold=0.7, hit_counter_max=FPS, initialization_delay=0
        )

    def step(tracker, boxes):
        dets = [
            norfair.Detection(np.array([[x, y], [x + w, y + h]], float), scores=np.array([c, c]), data=i)
            for i, ((x, y, w, h), c) in enumerate(boxes)
        ]
        ids = [None] * len(boxes)
        for obj in tracker.update(dets):
            if obj.last_detection is not None and any(obj.last_detection is d for d in dets):
                ids[obj.last_detection.data] = int(obj.id)
        return ids

    return make, step


def score(frames, ids, truth) -> dict:
    tracks = defaultdict(list)  # id -> [(frame, person or None)]
    for f, (boxes, keys) in enumerate(zip(frames, ids, strict=True)):
        for (box, _), k in zip(boxes, keys, strict=True):
            if k is None:
                continue
            people = [p for p, b in truth["faces"][f] if hits(box, b)]
            person = max(people, key=lambda p: iou(box, dict(truth["faces"][f])[p]), default=None)
            tracks[k].append((f, person))
    spans = [(min(f for f, _ in v), max(f for f, _ in v)) for v in tracks.values()]
    crossing = sum(any(a < c <= b for c in truth["cuts"]) for a, b in spans)
    mixed = sum(len({p for _, p in v if p}) > 1 for v in tracks.values())
    person_tracks, person_frames = defaultdict(set), defaultdict(int)
    for k, v in tracks.items():
        for _, p in v:
            if p:
                person_tracks[p].add(k)
                person_frames[p] += 1
    split = sum(len(person_tracks[p]) > 1 for p, n in person_frames.items() if n >= MIN_FRAMES)
    long = sum(len(v) >= MIN_FRAMES for v in tracks.values())
    people = sum(n >= MIN_FRAMES for n in person_frames.values())
    return {"tracks": len(tracks), "long": long, "crossing": crossing, "mixed": mixed, "split": split, "people": people}


def cut_rows(clip: Path, truth, own_cuts) -> list[str]:
    rows = []
    expected = set(truth["cuts"])
    found = {i for i, c in enumerate(own_cuts) if c}
    rows.append(("own: 16x9 grey thumbnail change", found, None))
    try:
        from scenedetect import AdaptiveDetector, ContentDetector, detect
    except ImportError:
        rows.append(("PySceneDetect (scenedetect)", None, "not installed"))
    else:
        for name, make in (("ContentDetector", ContentDetector), ("AdaptiveDetector", AdaptiveDetector)):
            start = time.perf_counter()
            scenes = detect(str(clip), make())
            ms = (time.perf_counter() - start) * 1000 / truth["frames"]
            rows.append(
                (
                    f"PySceneDetect {name} (default threshold; decoding included)",
                    {s.get_frames() for s, _ in scenes[1:]},
                    ms,
                )
            )
    out = []
    for name, cuts, ms in rows:
        if cuts is None:
            out.append(f"| {name} | {ms} | - | - |")
            continue
        timing = f"{ms:.2f}" if isinstance(ms, float) else "see note"
        out.append(f"| {name} | {len(cuts & expected)} of {len(expected)} | {len(cuts - expected)} | {timing} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, help="make the clip, detect, save the boxes here (project venv)")
    parser.add_argument("--load", type=Path, help="read the boxes saved by --save (any venv)")
    args = parser.parse_args()
    if args.load:
        saved = json.loads(args.load.read_text())
    else:
        from benchmarks.real_clip import make_clip

        folder = Path(tempfile.mkdtemp()) if not args.save else args.save.parent
        clip = make_clip(folder / "real_clip.mp4")
        frames, cuts = detect(clip.path)
        saved = {"clip": clip.to_json(), "frames": frames, "cuts": cuts}
        if args.save:
            args.save.write_text(json.dumps(saved))
    truth, frames, cuts = saved["clip"], saved["frames"], saved["cuts"]
    print(
        f"real-photo clip: {truth['frames']} frames at {FPS} fps, {len(truth['cuts'])} cuts, "
        f"{sum(map(len, frames))} detections by the default detector\n"
    )
    print("| tracker | tracks | tracks >= 0.5 s | across a cut | mixing 2 people | people split | ms / frame |")
    print("|---|---|---|---|---|---|---|")
    candidates = [("own greedy overlap", None)]
    for name, factory in (("ByteTrack (supervision 0.29)", bytetrack), ("norfair (IoU)", norfair_tracker)):
        try:
            candidates.append((name, factory()))
        except ImportError:
            print(f"| {name} | not installed | | | | | |")
    for name, parts in candidates:
        for use_cuts in (False, True):
            start = time.perf_counter()
            ids = own(frames, cuts, use_cuts) if parts is None else with_resets(*parts, frames, cuts, use_cuts)
            ms = (time.perf_counter() - start) * 1000 / len(frames)
            s = score(frames, ids, truth)
            label = f"{name}{', reset at cuts' if use_cuts else ''}"
            print(
                f"| {label} | {s['tracks']} | {s['long']} | {s['crossing']} | {s['mixed']} "
                f"| {s['split']} of {s['people']} | {ms:.2f} |"
            )
    print("\n| cut detector | cuts found | false cuts | ms / frame |\n|---|---|---|---|")
    clip_path = Path(truth["path"])
    print("\n".join(cut_rows(clip_path, truth, cuts)))


if __name__ == "__main__":
    main()
