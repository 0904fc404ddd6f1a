"""Knowledge distillation: `fer-train --distill-from MODEL` (Hinton et al. 2015).

FER2013's labels are noisy (human agreement is about 65%), so a one-hot target is often
wrong or only half right; a stronger trained model's softened probabilities carry which
other expressions a face resembles. The student's loss becomes

    (1 - weight) * CE(student, label) + weight * T^2 * KL(teacher_T || student_T)

where `_T` is a softmax at temperature T (T^2 keeps the soft term's gradient at the same
scale as T changes). The teacher sees the same augmented batch as the student, so the
soft targets follow every crop and flip. Several teachers (e.g. `ensemble`) are averaged
in probability, as the shipped ensemble averages them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fer_core.inference.probabilities import autocast
from fer_core.runs.checkpoint import file_sha256, load_model


class Distiller:
    """Frozen teachers (checkpoint paths) and the loss that mixes their soft targets in."""

    def __init__(
        self,
        paths: list[str],
        weight: float,
        temperature: float,
        device: torch.device,
        dtype: torch.dtype | None,
        channels_last: bool = True,
    ):
        self.weight, self.temperature = weight, temperature
        self.device, self.dtype, self.channels_last = device, dtype, channels_last
        self.teachers = []
        for path in paths:
            teacher = load_model(path, device).eval().requires_grad_(False)
            self.teachers.append(teacher.to(memory_format=torch.channels_last) if channels_last else teacher)
        self.record = [
            {"checkpoint": p, "sha256": file_sha256(p), **t.checkpoint_info}
            for p, t in zip(paths, self.teachers, strict=True)
        ]

    @torch.inference_mode()
    def soft_targets(self, x: torch.Tensor) -> torch.Tensor:
        """The teachers' mean probabilities at the temperature, [N, classes] in fp32."""
        x = x.to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.dtype):
            return sum(torch.softmax(t(x).float() / self.temperature, 1) for t in self.teachers) / len(self.teachers)

    def criterion(self, base, x: torch.Tensor):
        """`base` (the label loss) mixed with the soft-target loss for this batch `x`."""
        targets = self.soft_targets(x).clone()  # a normal tensor: autograd refuses inference tensors
        w, t = self.weight, self.temperature

        def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            soft = F.kl_div(F.log_softmax(logits.float() / t, 1), targets, reduction="batchmean") * t * t
            return (1 - w) * base(logits, labels) + w * soft

        return loss
