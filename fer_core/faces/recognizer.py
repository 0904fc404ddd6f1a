"""The library call: the faces in a photo or frame and their emotions, in one object.

    from fer_core import Recognizer

    recognize = Recognizer("stcnn")             # a shipped name, "ensemble", a run id, a run folder or a checkpoint
    for face in recognize("photo.jpg"):         # a path, a PIL image, or a numpy array (RGB; color="bgr" for OpenCV)
        print(face.box, face.label, face.confidence, face.probabilities)
    per_image = recognize.batch(["a.jpg", "b.jpg"])   # one list of faces per image; all crops in one pass

The models are loaded once, when the object is made; calls reuse them. `fer-predict`, the
dashboard's Predict page and `fer-serve` all go through this class, so a photo gets the same
answer everywhere.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os

import cv2
import numpy as np
from PIL import Image, ImageOps

from ..inference.loading import choose_runtime, load_models, load_named_model
from ..inference.registry import (
    default_model,
    ensemble_members,
    ensemble_runs,
    member_views,
    resolve,
    resolve_models,
    shipped_blend,
)
from .detection import (
    DEFAULT_DETECTOR,
    DEFAULT_MIN_CONFIDENCE,
    DETECT_MAX_SIDE,
    check_pixels,
    load_photo,
    reduce_image,
    reduction,
    scale_box,
)
from .predict import Face, FaceResult, classify_faces, face_result, find_faces

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray


def as_rgb(image: ImageInput, color: str = "rgb") -> tuple[Image.Image | np.ndarray, tuple[float, float]]:
    """A path or bytes (decoded, EXIF rotation applied), a PIL image, or an array in `color` order,
    within the image budget (fer_core/faces/detection.py: over MAX_PIXELS refused, over WORKING_PIXELS
    reduced); with the (x, y) factors from its pixels to the input's own."""
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr' (got {color!r})")
    if isinstance(image, (str, os.PathLike, bytes)):
        photo = load_photo(image)
        return photo, photo.info["fer_scale"]
    if isinstance(image, Image.Image):
        check_pixels("image", *image.size)
        scale = image.info.get("fer_scale", (1.0, 1.0))  # one that load_photo reduced
        factor = reduction(*image.size)
        if factor > 1:
            small = reduce_image(image, factor)
            image, scale = small, (scale[0] * image.width / small.width, scale[1] * image.height / small.height)
        return ImageOps.exif_transpose(image).convert("RGB"), scale
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"a numpy image must be uint8 (got {array.dtype})")
    if array.ndim == 3 and array.shape[2] == 4:
        array = array[..., :3]
    if array.ndim == 3 and color == "bgr":
        array = array[..., ::-1]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"a numpy image must be HxW or HxWx3 (got shape {array.shape})")
    height, width = array.shape[:2]
    check_pixels("image", width, height)
    factor = reduction(width, height)
    if factor > 1:
        size = (math.ceil(width / factor), math.ceil(height / factor))
        array = cv2.resize(np.ascontiguousarray(array), size, interpolation=cv2.INTER_AREA)
        return array, (width / size[0], height / size[1])
    return np.ascontiguousarray(array), (1.0, 1.0)


def in_input_pixels(result: FaceResult, scale: tuple[float, float]) -> FaceResult:
    """A face found in a reduced image, its box in the pixels of the image given."""
    return result if scale == (1.0, 1.0) else dataclasses.replace(result, box=scale_box(result.box, scale))


class Recognizer:
    """`model` is one spec (several joined by commas, or "ensemble", are averaged), or a list of
    specs to keep apart: each face then carries every model's probabilities (the Predict page)."""

    def __init__(
        self,
        model: str | list[str] | None = None,
        *,
        tta: str | dict[str, str] = "auto",
        int8: bool = False,
        backend: str = "auto",
        detector: str = DEFAULT_DETECTOR,
        min_face_confidence: float = DEFAULT_MIN_CONFIDENCE,
        whole_image: bool = False,
        max_side: int = DETECT_MAX_SIDE,
        calibrated: bool = True,
        runs_dir=None,
    ):
        """`model` defaults to the best shipped thing on val (registry.default_model). `tta="auto"`
        uses the test-time view a shipped model's record chose on val (none for runs and
        checkpoints); "none", "flip" or "tencrop" choose one. `whole_image` classifies the whole
        image as one face when none is found; a dict gives each spec of a list its own view.
        `int8` runs the shipped int8 versions on ONNX Runtime; `backend="onnx"` runs full
        precision there too (fer_core/inference/loading.py). `calibrated` applies the temperatures and
        ensemble weights the records hold (fitted on val); probabilities then mean what they say,
        and the ensemble's label is the weighted one its card reports."""
        model = default_model() if model is None else model
        self.model, self.calibrated = model, calibrated
        if isinstance(model, str):  # each name resolved once (registry.ModelRef), then handed down
            self.refs = resolve_models(model, runs_dir)
            self.models = dict(zip(self.refs, load_models(self.refs, "cpu", int8=int8, backend=backend), strict=True))
            self.views = member_views(model, tta, self.refs)
        else:
            self.refs = {spec: resolve(spec, runs_dir) for spec in model}
            self.models = {
                spec: load_models({spec: ref}, "cpu", int8=int8, backend=backend)[0] for spec, ref in self.refs.items()
            }
            views = tta if isinstance(tta, dict) else dict.fromkeys(model, tta)
            self.views = {
                spec: ref.view if views.get(spec, "auto") == "auto" else views[spec] for spec, ref in self.refs.items()
            }
        self._blend()
        self._options = {"int8": int8, "backend": backend}
        self._batch_models: dict = {}  # filled on first use; shared with with_options() copies
        self.detector, self.min_face_confidence = detector, min_face_confidence
        self.whole_image, self.max_side = whole_image, max_side

    def _blend(self) -> None:
        """The blend for the current views, and the view to report (one, or "auto" for each card's)."""
        views = set(self.views.values())
        self.tta = views.pop() if len(views) == 1 else "auto"
        spec = self.model
        if not isinstance(spec, str):  # models side by side: the ensemble's blend over its members
            members = ({*ensemble_members()}, {*ensemble_runs()})  # all of them, or those it runs
            spec = "ensemble" if set(spec) in members else ",".join(spec)
        self.blend = shipped_blend(spec, self.views, self.refs) if self.calibrated else None

    def batch_models(self) -> dict:
        """The models for batched work (a video's frames): where `auto` measures another runtime
        faster on batches than on single faces (fer_core/inference/loading.py), that one, loaded once."""
        if not self._batch_models:
            options = self._options
            self._batch_models.update(
                {
                    name: model
                    if choose_runtime(self.refs[name], **options, batched=True)
                    == choose_runtime(self.refs[name], **options)
                    else load_named_model(self.refs[name], "cpu", backend="torch")
                    for name, model in self.models.items()
                }
            )
        return self._batch_models

    def faces(self, images: list[ImageInput], color: str = "rgb") -> list[list[Face]]:
        """The pipeline's own Face objects (with their 48x48 crops), classified in one pass; boxes
        in the pixels of the image as worked on (a large one reduced: see as_rgb)."""
        return [faces for faces, _ in self._faces(images, color)]

    def _faces(self, images: list[ImageInput], color: str) -> list[tuple[list[Face], tuple[float, float]]]:
        found = []
        for image in images:  # one decoded image at a time: the crops are what is kept
            rgb, scale = as_rgb(image, color)
            found.append(
                (find_faces(rgb, self.whole_image, self.max_side, self.detector, self.min_face_confidence), scale)
            )
            del rgb
        classify_faces([face for faces, _ in found for face in faces], self.models, self.views, blend=self.blend)
        return found

    def with_options(self, *, tta: str | None = None, **detection) -> Recognizer:
        """The same loaded models with another view (one-spec recognizers) or other detection
        settings (detector, min_face_confidence, whole_image, max_side): cheap, for a server or a
        page that changes them per call."""
        unknown = set(detection) - {"detector", "min_face_confidence", "whole_image", "max_side"}
        if unknown:
            raise TypeError(f"not a detection option: {', '.join(sorted(unknown))}")
        other = copy.copy(self)
        other.__dict__.update(detection)
        if tta is not None:
            if not isinstance(self.model, str):
                raise ValueError("tta applies to a one-spec recognizer; give a list's views when making it")
            other.views = member_views(self.model, tta, self.refs)
            other._blend()
        return other

    def batch(self, images: list[ImageInput], color: str = "rgb") -> list[list[FaceResult]]:
        """Per image its faces, boxes in the pixels of the image given (the file's, for a path)."""
        return [
            [in_input_pixels(face_result(face), scale) for face in faces] for faces, scale in self._faces(images, color)
        ]

    def __call__(self, image: ImageInput, color: str = "rgb") -> list[FaceResult]:
        return self.batch([image], color)[0]
