"""Would a weighted average of the shipped models beat the plain mean that `ensemble` is?
(README, Reference models.)

    .venv/bin/python scripts/ensemble_weights.py [--data ../shared/data/fer2013] [--tta none flip]
        [--models stcnn RUN_ID ...]

Computes each member's val (PublicTest) probabilities once per view (by default the shipped
`ensemble`'s members; `--models` takes any names, run ids or checkpoints), then prints the
val accuracy of every member alone, of the plain mean, of the mean of log-probabilities,
and of the best weights on a 0.1 grid; then how often the members agree with the first.
Weights picked this way are fitted on val itself, so their accuracy is an upper bound on
what weighting could buy, not an estimate of the test.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fer_core.data.fer2013 import load_dataset
from fer_core.inference.calibration import weight_grid
from fer_core.inference.loading import load_named_model
from fer_core.inference.probabilities import predict_probs
from fer_core.inference.registry import ENSEMBLE

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tta", nargs="+", default=["none", "flip"], choices=["none", "flip", "tencrop"])
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(ENSEMBLE),
        metavar="MODEL",
        help="shipped names, run ids or checkpoint paths (default: the ensemble's members)",
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    val = load_dataset(args.data).splits["val"]
    models = [load_named_model(name) for name in args.models]  # a list: a member named twice counts twice
    accuracy = lambda probs: float((probs.argmax(1) == val.labels).mean())  # noqa: E731
    print(f"val split of {args.data}, n={len(val)}, fp32; weights in the order {', '.join(args.models)}\n")
    print("| view | " + " | ".join(args.models) + " | mean | mean of logs | best weights on val | their accuracy |")
    print("|---|" + "---|" * (len(args.models) + 4))
    agreement = []
    for tta in args.tta:
        probs, log_probs = map(np.stack, zip(*(predict_probs(m, val.images, tta=tta) for m in models), strict=True))
        best = max(weight_grid(len(args.models)), key=lambda w: accuracy(np.tensordot(w, probs, axes=1)))
        cells = [f"{accuracy(p):.4f}" for p in probs]
        cells += [
            f"{accuracy(probs.mean(0)):.4f}",
            f"{accuracy(log_probs.mean(0)):.4f}",
            " / ".join(f"{w:.1f}" for w in best),
            f"{accuracy(np.tensordot(best, probs, axes=1)):.4f}",
        ]
        print(f"| {tta} | " + " | ".join(cells) + " |")
        predictions = probs.argmax(2)
        agreement.append(
            f"{tta}: "
            + ", ".join(
                f"{name} {(predictions[i] == predictions[0]).mean():.2f}" for i, name in enumerate(args.models) if i
            )
        )
    print(f"\nshare of val faces on which each member predicts what {args.models[0]} does: " + "; ".join(agreement))


if __name__ == "__main__":
    main()
