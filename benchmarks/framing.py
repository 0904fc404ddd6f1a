"""Does the photo path read a face as the model was trained to see it? FER2013 val through it.

    .venv/bin/python benchmarks/framing.py [--data ../shared/data/fer2013] [--step 1] [--model stcnn]

Each val face (a tight 48x48 grey crop) is enlarged 4x into the middle of a 384x384 picture
whose surroundings are a blurred, twice-as-large copy of the face (so the face does not end at
a hard edge), then goes through the photo path: the default detector, then a 48x48 crop. The
shipped model (one view) classifies both the original crop and the photo path's crop of every
face the detector found; the table gives both accuracies on those faces, for several ways to
frame the crop:

- box: the detector's box widened by a margin on each side (the first photo path), squared or not;
- eyes / five landmarks: the scale and shift (and, levelled, the rotation) that move the
  landmarks (the mean of MTCNN's and YuNet's) nearest to where FER2013 faces have them - their
  median positions over train faces found the same way (printed; FER_LANDMARKS in
  fer_core/faces/framing.py holds them rounded), warped at 4x 48 px and shrunk with INTER_AREA;
- resampling variants of the chosen framing (the 4x warp shrunk otherwise). (Grey conversion cannot differ here: FER2013
  faces are grey already; the photo path converts colour with OpenCV's BT.601 weights.)

The photo path should lose less than a point against the direct crop (issue 54).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_core.classes import CLASSES  # noqa: E402
from fer_core.faces.detection import DEFAULT_DETECTOR, Detection, detect_faces, to_gray  # noqa: E402
from fer_core.faces.framing import FER_LANDMARKS, crop_face  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"
ENLARGE, CANVAS = 4, 384


def picture(face: np.ndarray) -> np.ndarray:
    """An RGB canvas with the face enlarged ENLARGE times in its middle."""
    side = 48 * ENLARGE
    outer = cv2.GaussianBlur(cv2.resize(face, (2 * side, 2 * side), interpolation=cv2.INTER_LINEAR), (0, 0), side / 12)
    canvas = cv2.resize(outer, (CANVAS, CANVAS), interpolation=cv2.INTER_AREA)
    o = (CANVAS - side) // 2
    canvas[o : o + side, o : o + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return np.repeat(canvas[..., None], 3, axis=2)


def load(data: Path, split: str, step: int):
    faces, labels = [], []
    for c in CLASSES:
        for f in sorted((data / split / c).iterdir())[::step]:
            faces.append(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE))
            labels.append(CLASSES.index(c))
    return faces, np.array(labels)


def found_in_pictures(faces) -> list[tuple[int, Detection, np.ndarray]]:
    """(face index, its detection, its picture) for each face the default detector finds."""
    found = []
    for i, face in enumerate(faces):
        rgb = picture(face)
        centre = CANVAS / 2
        dets = [
            d
            for d in detect_faces(rgb, max_side=CANVAS)
            if abs(d.box[0] + d.box[2] / 2 - centre) < 48 and abs(d.box[1] + d.box[3] / 2 - centre) < 48
        ]
        if dets:
            found.append((i, max(dets, key=lambda d: d.confidence), rgb))
    return found


def landmark_template(found) -> np.ndarray:
    """Median position of each landmark of the found faces, in the 48x48 crop's pixels."""
    offset = (CANVAS - 48 * ENLARGE) // 2
    return np.median([(np.asarray(d.frame_landmarks or d.landmarks) - offset) / ENLARGE for _, d, _ in found], axis=0)


VARIANTS = {  # name -> crop_face options
    "box + 10% margin, eyes levelled (round 2's photo path)": dict(frame="box", margin=0.1),
    "box + 10% margin, not levelled": dict(frame="box", margin=0.1, align=False),
    "box, no margin, eyes levelled": dict(frame="box", margin=0.0),
    "box + 20% margin, eyes levelled": dict(frame="box", margin=0.2),
    "eyes onto FER2013's (scale, place)": dict(frame="eyes"),
    "five landmarks (MTCNN's) onto FER2013's, levelled": dict(frame="landmarks", level=True),
    "five landmarks onto FER2013's (scale, place; the photo path now)": dict(frame="landmarks"),
    "five landmarks, shrunk bilinear": dict(frame="landmarks", interpolation=cv2.INTER_LINEAR),
    "five landmarks, shrunk bicubic": dict(frame="landmarks", interpolation=cv2.INTER_CUBIC),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--step", type=int, default=1, help="every Nth val face of each class (default all)")
    p.add_argument("--template-step", type=int, default=40, help="every Nth train face for the template")
    p.add_argument("--model", default="stcnn")
    args = p.parse_args()
    from fer_core.inference.loading import load_named_model
    from fer_core.inference.probabilities import ensemble_probs

    model = load_named_model(args.model)

    def classify(crops) -> np.ndarray:
        return ensemble_probs([model], np.stack(crops), tta="none").argmax(1)

    train = found_in_pictures(load(args.data, "train", args.template_step)[0])
    template = landmark_template(train)
    print(
        f"Template: the landmarks' median positions over {len(train)} train faces found by {DEFAULT_DETECTOR} "
        f"(FER_LANDMARKS in fer_core/faces/framing.py): {np.round(template, 1).tolist()}; "
        f"in use: {list(FER_LANDMARKS)}\n"
    )
    faces, labels = load(args.data, "val", args.step)
    found = found_in_pictures(faces)
    index = np.array([i for i, _, _ in found])
    truth = labels[index]
    direct = classify([faces[i] for i in index]) == truth
    print(
        f"{len(found)} of {len(faces)} val faces found in their {CANVAS}x{CANVAS} pictures (enlarged {ENLARGE}x); "
        f"model {args.model}, one view\n"
    )
    print(f"| framing | accuracy on the {len(found)} found faces | vs the direct 48x48 crop |\n|---|---|---|")
    print(f"| the direct 48x48 crop (as trained) | {direct.mean():.1%} | - |")
    for name, options in VARIANTS.items():
        right = classify([crop_face(to_gray(rgb), d, **options) for _, d, rgb in found]) == truth
        print(f"| {name} | {right.mean():.1%} | {100 * (right.mean() - direct.mean()):+.1f} points |")


if __name__ == "__main__":
    main()
