"""Running a model on 48x48 faces: batched probabilities with optional test-time augmentation.

Shared by the trainer's validation/test passes, `fer-eval`, `fer-predict` and the
dashboard, so that a number on the dashboard is computed the same way as in a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch

from .augment import to_model_input, tta_views
from .checkpoint import load_model
from .runstore import RESULTS_DIR, RunStore

SHIPPED_MODELS_DIR = RESULTS_DIR / "models"


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def predict_probs(model: torch.nn.Module, images: np.ndarray | torch.Tensor, device: torch.device | str = "cpu",
                  dtype: torch.dtype | None = None, tta: str = "none", batch_size: int = 256,
                  channels_last: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities [N, 7], averaged over the TTA views, and their logs (for the loss)."""
    device = torch.device(device)
    model.eval()
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: inputs may be read-only
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start:start + batch_size]).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        views = tta_views(x, tta)
        with autocast(device, dtype):
            probs = sum(torch.softmax(model(v).float(), dim=1) for v in views) / len(views)
        out.append(probs.cpu())
    probs = torch.cat(out) if out else torch.empty(0, 7)
    return probs.numpy(), torch.log(probs.clamp_min(1e-12)).numpy()


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
    raise FileNotFoundError(f"{spec!r} is not a checkpoint file, a run folder, a run id or a shipped model "
                            f"(shipped: {', '.join(shipped_names()) or 'none yet'})")


def int8_path(name: str) -> Path:
    """The activation ranges that int8 inference of a shipped model needs (fer_core.quantize)."""
    return SHIPPED_MODELS_DIR / f"{name}.int8.json"


def int8_names() -> list[str]:
    return sorted(p.name.removesuffix(".int8.json") for p in SHIPPED_MODELS_DIR.glob("*.int8.json"))


def load_named_model(spec: str, device: torch.device | str = "cpu", runs_dir=None,
                     int8: bool = False) -> torch.nn.Module:
    """A model in eval mode; with int8, the shipped model's int8 version (CPU only)."""
    path = resolve_model_path(spec, runs_dir)
    model = load_model(path, device).to(memory_format=torch.channels_last)
    if not int8:
        return model
    if torch.device(device).type != "cpu":
        raise ValueError(f"int8 runs on the CPU only (asked for {device})")
    if not int8_path(spec).is_file():
        raise FileNotFoundError(f"{spec!r} has no int8 calibration ({int8_path(spec)}); shipped with one: "
                                f"{', '.join(int8_names()) or 'none'}")
    calibration = json.loads(int8_path(spec).read_text())
    if calibration["weights_sha256"] != file_sha256(path):
        raise ValueError(f"{int8_path(spec)} was calibrated for other weights than the shipped {spec!r}: "
                         f"run scripts/ship_model.py --int8 {spec}")
    from .quantize import quantize  # torch.ao only when asked for
    return quantize(model, calibration["ranges"])


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# The shipped ensemble: the average of the three architectures' shipped models.
ENSEMBLE = ("stcnn", "resnet50", "vit")


def shipped_tta(name: str) -> str:
    """The test-time augmentation a shipped model's card chose on val (its `tta:` line); none
    for anything else, so checkpoints and runs are evaluated as their training evaluated them."""
    card = SHIPPED_MODELS_DIR / f"{name}.md"
    found = card.is_file() and re.search(r"^tta: (none|flip|tencrop)\b", card.read_text(), re.M)
    return found.group(1) if found else "none"


def resolve_tta(tta: str, spec: str) -> str:
    """`auto` (the CLIs' default) is the view the shipped model's card chose; others stay as given."""
    return shipped_tta(spec) if tta == "auto" else tta


def shipped_names() -> list[str]:
    return sorted(p.stem for p in SHIPPED_MODELS_DIR.glob("*.safetensors"))


def ensemble_members() -> list[str]:
    """The ENSEMBLE names shipped so far (all three once each architecture is shipped)."""
    shipped = shipped_names()
    return [n for n in ENSEMBLE if n in shipped]


def model_names(spec: str) -> list[str]:
    """"ensemble" -> the shipped members; "a,b" -> ["a", "b"]; one name -> [name]."""
    if spec == "ensemble":
        names = ensemble_members()
        if not names:
            raise FileNotFoundError("no shipped models in results/models yet for the ensemble")
        return names
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ValueError("no model given")
    return names


def load_models(spec: str, device: torch.device | str = "cpu", runs_dir=None,
                int8: bool = False) -> list[torch.nn.Module]:
    """One model, or several for an ensemble: "ensemble" or names/paths joined by commas.

    "ensemble" is the shipped stcnn + resnet50 + vit; while not all three are shipped yet it
    averages those that are. With int8, the models shipped with an int8 calibration run in
    int8 and the others in full precision (an error if none has one).
    """
    names = model_names(spec)
    calibrated = set(int8_names()) if int8 else set()
    if int8 and not calibrated & set(names):
        raise FileNotFoundError(f"none of {', '.join(names)} has an int8 calibration; shipped with one: "
                                f"{', '.join(sorted(calibrated)) or 'none'}")
    return [load_named_model(name, device, runs_dir, int8=name in calibrated) for name in names]


def ensemble_probs(models: list[torch.nn.Module], images, device="cpu", dtype=None, tta: str = "none",
                   batch_size: int = 256) -> np.ndarray:
    """Mean of the models' softmax probabilities (a single model is an ensemble of one)."""
    return np.mean([predict_probs(m, images, device, dtype, tta=tta, batch_size=batch_size)[0] for m in models],
                   axis=0)
