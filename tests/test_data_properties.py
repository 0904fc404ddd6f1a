"""Property-based tests (hypothesis) for the two dataset readers: whatever is on disk either
loads correctly (the arrays equal what was written) or raises FerDataError naming the
file - never a stray exception.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from fer_core.classes import CLASSES, class_index
from fer_core.data.fer2013 import FerDataError, load_dataset

PROPERTY = settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", 200)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
N_PIXELS = 48 * 48


def load_or_error(path: Path):
    """The dataset, or None when it was refused with FerDataError naming the input."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = load_dataset(path, use_cache=False)
        event("loaded")
        return dataset
    except FerDataError as e:
        event("refused")
        assert str(path) in str(e) or path.name in str(e), str(e)
        return None


# ----------------------------------------------------------------------------- CSV

# 2304 pixels from a seed: drawing them one by one would exceed hypothesis's data budget
good_pixels = st.integers(0, 2**32 - 1).map(
    lambda seed: np.random.default_rng(seed).integers(0, 256, N_PIXELS).tolist()
)
odd_pixel = st.one_of(
    st.integers(-300, 600).map(str),
    st.sampled_from(["", "1.5", "abc", "²", "٣", "1e3", "-0", "99999999999999999999999", "0x10", "NaN"]),
)


@st.composite
def csv_rows(draw):
    """(emotion, pixels, usage) text cells: mostly valid, sometimes broken in one of many ways."""
    emotion = draw(
        st.one_of(
            st.integers(0, 6).map(str),
            st.integers(0, 6).map(str),
            st.integers(-3, 12).map(str),
            st.sampled_from(["", "happy", " 3 ", "1.0", "²", "1_0"]),
            st.text(max_size=4),
        )
    )
    pixels = draw(good_pixels)
    kind = draw(st.sampled_from(["ok"] * 6 + ["short", "long", "odd"]))
    cells = [str(p) for p in pixels]
    if kind == "short":
        cells = cells[: draw(st.integers(0, N_PIXELS - 1))]
    elif kind == "long":
        cells += ["0"] * draw(st.integers(1, 3))
    elif kind == "odd":
        cells[draw(st.integers(0, N_PIXELS - 1))] = draw(odd_pixel)
    usage = draw(
        st.one_of(
            st.sampled_from(["Training", "PublicTest", "PrivateTest", " training "]),
            st.sampled_from(["Training", "PublicTest", "PrivateTest"]),
            st.text(max_size=6),
        )
    )
    return emotion, " ".join(cells), usage


def csv_text(header: list[str], rows: list[tuple]) -> str:
    out = io.StringIO()
    import csv

    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow(row[: len(header)])
    return out.getvalue()


@PROPERTY
@given(
    rows=st.lists(csv_rows(), min_size=0, max_size=4),
    header=st.one_of(
        st.just(["emotion", "pixels", "Usage"]),
        st.just(["emotion", "pixels"]),
        st.permutations(["emotion", "pixels", "Usage", "emotion"]),
        st.lists(st.sampled_from(["emotion", "pixels", "Usage", " pixels", "pixels ", "x", ""]), max_size=4),
    ),
    gz=st.booleans(),
)
def test_any_csv_loads_correctly_or_is_refused(rows, header, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("fer2013.csv.gz" if gz else "fer2013.csv")
        text = csv_text(header, rows).encode()
        path.write_bytes(gzip.compress(text) if gz else text)
        dataset = load_or_error(path)
    if dataset is None:
        return
    # It loaded: then the header was the real one and every row was valid, and nothing was lost.
    assert header[:2] == ["emotion", "pixels"] and len(set(header)) == len(header) and rows
    total = sum(len(s) for s in dataset.splits.values())
    assert total == len(rows)
    names = {"training": "train", "publictest": "val", "privatetest": "test"}
    for name, split in dataset.splits.items():
        expected = [r for r in rows if (names[r[2].strip().lower()] if len(header) == 3 else "train") == name]
        assert split.labels.tolist() == [int(r[0]) for r in expected]
        assert split.images.reshape(len(split), -1).tolist() == [[int(p) for p in r[1].split()] for r in expected]


@PROPERTY
@given(data=st.binary(max_size=300), gz=st.booleans())
def test_any_bytes_as_csv_load_or_are_refused(data, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("x.csv.gz" if gz else "x.csv")
        path.write_bytes(data)
        load_or_error(path)


# ----------------------------------------------------------------------------- folders


def image_bytes(kind: str, size: tuple[int, int], value: int) -> bytes:
    mode, fmt = {
        "jpg": ("L", "JPEG"),
        "png": ("L", "PNG"),
        "rgb-png": ("RGB", "PNG"),
        "rgba-png": ("RGBA", "PNG"),
        "16bit-png": ("I;16", "PNG"),
        "palette-png": ("P", "PNG"),
        "bmp": ("RGB", "BMP"),
        "gif": ("P", "GIF"),
        "webp": ("RGB", "WEBP"),
    }[kind]
    out = io.BytesIO()
    Image.new(mode, size, value if mode != "RGB" and mode != "RGBA" else (value,) * len(mode)).save(out, fmt)
    return out.getvalue()


@st.composite
def image_file(draw):
    """(file name, bytes, is a valid image)."""
    kind = draw(
        st.sampled_from(
            ["jpg", "png", "rgb-png", "rgba-png", "16bit-png", "palette-png", "bmp", "gif", "webp"] * 3
            + ["junk", "empty", "truncated", "text-file"]
        )
    )
    stem = draw(st.text("abcXYZ019_- ", min_size=1, max_size=8)).strip() or "f"
    if kind == "junk":
        return f"{stem}.jpg", draw(st.binary(max_size=64)), False
    if kind == "empty":
        return f"{stem}.png", b"", False
    if kind == "text-file":
        return f"{stem}.txt", b"hello", False
    size = (draw(st.integers(1, 96)), draw(st.integers(1, 96)))
    data = image_bytes("png" if kind == "truncated" else kind, size, draw(st.integers(0, 255)))
    if kind == "truncated":
        return f"{stem}.png", data[: len(data) // 2], False
    suffix = {"rgb-png": "png", "rgba-png": "png", "16bit-png": "png", "palette-png": "png"}.get(kind, kind)
    return f"{stem}.{suffix}", data, True


folder_names = st.one_of(
    st.sampled_from(list(CLASSES)),
    st.sampled_from(["Happiness", "ANGER", "surprised", "contempt", "sadness"]),
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
)
split_names = st.sampled_from(["train", "Training", "val", "PublicTest", "test", "whatever", "Train"])


@PROPERTY
@given(
    tree=st.dictionaries(
        split_names, st.dictionaries(folder_names, st.lists(image_file(), max_size=3), max_size=3), max_size=3
    ),
    flat=st.booleans(),
)
def test_any_image_folder_loads_correctly_or_is_refused(tree, flat):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        layout = {"": next(iter(tree.values()), {})} if flat else tree
        for split, classes in layout.items():
            for cls, files in classes.items():
                folder = root / split / cls
                folder.mkdir(parents=True, exist_ok=True)
                for name, data, _ in files:
                    (folder / name).write_bytes(data)
        dataset = load_or_error(root)
        if dataset is None:
            return
        # It loaded: every file it read was a real image, each split holds all of its class folders' images.
        for split in dataset.splits.values():
            assert split.images.shape[1:] == (48, 48) and split.images.dtype == np.uint8
            assert split.labels.min() >= 0 and split.labels.max() < len(CLASSES)
        n_images = sum(len(s) for s in dataset.splits.values())
        read_dirs = [d for d in root.rglob("*") if d.is_dir() and class_index(d.name) is not None]  # the loader's names
        assert n_images == sum(1 for d in read_dirs for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
        shutil.rmtree(root)
