"""Framing a found face as FER2013 frames its faces: the 48x48 grayscale crop the models read.

FER2013's faces were centred on their features, not on a detector's box: moving a photo's five
landmarks onto where FER2013's faces have theirs (FER_LANDMARKS) read faces as the models were
trained, where the box framing lost 7-15 points (benchmarks/framing.py, docs/faces.md).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..data.fer2013 import IMAGE_SIZE
from .detection import Detection

# Where FER2013 faces have their eyes, nose and mouth corners in the 48x48 crop, as the default
# detector's landmarks (the mean of MTCNN's and YuNet's) see them: medians over 661 train faces
# found by benchmarks/framing.py (image-left eye first), never val. Moving a photo's face onto
# these reads it as the models were trained.
FER_LANDMARKS = ((14.5, 18.5), (32.88, 18.0), (23.5, 28.38), (16.38, 37.38), (31.94, 37.06))
WARP_SCALE = 4  # the landmark crop is warped at 4x 48 px, then shrunk with INTER_AREA (antialiased)


def crop_face(
    gray: np.ndarray,
    face: Detection | tuple[int, int, int, int],
    margin: float = 0.1,
    align: bool = True,
    frame: str = "landmarks",
    interpolation: int | None = None,
    level: bool = False,
) -> np.ndarray:
    """The face as a 48x48 crop framed as FER2013's are.

    With landmarks and `align`, frame="landmarks" moves the five landmarks (or, with two, the
    eyes) as near as one scale and a shift can to where FER2013 faces have them (FER_LANDMARKS),
    turned level too with `level`: FER2013's faces were centred, not levelled, and levelling
    lost 0.1-0.4 points (benchmarks/framing.py, docs/faces.md; the box framing lost 7-15).
    Otherwise (a plain box, Haar, align=False or frame="box") the box widened by `margin` on
    each side, turned about its centre to level the eyes when `align` and landmarks allow.
    Shrinking uses INTER_AREA unless `interpolation` says otherwise.
    """
    interpolation = cv2.INTER_AREA if interpolation is None else interpolation
    box = face.box if isinstance(face, Detection) else tuple(face)
    marks = face.landmarks if isinstance(face, Detection) else None
    if align and marks and len(marks) >= 2 and frame in ("landmarks", "eyes"):
        if not level:  # levelling needs the landmarks' angle, which MTCNN's follow and the mean half
            marks = face.frame_landmarks or marks
        points = len(marks) if frame == "landmarks" and len(marks) == len(FER_LANDMARKS) else 2
        return _landmark_crop(gray, marks[:points], interpolation, level)
    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    if align and marks and len(marks) >= 2:
        (x0, y0), (x1, y1) = marks[0], marks[1]
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
        out_w, out_h = w + 2 * dx, h + 2 * dy
        cx, cy = x + w / 2, y + h / 2
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        m[:, 2] += (out_w / 2 - cx, out_h / 2 - cy)
        region = cv2.warpAffine(gray, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(region, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(gray.shape[1], x + w + dx), min(gray.shape[0], y + h + dy)
    return cv2.resize(gray[y0:y1, x0:x1], (IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation)


def similarity(src, dst, rotate: bool = True) -> np.ndarray:
    """The 2x3 rotation (unless not `rotate`) + uniform scale + shift taking points `src`
    nearest to `dst` (least squares)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    a = (src - src.mean(0)) @ (1, 1j)
    b = (dst - dst.mean(0)) @ (1, 1j)
    z = (np.conj(a) @ b) / max(float((np.conj(a) @ a).real), 1e-9)  # scale * e^(i angle)
    z = z if rotate else z.real
    rotation = np.array([[z.real, -z.imag], [z.imag, z.real]])
    return np.hstack([rotation, (dst.mean(0) - rotation @ src.mean(0))[:, None]])


def _landmark_crop(gray: np.ndarray, marks, interpolation: int, level: bool) -> np.ndarray:
    """48x48 with the landmarks moved onto FER_LANDMARKS: warped at WARP_SCALE x 48 px, then
    shrunk with `interpolation`. A very large face is first shrunk (the same way) near that
    scale, so the warp resamples little."""
    marks = np.asarray(marks, np.float64)
    template = np.asarray(FER_LANDMARKS[: len(marks)]) * WARP_SCALE
    m = similarity(marks, template, level)
    scale = math.hypot(m[0, 0], m[1, 0])  # warped pixels per image pixel
    if scale < 0.9:  # cut the neighbourhood the crop can reach, shrink it, and work in its pixels
        cx, cy = marks.mean(0)
        reach = int(IMAGE_SIZE * WARP_SCALE * 1.5 / scale) + 2
        x0, y0 = max(0, int(cx) - reach), max(0, int(cy) - reach)
        region = gray[y0 : int(cy) + reach, x0 : int(cx) + reach]
        size = (max(1, round(region.shape[1] * scale)), max(1, round(region.shape[0] * scale)))
        gray = cv2.resize(region, size, interpolation=interpolation)
        marks = (marks - (x0, y0)) * (size[0] / region.shape[1], size[1] / region.shape[0])
        m = similarity(marks, template, level)
    side = IMAGE_SIZE * WARP_SCALE
    warped = cv2.warpAffine(gray, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(warped, (IMAGE_SIZE, IMAGE_SIZE), interpolation=interpolation)
