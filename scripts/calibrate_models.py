"""Fit the shipped models' temperatures and the ensemble's weights on val, and choose the default model.

    .venv/bin/python scripts/calibrate_models.py [--folds 5] [--dry-run]

Reads the shipped models' per-face val predictions (results/models/predictions/, written by
`fer-eval --model NAME --split val --tta VIEW --precision fp32 --save` for each view), so it
runs in seconds and touches no weights. It writes into the records (then re-renders the cards):
- each model: the temperature for its card's view and the val ECE / NLL before and after;
- `ensemble`: for each way of choosing the members' views, the plain mean's val accuracy and the
  weighted, calibrated ensemble's accuracy out of fold (5-fold cross-validation within val: the
  weights and temperatures that score a face were fitted without it), then the best option's
  weights and temperatures fitted on all of val;
- `default_model`: the calibrated ensemble if its out-of-fold accuracy beats the best single
  model's val accuracy in its card's view, else that model. The single models' figure is
  in-sample (their view was chosen on val too), which favours them: the ensemble has to earn it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ship_model import write_record  # noqa: E402

from fer_core.calibration import (  # noqa: E402
    combine,
    cross_validate_ensemble,
    expected_calibration_error,
    fit_ensemble,
    fit_temperature,
    nll,
    with_temperature,
)
from fer_core.predictions import probabilities, shipped_predictions  # noqa: E402
from fer_core.registry import ENSEMBLE, model_record, shipped_tta  # noqa: E402


def accuracy(labels, probs) -> float:
    return round(float((probs.argmax(1) == labels).mean()), 4)


def scores(labels, probs) -> dict:
    return {
        "accuracy": accuracy(labels, probs),
        "ece": round(expected_calibration_error(labels, probs), 4),
        "nll": round(nll(labels, probs), 4),
    }


def val_probs(rows, model: str, view: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of one model's val rows in one view, in face order."""
    frame = rows[(rows.model == model) & (rows.tta == view)].sort_values("index")
    if frame.empty:
        raise SystemExit(f"no val predictions of {model} in view {view}: run fer-eval --save for it first")
    return frame.label.to_numpy(np.int64), probabilities(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args()
    rows = shipped_predictions(list(ENSEMBLE))
    records = {name: model_record(name) for name in [*ENSEMBLE, "ensemble"]}

    singles = {}
    for name in ENSEMBLE:
        view = shipped_tta(name)
        labels, probs = val_probs(rows, name, view)
        t = fit_temperature(labels, probs)
        before, after = scores(labels, probs), scores(labels, with_temperature(probs, t))
        records[name]["calibration"] = {
            "tta": view,
            "temperature": round(t, 4),
            "fitted_on": f"val ({len(labels)} faces)",
            "ece": before["ece"],
            "ece_calibrated": after["ece"],
            "nll": before["nll"],
            "nll_calibrated": after["nll"],
        }
        singles[name] = before["accuracy"]
        print(f"{name:<9} {view:<8} T={t:.3f} acc {before['accuracy']:.4f} ECE {before['ece']:.4f}->{after['ece']:.4f}")

    options = {"card views": {n: shipped_tta(n) for n in ENSEMBLE}} | {
        f"all {v}": dict.fromkeys(ENSEMBLE, v) for v in ("none", "flip", "tencrop")
    }
    table, members_of = [], {}
    for option, views in options.items():
        loaded = [val_probs(rows, n, views[n]) for n in ENSEMBLE]
        labels, members = loaded[0][0], [p for _, p in loaded]
        members_of[option] = members
        mean = np.mean(members, axis=0)
        out_of_fold = cross_validate_ensemble(labels, members, folds=args.folds)
        table.append(
            {
                "option": option,
                "views": views,
                "plain_mean": scores(labels, mean),
                "calibrated_out_of_fold": scores(labels, out_of_fold),
            }
        )
        print(
            f"{option:<11} mean acc {accuracy(labels, mean):.4f} ECE {expected_calibration_error(labels, mean):.4f}"
            f" | calibrated out-of-fold acc {accuracy(labels, out_of_fold):.4f}"
            f" ECE {expected_calibration_error(labels, out_of_fold):.4f}"
        )
    best = max(table, key=lambda r: r["calibrated_out_of_fold"]["accuracy"])
    members = members_of[best["option"]]
    fitted = fit_ensemble(labels, members)
    best_single = max(singles, key=singles.get)
    cv = best["calibrated_out_of_fold"]["accuracy"]
    default = "ensemble" if cv > singles[best_single] else best_single
    reason = (
        f"the calibrated ensemble ({best['option']}) reads {cv:.4f} on val out of fold, "
        f"{'above' if default == 'ensemble' else 'not above'} {best_single} alone at {singles[best_single]:.4f} "
        f"(in its card's view)"
    )
    ensemble = records["ensemble"]
    ensemble.update(
        {
            "views": best["views"],
            "weights": {n: round(w, 3) for n, w in zip(ENSEMBLE, fitted["weights"], strict=True)},
            "temperatures": {n: round(t, 4) for n, t in zip(ENSEMBLE, fitted["temperatures"], strict=True)},
            "temperature": round(fitted["temperature"], 4),
            "calibration": {
                "folds": args.folds,
                "seed": 0,
                "options": table,
                "chosen": best["option"],
                "in_sample": scores(labels, combine(members, **fitted)),
            },
            "default_model": default,
            "default_reason": reason,
        }
    )
    print(f"weights {ensemble['weights']}  temperatures {ensemble['temperatures']}  mix T {ensemble['temperature']}")
    print(f"default model: {default}: {reason}")
    if args.dry_run:
        return
    for record in records.values():
        write_record(json.loads(json.dumps(record)))


if __name__ == "__main__":
    main()
