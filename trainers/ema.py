"""An exponential moving average of a model's weights: `fer-train --ema-decay` (torchvision
reference's `--model-ema`).

With SGD at a learning rate that still moves the weights, the iterates bounce around a wide
minimum; their running average sits nearer its centre and usually generalises better than
any single iterate (Polyak averaging; SWA, Izmailov et al. 2018). The trainer evaluates and
checkpoints the average instead of the raw weights when `ema_decay` is set.

BatchNorm's running statistics are averaged like the weights (torchvision's `use_buffers=True`),
so the average needs no extra pass over the data to recompute them.

The average starts at the starting weights. From scratch those are random, and at decay 0.9995
they would still make up 40% of it after 1800 steps: the first ref-stcnn-long's average predicted one
class for its first 4 epochs while the raw weights were at 0.37-0.50. So a run from scratch ramps
the decay up as timm's ModelEmaV3 does, min(decay, (1 + step) / (10 + step)): the average
covers about the last tenth of the steps so far until that reaches the decay's own window.
"""

from __future__ import annotations

import copy

import torch


class WeightEMA:
    """`module` holds the average of `model`; `update()` after every optimizer step moves it
    `1 - decay` of the way towards the model's current weights (integer buffers are copied).
    The model's tensors are updated in place by the optimizer (and by load_state_dict), so the
    pairs taken here stay valid for the whole run."""

    def __init__(self, model: torch.nn.Module, decay: float, warmup: bool = False):
        self.decay = decay
        self.warmup = warmup
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), model.state_dict().values(), strict=True))
        self._averages = [a for a, _ in pairs if a.is_floating_point()]
        self._currents = [c for a, c in pairs if a.is_floating_point()]
        self._copied = [(a, c) for a, c in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self, step: int = 0) -> None:
        """`step`: optimizer steps before this one in the run (for the warmup ramp)."""
        decay = min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay
        torch._foreach_lerp_(self._averages, self._currents, 1.0 - decay)
        for average, current in self._copied:
            average.copy_(current)
