"""Fit the shipped models' temperatures and the ensemble's weights on val, and choose the default model.

    .venv/bin/python scripts/calibrate_models.py [--folds 5] [--dry-run]

Reads the shipped models' per-face val predictions (results/models/predictions/, written by
`fer-eval --model NAME --split val --tta VIEW --save` for each view, in fp32), and the
shipped weights only to count their FLOPs. It writes into the records (then re-renders the cards):
- each model, each view: the temperature fitted on val, and the val ECE and NLL before it and
  scored out of fold (5-fold cross-validation within val); the temperature is applied only where
  it lowers both out of fold (fer_core.inference.calibration.temperature_choice);
- `ensemble`: for each way of choosing the members' views, the plain mean's val accuracy and the
  weighted, calibrated ensemble's accuracy out of fold, then the best option's weights and
  temperatures fitted on all of val; members that get weight 0 are not run;
- `default_model`: the cheapest candidate (each model in its card's view, and the ensemble scored
  out of fold) whose val accuracy is not significantly below the best one's, by McNemar's exact
  test over the val faces (fer_core/inference/model_choice.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ship_model import write_record  # noqa: E402

from fer_core.inference.calibration import (  # noqa: E402
    combine,
    cross_validate_ensemble,
    expected_calibration_error,
    fit_ensemble,
    nll,
    temperature_choice,
)
from fer_core.inference.model_choice import VIEWS_RUN, choose_default, forward_gflop  # noqa: E402
from fer_core.inference.registry import ENSEMBLE, model_record, resolve_model_path, shipped_tta  # noqa: E402
from fer_core.runs.checkpoint import load_model  # noqa: E402
from fer_core.runs.predictions import probabilities, shipped_predictions  # noqa: E402

VIEWS = ("none", "flip", "tencrop")


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


def calibrate_views(rows, name: str, folds: int) -> dict:
    """A model's calibration record: per view, the temperature and whether it is applied."""
    views = {}
    for view in VIEWS:
        labels, probs = val_probs(rows, name, view)
        views[view] = temperature_choice(labels, probs, folds)
        c = views[view]
        print(
            f"{name:<9} {view:<8} T={c['temperature']:.3f} ECE {c['ece']:.4f}->{c['ece_out_of_fold']:.4f} "
            f"NLL {c['nll']:.4f}->{c['nll_out_of_fold']:.4f} out of fold: {'' if c['applied'] else 'not '}applied"
        )
    return {
        "fitted_on": f"val ({len(labels)} faces)",
        "folds": folds,
        "seed": 0,
        "rule": "a temperature is applied only where, scored out of fold, it lowers both the val ECE and NLL",
        "views": views,
    }


def ensemble_options(rows, folds: int) -> tuple[list[dict], dict]:
    """Each way of choosing the members' views: plain mean and calibrated ensemble out of fold."""
    options = {"card views": {n: shipped_tta(n) for n in ENSEMBLE}} | {
        f"all {v}": dict.fromkeys(ENSEMBLE, v) for v in VIEWS
    }
    table, loaded = [], {}
    for option, views in options.items():
        found = [val_probs(rows, n, views[n]) for n in ENSEMBLE]
        labels, members = found[0][0], [p for _, p in found]
        out_of_fold = cross_validate_ensemble(labels, members, folds=folds)
        loaded[option] = (labels, members, out_of_fold)
        table.append(
            {
                "option": option,
                "views": views,
                "plain_mean": scores(labels, np.mean(members, axis=0)),
                "calibrated_out_of_fold": scores(labels, out_of_fold),
            }
        )
        mean, calibrated = table[-1]["plain_mean"], table[-1]["calibrated_out_of_fold"]
        print(
            f"{option:<11} mean acc {mean['accuracy']:.4f} | calibrated out-of-fold acc "
            f"{calibrated['accuracy']:.4f} ECE {calibrated['ece']:.4f}"
        )
    return table, loaded


def default_candidates(rows, ensemble: dict, out_of_fold: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Each shipped model in its card's view, and the ensemble (the members it runs) out of fold."""
    gflop = {name: forward_gflop(load_model(resolve_model_path(name))) for name in ENSEMBLE}
    candidates = []
    for name in ENSEMBLE:
        view = shipped_tta(name)
        _, probs = val_probs(rows, name, view)
        cost = round(gflop[name] * VIEWS_RUN[view], 3)
        right = probs.argmax(1) == labels
        candidates.append({"name": name, "views": {name: view}, "gflop_per_face": cost, "right": right})
    runs = [n for n in ENSEMBLE if ensemble["weights"][n] > 0]
    cost = sum(gflop[n] * VIEWS_RUN[ensemble["views"][n]] for n in runs)
    candidates.append(
        {
            "name": "ensemble",
            "views": {n: ensemble["views"][n] for n in runs},
            "gflop_per_face": round(cost, 3),
            "scored": "out of fold",
            "right": out_of_fold.argmax(1) == labels,
        }
    )
    return candidates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true", help="print, write nothing")
    args = parser.parse_args()
    rows = shipped_predictions(list(ENSEMBLE))
    records = {name: model_record(name) for name in [*ENSEMBLE, "ensemble"]}
    for name in ENSEMBLE:
        records[name]["calibration"] = calibrate_views(rows, name, args.folds)

    table, loaded = ensemble_options(rows, args.folds)
    best = max(table, key=lambda r: r["calibrated_out_of_fold"]["accuracy"])
    labels, members, out_of_fold = loaded[best["option"]]
    fitted = fit_ensemble(labels, members)
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
        }
    )
    choice = choose_default(default_candidates(rows, ensemble, out_of_fold, labels))
    ensemble.update({"default_model": choice["default"], "default_reason": choice["reason"], "default_choice": choice})
    print(f"weights {ensemble['weights']}  temperatures {ensemble['temperatures']}  mix T {ensemble['temperature']}")
    for c in choice["candidates"]:
        print(f"  {c['name']:<9} {c['gflop_per_face']:6.2f} GFLOP  acc {c['accuracy']:.4f}  p {c['p']:.3g}")
    print(f"default model: {choice['default']}: {choice['reason']}")
    if args.dry_run:
        return
    for record in records.values():
        write_record(json.loads(json.dumps(record)))


if __name__ == "__main__":
    main()
