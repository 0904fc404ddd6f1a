"""Reading FER2013 into uint8 arrays, from the Kaggle CSV or from image folders.

Everything downstream works on `FerDataset`: named splits (`train`, `val`, `test`) of
48x48 uint8 images and int64 labels in the canonical class order of `classes.py`.
Decoding 28k JPEGs or 35k CSV rows takes seconds, so the decoded arrays are cached on
disk, keyed by the source's path, size and mtime; a second load is a file read.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .. import paths
from ..atomic import atomic_write
from ..classes import CLASSES, NUM_CLASSES, class_index

IMAGE_SIZE = 48
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
CACHE_VERSION = "1"

# FER2013 `Usage` values and the split folder names people use, to our split names.
SPLIT_NAMES = {
    "training": "train",
    "train": "train",
    "publictest": "val",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "privatetest": "test",
    "test": "test",
    "testing": "test",
}
# FER+ (`fer2013new.csv`) vote columns, mapped to our classes; None = no FER2013 class.
FER_PLUS_COLUMNS = {
    "neutral": "neutral",
    "happiness": "happy",
    "surprise": "surprise",
    "sadness": "sad",
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "contempt": None,
    "unknown": None,
    "NF": None,
}


class FerDataError(ValueError):
    """Input that is not a usable FER dataset; the message names the file and row or path."""


@dataclass
class Split:
    images: np.ndarray  # uint8 [N, 48, 48]
    labels: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=NUM_CLASSES)

    def subset(self, index: np.ndarray) -> Split:
        return Split(self.images[index], self.labels[index])


@dataclass
class FerDataset:
    splits: dict[str, Split]
    source: str
    fingerprint: str

    def summary(self) -> dict:
        return {
            name: {"n": len(s), "class_counts": dict(zip(CLASSES, s.class_counts().tolist(), strict=True))}
            for name, s in self.splits.items()
        }


# ----------------------------------------------------------------------------- loading


def load_dataset(
    path: str | os.PathLike,
    fer_plus: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> FerDataset:
    """Load a FER2013 CSV (`.csv` / `.csv.gz`) or image-folder tree, through the disk cache."""
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise FerDataError(f"{path}: no such file or folder")
    sources = [path] + ([Path(fer_plus).expanduser().resolve()] if fer_plus else [])
    fingerprint = _fingerprint(sources)
    cache_file = Path(cache_dir or paths.cache_dir()) / f"{fingerprint}.npz"
    if use_cache and cache_file.exists():
        try:
            return FerDataset(_read_cache(cache_file), str(path), fingerprint)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache file is rebuilt below
    if path.is_dir():
        if fer_plus:
            raise FerDataError(f"{fer_plus}: FER+ labels apply to the CSV form of FER2013 only")
        splits = read_folder(path)
    else:
        splits = read_csv(path, fer_plus=fer_plus)
    if use_cache:
        _write_cache(cache_file, splits)
    return FerDataset(splits, str(path), fingerprint)


def _fingerprint(sources: list[Path]) -> str:
    """Hash of every source file's relative path, size and mtime (scandir: one stat per file)."""
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for source in sources:
        digest.update(str(source).encode())
        if source.is_file():
            st = source.stat()
            digest.update(f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
            continue
        lines, folders = [], [str(source)]
        while folders:
            with os.scandir(folders.pop()) as entries:
                for e in entries:
                    if e.is_dir():
                        folders.append(e.path)
                    elif e.is_file():
                        st = e.stat()
                        lines.append(f"{e.path}|{st.st_size}|{st.st_mtime_ns}")
        digest.update("\n".join(sorted(lines)).encode())
    return digest.hexdigest()[:20]


def _read_cache(cache_file: Path) -> dict[str, Split]:
    with np.load(cache_file) as z:
        names = [k[: -len("_labels")] for k in z.files if k.endswith("_labels")]
        return {n: Split(z[f"{n}_images"], z[f"{n}_labels"]) for n in sorted(names, key=_split_order)}


def _write_cache(cache_file: Path, splits: dict[str, Split]) -> None:
    arrays = {f"{n}_{k}": getattr(s, k) for n, s in splits.items() for k in ("images", "labels")}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to a path
            np.savez(f, **arrays)

    try:
        atomic_write(cache_file, write)
    except OSError as e:  # a read-only home is no reason to refuse to train
        warnings.warn(f"could not write the dataset cache {cache_file}: {e}", stacklevel=2)


def _split_order(name: str) -> tuple:
    return ({"train": 0, "val": 1, "test": 2}.get(name, 3), name)


# ----------------------------------------------------------------------------- CSV form


def read_csv(path: str | os.PathLike, fer_plus: str | os.PathLike | None = None) -> dict[str, Split]:
    """The Kaggle `fer2013.csv`: columns `emotion`, `pixels` and (optionally) `Usage`."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError, EOFError) as e:
        raise FerDataError(f"{path}: not a readable FER2013 CSV ({e})") from None
    except Exception as e:  # gzip.BadGzipFile, zlib errors and the like
        raise FerDataError(f"{path}: not a readable FER2013 CSV ({type(e).__name__}: {e})") from None
    frame.columns = [c.strip() for c in frame.columns]
    # a repeated column (pandas renames the second `emotion` to `emotion.1`): which one is meant?
    names = [re.sub(r"^(emotion|pixels|Usage)\.\d+$", r"\1", c) for c in frame.columns]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise FerDataError(f"{path}: column {repeated[0]!r} appears more than once")
    missing = {"emotion", "pixels"} - set(frame.columns)
    if missing:
        raise FerDataError(
            f"{path}: missing column(s) {', '.join(sorted(missing))} (found: {', '.join(frame.columns) or 'none'})"
        )
    if len(frame) == 0:
        raise FerDataError(f"{path}: no rows")
    n_pixels = IMAGE_SIZE * IMAGE_SIZE
    images = np.empty((len(frame), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    labels = np.empty(len(frame), np.int64)
    for i, (emotion, pixels) in enumerate(zip(frame["emotion"], frame["pixels"], strict=True)):
        where = f"{path}, row {i + 1} (line {i + 2})"
        try:
            label = int(emotion.strip())
        except ValueError:
            raise FerDataError(f"{where}: emotion {emotion!r} is not a class index 0-{NUM_CLASSES - 1}") from None
        if not 0 <= label < NUM_CLASSES:
            raise FerDataError(f"{where}: unknown label {label} (classes are 0-{NUM_CLASSES - 1})")
        values = pixels.split()
        if len(values) != n_pixels:
            raise FerDataError(f"{where}: {len(values)} pixels, expected {n_pixels} (48x48)")
        images[i] = _pixel_row(values, where).reshape(IMAGE_SIZE, IMAGE_SIZE)
        labels[i] = label
    if "Usage" in frame.columns:
        usage = frame["Usage"].str.strip().str.lower()
        unknown = sorted(set(usage) - set(SPLIT_NAMES))
        if unknown:
            row = int(np.flatnonzero(usage == unknown[0])[0])
            raise FerDataError(f"{path}, row {row + 1}: unknown Usage {frame['Usage'][row]!r}")
        split_of_row = usage.map(SPLIT_NAMES).to_numpy()
    else:
        split_of_row = np.full(len(frame), "train", dtype=object)
    keep = np.ones(len(frame), bool)
    if fer_plus:
        labels, keep = _fer_plus_labels(Path(fer_plus), len(frame))
    splits = {}
    for name in sorted(set(split_of_row), key=_split_order):
        index = np.flatnonzero((split_of_row == name) & keep)
        if len(index):
            splits[name] = Split(images[index], labels[index])
    return splits


def _pixel_row(values: list[str], where: str) -> np.ndarray:
    try:
        row = np.array(values, dtype=np.int64)
        if row.min() >= 0 and row.max() <= 255:
            return row
    except (ValueError, OverflowError):
        pass
    for v in values:  # the slow path only names the first bad value
        try:
            n = int(v)
        except ValueError:
            raise FerDataError(f"{where}: pixel value {v!r} is not a number") from None
        if not 0 <= n <= 255:
            raise FerDataError(f"{where}: pixel value {v} is not in 0-255")
    raise AssertionError("unreachable")


def _fer_plus_labels(path: Path, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority vote over FER+ annotators; rows whose winner is not one of ours, or tied, are dropped."""
    try:
        votes = pd.read_csv(path)
    except Exception as e:
        raise FerDataError(f"{path}: not a readable FER+ CSV ({e})") from None
    missing = set(FER_PLUS_COLUMNS) - set(votes.columns)
    if missing:
        raise FerDataError(f"{path}: missing FER+ column(s) {', '.join(sorted(missing))}")
    if len(votes) != n_rows:
        raise FerDataError(
            f"{path}: {len(votes)} rows, but the FER2013 CSV has {n_rows}; "
            "FER+ labels must come row for row with fer2013.csv"
        )
    counts = votes[list(FER_PLUS_COLUMNS)].to_numpy(dtype=np.float64)
    winner = counts.argmax(axis=1)
    top = counts.max(axis=1)
    unique_top = (counts == top[:, None]).sum(axis=1) == 1
    mapped = np.array([-1 if c is None else CLASSES.index(c) for c in FER_PLUS_COLUMNS.values()])
    labels = mapped[winner]
    keep = unique_top & (labels >= 0) & (top > 0)
    return np.where(keep, labels, 0).astype(np.int64), keep


# ----------------------------------------------------------------------------- folder form


def read_folder(root: str | os.PathLike) -> dict[str, Split]:
    """`ROOT/<split>/<class>/*.jpg` (or `ROOT/<class>/*.jpg`, read as one `train` split)."""
    root = Path(root)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        raise FerDataError(f"{root}: empty folder (expected <split>/<class>/ or <class>/ sub-folders)")
    if any(class_index(d.name) is not None for d in subdirs):
        split_dirs = {"train": root}
    else:
        split_dirs = {}
        for d in subdirs:
            name = SPLIT_NAMES.get(d.name.lower(), d.name.lower())
            if name in split_dirs:
                raise FerDataError(f"{d}: a second folder for split {name!r} (first: {split_dirs[name]})")
            split_dirs[name] = d
    splits = {name: _read_split_folder(d) for name, d in split_dirs.items()}
    return {name: splits[name] for name in sorted(splits, key=_split_order)}


def _read_split_folder(split_dir: Path) -> Split:
    images, labels = [], []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = class_index(class_dir.name)
        if label is None:
            warnings.warn(f"{class_dir}: folder name matches no FER2013 class; skipped", stacklevel=2)
            continue
        for f in sorted(class_dir.iterdir()):
            if f.name.startswith(".") or f.is_dir():
                continue
            images.append(read_face_image(f))
            labels.append(label)
    if not images:
        raise FerDataError(f"{split_dir}: no images in any class folder ({', '.join(CLASSES)})")
    return Split(np.stack(images), np.array(labels, np.int64))


def read_face_image(path: Path) -> np.ndarray:
    """One image file as a 48x48 grayscale uint8 array; any other size is resized."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise FerDataError(f"{path}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
    try:
        with Image.open(path) as im:
            gray = im.convert("L")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise FerDataError(f"{path}: unreadable image ({e})") from None
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(gray, dtype=np.uint8)


def write_csv(splits: dict[str, Split], path: str | os.PathLike) -> None:
    """Write splits in the Kaggle CSV form (used to build the bundled sample and test data)."""
    usage = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
    rows = [
        (int(label), " ".join(map(str, image.ravel().tolist())), usage.get(name, name))
        for name, s in splits.items()
        for image, label in zip(s.images, s.labels, strict=True)
    ]
    compression = "gzip" if str(path).endswith(".gz") else None
    pd.DataFrame(rows, columns=["emotion", "pixels", "Usage"]).to_csv(path, index=False, compression=compression)


# ----------------------------------------------------------------------------- splitting


def stratified_indices(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of a class-stratified random subset of size n (every class kept if it can be)."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    quota = np.floor(counts * n / len(labels)).astype(int)
    quota = np.maximum(quota, np.minimum(counts, 1))  # rare classes keep at least one image
    while quota.sum() > n:
        quota[quota.argmax()] -= 1
    while quota.sum() < n:
        room = counts - quota
        quota[np.argmax(room * (counts / counts.sum()))] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(chosen))


def stratified_split(split: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Carve a validation split out of a training split, keeping class proportions."""
    val_index = stratified_indices(split.labels, max(1, round(len(split) * val_fraction)), seed)
    train_mask = np.ones(len(split), bool)
    train_mask[val_index] = False
    return split.subset(np.flatnonzero(train_mask)), split.subset(val_index)


def prepare_splits(
    dataset: FerDataset, limit: int | None = None, val_fraction: float = 0.1, seed: int = 0
) -> dict[str, Split]:
    """The train/val(/test) splits a run uses: a val split made if missing, each capped at `limit`."""
    splits = dict(dataset.splits)
    if "train" not in splits:
        raise FerDataError(f"{dataset.source}: no training split (found: {', '.join(splits)})")
    if "val" not in splits:
        splits["train"], splits["val"] = stratified_split(splits["train"], val_fraction, seed)
    if limit:
        splits = {n: s.subset(stratified_indices(s.labels, limit, seed)) for n, s in splits.items()}
    return splits
