"""Perturbations of 48x48 faces for robustness curves: geometry, occlusion and image quality.

Each perturbation maps uint8 faces [N, 48, 48] to uint8 faces of the same shape at one of a
few severities, drawing whatever it draws for a face (a rotation's sign, a shift's direction,
noise) from a generator seeded by (seed, perturbation, severity, the face's id), so a face gets
the same perturbation for every model, in every run, and wherever it sits in a batch. NumPy and
Pillow only (no PyTorch): the dashboard rebuilds its example faces without loading a model.

The geometric ones resample with `affine_warp`, which follows `F.affine_grid` +
`F.grid_sample(mode="bilinear", align_corners=False)` - the spatial transformer's own sampler -
and fills what comes in from outside the face with the training mean gray, as the transformer
does (it pads with 0 in normalised units). So the ST's output on a perturbed face can be drawn
from its theta alone.

Where the faces are: FER2013 faces are registered, and on the mean val face the eyes are the
dark rows 14-20 (centre 17.5 of 48) and the mouth rows 36-41 (centre 38.5); the bands sit there.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .pixels import MEAN

FILL = MEAN * 255  # the gray that the ST's zero padding (in normalised units) is
EYES_ROW, MOUTH_ROW = 17.5, 38.5


@dataclass(frozen=True)
class Perturbation:
    name: str
    label: str  # what a chart calls it
    unit: str  # what a severity value counts
    severities: tuple  # mild to strong; the middle one is the table's
    apply: Callable[[np.ndarray, float, list[np.random.Generator]], np.ndarray]  # faces, value, a rng per face


def affine_warp(images: np.ndarray, theta: np.ndarray, fill: float = FILL) -> np.ndarray:
    """Bilinear resampling of float faces [N, H, W] by 2x3 thetas [N, 2, 3], as affine_grid and
    grid_sample (align_corners=False) compute it: output pixel (i, j) reads the input at theta
    times its own normalised coordinates; taps outside the face read `fill`."""
    n, h, w = images.shape
    xs = (2 * np.arange(w) + 1) / w - 1
    ys = (2 * np.arange(h) + 1) / h - 1
    gx, gy = np.meshgrid(xs, ys)  # [H, W]
    base = np.stack([gx, gy, np.ones_like(gx)], -1).reshape(-1, 3)  # [H*W, 3]
    src = np.einsum("nij,pj->npi", theta, base)  # [N, H*W, 2] normalised source coordinates
    x = np.clip(((src[..., 0] + 1) * w - 1) / 2, -2, w + 1)
    y = np.clip(((src[..., 1] + 1) * h - 1) / 2, -2, h + 1)
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)), constant_values=fill)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    row = np.arange(n)[:, None]
    tap = lambda yy, xx: padded[row, np.clip(yy + 2, 0, h + 3), np.clip(xx + 2, 0, w + 3)]  # noqa: E731
    out = (
        tap(y0, x0) * (1 - fx) * (1 - fy)
        + tap(y0, x0 + 1) * fx * (1 - fy)
        + tap(y0 + 1, x0) * (1 - fx) * fy
        + tap(y0 + 1, x0 + 1) * fx * fy
    )
    return out.reshape(n, h, w)


def similarity_theta(angle_deg, zoom, shift_x, shift_y) -> np.ndarray:
    """Thetas [N, 2, 3] that turn faces by `angle_deg`, scale them by `zoom` (>1 enlarges) and
    move them by (shift_x, shift_y) in normalised units (2 is the face's side); arrays or scalars."""
    angle, zoom, shift_x, shift_y = np.broadcast_arrays(
        *(np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (np.radians(angle_deg), zoom, shift_x, shift_y))
    )
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    # output point p reads input point A^-1 (p - shift): the inverse of "turn, scale, then move"
    tx, ty = -(cos * shift_x + sin * shift_y), -(-sin * shift_x + cos * shift_y)
    return np.stack([np.stack([cos, sin, tx], -1), np.stack([-sin, cos, ty], -1)], -2)


def _signs(rngs) -> np.ndarray:
    return np.array([r.choice([-1.0, 1.0]) for r in rngs])


# The geometric perturbations as thetas (per face: the rngs' draws), so that what a spatial
# transformer makes of them can be compared with what was done (fer_core/evaluation/robustness.py).
def _rotation(degrees, rngs):
    return similarity_theta(_signs(rngs) * degrees, 1.0, 0.0, 0.0)  # either way, per face


def _zoom(factor, rngs):
    return similarity_theta(0.0, np.full(len(rngs), factor), 0.0, 0.0)


def _shift(fraction, rngs):
    direction = np.array([r.uniform(0, 2 * np.pi) for r in rngs])  # any direction, per face
    move = 2 * fraction  # normalised units: the side is 2
    return similarity_theta(0.0, 1.0, move * np.cos(direction), move * np.sin(direction))


WARPS = {"rotation": _rotation, "zoom_out": _zoom, "zoom_in": _zoom, "shift": _shift}


def _warp(name: str):
    return lambda x, value, rngs: affine_warp(x, WARPS[name](value, rngs))


def _band(centre_row: float):
    def occlude(x, height, rngs):
        rows = np.arange(x.shape[1]) + 0.5
        out = x.copy()
        out[:, np.abs(rows - centre_row) < height / 2, :] = 0.0  # a black band across the face
        return out

    return occlude


def _patches(x, share, rngs, cell: int = 8):
    """Black 8x8 cells of the face's 6x6 grid, `share` of them (so of the area), per face."""
    n, h, w = x.shape
    grid_h, grid_w = h // cell, w // cell
    k = int(round(share * grid_h * grid_w))
    out = x.copy()
    for i, rng in enumerate(rngs):
        for c in rng.choice(grid_h * grid_w, size=k, replace=False):
            r, col = divmod(int(c), grid_w)
            out[i, r * cell : (r + 1) * cell, col * cell : (col + 1) * cell] = 0.0
    return out


def _blur(x, sigma, rngs):
    """Gaussian blur (separable, edges reflected), sigma in pixels."""
    radius = int(np.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad, mode="reflect")
        size = x.shape[axis]
        x = sum(t * np.take(padded, np.arange(k, k + size), axis=axis) for k, t in enumerate(taps))
    return x


def _noise(x, std, rngs):
    return x + np.stack([r.normal(0.0, std, size=x.shape[1:]) for r in rngs])


def _jpeg(x, quality, rngs):
    out = np.empty_like(x)
    for i, face in enumerate(np.clip(np.rint(x), 0, 255).astype(np.uint8)):
        buffer = io.BytesIO()
        Image.fromarray(face).save(buffer, format="JPEG", quality=int(quality))
        out[i] = np.asarray(Image.open(buffer), dtype=np.float64)
    return out


def _brightness(x, delta, rngs):
    return x + _signs(rngs)[:, None, None] * delta  # darker or lighter, per face


def _contrast(x, factor, rngs):
    mean = x.mean(axis=(1, 2), keepdims=True)
    return mean + factor * (x - mean)


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in [
        Perturbation("rotation", "rotation", "degrees", (15, 30, 45), _warp("rotation")),
        Perturbation("zoom_out", "zoom out (scale < 1)", "scale", (0.9, 0.8, 0.7), _warp("zoom_out")),
        Perturbation("zoom_in", "zoom in (scale > 1)", "scale", (1.1, 1.2, 1.3), _warp("zoom_in")),
        Perturbation("shift", "shift", "share of the side", (0.05, 0.1, 0.2), _warp("shift")),
        Perturbation("occlude_eyes", "band over the eyes", "band height, px", (6, 10, 14), _band(EYES_ROW)),
        Perturbation("occlude_mouth", "band over the mouth", "band height, px", (6, 10, 14), _band(MOUTH_ROW)),
        Perturbation("occlude_patches", "random patches", "share of the area", (0.1, 0.2, 0.3), _patches),
        Perturbation("blur", "Gaussian blur", "sigma, px", (0.75, 1.5, 2.5), _blur),
        Perturbation("noise", "Gaussian noise", "std, gray levels", (10, 20, 40), _noise),
        Perturbation("jpeg", "JPEG compression", "quality", (40, 20, 10), _jpeg),
        Perturbation("brightness", "brightness", "gray levels added or taken", (30, 60, 90), _brightness),
        Perturbation("contrast", "contrast", "contrast kept", (0.6, 0.4, 0.2), _contrast),
    ]
}
GEOMETRIC = tuple(WARPS)  # what a spatial transformer could undo


def face_rngs(name: str, level: int, ids, seed: int = 0) -> list[np.random.Generator]:
    """One generator per face for one perturbation at one severity."""
    return [np.random.default_rng([seed, zlib.crc32(name.encode()), level, int(i)]) for i in ids]


def perturb(images: np.ndarray, name: str, level: int, seed: int = 0, ids=None) -> np.ndarray:
    """Faces [N, H, W] uint8 with perturbation `name` at severity `level` (1 = mildest; 0 = the
    faces unchanged), as uint8 faces of the same shape. `ids` name the faces (their index in
    their split; default 0..N-1): a face's random draws depend on its id, not on its batch."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 faces [N, H, W], got {images.dtype} {images.shape}")
    if name not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}")
    p = PERTURBATIONS[name]
    if not 0 <= level <= len(p.severities):
        raise ValueError(f"{name} has severities 1 to {len(p.severities)} (0: none), not {level}")
    if level == 0 or len(images) == 0:
        return images.copy()
    ids = np.arange(len(images)) if ids is None else np.asarray(ids)
    if len(ids) != len(images):
        raise ValueError(f"{len(ids)} ids for {len(images)} faces")
    out = p.apply(images.astype(np.float64), p.severities[level - 1], face_rngs(name, level, ids, seed))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def perturbation_names(spec: str) -> list[str]:
    """`all` or names joined by commas -> the names, checked."""
    names = list(PERTURBATIONS) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in PERTURBATIONS]
    if unknown or not names:
        known = ", ".join(PERTURBATIONS)
        raise ValueError(f"unknown perturbation {', '.join(unknown) or repr(spec)}; choose from all, {known}")
    return names


def warp_theta(name: str, level: int, ids, seed: int = 0) -> np.ndarray:
    """The thetas [N, 2, 3] with which `perturb` resamples faces `ids` for a geometric perturbation."""
    return WARPS[name](PERTURBATIONS[name].severities[level - 1], face_rngs(name, level, ids, seed))
