"""The models a name stands for: shipped models, runs, checkpoints, the ensemble.

A spec given to `fer-eval --model`, `fer-predict --model`, the dashboard or `--init-from`
is resolved here to a checkpoint file, and a shipped model's record (`results/models/NAME.json`)
says which test-time view its card chose and how its int8 version was calibrated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..paths import SHIPPED_MODELS_DIR
from ..runs.runstore import RunStore
from .calibration import Blend


def resolve_model_path(spec: str | os.PathLike, runs_dir: str | os.PathLike | None = None) -> Path:
    """A checkpoint file, a run folder (its best checkpoint), a run id, or a shipped model name."""
    spec = str(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.safetensors", path / "best.safetensors"):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(f"{path}: no checkpoints/best.safetensors in this folder")
    shipped = SHIPPED_MODELS_DIR / f"{spec}.safetensors"
    if shipped.is_file():
        return shipped
    store = RunStore(runs_dir)
    try:
        if store.exists(spec):
            return store.checkpoint(spec)
    except ValueError:
        pass
    raise FileNotFoundError(
        f"{spec!r} is not a checkpoint file, a run folder, a run id or a shipped model "
        f"(shipped: {', '.join(shipped_names()) or 'none yet'})"
    )


@dataclass(frozen=True)
class ModelRef:
    """One model as a spec names it, resolved once (`resolve`) and handed down: loading, the
    ONNX cache and the export read its fields instead of looking the spec up again."""

    spec: str  # as given: a shipped name, a run id, a run folder or a checkpoint file
    weights: Path  # its safetensors checkpoint
    shipped: bool  # results/models/SPEC.safetensors
    view: str  # the test-time view its record chose; "none" for anything but a shipped model
    temperature: float | None  # the temperature its record applies in that view, if any
    int8: Path | None  # the shipped int8 version (ONNX Runtime QDQ), if there is one
    record: dict | None = field(default=None, compare=False, repr=False)  # results/models/SPEC.json

    @property
    def name(self) -> str:
        """What exports and caches call it: the spec, or a file's stem."""
        return Path(self.spec).stem if os.sep in self.spec else self.spec


def resolve(spec: str | os.PathLike | ModelRef, runs_dir: str | os.PathLike | None = None) -> ModelRef:
    """The ModelRef of one spec (a ModelRef is returned as it is); FileNotFoundError if it names nothing."""
    if isinstance(spec, ModelRef):
        return spec
    spec = str(spec)
    weights = resolve_model_path(spec, runs_dir)
    shipped = weights == SHIPPED_MODELS_DIR / f"{spec}.safetensors"
    record = model_record(spec) if shipped else None
    view = record["val"]["tta"] if record else "none"
    int8 = int8_path(spec) if shipped and int8_path(spec).is_file() else None
    return ModelRef(spec, weights, shipped, view, _applied_temperature(record, view), int8, record)


def resolve_models(spec: str, runs_dir: str | os.PathLike | None = None) -> dict[str, ModelRef]:
    """Each model a spec stands for ("ensemble", names joined by commas, or one), resolved once."""
    return {name: resolve(name, runs_dir) for name in model_names(spec)}


def int8_path(name: str) -> Path:
    """A shipped model's int8 version: ONNX Runtime QDQ, quantized on train faces (fer-export)."""
    return SHIPPED_MODELS_DIR / f"{name}.int8.onnx"


def int8_names() -> list[str]:
    return sorted(p.name.removesuffix(".int8.onnx") for p in SHIPPED_MODELS_DIR.glob("*.int8.onnx"))


# The shipped ensemble: a weighted average of the three architectures' shipped models.
ENSEMBLE = ("stcnn", "resnet50", "vit")


def record_path(name: str) -> Path:
    """A shipped model's machine-readable record: config, source run, val metrics, chosen view."""
    return SHIPPED_MODELS_DIR / f"{name}.json"


def model_record(name: str) -> dict | None:
    """The record of a shipped model (`scripts/ship_model.py` writes it), None for anything else."""
    path = record_path(name)
    return json.loads(path.read_text()) if path.is_file() else None


def shipped_tta(name: str) -> str:
    """The test-time augmentation a shipped model's record chose on val; none for anything
    else, so checkpoints and runs are evaluated as their training evaluated them."""
    record = model_record(name)
    return record["val"]["tta"] if record else "none"


def applied_temperature(name: str, view: str) -> float | None:
    """The temperature a shipped model's record applies in `view`: fitted on val, and kept only
    where it lowered the val ECE and NLL out of fold (scripts/calibrate_models.py); None otherwise."""
    return _applied_temperature(model_record(name), view)


def _applied_temperature(record: dict | None, view: str) -> float | None:
    chosen = (((record or {}).get("calibration") or {}).get("views") or {}).get(view) or {}
    return chosen["temperature"] if chosen.get("applied") else None


def shipped_blend(spec: str, views: dict[str, str], models: dict[str, ModelRef] | None = None) -> Blend | None:
    """How the answer for `spec` is made from its members' probabilities, as the records say:
    `ensemble` -> its fitted weights and temperatures (scripts/calibrate_models.py) over the members
    it runs (weight above 0); a shipped model -> its temperature for the view it runs in, where the
    record applies one. None otherwise (a plain mean, uncalibrated). A model already resolved
    (`models`) brings its record with it."""
    record = models[spec].record if models and spec in models else model_record(spec)
    if spec == "ensemble" and record and "weights" in record:
        weights = {n: w for n, w in record["weights"].items() if w > 0}
        return Blend(weights, {n: record["temperatures"][n] for n in weights}, record["temperature"])
    temperature = _applied_temperature(record, views.get(spec, "none")) if record else None
    return Blend({spec: 1.0}, {spec: temperature}) if temperature else None


def member_views(spec: str, tta: str, models: dict[str, ModelRef] | None = None) -> dict[str, str]:
    """Each member's test-time view: `auto` is the one its record chose (the ensemble's record
    may choose one per member); anything else applies to all. Members already resolved
    (`resolve_models`) bring their record's view with them."""
    names = list(models) if models else model_names(spec)
    if tta != "auto":
        return dict.fromkeys(names, tta)
    chosen = (model_record(spec) or {}).get("views") or {}
    if models:
        return {name: chosen.get(name) or ref.view for name, ref in models.items()}
    return {name: chosen.get(name) or shipped_tta(name if len(names) > 1 else spec) for name in names}


def default_model() -> str:
    """What fer-predict, fer-serve, the Recognizer and Predict use unless told, as the ensemble's
    record names it: the cheapest model whose val accuracy is not significantly below the best
    (fer_core/inference/model_choice.py; scripts/calibrate_models.py writes the choice and its test)."""
    record = model_record("ensemble") or {}
    return record.get("default_model", "ensemble")


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_MODELS_DIR.glob("*.safetensors"))


def ensemble_members() -> list[str]:
    """The ENSEMBLE names shipped so far (all three once each architecture is shipped)."""
    shipped = shipped_names()
    return [n for n in ENSEMBLE if n in shipped]


def ensemble_runs() -> list[str]:
    """The members the shipped ensemble runs: those its record weighs above 0 (all before it is fitted)."""
    weights = (model_record("ensemble") or {}).get("weights") or {}
    return [n for n in ensemble_members() if weights.get(n, 1.0) > 0]


def model_names(spec: str) -> list[str]:
    """ "ensemble" -> the shipped members it runs; "a,b" -> ["a", "b"]; one name -> [name]."""
    if spec == "ensemble":
        names = ensemble_runs()
        if not names:
            raise FileNotFoundError("no shipped models in results/models yet for the ensemble")
        return names
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ValueError("no model given")
    return names
