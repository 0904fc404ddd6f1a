"""torchvision's ResNet-50 adapted to 48x48 grayscale faces.

stem="imagenet" (default, paper-faithful: the paper used Keras' ResNet-50 on 48x48x1):
  7x7 stride-2 conv + maxpool, so the last stage sees 2x2 feature maps. Cheapest.
stem="small": 3x3 stride-1 conv + maxpool, 4x the spatial resolution in every stage;
  3x the compute per image, and 4 points more accurate on val after 18 epochs (README).
  Our `resnet50` preset uses it.
"""

from __future__ import annotations

import torch.nn as nn

from ..classes import NUM_CLASSES


class ResNet50(nn.Module):
    def __init__(
        self, stem: str = "imagenet", dropout: float = 0.0, num_classes: int = NUM_CLASSES, in_channels: int = 1
    ):
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise ValueError(f"unknown ResNet-50 stem {stem!r} (imagenet, small)")
        from torchvision.models import resnet50  # here, not at the top: torchvision adds 3 s to every CLI start

        net = resnet50(weights=None, num_classes=num_classes)  # never downloads: no weights
        if stem == "imagenet":
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        else:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, num_classes))
        self.net = net

    def forward(self, x):
        return self.net(x)
