"""How an answer is stated: the top class, or the top two where the model is unsure.

UNSURE_BELOW was chosen on val (benchmarks/unsure_threshold.py reads the shipped models' stored
val predictions, calibrated as the records say): below a calibrated top probability of 0.5 the
top answer was wrong more often than right for stcnn and the ensemble in both views (32-43%
right per 0.1-wide bin from 0.3 to 0.5; 46-52% in 0.5-0.6; 51-74% above), and the true class
was among the top two for 64-66% of those faces. 0.5 marks 14-21% of val faces as unsure.
"""

from __future__ import annotations

import numpy as np

from ..classes import CLASSES

UNSURE_BELOW = 0.5


def top_two(probabilities) -> list[tuple[str, float]]:
    """[(class, probability)] of the top class, and of the runner-up when the top one is below
    UNSURE_BELOW. `probabilities`: [7] in CLASSES order, or a {class: probability} dict."""
    if isinstance(probabilities, dict):
        probabilities = [probabilities[c] for c in CLASSES]
    p = np.asarray(probabilities, dtype=float)
    order = np.argsort(-p, kind="stable")
    keep = order[:1] if p[order[0]] >= UNSURE_BELOW else order[:2]
    return [(CLASSES[i], float(p[i])) for i in keep]


def is_unsure(probabilities) -> bool:
    return len(top_two(probabilities)) == 2


def label_text(probabilities) -> str:
    """'happy 82%', or 'neutral 41% / sad 35%' where the model is unsure."""
    return " / ".join(f"{name} {p:.0%}" for name, p in top_two(probabilities))
