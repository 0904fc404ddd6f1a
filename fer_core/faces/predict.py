"""Photo or frame in, emotions out: face detection, 48x48 crops, per-model and ensemble probabilities.

The one pipeline behind the Recognizer (fer_core/recognizer.py: fer-predict, fer-serve, the
Predict page), the Live page and videos (fer_core/video.py: frames, tracks, smoothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..classes import CLASSES
from ..inference.calibration import Blend
from ..inference.probabilities import ensemble_probs
from .detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, DETECT_MAX_SIDE, detect_faces, to_gray
from .framing import crop_face


@dataclass
class Face:
    box: tuple[int, int, int, int]
    crop: np.ndarray  # 48x48 uint8
    confidence: float = 1.0  # the detector's; 0 for a whole-image fallback
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # model name -> [7]
    blend: Blend | None = None  # how the models' answers combine (calibrated); None: their mean

    def combined(self) -> np.ndarray:
        """The answer: the blend of the models' probabilities, or their mean."""
        if self.blend is not None:
            return self.blend(self.probabilities)
        return np.mean(list(self.probabilities.values()), axis=0)

    def label(self) -> tuple[str, float]:
        p = self.combined()
        return CLASSES[int(p.argmax())], float(p.max())


def find_faces(
    image: Image.Image | np.ndarray,
    whole_image: bool = False,
    max_side: int = DETECT_MAX_SIDE,
    detector: str = DEFAULT_DETECTOR,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    confirmed: list[tuple[int, int, int, int]] | None = None,
) -> list[Face]:
    """Faces found in the image; with whole_image=True the whole image is one face when none is found.
    `confirmed`: boxes of faces followed from earlier frames (fer_core.faces.detect_faces).

    The detector sees the colour image (the CNN detectors were trained on colour); the crops
    are cut from its grayscale version, as FER2013's faces are gray.
    """
    array = np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else image
    gray = to_gray(array)
    found = detect_faces(array, detector, min_confidence, max_side, confirmed)
    if not found and whole_image:
        box = (0, 0, gray.shape[1], gray.shape[0])
        return [Face(box, crop_face(gray, box, margin=0.0), confidence=0.0)]
    return [Face(d.box, crop_face(gray, d), confidence=d.confidence) for d in found]


def classify_faces(
    faces: list[Face],
    models: dict[str, torch.nn.Module],
    tta: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
    blend: Blend | None = None,
) -> list[Face]:
    """Each model's probabilities for each face; `tta` maps a model name to its test-time
    augmentation (none when missing: Live has a frame budget, ten views cost ten times one);
    `dtype` an autocast dtype (None: fp32, as photos are classified); `blend` how they combine."""
    if faces:
        crops = np.stack([f.crop for f in faces])
        for name, model in models.items():
            probs = ensemble_probs([model], crops, dtype=dtype, tta=(tta or {}).get(name, "none"))
            for face, p in zip(faces, probs, strict=True):
                face.probabilities[name] = p
                face.blend = blend
    return faces


@dataclass(frozen=True)
class FaceResult:
    box: tuple[int, int, int, int]  # x, y, width, height in the input image's pixels
    label: str  # the most probable of CLASSES
    confidence: float  # that class's probability
    probabilities: dict[str, float]  # every class, in CLASSES order
    detection_confidence: float  # the face detector's score (0 for a whole-image fallback)

    def to_dict(self) -> dict:
        """The JSON of one face, as `fer-predict --json` and `fer-serve` print it."""
        return {
            "box": list(self.box),
            "label": self.label,
            "confidence": round(self.confidence, 4),
            "probabilities": {c: round(p, 4) for c, p in self.probabilities.items()},
            "detection_confidence": round(self.detection_confidence, 4),
        }


def face_result(face: Face) -> FaceResult:
    probs = face.combined()
    best = int(probs.argmax())
    return FaceResult(
        tuple(int(v) for v in face.box),
        CLASSES[best],
        float(probs[best]),
        {c: float(p) for c, p in zip(CLASSES, probs, strict=True)},
        float(face.confidence),
    )


def face_json(face: Face) -> dict:
    return face_result(face).to_dict()
