"""Running a model on 48x48 faces: batched probabilities with optional test-time augmentation.

Shared by the trainer's validation/test passes, `fer-eval`, `fer-predict` and the
dashboard, so that a number on the dashboard is computed the same way as in a run.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..data.augment import to_model_input, tta_views


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@torch.inference_mode()
def predict_probs(
    model: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    tta: str = "none",
    batch_size: int = 256,
    channels_last: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities [N, 7], averaged over the TTA views, and their logs (for the loss)."""
    device = torch.device(device)
    model.eval()
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.array(images, dtype=np.uint8))  # a copy: inputs may be read-only
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start : start + batch_size]).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        views = tta_views(x, tta)
        with autocast(device, dtype):
            probs = sum(torch.softmax(model(v).float(), dim=1) for v in views) / len(views)
        out.append(probs.cpu())
    probs = torch.cat(out) if out else torch.empty(0, 7)
    return probs.numpy(), torch.log(probs.clamp_min(1e-12)).numpy()


def ensemble_probs(
    models: list[torch.nn.Module], images, device="cpu", dtype=None, tta: str = "none", batch_size: int = 256
) -> np.ndarray:
    """Mean of the models' softmax probabilities (a single model is an ensemble of one)."""
    return np.mean([predict_probs(m, images, device, dtype, tta=tta, batch_size=batch_size)[0] for m in models], axis=0)
