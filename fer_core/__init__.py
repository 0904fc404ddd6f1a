"""fer_core: data, models, run store and inference for the facial-expression lab.

The library call is `fer_core.Recognizer` (fer_core/faces/recognizer.py); it is imported on first
use, so that `import fer_core.runs.runstore` does not load PyTorch and OpenCV.
"""

from .classes import CLASSES, NUM_CLASSES

__all__ = ["CLASSES", "NUM_CLASSES", "FaceResult", "Recognizer"]


def __getattr__(name: str):
    if name in ("Recognizer", "FaceResult"):
        from .faces import recognizer

        return getattr(recognizer, name)
    raise AttributeError(f"module 'fer_core' has no attribute {name!r}")
