"""The seven FER2013 classes: the one definition of their order and their names.

The order is the one of the original Kaggle `fer2013.csv` (`emotion` column), so a
label index means the same thing in every file, checkpoint and chart of the project.
"""

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASSES)

# Folder names people use for the same emotions (AffectNet, CK+, RAF-DB, FER+ ...).
SYNONYMS = {
    "angry": "angry",
    "anger": "angry",
    "mad": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "disgusting": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "happy_face": "happy",
    "sad": "sad",
    "sadness": "sad",
    "unhappy": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "surprising": "surprise",
    "neutral": "neutral",
    "calm": "neutral",
    "neutrality": "neutral",
}


def class_index(name: str) -> int | None:
    """Index of a class given any of its common names (case-insensitive); None if unknown."""
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    canonical = SYNONYMS.get(key)
    return None if canonical is None else CLASSES.index(canonical)
