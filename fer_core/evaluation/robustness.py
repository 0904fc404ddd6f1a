"""Robustness curves: a model's accuracy on val faces under each perturbation and severity.

One result per model is one JSON file: the clean accuracy and, per perturbation, the accuracy
at each severity (fer_core/data/perturb.py), plus a few example faces (one per class) with the
model's answer in every condition and, for an ST-CNN, the transformer's theta there, so the
Robustness page can draw examples and what the transformer made of them without a model.

Results of the shipped models are computed once (`scripts/robustness.py`) and kept beside them
in results/models/robustness/; the page measures other runs on demand into the cache folder.
Every model is run the same way: PyTorch in fp32, one view (no test-time augmentation), the
same stratified subset of val and the same perturbed faces.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..classes import CLASSES
from ..data.perturb import GEOMETRIC, PERTURBATIONS
from ..inference.registry import ENSEMBLE
from ..paths import SHIPPED_MODELS_DIR, cache_dir

STORED_DIR = SHIPPED_MODELS_DIR / "robustness"  # the shipped models', committed
# The paper's recipe with and without the transformer (Table 1's full-data trials), committed
# beside the shipped models' and shown apart from them: other training, other faces' answers.
ABLATION_DIR = SHIPPED_MODELS_DIR.parent / "table1-robustness"
FORMAT = 1
NO_ST = "-no-st"  # a key's suffix for an ST-CNN measured with its transformer bypassed


def on_demand_dir() -> Path:
    """Where the Robustness page keeps what it measured for runs (not committed)."""
    return cache_dir() / "robustness"


def bypassed(model):
    """A copy of an ST-CNN whose transformer is bypassed: the same weights, an identity warp."""
    if not hasattr(model, "identity_warp"):
        raise ValueError(f"{getattr(model, 'name', 'this model')} has no spatial transformer to bypass")
    model = copy.deepcopy(model)
    model.identity_warp = True
    return model


def example_positions(labels: np.ndarray) -> np.ndarray:
    """The first face of each class present: the examples every model answers."""
    return np.array([int(np.flatnonzero(labels == c)[0]) for c in range(len(CLASSES)) if (labels == c).any()])


def conditions(names: list[str]) -> list[tuple[str | None, int]]:
    """(None, 0) for the clean faces, then each perturbation at each severity."""
    return [(None, 0)] + [(n, level) for n in names for level in range(1, len(PERTURBATIONS[n].severities) + 1)]


def condition_key(name: str | None, level: int) -> str:
    return "clean" if name is None else f"{name}/{level}"


def measure(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    names: list[str],
    seed: int = 0,
    batch_size: int = 256,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """Accuracy and macro-F1 of `model` (fp32, one view) on the faces, clean and under each
    perturbation at each severity; each example face's answer, and an ST-CNN's thetas."""
    from ..data.perturb import perturb
    from ..inference.probabilities import predict_probs
    from .metrics import classification_metrics

    examples = example_positions(labels)
    steps = conditions(names)
    out: dict = {"perturbations": {}, "answers": {}, "confidence": {}, "thetas": {}}
    for step, (name, level) in enumerate(steps):
        key = condition_key(name, level)
        if progress:
            progress(step / len(steps), key)
        faces = images if name is None else perturb(images, name, level, seed, ids)
        probs, _ = predict_probs(model, faces, dtype=None, tta="none", batch_size=batch_size)
        metrics = classification_metrics(labels, probs)
        scores = {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4)}
        if name is None:
            out["clean"] = scores
        else:
            p = PERTURBATIONS[name]
            empty = {"label": p.label, "unit": p.unit, "severities": list(p.severities), "accuracy": [], "macro_f1": []}
            row = out["perturbations"].setdefault(name, empty)
            row["accuracy"].append(scores["accuracy"])
            row["macro_f1"].append(scores["macro_f1"])
        out["answers"][key] = probs[examples].argmax(1).tolist()
        out["confidence"][key] = np.round(probs[examples].max(1), 3).tolist()
        if hasattr(model, "theta"):
            out["thetas"][key] = np.round(_thetas(model, faces[examples])[:, :2].reshape(-1, 6), 5).tolist()
    out["examples"] = {
        "ids": ids[examples].tolist(),
        "labels": labels[examples].tolist(),
        "faces": [base64.b64encode(images[i].tobytes()).decode() for i in examples],
    }
    if not out["thetas"]:
        del out["thetas"]
    if hasattr(model, "theta") and not getattr(model, "identity_warp", False):
        if progress:
            progress((len(steps) - 0.5) / len(steps), "what the transformer does")
        out["st"] = st_response(model, images, ids, [n for n in names if n in GEOMETRIC], seed)
    if progress:
        progress(1.0, "done")
    return out


def _thetas(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The transformer's thetas of faces, as 3x3 matrices [N, 3, 3]."""
    import torch

    from ..data.augment import to_model_input

    with torch.inference_mode():
        parts = [
            model.theta(to_model_input(torch.from_numpy(images[i : i + batch_size].copy()))).numpy()
            for i in range(0, len(images), batch_size)
        ]
    return _square(np.concatenate(parts))


def _square(theta: np.ndarray) -> np.ndarray:
    bottom = np.broadcast_to([[0.0, 0.0, 1.0]], (len(theta), 1, 3))
    return np.concatenate([theta.astype(np.float64), bottom], axis=1)


def _pose(m: np.ndarray, name: str) -> np.ndarray:
    """The part of sampling matrices [N, 3, 3] a geometric perturbation changes: the angle
    (degrees), the log of the scale, or where the output's centre reads (x, y)."""
    if name == "rotation":
        return np.degrees(np.arctan2(m[:, 1, 0], m[:, 0, 0]))[:, None]
    if name.startswith("zoom"):
        return 0.5 * np.log(np.abs(np.linalg.det(m[:, :2, :2])))[:, None]
    return m[:, :2, 2]


def st_response(model, images: np.ndarray, ids: np.ndarray, names: list[str], seed: int = 0) -> dict:
    """What an ST-CNN's transformer does with the faces: its theta's mean and spread over the clean
    faces (a spread of 0: one fixed warp for every face), and `takes_back` - how much of each
    geometric perturbation it undoes, per severity: 1 when its output on the perturbed face is what
    it made of the clean face, 0 when it does nothing about it, below 0 when it adds to it. Per
    face, the perturbation moves the transformer's view of the clean face by `applied` (angle,
    log-scale or centre); what is left after the transformer is `left`; the share is
    1 - sum(left along applied) / sum(|applied|) over the faces."""
    from ..data.perturb import perturb, warp_theta

    clean = _thetas(model, images)
    flat = clean[:, :2].reshape(len(clean), 6)
    out = {"theta_mean": np.round(flat.mean(0), 4).tolist(), "theta_std": np.round(flat.std(0), 5).tolist()}
    takes_back = out["takes_back"] = {}
    for name in names:
        shares = []
        for level in range(1, len(PERTURBATIONS[name].severities) + 1):
            moved = _square(warp_theta(name, level, ids, seed))
            seen = _thetas(model, perturb(images, name, level, seed, ids))
            start = _pose(clean, name)
            applied = _pose(moved @ clean, name) - start
            left = _pose(moved @ seen, name) - start  # the transformer's output, in the clean face's frame
            if name == "rotation":
                applied, left = (np.mod(a + 180, 360) - 180 for a in (applied, left))
            size = np.linalg.norm(applied, axis=1)
            along = (left * applied).sum(1) / np.maximum(size, 1e-12)
            shares.append(round(float(1 - along.sum() / size.sum()), 3) + 0.0)  # + 0.0: no -0.0
        takes_back[name] = shares
    return out


def evaluate(
    spec: str,
    data: str | os.PathLike,
    split: str | None = "val",
    limit: int | None = None,
    bypass: bool = False,
    names: list[str] | None = None,
    seed: int = 0,
    runs_dir=None,
    key: str | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> dict:
    """One model's robustness result, ready to save: `spec` is a shipped name, run id, run folder
    or checkpoint; `limit` faces of the split (the stratified subset fer-eval --limit takes);
    split None: test if the data has one, else val, else train (as fer-eval)."""
    import torch

    from ..data.fer2013 import load_dataset, stratified_indices
    from ..inference.registry import model_names, resolve_model_path
    from ..runs.checkpoint import load_model

    if len(model_names(spec)) != 1:
        raise ValueError("robustness is measured one model at a time (not an ensemble)")
    dataset = load_dataset(data)
    split = split or next(s for s in ("test", "val", "train") if s in dataset.splits)
    if split not in dataset.splits:
        raise ValueError(f"{data} has no split {split!r} (found: {', '.join(dataset.splits)})")
    faces = dataset.splits[split]
    ids = stratified_indices(faces.labels, limit, seed=0) if limit else np.arange(len(faces))
    path = resolve_model_path(spec, runs_dir)
    model = load_model(path).to(memory_format=torch.channels_last)
    if bypass:
        model = bypassed(model)
    names = names or list(PERTURBATIONS)
    result = measure(model, faces.images[ids], faces.labels[ids], ids, names, seed, progress=progress)
    source = dict(model.checkpoint_info)
    stem = str(spec)
    if Path(stem).exists():  # a file or folder: named by its run, else by the file
        stem = source.get("run_id") or path.stem
    return {
        "format": FORMAT,
        "key": key or f"{Path(stem).name}{NO_ST if bypass else ''}",
        "model": str(spec),
        "architecture": model.name,
        "bypass_transformer": bypass,
        "source": source,
        "data": {"path": Path(data).resolve().name, "split": split, "faces": len(ids), "of": len(faces)},
        "subset_seed": 0 if limit else None,
        "seed": seed,
        "tta": "none",
        "precision": "fp32",
        **result,
    }


def save(result: dict, path: str | os.PathLike) -> Path:
    """Write a result as JSON: to `path`, or into it as KEY.json when it is a folder."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{result['key']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    return path


def load_results(*folders: str | os.PathLike) -> list[dict]:
    """Every result in the folders (a key found twice: the first folder's): the shipped models in
    the ensemble's order, each with its ST-bypassed twin, then the rest by key."""
    found: dict[str, dict] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            try:
                result = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if result.get("format") == FORMAT and "perturbations" in result:
                found.setdefault(result["key"], result)
    shipped = list(ENSEMBLE)
    rank = lambda r: (shipped.index(r["model"]) if r["model"] in shipped else len(shipped), r["key"])  # noqa: E731
    return sorted(found.values(), key=rank)


def label(result: dict) -> str:
    """How charts and tables name a result: its key, with the bypass said in words."""
    key = result["key"]
    return f"{key.removesuffix(NO_ST)} (ST bypassed)" if result.get("bypass_transformer") else key


def curves(results: list[dict]) -> pd.DataFrame:
    """One row per result, perturbation and level (0 = clean): the points the charts draw."""
    rows = []
    for r in results:
        for name, p in r["perturbations"].items():
            points = [("clean", r["clean"]["accuracy"])] + list(zip(p["severities"], p["accuracy"], strict=True))
            for level, (severity, accuracy) in enumerate(points):
                rows.append(
                    {
                        "model": label(r),
                        "perturbation": name,
                        "level": level,
                        "severity": severity,
                        "unit": p["unit"],
                        "accuracy": accuracy,
                    }
                )
    return pd.DataFrame(rows, columns=["model", "perturbation", "level", "severity", "unit", "accuracy"])


def summary_lines(result: dict) -> list[str]:
    """A result as text: the clean accuracy, then each perturbation's accuracy per severity."""
    lines = [f"{label(result)} on {result['data']['faces']} {result['data']['split']} faces (fp32, one view)"]
    lines.append(f"  {'clean':<17} {result['clean']['accuracy']:.4f}")
    for name, p in result["perturbations"].items():
        points = "  ".join(f"{s:>5}: {a:.4f}" for s, a in zip(p["severities"], p["accuracy"], strict=True))
        lines.append(f"  {name:<17} {points}   ({p['unit']})")
    return lines


def middle_table(results: list[dict]) -> pd.DataFrame:
    """Model x perturbation at the middle severity (accuracy), with the clean accuracy first."""
    rows = []
    for r in results:
        row = {"model": label(r), "faces": r["data"]["faces"], "clean": r["clean"]["accuracy"]}
        for name, p in r["perturbations"].items():
            middle = len(p["severities"]) // 2
            row[f"{name} {p['severities'][middle]}"] = p["accuracy"][middle]
        rows.append(row)
    return pd.DataFrame(rows)


def example_faces(result: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, labels, clean uint8 faces [K, 48, 48]) of a result's example faces."""
    ex = result["examples"]
    faces = np.stack([np.frombuffer(base64.b64decode(f), dtype=np.uint8).reshape(48, 48) for f in ex["faces"]])
    return np.array(ex["ids"]), np.array(ex["labels"]), faces
