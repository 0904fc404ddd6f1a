"""Following faces through a video: which detection continues which face, and where scenes cut.

Measured on benchmarks/real_clip.py's clip (the faces-dev photos filmed by a moving camera
with 12 hard cuts) by benchmarks/tracking.py against ByteTrack (`supervision`), `norfair`
and PySceneDetect: a greedy overlap tracker that a cut resets does as well on faces that
move little between frames, needs no Kalman filter to tune, and no new dependency (norfair
pins numpy<2, scenedetect pulls in the non-headless opencv-python); see docs/faces.md.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

TRACK_MEMORY_SECONDS = 1.0  # a face unseen for longer starts a new track when it comes back
CUT_THUMBNAIL = (16, 9)  # a camera pan moves a 16x9 thumbnail's content by a fraction of a cell
# A hard cut: the thumbnail's mean absolute change (grey levels 0-255) exceeds both of these.
# On the real-photo clip, pans and zooms changed it by at most 11.4 and every cut by 46 or more.
CUT_MIN_CHANGE = 20.0
CUT_RATIO = 3.0  # ... and 3x the median change of the last CUT_HISTORY frames (a shaky camera)
CUT_HISTORY = 10


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter) if inter else 0.0


def distance(a, b) -> float:
    """Centre distance in units of b's (the track's) face size."""
    return float(np.hypot(a[0] + a[2] / 2 - b[0] - b[2] / 2, a[1] + a[3] / 2 - b[1] - b[3] / 2) / max(b[2], b[3], 1))


def similar_size(a, b, ratio: float = 1.5) -> bool:
    return max(a[2], b[2]) <= ratio * max(1, min(a[2], b[2]))


class CutDetector:
    """True for the first frame of a new shot (a hard cut), from a 16x9 grey thumbnail of each
    frame: a cut changes it by several times the usual frame-to-frame change of a moving camera.
    Fed every decoded frame: compared over skipped frames (--every), a pan looks like a cut."""

    def __init__(self):
        self.previous: np.ndarray | None = None
        self.changes: deque[float] = deque(maxlen=CUT_HISTORY)

    def __call__(self, image: np.ndarray) -> bool:
        """`image`: a frame (RGB or grey), or its 16x9 grey thumbnail already made."""
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        thumb = cv2.resize(gray, CUT_THUMBNAIL, interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self.previous = self.previous, thumb
        if previous is None:
            return False
        change = float(np.abs(thumb - previous).mean())
        usual = float(np.median(self.changes)) if self.changes else 0.0
        cut = change > CUT_MIN_CHANGE and change > CUT_RATIO * usual
        if cut:
            self.changes.clear()  # the new shot's own motion sets the usual change
        else:
            self.changes.append(change)
        return cut


class Tracker:
    """Gives each detection the id of the face it continues, greedily by overlap.

    A detection continues a track when their boxes overlap (IoU >= 0.3) or its centre moved
    less than half the track's face size (fast motion, or --every skipping frames), and the two
    are of similar size. A track outlives `memory` seconds of missed detections; a scene cut
    (`update(..., cut=True)`) ends every track, since the faces after it are other people or
    seen anew.
    """

    def __init__(self, memory: float = TRACK_MEMORY_SECONDS):
        self.memory = memory
        self.tracks: dict[int, tuple[tuple[int, int, int, int], float]] = {}  # id -> (last box, last time)
        self.next_id = 0

    def boxes_at(self, t: float) -> list[tuple[int, int, int, int]]:
        """The boxes of the tracks seen at time `t` (not those only remembered from before it)."""
        return [box for box, last in self.tracks.values() if last == t]

    def update(self, boxes: list[tuple[int, int, int, int]], t: float, cut: bool = False) -> list[int]:
        if cut:
            self.tracks = {}
        self.tracks = {k: v for k, v in self.tracks.items() if t - v[1] <= self.memory}
        pairs = sorted(
            (-iou(box, old), distance(box, old), i, k)
            for i, box in enumerate(boxes)
            for k, (old, _) in self.tracks.items()
            if similar_size(box, old)
        )
        ids: list[int | None] = [None] * len(boxes)
        taken = set()
        for neg_iou, dist, i, k in pairs:
            if ids[i] is None and k not in taken and (-neg_iou >= 0.3 or dist < 0.5):
                ids[i] = k
                taken.add(k)
        for i, box in enumerate(boxes):
            if ids[i] is None:
                ids[i], self.next_id = self.next_id, self.next_id + 1
            self.tracks[ids[i]] = (box, t)
        return ids
