"""Where is a model unsure? Accuracy by calibrated top probability on val (fer_core/inference/labels.py).

    .venv/bin/python benchmarks/unsure_threshold.py

Reads the shipped models' stored per-face val predictions (results/models/predictions), applies
the calibration their records hold (stcnn's temperature; the ensemble's weights and
temperatures) and prints, per 0.1-wide bin of the top probability, the share of faces, how
often the top answer is right and how often the true class is among the top two, for one view
(videos, Live) and ten crops (photos). UNSURE_BELOW is where the top answer stops being right
more often than wrong.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_core.inference.labels import UNSURE_BELOW  # noqa: E402
from fer_core.inference.registry import ensemble_members, shipped_blend  # noqa: E402
from fer_core.runs.predictions import probabilities, shipped_predictions  # noqa: E402


def main() -> None:
    rows = shipped_predictions()
    print(f"UNSURE_BELOW = {UNSURE_BELOW}\n")
    print("| model | view | top probability | share of faces | top answer right | truth in top two |")
    print("|---|---|---|---|---|---|")
    for model in ("stcnn", "ensemble"):
        members = ensemble_members() if model == "ensemble" else [model]
        for view in ("none", "tencrop"):
            probs, labels = {}, None
            for name in members:
                frame = rows[(rows.model == name) & (rows.tta == view)].sort_values("index")
                probs[name], labels = probabilities(frame), frame.label.to_numpy()
            blend = shipped_blend(model, dict.fromkeys(members, view)) or shipped_blend(model, {model: "tencrop"})
            p = blend(probs) if blend else np.mean(list(probs.values()), axis=0)
            top, order = p.max(1), np.argsort(-p, 1)
            right, in_two = order[:, 0] == labels, (order[:, :2] == labels[:, None]).any(1)
            for lo in np.arange(0.2, 1.0, 0.1):
                m = (top >= lo) & (top < lo + 0.1 if lo < 0.85 else top <= 1)
                if m.any():
                    print(
                        f"| {model} | {view} | {lo:.1f}-{lo + 0.1:.1f} | {m.mean():.1%} | {right[m].mean():.1%} "
                        f"| {in_two[m].mean():.1%} |"
                    )
            below = top < UNSURE_BELOW
            print(
                f"| {model} | {view} | **below {UNSURE_BELOW}** | {below.mean():.1%} | {right[below].mean():.1%} "
                f"| {in_two[below].mean():.1%} |"
            )


if __name__ == "__main__":
    main()
