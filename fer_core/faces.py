"""Finding faces in photos and cutting them to the 48x48 grayscale crops FER2013 models expect.

Uses the Haar cascade that ships inside `opencv-python-headless<5` (nothing is
downloaded). Large photos are searched at a reduced size and the boxes scaled back.
"""

from __future__ import annotations

import io
import os
import warnings
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .data import IMAGE_SIZE

DETECT_MAX_SIDE = 1024   # photos
VIDEO_DETECT_MAX_SIDE = 320  # video frames: a face fills much of a webcam frame
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS  # PIL's decompression-bomb limit (~179 MP): larger is refused


class ImageError(ValueError):
    """A file that cannot be used as a photo; the message says why."""


@lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    if not path.is_file():
        raise RuntimeError(f"OpenCV's Haar cascade is missing ({path}); install opencv-python-headless<5")
    return cv2.CascadeClassifier(str(path))


def load_photo(source: str | os.PathLike | bytes, name: str | None = None) -> Image.Image:
    """An uploaded or on-disk image as upright RGB (EXIF orientation applied); ImageError if unusable."""
    label = name or (str(source) if not isinstance(source, bytes) else "upload")
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
    except OSError as e:
        raise ImageError(f"{label}: cannot open ({e.strerror or e})") from None
    with fp, warnings.catch_warnings():  # big but under the limit (a 100 MP photo) is fine
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise ImageError(f"{label}: {im.width}x{im.height} is too large (limit {MAX_PIXELS:,} pixels)")
                im.seek(0)  # first frame of an animation
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                    array = np.asarray(im, dtype=np.float64)
                    span = array.max() - array.min()
                    im = Image.fromarray(((array - array.min()) / (span or 1) * 255).astype(np.uint8))
                return im.convert("RGB")
        except ImageError:
            raise
        except Image.DecompressionBombError as e:
            raise ImageError(f"{label}: refused as a possible decompression bomb ({e})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise ImageError(f"{label}: not a readable image ({e})") from None


def detect_faces(gray: np.ndarray, min_size: int = 32,
                 max_side: int = DETECT_MAX_SIDE) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in a grayscale uint8 image, left to right.

    Detection runs on the image shrunk to `max_side`: the cascade's cost grows with the pixel
    count, and video (the Live page) uses a smaller working size to keep up with the camera.
    """
    scale = min(1.0, max_side / max(gray.shape))
    small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
    small = cv2.equalizeHist(small)
    found = _cascade().detectMultiScale(small, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(max(16, int(min_size * scale)),) * 2)
    boxes = [tuple(int(round(v / scale)) for v in box) for box in found]
    return sorted(boxes, key=lambda b: (b[0], b[1]))


def crop_face(gray: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.1) -> np.ndarray:
    """The box, widened by `margin` on each side (FER2013 crops include a little context), as 48x48."""
    x, y, w, h = box
    dx, dy = int(w * margin), int(h * margin)
    x0, y0 = max(0, x - dx), max(0, y - dy)
    x1, y1 = min(gray.shape[1], x + w + dx), min(gray.shape[0], y + h + dy)
    return cv2.resize(gray[y0:y1, x0:x1], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


def to_gray(image: Image.Image | np.ndarray) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("L"))
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
