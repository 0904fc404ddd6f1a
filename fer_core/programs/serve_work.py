"""fer-serve's work on one /predict request, in a pool thread and free of the web framework:
every upload measured from its header, then decoded and classified a few images at a time.
A request it cannot serve raises ClientError, which the app turns into a JSON answer."""

import io
import threading
import warnings
from contextlib import nullcontext

from ..faces.detection import DETECT_MAX_SIDE, WORKING_PIXELS
from .serve_pool import Recognizers

_haar_lock = threading.Lock()  # OpenCV's cascade object is shared; do not count on it being re-entrant


class ClientError(Exception):
    """A request the server refuses; the status and the message go to the client as they are."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def measure(name: str, data: bytes, max_pixels: int) -> tuple[int, str]:
    """An uploaded file's pixel count and format from its header (nothing decoded yet), or
    ClientError saying why it cannot be used."""
    from PIL import Image

    if not data:
        raise ClientError(400, f"{name}: the file is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                width, height, kind = *im.size, im.format
        except Image.DecompressionBombError:
            raise ClientError(413, f"{name}: too many pixels (the limit is {max_pixels:,})") from None
        except Exception:
            raise ClientError(
                415,
                f"{name}: not an image ({len(data):,} bytes in no format this server reads; "
                "send a JPEG, PNG, WebP, BMP, TIFF or GIF image)",
            ) from None
    if width * height > max_pixels:
        raise ClientError(413, f"{name}: {width}x{height} is {width * height:,} pixels; the limit is {max_pixels:,}")
    if min(width, height) * min(1.0, DETECT_MAX_SIDE / max(width, height)) < 1:
        # shrunk for the detector a side would be 0 pixels: no face can be found, so say why
        raise ClientError(422, f"{name}: {width}x{height} is too narrow to search for faces")
    return width * height, kind


def decode(name: str, data: bytes, kind: str):
    """An uploaded file as an upright RGB PIL image, or ClientError saying why not."""
    from ..faces.detection import ImageError, load_photo

    try:
        return load_photo(data, name=name)
    except ImageError as e:  # a known format, but broken (truncated, corrupt)
        raise ClientError(422, f"{e} (a {kind} file that cannot be decoded)") from None


def run_predict(recognizers: Recognizers, uploads: list[tuple[str, bytes]], options: dict, max_pixels: int):
    """In a pool thread: every file's header first (a file that is no image or too large fails
    the request before any work), then the faces found and classified, several images in one
    pass as long as their decoded pixels (each reduced to WORKING_PIXELS at most) add up to no
    more than one image's (so that a request of many large photos never holds them all at once)."""
    sizes = [
        (min(px, WORKING_PIXELS), kind) for px, kind in (measure(name, data, max_pixels) for name, data in uploads)
    ]
    max_pixels = min(max_pixels, WORKING_PIXELS)
    recognizer = recognizers.get(**options)
    results, group = [], []

    def flush():
        images = [decode(name, data, kind) for (name, data), (_, kind) in group]
        with _haar_lock if options["detector"] == "haar" else nullcontext():
            per_image = recognizer.batch(images)
        results.extend(
            {"path": name, "tta": recognizer.tta, "faces": [face.to_dict() for face in faces]}
            for ((name, _), _), faces in zip(group, per_image, strict=True)
        )
        group.clear()

    for upload, size in zip(uploads, sizes, strict=True):
        if group and sum(px for _, (px, _) in group) + size[0] > max_pixels:
            flush()
        group.append((upload, size))
    flush()
    return results
