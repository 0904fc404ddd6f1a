"""Which model is the default: the cheapest whose val accuracy is not significantly below the best.

A few faces of val accuracy between two models is noise: the shipped ensemble once beat `stcnn`
by 12 of 3,589 val faces and then read lower on the held-back test set, at three times the cost.
So candidates (each shipped model in its card's view, and the calibrated ensemble scored out of
fold) are compared with the most accurate one face by face, by McNemar's exact test: of the
faces exactly one of the two gets right, how likely is a split this uneven if both were equally
good (a two-sided binomial test at one half). The default is the cheapest candidate not
significantly below the best; an ensemble, dearer than each of its members, therefore becomes
the default only when it is significantly better than its best member.

Cost is the arithmetic of one face: the forward pass's GFLOP (torch's FlopCounterMode) times the
views averaged (ten-crop runs the model ten times), summed over the members an ensemble runs.
"""

from __future__ import annotations

import copy

import numpy as np

ALPHA = 0.05
VIEWS_RUN = {"none": 1, "flip": 2, "tencrop": 10}  # forward passes per face (fer_core.data.augment.tta_views)
RULE = (
    "the cheapest candidate whose val accuracy is not significantly below the best candidate's; so an ensemble "
    "is the default only when it is significantly better than its best member"
)
TEST = (
    "McNemar's exact test, two-sided (a binomial test at 1/2 on the faces exactly one of the two gets right), "
    f"alpha {ALPHA}, paired over the val faces"
)


def forward_gflop(model) -> float:
    """GFLOP of one 48x48 face through the model's forward pass (fp32 arithmetic counted by
    FlopCounterMode on a copy in training mode, batch of two: in eval mode PyTorch's fused
    transformer layer hides its matmuls from the counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).float().train()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(2, 1, 48, 48))
    return counter.get_total_flops() / 2 / 1e9


def mcnemar(right_best: np.ndarray, right_other: np.ndarray) -> dict:
    """The paired test of two models' right/wrong answers on the same faces."""
    from scipy.stats import binomtest  # scipy only when choosing

    only_best = int((right_best & ~right_other).sum())
    only_other = int((~right_best & right_other).sum())
    p = binomtest(only_best, only_best + only_other).pvalue if only_best + only_other else 1.0
    return {"only_best_right": only_best, "only_candidate_right": only_other, "p": float(p)}


def choose_default(candidates: list[dict]) -> dict:
    """`candidates`: dicts with name, gflop_per_face and right (bool per val face, the same faces
    in the same order for all). Returns the table (right left out, the test against the best
    added) in order of cost, the best and the default, with a sentence saying why."""
    best = max(candidates, key=lambda c: (c["right"].mean(), -c["gflop_per_face"]))
    table = []
    for c in sorted(candidates, key=lambda c: c["gflop_per_face"]):
        accuracy = float(c["right"].mean())
        test = mcnemar(best["right"], c["right"])
        below = c is not best and accuracy < best["right"].mean() and test["p"] < ALPHA
        row = {k: v for k, v in c.items() if k != "right"}
        table.append({**row, "accuracy": round(accuracy, 4), **test, "significantly_below_best": bool(below)})
    default = next(row for row in table if not row["significantly_below_best"])
    best_row = next(row for row in table if row["name"] == best["name"])
    if default is best_row:
        why = f"{default['name']} is the most accurate on val ({default['accuracy']:.4f}) and no cheaper model is "
        why += "within noise of it"
    else:
        why = (
            f"{default['name']} ({default['accuracy']:.4f} on val, {default['gflop_per_face']:.1f} GFLOP a face) is "
            f"not significantly below the best, {best_row['name']} ({best_row['accuracy']:.4f}, "
            f"{best_row['gflop_per_face']:.1f} GFLOP): McNemar p = {default['p']:.3f} "
            f"({default['only_candidate_right']} faces only {default['name']} gets right, "
            f"{default['only_best_right']} only {best_row['name']})"
        )
    cheaper = [row["name"] for row in table if row["gflop_per_face"] < default["gflop_per_face"]]
    if cheaper:
        why += f"; the cheaper {', '.join(cheaper)} read significantly below {best_row['name']}"
    return {
        "rule": RULE,
        "test": TEST,
        "candidates": table,
        "best": best_row["name"],
        "default": default["name"],
        "reason": why,
    }
