"""The real-photo development set (../shared/data/faces-dev): its photos, face boxes and hit rule.

Twelve real photographs with 68 hand-checked face boxes (groups with 37-90 px faces, a collage
of 24 portraits, a close-up, and dogs with no person); see its README. Box conventions differ
between detectors (dlib's boxes are tight around eyes, nose and mouth), so a detection hits a
face when their IoU is at least 0.3 or the detection's centre lies inside the face's box. Used
by benchmarks/face_detection.py, benchmarks/real_clip.py and the tests.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FACES_DEV = Path(os.environ.get("FACES_DEV_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "faces-dev"))
NO_FACE_PHOTO = "dogs.jpg"  # four dogs and no person: every box here is a false one


def face_boxes(root: Path = FACES_DEV) -> dict[str, list[tuple[int, int, int, int]]]:
    """File name -> [x, y, w, h] of each face, in the order boxes.json lists them."""
    images = json.loads((root / "boxes.json").read_text())["images"]
    return {name: [tuple(box) for box in boxes] for name, boxes in sorted(images.items())}


def iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def hits(box, face) -> bool:
    """The faces-dev rule: IoU >= 0.3, or the detection's centre inside the face's box."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return iou(box, face) >= 0.3 or (face[0] <= cx <= face[0] + face[2] and face[1] <= cy <= face[1] + face[3])


def match(boxes: list, faces: list) -> tuple[int, int, list[int]]:
    """(faces found, false boxes, indices of the faces missed). `boxes` in the order to match them
    (most confident first); each face is matched once, to the detection that overlaps it most."""
    free, false = list(range(len(faces))), 0
    for box in boxes:
        candidates = [i for i in free if hits(box, faces[i])]
        if candidates:
            free.remove(max(candidates, key=lambda i: iou(box, faces[i])))
        else:
            false += 1
    return len(faces) - len(free), false, free
