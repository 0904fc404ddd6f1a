"""A real-photo video for tracking and speed: the faces-dev photos filmed by a moving camera.

    .venv/bin/python benchmarks/real_clip.py OUT.mp4 [--shot-seconds 1.0]

Each photo of ../shared/data/faces-dev is one shot (a slow pan across it or a zoom into its
faces) and shots follow each other by hard cuts, as an edited video does; the last shot cuts
back to the first photo, so the same people come back after other scenes. 640x360, 30 fps,
H.264 (about 13 shots, 13 s, 2-3 MB): made on demand by the tests and benchmarks, never
committed. Deterministic: the same frames on every run. The photos stay real photographs
(crowds, 37-90 px faces, a collage, a close-up, dogs), only the camera is synthetic.

`make_clip` also returns the ground truth: for every frame, each visible face's box in the
frame and an id for (shot, face) - a face in a new shot is a new identity for a tracker, even
when the same photo comes back - and the frames where a cut happens.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.faces_dev import FACES_DEV, face_boxes  # noqa: E402

SIZE = (640, 360)
FPS = 30
# (photo, camera move): "pan" slides across the photo left to right at 1.3x the size that fills
# the frame, "zoom" closes in from that size to 1.35x on the photo's faces, "fit" shows a tall
# photo whole (black bars, as a phone clip) zooming in slightly. The order puts photos whose
# faces sit in similar places after one another, where a tracker is most tempted across a cut.
SHOTS = (
    ("2008_002506.jpg", "zoom"),
    ("2008_001322.jpg", "pan"),
    ("2007_007763.jpg", "zoom"),
    ("2008_004176.jpg", "pan"),
    ("dogs.jpg", "zoom"),
    ("2008_002079.jpg", "pan"),
    ("2009_004587.jpg", "zoom"),
    ("bald_guys.jpg", "pan"),
    ("2008_002470.jpg", "zoom"),
    ("Tom_Cruise_avp_2014_4.jpg", "fit"),
    ("2008_007676.jpg", "pan"),
    ("2008_001009.jpg", "zoom"),
    ("2008_002506.jpg", "pan"),  # back to the first photo
)


@dataclass
class Clip:
    path: Path
    frames: int
    cuts: list[int]  # the first frame of each shot after the first
    faces: list[list[tuple[str, tuple[int, int, int, int]]]]  # per frame: (face id, box in the frame)

    def to_json(self) -> dict:
        return {"path": str(self.path), "frames": self.frames, "cuts": self.cuts, "faces": self.faces}


def cameras(photo_size, faces, move: str, n: int) -> list[tuple[float, float, float]]:
    """(centre x, centre y, scale: frame pixels per photo pixel) of each of the shot's n frames."""
    w, h = photo_size
    cover = max(SIZE[0] / w, SIZE[1] / h)
    if move == "fit":
        fit = min(SIZE[0] / w, SIZE[1] / h)
        return [(w / 2, h / 2, fit * (1 + 0.15 * i / max(1, n - 1))) for i in range(n)]
    if move == "pan":
        scale = 1.3 * cover
        half_w, half_h = SIZE[0] / scale / 2, SIZE[1] / scale / 2
        cy = min(max(np.mean([y + bh / 2 for _, y, _, bh in faces]) if faces else h / 2, half_h), h - half_h)
        return [(half_w + (w - 2 * half_w) * i / max(1, n - 1), cy, scale) for i in range(n)]
    fx = np.mean([x + bw / 2 for x, _, bw, _ in faces]) if faces else w / 2
    fy = np.mean([y + bh / 2 for _, y, _, bh in faces]) if faces else h / 2
    out = []
    for i in range(n):
        scale = cover * (1 + 0.35 * i / max(1, n - 1))
        half_w, half_h = SIZE[0] / scale / 2, SIZE[1] / scale / 2
        out.append((min(max(fx, half_w), w - half_w), min(max(fy, half_h), h - half_h), scale))
    return out


def render(photo: np.ndarray, camera: tuple[float, float, float]) -> np.ndarray:
    cx, cy, scale = camera
    m = np.array([[scale, 0, SIZE[0] / 2 - scale * cx], [0, scale, SIZE[1] / 2 - scale * cy]], np.float64)
    return cv2.warpAffine(photo, m, SIZE, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def make_clip(path: Path, shot_seconds: float = 1.0, shots=SHOTS, root: Path = FACES_DEV) -> Clip:
    """Writes the clip to `path` (H.264 in mp4) and returns it with its ground truth."""
    boxes = face_boxes(root)
    n = round(shot_seconds * FPS)
    cuts, truth = [], []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"crf": "23", "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        for s, (name, move) in enumerate(shots):
            image = np.asarray(ImageOps.exif_transpose(Image.open(root / name)).convert("RGB"))
            if s:
                cuts.append(len(truth))
            for camera in cameras((image.shape[1], image.shape[0]), boxes[name], move, n):
                frame = render(image, camera)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                truth.append(visible(boxes[name], camera, f"{s}:{name}"))
        out.mux(stream.encode())
    return Clip(Path(path), len(truth), cuts, truth)


def visible(faces, camera, shot: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    """The faces whose centre is in the frame, with their boxes in frame pixels."""
    cx, cy, scale = camera
    found = []
    for i, (x, y, w, h) in enumerate(faces):
        fx, fy = SIZE[0] / 2 + scale * (x - cx), SIZE[1] / 2 + scale * (y - cy)
        fw, fh = scale * w, scale * h
        if 0 <= fx + fw / 2 < SIZE[0] and 0 <= fy + fh / 2 < SIZE[1]:
            found.append((f"{shot}#{i}", (round(fx), round(fy), round(fw), round(fh))))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the mp4 to write; its ground truth goes beside it as .json")
    parser.add_argument("--shot-seconds", type=float, default=1.0)
    args = parser.parse_args()
    clip = make_clip(args.out, args.shot_seconds)
    args.out.with_suffix(".json").write_text(json.dumps(clip.to_json()))
    print(f"{args.out}: {clip.frames} frames, {len(clip.cuts)} cuts, {args.out.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
