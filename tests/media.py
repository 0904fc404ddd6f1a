"""Real FER2013 faces as the media users give the code: photos, webcam streams (Y4M), video files.
Import them from tests.conftest (which re-exports them) or from here."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from PIL import Image


def happy_face(fer2013: Path) -> Path:
    return sorted((fer2013 / "val" / "happy").iterdir())[0]


@functools.cache
def _detectable(fer2013: Path, split: str, cls: str, n: int) -> tuple[Path, ...]:
    from fer_core.faces.detection import detect_faces

    found = []
    for f in sorted((fer2013 / split / cls).iterdir()):
        if len(detect_faces(np.asarray(make_photo([f], size=(400, 400))))) == 1:
            found.append(f)
            if len(found) == n:
                return tuple(found)
    raise AssertionError("no detectable faces found")


def detectable_faces(fer2013: Path, split: str = "val", cls: str = "happy", n: int = 2) -> list[Path]:
    """Real FER2013 faces that the default detector finds once enlarged (most of them)."""
    return list(_detectable(Path(fer2013), split, cls, n))


def make_photo(faces: list[Path], size=(640, 480), face_px: int = 180) -> Image.Image:
    """A grayscale 'photo': real 48x48 faces enlarged and pasted side by side on a plain background."""
    canvas = Image.new("L", size, 128)
    step = size[0] // len(faces)
    for i, f in enumerate(faces):
        face = Image.open(f).convert("L").resize((face_px, face_px), Image.Resampling.BICUBIC)
        canvas.paste(face, (i * step + (step - face_px) // 2, (size[1] - face_px) // 2))
    return canvas.convert("RGB")


def write_y4m(frames: list[Image.Image], path: Path, fps: int = 10) -> Path:
    """A Y4M video (Chromium's fake camera format) from RGB frames of the same size."""
    w, h = frames[0].size
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y = np.asarray(frame.convert("L"), dtype=np.uint8)
            out.write(b"FRAME\n" + y.tobytes() + bytes([128]) * (w * h // 2))
    return path


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 25) -> Path:
    """RGB frames to a real video file: mp4v in .mp4, MJPG in .avi (OpenCV's writers)."""
    import cv2

    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_video(path: Path, faces: list[Path], seconds: float = 3, fps: int = 10, size=(640, 360)) -> Path:
    """A video of real FER2013 faces: each face in turn for an equal share of the frames,
    drifting a little to the right (so tracking has something to follow)."""
    n = round(seconds * fps)
    frames = [
        np.roll(np.asarray(make_photo([faces[i * len(faces) // n]], size=size, face_px=170)), 2 * i, axis=1)
        for i in range(n)
    ]
    return write_clip(path, frames, fps)
