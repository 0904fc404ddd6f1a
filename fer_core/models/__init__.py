"""One registry for every architecture: `create_model(name, **config)`.

Each model records its name and config on itself (`model.name`, `model.config`), so a
checkpoint saved with them rebuilds the same network with no other information.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from .cnn import STCNN, DeepCNN
from .resnet import ResNet50
from .vit import ViT

MODELS: dict[str, Callable[..., nn.Module]] = {
    "stcnn": STCNN,
    "cnn": DeepCNN,
    "resnet50": ResNet50,
    "vit": ViT,
}


def create_model(name: str, **config) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    model = MODELS[name](**config)
    model.name = name
    model.config = dict(config)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
