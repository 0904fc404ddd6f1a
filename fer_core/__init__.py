"""fer_core: data, models, run store and inference for the facial-expression lab."""

from .classes import CLASSES, NUM_CLASSES

__all__ = ["CLASSES", "NUM_CLASSES"]
