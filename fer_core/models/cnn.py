"""The paper's deep CNN and its spatial-transformer version (ST-CNN).

The CNN is a VGG-style stack of double-conv blocks (the usual from-scratch FER2013
recipe); the ST-CNN puts a spatial transformer in front of it: a small localisation
network predicts a 2x3 affine theta, `affine_grid` + bilinear `grid_sample` resample
the 48x48 input, and the CNN classifies the resampled face. Theta starts at the
identity, so an untrained ST-CNN sees exactly what the plain CNN sees.

`theta_limit` bounds each entry of theta to identity +- limit (a tanh), so the sampler can
zoom, rotate and shift by a bounded amount but never drift off the face: unbounded (the
paper's form, and the default), a high learning rate can push theta out of the image, after
which the CNN sees a blank and training collapses (seen here with SGD lr 0.01 at epoch 9).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..classes import NUM_CLASSES


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class DeepCNN(nn.Module):
    """Double-conv blocks (48 -> 24 -> 12 -> 6 -> 3), global average pool, dropout, linear."""

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        dropout: float = 0.4,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
    ):
        super().__init__()
        widths = tuple(widths)
        self.features = nn.Sequential(
            *[_double_conv(c_in, c_out) for c_in, c_out in zip((in_channels,) + widths[:-1], widths, strict=True)]
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[-1], num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class STCNN(nn.Module):
    """Spatial transformer (localisation net -> theta -> grid -> bilinear sampler) + DeepCNN."""

    def __init__(
        self,
        widths: tuple[int, ...] = (64, 128, 256, 512),
        dropout: float = 0.4,
        num_classes: int = NUM_CLASSES,
        in_channels: int = 1,
        loc_channels: tuple[int, int] = (8, 16),
        theta_limit: float | None = None,
    ):
        super().__init__()
        self.theta_limit = theta_limit
        self.identity_warp = False  # True bypasses the transformer: the same weights, theta = identity
        c1, c2 = loc_channels
        self.localization = nn.Sequential(
            nn.Conv2d(in_channels, c1, 7),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),  # 48 -> 42 -> 21
            nn.Conv2d(c1, c2, 5),
            nn.MaxPool2d(2),
            nn.ReLU(inplace=True),  # 21 -> 17 -> 8
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(c2 * 16, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 6),
        )
        nn.init.zeros_(self.localization[-1].weight)
        with torch.no_grad():
            self.localization[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
        self.classifier = DeepCNN(widths, dropout, num_classes, in_channels)

    def theta(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity_warp:  # the ablation: the classifier sees the input as it is
            return torch.eye(2, 3, device=x.device).expand(x.shape[0], 2, 3)
        raw = self.localization(x).float().view(-1, 2, 3)
        if self.theta_limit is None:
            return raw
        identity = torch.eye(2, 3, device=raw.device)
        return identity + self.theta_limit * torch.tanh((raw - identity) / self.theta_limit)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The spatially transformed input that the CNN classifies (shown in the dashboard)."""
        grid = F.affine_grid(self.theta(x), list(x.shape), align_corners=False)
        return (
            F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            .to(x.dtype)
            .contiguous(memory_format=torch.channels_last)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.transform(x))
