"""Does a model's confidence mean anything? Calibration error, temperature scaling, and a
weighted ensemble whose accuracy is estimated honestly.

A model that says 0.9 should be right 9 times in 10. Expected calibration error (ECE) is the
gap between confidence and accuracy averaged over confidence bins; temperature scaling
(Guo et al. 2017) divides the log-probabilities by one fitted number T, which changes the
confidence but never the predicted class. Everything here works on probabilities, since that
is what runs and shipped models store: log p = logit - logsumexp, so softmax(log p / T) is
softmax(logit / T).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

ECE_BINS = 15


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities a temperature-scaled model gives (T > 1 softens, T < 1 sharpens)."""
    logits = np.log(np.clip(probs, 1e-12, None)) / temperature
    logits -= logits.max(1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(1, keepdims=True)


def nll(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(labels: np.ndarray, probs: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the negative log-likelihood of `labels`."""
    from scipy.optimize import minimize_scalar  # scipy and scikit-learn only when fitting

    result = minimize_scalar(
        lambda log_t: nll(labels, with_temperature(probs, float(np.exp(log_t)))),
        bounds=(np.log(0.05), np.log(20.0)),
        method="bounded",
    )
    return float(np.exp(result.x))


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per equal-width confidence bin: faces, mean confidence and accuracy (empty bins left out)."""
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    rows = [
        {
            "bin_low": b / bins,
            "bin_high": (b + 1) / bins,
            "faces": int((which == b).sum()),
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(correct[which == b].mean()),
        }
        for b in range(bins)
        if (which == b).any()
    ]
    return pd.DataFrame(rows, columns=["bin_low", "bin_high", "faces", "confidence", "accuracy"])


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Face-weighted mean |accuracy - confidence| over the bins of `reliability`."""
    table = reliability(labels, probs, bins)
    if table.empty:
        return float("nan")
    return float((table.faces * (table.accuracy - table.confidence).abs()).sum() / table.faces.sum())


# -- a calibrated, weighted ensemble -----------------------------------------------------------


def weight_grid(n_models: int, step: float = 0.1):
    """Every weight vector on the grid with entries summing to 1."""
    ticks = round(1 / step)
    for parts in itertools.product(range(ticks + 1), repeat=n_models - 1):
        if sum(parts) <= ticks:
            yield np.array([*parts, ticks - sum(parts)]) / ticks


def combine(member_probs: list[np.ndarray], weights, temperatures, temperature: float = 1.0) -> np.ndarray:
    """Weighted mean of the members' temperature-scaled probabilities, itself scaled by `temperature`."""
    mean = sum(w * with_temperature(p, t) for w, p, t in zip(weights, member_probs, temperatures, strict=True))
    return with_temperature(mean, temperature)


def fit_ensemble(labels: np.ndarray, member_probs: list[np.ndarray], step: float = 0.1) -> dict:
    """Per-member temperatures, then the grid weights with the best accuracy (ties: lower NLL),
    then one temperature for the mix."""
    temperatures = [fit_temperature(labels, p) for p in member_probs]
    scaled = [with_temperature(p, t) for p, t in zip(member_probs, temperatures, strict=True)]
    best = None
    for weights in weight_grid(len(member_probs), step):
        mix = sum(w * p for w, p in zip(weights, scaled, strict=True))
        score = (float((mix.argmax(1) == labels).mean()), -nll(labels, mix))
        if best is None or score > best[0]:
            best = (score, weights)
    weights = best[1]
    mix = combine(member_probs, weights, temperatures)
    return {"weights": weights.tolist(), "temperatures": temperatures, "temperature": fit_temperature(labels, mix)}


def _folds(labels: np.ndarray, folds: int, seed: int):
    """(fit rows, held-out rows) of stratified k-fold cross-validation within one split."""
    from sklearn.model_selection import StratifiedKFold  # scikit-learn only when fitting

    return StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)


def cross_validate_ensemble(
    labels: np.ndarray, member_probs: list[np.ndarray], folds: int = 5, seed: int = 0, step: float = 0.1
) -> np.ndarray:
    """Out-of-fold probabilities: each fold of val is predicted by an ensemble fitted on the
    other folds, so the accuracy of the result estimates what fitting on all of val gives on
    faces it has not seen (fitting and scoring on the same faces flatters the weights)."""
    out = np.zeros_like(member_probs[0], dtype=np.float64)
    for fit_rows, held_out in _folds(labels, folds, seed):
        fitted = fit_ensemble(labels[fit_rows], [p[fit_rows] for p in member_probs], step)
        out[held_out] = combine([p[held_out] for p in member_probs], **fitted)
    return out


def cross_validate_temperature(labels: np.ndarray, probs: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold temperature-scaled probabilities: each fold scaled by the T fitted on the others."""
    out = np.zeros_like(probs, dtype=np.float64)
    for fit_rows, held_out in _folds(labels, folds, seed):
        out[held_out] = with_temperature(probs[held_out], fit_temperature(labels[fit_rows], probs[fit_rows]))
    return out


def temperature_choice(labels: np.ndarray, probs: np.ndarray, folds: int = 5, seed: int = 0) -> dict:
    """Whether a temperature earns its place for one model and view: fitted on all of val, applied
    only when, scored out of fold, it lowers both the calibration error and the NLL (in-sample both
    always look better; out of fold a temperature can raise the ECE, as for several flip views)."""
    temperature = fit_temperature(labels, probs)
    out_of_fold = cross_validate_temperature(labels, probs, folds, seed)
    ece, ece_oof = expected_calibration_error(labels, probs), expected_calibration_error(labels, out_of_fold)
    loss, loss_oof = nll(labels, probs), nll(labels, out_of_fold)
    return {
        "temperature": round(temperature, 4),
        "ece": round(ece, 4),
        "ece_out_of_fold": round(ece_oof, 4),
        "nll": round(loss, 4),
        "nll_out_of_fold": round(loss_oof, 4),
        "applied": bool(ece_oof < ece and loss_oof < loss),
    }


@dataclass(frozen=True)
class Blend:
    """How named members' probabilities become one answer: each scaled by its temperature, the
    weighted mean, the mean scaled by `temperature`. The shipped ensemble's comes from its
    record (registry.ensemble_blend); a shipped model alone is a blend of one (its temperature)."""

    weights: dict[str, float]
    temperatures: dict[str, float]
    temperature: float = 1.0

    def __call__(self, probs: dict[str, np.ndarray]) -> np.ndarray:
        names = list(self.weights)
        return combine(
            [np.atleast_2d(probs[n]) for n in names],
            [self.weights[n] for n in names],
            [self.temperatures.get(n, 1.0) for n in names],
            self.temperature,
        ).reshape(np.shape(probs[names[0]]))
