"""Face detectors compared on real photographs, then on synthetic scenes of real FER2013 faces.

    .venv/bin/python benchmarks/face_detection.py [--faces-dev ../shared/data/faces-dev] [--blazeface FILE]
        [--data ../shared/data/fer2013] [--scenes 200] [--seed 0] [--easy] [--no-synthetic]

The first table is the one the default was chosen on: ../shared/data/faces-dev, 12 real
photographs with 68 hand-checked faces (groups with 37-90 px faces, a 24-portrait collage, a
close-up, and four dogs with no person); a hit is IoU >= 0.3 or the detection's centre inside the
face's box (benchmarks/faces_dev.py). For each detector and minimum confidence: faces found and
false boxes per photo with the photo shrunk to 320 px (Live, videos), 640 px and 1024 px (the
Predict page's DETECT_MAX_SIDE), boxes on the dogs at 1024 px, and the time per photo at 320 and
640 px on 2 threads (median over the 12 photos of each one's best of three). The candidates are
in benchmarks/detectors.py; uninstalled ones print as "not installed".

Scenes: 640x480 grayscale (shown to the detectors as RGB, as a webcam frame would be; FER2013
faces have no colour), backgrounds from scikit-image's public-domain `skimage.data` photos (none
with a human face; the cat in `chelsea` stays: a cat must not be boxed), blurred noise and
gradients. `--scenes N` positive scenes get 1-3 FER2013 val faces each, pasted at 60-250 px,
rotated +-30 degrees, with random brightness, contrast and blur, then sensor noise over the
frame; N/2 negative scenes get none. Fixed seed: the same scenes on every run.

A FER2013 face is a tight 48x48 crop, without hair or ears; with `--context` (the default) each
face is set in a blurred, enlarged copy of itself (1.6x its size) so its edge does not end at
the brow and jaw. `--no-context` pastes the bare crop.

Hit: IoU >= 0.3 between a detection and the pasted face's square (each face matched once,
most confident detection first). False boxes: detections matching no face, per scene (all scenes).
"recall/false @320" is the Live page's working size (the frame shrunk to 320 px); "@640" is the
whole frame, as the Predict page searches a photo. Times: the Live call (shrink + detect) on one
and on two threads, median over the timing scenes of each one's best of three runs. Threads
are set with cv2.setNumThreads (Haar, MTCNN in cv2.dnn), omp_set_num_threads on yuface's own OpenMP runtime (YuNet),
onnxruntime's intra_op_num_threads (MTCNN in onnxruntime); dlib's HOG runs on one thread.

Synthetic scenes (the second table; `--no-synthetic` skips them and the levelling):

Levelling: single faces rotated +-30 degrees, found by the default detector and classified by
the shipped `stcnn` from the crop with and without the eyes levelled (crop_face's align).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.detectors import candidates, median_ms  # noqa: E402
from benchmarks.faces_dev import FACES_DEV, NO_FACE_PHOTO, face_boxes, iou, match  # noqa: E402
from fer_core.device import cpu_description  # noqa: E402
from fer_core.faces.detection import (  # noqa: E402
    DEFAULT_DETECTOR,
    DEFAULT_MIN_CONFIDENCE,
    DETECT_MAX_SIDE,
    VIDEO_DETECT_MAX_SIDE,
    Detection,
    detect_faces,
    load_photo,
    to_gray,
)
from fer_core.faces.framing import crop_face  # noqa: E402

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SIDES = (VIDEO_DETECT_MAX_SIDE, 640, DETECT_MAX_SIDE)


def real_photos(args) -> None:
    """The first table: every candidate and threshold on the faces-dev photographs."""
    boxes = face_boxes(args.faces_dev)
    photos = {name: np.asarray(load_photo(args.faces_dev / name)) for name in boxes}
    n_faces = sum(map(len, boxes.values()))
    print(
        f"Real photos: {len(photos)} faces-dev photographs, {n_faces} faces; hit = IoU >= 0.3 or the "
        "detection's centre in the face's box. Default in bold.\n"
    )
    print(
        "| detector | min confidence | found @320 | false / photo @320 | found @640 | false / photo @640 "
        "| found @1024 | false / photo @1024 | dogs @1024 | ms / photo @320 | ms / photo @640 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for factory, install in candidates(args.blazeface):
        try:
            cand = factory()
        except ImportError:
            print(f"| not installed: {install} | | | | | | | | | | |")
            continue
        if args.only and cand.name.split()[0].rstrip(",") not in args.only.split(","):
            continue
        cand.threads(2)
        found = {side: {name: cand(photo, side) for name, photo in photos.items()} for side in SIDES}
        ms = [median_ms(functools.partial(cand, max_side=side), list(photos.values())) for side in SIDES[:2]]
        for t in (cand.default,) if cand.unit != "[0, 1]" or "haar" in cand.name else THRESHOLDS:
            cells = []
            for side in SIDES:
                hit = false = 0
                for name, faces in boxes.items():
                    kept = sorted((d for d in found[side][name] if d.confidence >= t), key=lambda d: -d.confidence)
                    h, f, _ = match([d.box for d in kept], faces)
                    hit, false = hit + h, false + f
                cells += [f"{hit}", f"{false / len(photos):.2f}"]
            dogs = sum(d.confidence >= t for d in found[DETECT_MAX_SIDE][NO_FACE_PHOTO])
            name = f"**{cand.name}**" if cand.name == DEFAULT_DETECTOR and t == cand.default else cand.name
            print(f"| {name} | {t:g} | {' | '.join(cells)} | {dogs} | {ms[0]:.1f} | {ms[1]:.1f} |")
    print()


DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"
BACKGROUNDS = (
    "brick",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
    "cell",
    "chelsea",
    "colorwheel",
    "logo",
    "stereo_motorcycle",
)
W, H = 640, 480


# ---------------------------------------------------------------- scenes
def backgrounds() -> list[np.ndarray]:
    import skimage.data

    out = []
    for name in BACKGROUNDS:
        a = getattr(skimage.data, name)()
        a = a[0] if isinstance(a, tuple) else a
        a = a[..., :3] if a.ndim == 3 else a
        out.append(to_gray(np.ascontiguousarray(a.astype(np.uint8))))
    return out


def background(rng: np.random.Generator, photos: list[np.ndarray]) -> np.ndarray:
    kind = rng.random()
    if kind < 0.6 or kind >= 0.8:  # a crop of a photo, or (last 20%) a photo over a gradient
        p = photos[rng.integers(len(photos))]
        ch = int(min(p.shape[0], p.shape[1] * 0.75) * rng.uniform(0.5, 1.0))
        cw = int(ch / 0.75)
        y, x = rng.integers(0, p.shape[0] - ch + 1), rng.integers(0, p.shape[1] - cw + 1)
        img = cv2.resize(p[y : y + ch, x : x + cw], (W, H), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        if kind >= 0.8:
            gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)
            a = rng.uniform(0, 2 * np.pi)
            grad = (np.cos(a) * gx / W + np.sin(a) * gy / H) * rng.uniform(60, 200) + rng.uniform(0, 120)
            img = 0.5 * img + 0.5 * grad
        return img
    noise = rng.normal(0, 1, (H, W)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(1, 12))
    noise = (noise - noise.mean()) / (noise.std() + 1e-6) * rng.uniform(15, 60) + rng.uniform(60, 190)
    gy, gx = np.mgrid[0:H, 0:W].astype(np.float32)
    return noise + (gx / W - 0.5) * rng.uniform(-80, 80) + (gy / H - 0.5) * rng.uniform(-80, 80)


def face_patch(
    face48: np.ndarray, size: int, context: bool, rng: np.random.Generator, easy: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The face at `size` px (gain, offset, blur applied unless `easy`) and its alpha mask, before rotation."""
    face = cv2.resize(face48, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    if not easy:
        face = face * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30)
    sigma = 0.0 if easy else rng.uniform(0, 1.5) * size / 100
    if sigma > 0.3:
        face = cv2.GaussianBlur(face, (0, 0), sigma)
    if not context:
        mask = np.ones((size, size), np.float32)
        return face, cv2.GaussianBlur(mask, (0, 0), 1.0)
    big = int(size * 1.6)
    outer = cv2.GaussianBlur(cv2.resize(face, (big, big), interpolation=cv2.INTER_LINEAR), (0, 0), size / 10)
    o = (big - size) // 2
    inner = np.zeros((big, big), np.float32)
    inner[o : o + size, o : o + size] = 1
    inner = cv2.GaussianBlur(inner, (0, 0), size / 40 + 0.5)
    patch = outer * (1 - inner) + np.pad(face, ((o, big - size - o), (o, big - size - o))) * inner
    ramp = np.minimum(np.minimum(*np.mgrid[0:big, 0:big]), np.minimum(*np.mgrid[big - 1 : -1 : -1, big - 1 : -1 : -1]))
    return patch, np.clip(ramp / max(1, o * 0.6), 0, 1).astype(np.float32)


def scene(rng, photos, faces, n_faces: int, context: bool, max_angle: float = 30.0, easy: bool = False):
    """(RGB uint8 frame, [(box, face index, angle)]); `easy`: upright, sharp, 120-250 px faces."""
    img = background(rng, photos)
    placed, used = [], []
    for _ in range(n_faces):
        for _try in range(30):
            size = int(rng.uniform(120, 250) if easy else rng.uniform(60, 250))
            angle = 0.0 if easy else float(rng.uniform(-max_angle, max_angle))
            idx = int(rng.integers(len(faces)))
            patch, mask = face_patch(faces[idx][0], size, context, rng, easy)
            side = patch.shape[0]
            diag = int(math.ceil(side * (abs(math.cos(math.radians(angle))) + abs(math.sin(math.radians(angle))))))
            if diag >= min(W, H):
                continue
            cx, cy = rng.uniform(diag / 2, W - diag / 2), rng.uniform(diag / 2, H - diag / 2)
            box = (int(cx - size / 2), int(cy - size / 2), size, size)
            if any(math.dist((cx, cy), c) < (diag + d) / 2 for c, d in used):
                continue
            used.append(((cx, cy), diag))
            m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
            m[:, 2] += (cx - side / 2, cy - side / 2)
            warped = cv2.warpAffine(patch, m, (W, H), flags=cv2.INTER_LINEAR)
            alpha = cv2.warpAffine(mask, m, (W, H), flags=cv2.INTER_LINEAR)
            img = img * (1 - alpha) + warped * alpha
            placed.append((box, idx, angle))
            break
    img = img + rng.normal(0, rng.uniform(0, 6), img.shape)
    gray = np.clip(img, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2)), placed


def load_faces(data: Path) -> list[tuple[np.ndarray, str]]:
    classes = sorted(p.name for p in (data / "val").iterdir() if p.is_dir())
    return [
        (cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), c) for c in classes for f in sorted((data / "val" / c).iterdir())
    ]


# ---------------------------------------------------------------- scoring
def score(found: list[list[Detection]], truths: list[list], threshold: float) -> tuple[float, float, list]:
    """(recall, false boxes per scene, [(scene, face index, detection) for each hit])."""
    hits, n_faces, false = [], 0, 0
    for k, (dets, truth) in enumerate(zip(found, truths, strict=True)):
        dets = sorted((d for d in dets if d.confidence >= threshold), key=lambda d: -d.confidence)
        free = list(range(len(truth)))
        n_faces += len(truth)
        for d in dets:
            best = max(free, key=lambda i: iou(d.box, truth[i][0]), default=None)
            if best is not None and iou(d.box, truth[best][0]) >= 0.3:
                free.remove(best)
                hits.append((k, best, d))
            else:
                false += 1
    return len(hits) / max(1, n_faces), false / len(found), hits


def load_stcnn():
    from fer_core.inference.loading import load_named_model
    from fer_core.inference.probabilities import ensemble_probs

    model = load_named_model("stcnn")
    return lambda crops: ensemble_probs([model], np.stack(crops), tta="none").argmax(1)


def levelling(args, photos, faces, classes) -> None:
    rng = np.random.default_rng(args.seed + 1)
    frames = [scene(rng, photos, faces, 1, args.context) for _ in range(args.level_faces)]
    found = [detect_faces(f, max_side=640) for f, _ in frames]
    _, _, hits = score(found, [t for _, t in frames], DEFAULT_MIN_CONFIDENCE)
    classify = load_stcnn()
    labels = np.array([classes.index(faces[frames[k][1][i][1]][1]) for k, i, _ in hits])
    upright = classify([faces[frames[k][1][i][1]][0] for k, i, _ in hits])
    rows = [("the 48x48 FER2013 original, upright (ceiling)", upright)]
    for align in (False, True):
        crops = [crop_face(to_gray(frames[k][0]), d, align=align) for k, _, d in hits]
        rows.append((f"detected, {'eyes levelled' if align else 'not levelled'}", classify(crops)))
    with_marks = sum(d.landmarks is not None for _, _, d in hits)
    print(
        f"\nLevelling: {len(hits)} of {len(frames)} faces rotated +-30 deg found by {DEFAULT_DETECTOR} "
        f"(min confidence {DEFAULT_MIN_CONFIDENCE}, {with_marks} with eye landmarks), classified by stcnn "
        "(one view)\n"
    )
    steep = np.array([abs(frames[k][1][i][2]) >= 15 for k, i, _ in hits])
    print(f"| crop | stcnn accuracy, all {len(hits)} | rotated 15-30 deg ({steep.sum()}) |\n|---|---|---|")
    for name, pred in rows:
        print(f"| {name} | {np.mean(pred == labels):.1%} | {np.mean(pred[steep] == labels[steep]):.1%} |")
    plain, levelled = rows[1][1] == labels, rows[2][1] == labels
    print(
        f"\nLevelling turned {np.sum(levelled & ~plain)} wrong answers right and {np.sum(plain & ~levelled)} "
        "right answers wrong."
    )
    errs = [
        abs(
            math.degrees(math.atan2(d.landmarks[1][1] - d.landmarks[0][1], d.landmarks[1][0] - d.landmarks[0][0]))
            + frames[k][1][i][2]
        )
        for k, i, d in hits
        if d.landmarks
    ]
    if errs:
        print(f"\nEye-line angle vs the pasted rotation: median error {statistics.median(errs):.1f} deg")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--scenes", type=int, default=200, help="positive scenes (1-3 faces); half as many negatives")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--context",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="set each tight FER2013 crop in a blurred enlarged copy of itself (default on)",
    )
    p.add_argument(
        "--easy",
        action="store_true",
        help="faces upright, unblurred, unchanged in brightness and 120-250 px: how many FER2013 crops a "
        "detector finds at all (the ceiling of the default scenes)",
    )
    p.add_argument("--timing-scenes", type=int, default=30)
    p.add_argument("--level-faces", type=int, default=400, help="faces for the levelling test (0: skip it)")
    p.add_argument("--only", default="", help="comma-separated detector names to run (default all)")
    p.add_argument("--faces-dev", type=Path, default=FACES_DEV, help="the real-photo set (default %(default)s)")
    p.add_argument("--blazeface", type=Path, help="BlazeFace's face_detection_short_range.tflite (see detectors.py)")
    p.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=True, help="also the synthetic scenes")
    args = p.parse_args()
    print(f"CPU: {cpu_description()}, OpenCV {cv2.__version__}, load average {os.getloadavg()[0]:.2f} at start\n")
    real_photos(args)
    if not args.synthetic:
        return

    faces = load_faces(args.data)
    from fer_core.classes import CLASSES

    classes = list(CLASSES)  # the models' label order (not the folders' alphabetical one)
    photos = backgrounds()
    rng = np.random.default_rng(args.seed)
    pos = [scene(rng, photos, faces, int(rng.integers(1, 4)), args.context, easy=args.easy) for _ in range(args.scenes)]
    neg = [scene(rng, photos, faces, 0, args.context, easy=args.easy) for _ in range(args.scenes // 2)]
    frames, truths = [f for f, _ in pos + neg], [t for _, t in pos + neg]
    n_faces = sum(len(t) for t in truths)
    print(
        f"Synthetic scenes: {len(pos)} scenes with {n_faces} faces + {len(neg)} face-free scenes, 640x480, "
        f"seed {args.seed}, "
        f"faces {'in a blurred context' if args.context else 'as bare crops'}"
        f"{', easy (upright, sharp, 120-250 px)' if args.easy else ''}; hit = IoU >= 0.3\n"
    )
    rows, sweeps = [], []
    for factory, install in candidates(args.blazeface):
        try:
            cand = factory()
        except ImportError as e:
            rows.append(f"| not installed: {install} | - | - | - | - | - | - | - | ({e.name or e}) |")
            continue
        if args.only and cand.name.split()[0] not in args.only.split(","):
            continue
        cand.threads(2)
        found = {side: [cand(f, side) for f in frames] for side in (VIDEO_DETECT_MAX_SIDE, 640)}
        timing = [f for f, t in pos[: args.timing_scenes]]
        ms = {}
        for n in (1, 2):
            cand.threads(n)
            ms[n] = median_ms(functools.partial(cand, max_side=VIDEO_DETECT_MAX_SIDE), timing)
        r320, f320, _ = score(found[VIDEO_DETECT_MAX_SIDE], truths, cand.default)
        r640, f640, _ = score(found[640], truths, cand.default)
        rows.append(
            f"| {cand.name} | {cand.default:g} | {r320:.1%} | {f320:.3f} | {r640:.1%} | {f640:.3f} "
            f"| {ms[1]:.1f} | {ms[2]:.1f} | {cand.package}; {cand.licence} |"
        )
        if cand.unit == "[0, 1]" and cand.name != "haar":
            for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
                a, b, _ = score(found[VIDEO_DETECT_MAX_SIDE], truths, t)
                c, d, _ = score(found[640], truths, t)
                sweeps.append(f"| {cand.name} | {t:g} | {a:.1%} | {b:.3f} | {c:.1%} | {d:.3f} |")
    print(
        "| detector | min confidence | recall @320 | false boxes / image @320 | recall @640 "
        "| false boxes / image @640 | ms / frame, 1 thread | ms / frame, 2 threads | package; licence |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(
        "\nMinimum confidence sweep\n\n| detector | min confidence | recall @320 | false boxes / image @320 "
        "| recall @640 | false boxes / image @640 |\n|---|---|---|---|---|---|"
    )
    print("\n".join(sweeps))
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (2 cores: above ~0.5 other work shares the CPU)")
    if args.level_faces:
        levelling(args, photos, faces, classes)


if __name__ == "__main__":
    main()
