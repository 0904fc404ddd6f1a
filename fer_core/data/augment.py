"""Batch-level input pipeline: normalisation, training augmentation and test-time views.

Augmentation runs on whole batches of tensors - one `affine_grid`/`grid_sample` call
does crop-with-padding (a translation), flip, rotation and scale for every image at
once - so both CPU cores go to the model instead of to per-image PIL transforms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .pixels import MEAN, STD


def to_model_input(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W] or [B, 1, H, W] -> normalised float [B, 1, H, W]."""
    x = images_uint8.float().div_(255.0)
    if x.dim() == 3:
        x = x.unsqueeze(1)
    return (x - MEAN) / STD


@dataclass
class AugmentConfig:
    crop_padding: int = 4  # random crop after zero padding = random shift of up to this many px
    flip: bool = True
    rotation_degrees: float = 10.0
    scale: float = 0.1  # zoom factor drawn from [1 - scale, 1 + scale]
    erasing: float = 0.0  # probability of erasing one random rectangle (random erasing)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(crop_padding=0, flip=False, rotation_degrees=0.0, scale=0.0, erasing=0.0)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Random geometric + erasing augmentation of a normalised batch [B, 1, H, W]."""
    b, _, h, w = x.shape
    rand = lambda: torch.rand(b, generator=generator)  # noqa: E731 - uniform [0, 1) per image
    angle = (rand() * 2 - 1) * math.radians(cfg.rotation_degrees)
    zoom = 1 + (rand() * 2 - 1) * cfg.scale
    mirror = torch.where(rand() < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b)
    shift_x = (rand() * 2 - 1) * cfg.crop_padding * 2 / w  # pixels -> [-1, 1] coordinates
    shift_y = (rand() * 2 - 1) * cfg.crop_padding * 2 / h
    if cfg.rotation_degrees or cfg.scale or cfg.flip or cfg.crop_padding:
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack(
            [torch.stack([cos * mirror, -sin, shift_x], 1), torch.stack([sin * mirror, cos, shift_y], 1)], 1
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.erasing > 0:
        x = _random_erase(x, cfg.erasing, generator)
    return x


def batch_mixer(mixup_alpha: float, cutmix_alpha: float, num_classes: int):
    """MixUp and/or CutMix of whole batches (torchvision's v2 transforms, one picked per batch as in
    torchvision's reference train.py), or None when both alphas are 0.

    The mixer maps (images, int labels) to (mixed images, soft labels [B, classes]); it draws from
    torch's global RNG, which the trainer seeds per epoch.
    """
    if not (mixup_alpha > 0 or cutmix_alpha > 0):
        return None
    from torchvision.transforms import v2

    mixers = ([v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha > 0 else []) + (
        [v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes)] if cutmix_alpha > 0 else []
    )
    return mixers[0] if len(mixers) == 1 else v2.RandomChoice(mixers)


def _random_erase(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Zero one rectangle (2-33% of the area, aspect 0.3-3.3) in each image with probability p."""
    b, _, h, w = x.shape
    rand = lambda: torch.rand(b, generator=generator)  # noqa: E731
    area = (0.02 + rand() * 0.31) * h * w
    aspect = torch.exp((rand() * 2 - 1) * math.log(3.3))
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    top = rand() * (h - eh)
    left = rand() * (w - ew)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = (
        (rows >= top.view(b, 1, 1))
        & (rows < (top + eh).view(b, 1, 1))
        & (cols >= left.view(b, 1, 1))
        & (cols < (left + ew).view(b, 1, 1))
    )
    erase = (rand() < p).view(b, 1, 1) & inside
    return x.masked_fill(erase.unsqueeze(1), 0.0)


def tta_views(x: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time views of a batch: 'none' (1), 'flip' (2) or 'tencrop' (5 shifted crops x flip)."""
    if mode == "none":
        return [x]
    if mode == "flip":
        return [x, x.flip(-1)]
    if mode != "tencrop":
        raise ValueError(f"unknown TTA mode {mode!r} (none, flip, tencrop)")
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad))
    h, w = x.shape[-2:]
    crops = [
        padded[..., dy : dy + h, dx : dx + w]
        for dy, dx in [(pad, pad), (0, 0), (0, 2 * pad), (2 * pad, 0), (2 * pad, 2 * pad)]
    ]
    return crops + [c.flip(-1) for c in crops]
