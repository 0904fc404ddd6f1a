"""Grad-CAM heat maps for any of our architectures (own ~40 lines: the `grad-cam` package
pulls in `opencv-python`, which clashes with the headless OpenCV we need)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..data.augment import MEAN, STD, to_model_input


def target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last spatial feature layer of each architecture."""
    name = getattr(model, "name", "")
    if name == "stcnn":
        return model.classifier.features[-1]
    if name == "cnn":
        return model.features[-1]
    if name == "resnet50":
        return model.net.layer3  # layer4 is 2x2 at 48x48 (imagenet stem): too coarse to show anything
    if name == "vit":
        # Not blocks[-1]: only its class token reaches the head, so its patch tokens get no
        # gradient and the map is all zeros. The last block's first norm is where the patch
        # tokens last feed the class token (as attention keys and values).
        return model.blocks[-1].norm1
    raise ValueError(f"no Grad-CAM target layer for model {name!r}")


def grad_cam(model: torch.nn.Module, face: np.ndarray, class_index: int | None = None) -> np.ndarray:
    """A 48x48 map in [0, 1] of where the evidence for `class_index` (default: predicted) lies."""
    layer = target_layer(model)
    saved: dict[str, torch.Tensor] = {}
    hooks = [
        layer.register_forward_hook(lambda m, i, o: saved.__setitem__("act", o)),
        layer.register_full_backward_hook(lambda m, gi, go: saved.__setitem__("grad", go[0])),
    ]
    try:
        model.eval()
        x = to_model_input(torch.from_numpy(np.array(face, dtype=np.uint8)).unsqueeze(0)).requires_grad_(True)
        with torch.enable_grad():
            logits = model(x)
            index = int(logits.argmax(1)) if class_index is None else class_index
            model.zero_grad(set_to_none=True)
            logits[0, index].backward()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)  # a cached model keeps no gradients (memory) between calls
    act, grad = saved["act"].detach().float(), saved["grad"].detach().float()
    if act.dim() == 3:  # ViT tokens [1, 1 + n, dim] -> [1, dim, g, g] without the class token
        g = int(round((act.shape[1] - 1) ** 0.5))
        act, grad = (t[:, 1:].transpose(1, 2).reshape(1, -1, g, g) for t in (act, grad))
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=face.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max().clamp_min(1e-8)).numpy()


def overlay(face: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The face in gray with the map as a red-yellow heat layer, RGB uint8."""
    base = np.repeat(face[..., None].astype(np.float32), 3, axis=2)
    heat = np.stack([np.ones_like(cam), cam, np.zeros_like(cam)], axis=2) * 255
    alpha = 0.5 * cam[..., None]
    return (base * (1 - alpha) + heat * alpha).clip(0, 255).astype(np.uint8)


@torch.inference_mode()
def spatial_transform(model: torch.nn.Module, face: np.ndarray) -> np.ndarray | None:
    """What an ST-CNN's spatial transformer makes of a face (uint8 48x48); None for other models."""
    if not hasattr(model, "transform"):
        return None
    x = to_model_input(torch.from_numpy(np.array(face, dtype=np.uint8)).unsqueeze(0))
    y = model.transform(x.float()).float()[0, 0]
    return ((y * STD + MEAN) * 255).clamp(0, 255).byte().numpy()
