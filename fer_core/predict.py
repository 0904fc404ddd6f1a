"""Photo in, emotions out: face detection, 48x48 crops, per-model and ensemble probabilities.

The one pipeline behind `fer-predict`, the dashboard's Predict page and the Live page.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from .classes import CLASSES
from .faces import DETECT_MAX_SIDE, ImageError, crop_face, detect_faces, load_photo, to_gray
from .inference import ensemble_probs, load_models, resolve_tta


@dataclass
class Face:
    box: tuple[int, int, int, int]
    crop: np.ndarray                              # 48x48 uint8
    probabilities: dict[str, np.ndarray] = field(default_factory=dict)  # model name -> [7]

    def combined(self) -> np.ndarray:
        """The ensemble: mean of the models' probabilities."""
        return np.mean(list(self.probabilities.values()), axis=0)

    def label(self) -> tuple[str, float]:
        p = self.combined()
        return CLASSES[int(p.argmax())], float(p.max())


def find_faces(image: Image.Image | np.ndarray, whole_image: bool = False,
               max_side: int = DETECT_MAX_SIDE) -> list[Face]:
    """Faces found in the image; with whole_image=True the whole image is one face when none is found."""
    gray = to_gray(image)
    boxes = detect_faces(gray, max_side=max_side)
    if not boxes and whole_image:
        boxes = [(0, 0, gray.shape[1], gray.shape[0])]
        return [Face(boxes[0], crop_face(gray, boxes[0], margin=0.0))]
    return [Face(box, crop_face(gray, box)) for box in boxes]


def classify_faces(faces: list[Face], models: dict[str, torch.nn.Module],
                   tta: dict[str, str] | None = None) -> list[Face]:
    """Each model's probabilities for each face; `tta` maps a model name to its test-time
    augmentation (none when missing: Live has a frame budget, ten views cost ten times one)."""
    if faces:
        crops = np.stack([f.crop for f in faces])
        for name, model in models.items():
            probs = ensemble_probs([model], crops, tta=(tta or {}).get(name, "none"))
            for face, p in zip(faces, probs):
                face.probabilities[name] = p
    return faces


def face_json(face: Face) -> dict:
    label, confidence = face.label()
    return {"box": list(face.box), "label": label, "confidence": round(confidence, 4),
            "probabilities": {c: round(float(p), 4) for c, p in zip(CLASSES, face.combined())}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fer-predict", description="Find faces in images and classify their emotion.")
    p.add_argument("images", nargs="+", help="image files (jpg, png, webp, bmp, ...)")
    p.add_argument("--model", default="ensemble",
                   help="shipped name (stcnn, resnet50, vit, ensemble), run id, run folder or checkpoint; "
                        "several joined by commas are averaged (default: ensemble)")
    p.add_argument("--whole-image", action="store_true", help="classify the whole image when no face is found")
    p.add_argument("--json", action="store_true", help="print JSON (a list when several images)")
    p.add_argument("--int8", action="store_true",
                   help="int8 inference for the shipped models calibrated for it (stcnn); others stay fp")
    p.add_argument("--tta", default="auto", choices=["auto", "none", "flip", "tencrop"],
                   help="test-time augmentation (default auto: the one a shipped model's card chose on val, "
                        "as fer-eval; none for other models)")
    args = p.parse_args(argv)
    try:
        models = {f"m{i}": m for i, m in enumerate(load_models(args.model, int8=args.int8))}
    except (FileNotFoundError, ValueError) as e:
        print(f"fer-predict: error: {e}", file=sys.stderr)
        return 2
    view = resolve_tta(args.tta, args.model)
    results, failed = [], False
    for path in args.images:
        try:
            faces = classify_faces(find_faces(load_photo(path), args.whole_image), models,
                                   dict.fromkeys(models, view))
            results.append({"path": path, "tta": view, "faces": [face_json(f) for f in faces]})
        except ImageError as e:
            failed = True
            results.append({"path": path, "error": str(e), "faces": []})
            print(f"fer-predict: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results))
    else:
        for r in results:
            if "error" in r:
                continue
            if not r["faces"]:
                print(f"{r['path']}: no face found (try --whole-image)")
            for i, f in enumerate(r["faces"], 1):
                print(f"{r['path']}: face {i} at {tuple(f['box'])}: {f['label']} ({f['confidence']:.0%})")
    return 1 if failed else 0
