"""Reading FER2013 in both forms, the cache, FER+ relabelling and every bad-input case."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pandas as pd
import pytest

from fer_core.classes import CLASSES, class_index
from fer_core.data.fer2013 import (
    FerDataError,
    Split,
    load_dataset,
    prepare_splits,
    read_csv,
    read_folder,
    stratified_indices,
    write_csv,
)
from tests.conftest import SAMPLE_CSV


def test_class_order_and_synonyms():
    assert CLASSES == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert class_index("Happiness") == 3 and class_index("ANGER") == 0 and class_index("surprised") == 5
    assert class_index("contempt") is None


def test_folder_form_real_images(small_folder):
    splits = read_folder(small_folder)
    assert list(splits) == ["train", "val"]
    assert splits["train"].images.shape == (84, 48, 48) and splits["train"].images.dtype == np.uint8
    assert splits["train"].class_counts().tolist() == [12] * 7
    happy = splits["train"].images[splits["train"].labels == 3]
    assert happy.std() > 20  # real faces, not blank arrays


def test_folder_synonyms_and_unknown_class(small_folder, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(small_folder / "train" / "happy", root / "Training" / "Happiness")
    shutil.copytree(small_folder / "train" / "angry", root / "Training" / "anger")
    shutil.copytree(small_folder / "train" / "sad", root / "Training" / "contempt")
    with pytest.warns(UserWarning, match="contempt"):
        splits = read_folder(root)
    assert set(splits) == {"train"}
    assert sorted(set(splits["train"].labels.tolist())) == [0, 3]


def test_folder_of_class_folders_is_one_train_split(small_folder):
    splits = read_folder(small_folder / "val")
    assert list(splits) == ["train"] and len(splits["train"]) == 28


def test_csv_form_roundtrip(small_folder, tmp_path):
    original = read_folder(small_folder)
    for name in ("fer.csv", "fer.csv.gz"):
        write_csv(original, tmp_path / name)
        loaded = read_csv(tmp_path / name)
        assert list(loaded) == ["train", "val"]
        for split in original:
            np.testing.assert_array_equal(loaded[split].images, original[split].images)
            np.testing.assert_array_equal(loaded[split].labels, original[split].labels)


def test_bundled_sample_is_real_fer2013_csv():
    ds = load_dataset(SAMPLE_CSV)
    assert set(ds.splits) == {"train", "val"}
    assert ds.splits["train"].class_counts().min() >= 20
    assert SAMPLE_CSV.stat().st_size < 5_000_000


def test_fer_plus_majority_vote(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    write_csv({"train": Split(images, np.array([0, 0, 0, 0]))}, tmp_path / "fer2013.csv")
    columns = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]
    votes = [
        [0, 9, 1, 0, 0, 0, 0, 0, 0, 0],  # happy
        [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # tie: dropped
        [0, 0, 0, 0, 0, 0, 0, 8, 2, 0],  # contempt: dropped
        [1, 0, 0, 0, 0, 0, 7, 0, 2, 0],
    ]  # fear
    frame = pd.DataFrame(votes, columns=columns)
    frame.insert(0, "Image name", [f"fer{i:07d}.png" for i in range(4)])
    frame.insert(0, "Usage", "Training")
    frame.to_csv(tmp_path / "fer2013new.csv", index=False)
    splits = read_csv(tmp_path / "fer2013.csv", fer_plus=tmp_path / "fer2013new.csv")
    assert splits["train"].labels.tolist() == [3, 2]
    np.testing.assert_array_equal(splits["train"].images, images[[0, 3]])


def test_the_second_load_comes_from_the_cache(small_folder, tmp_path, monkeypatch):
    """A hit decodes nothing (the decoders are made to fail); a changed source is a miss.
    How much faster a hit is: benchmarks/data_load.py (docs/performance.md)."""
    import fer_core.data.fer2013

    folder = tmp_path / "folder"
    shutil.copytree(small_folder, folder)  # changed below: not the session's small_folder
    first = load_dataset(folder, cache_dir=tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{first.fingerprint}.npz"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded the images again instead of reading the cache")

    with monkeypatch.context() as patched:
        patched.setattr(fer_core.data.fer2013, "read_folder", no_decoding)
        patched.setattr(fer_core.data.fer2013, "read_csv", no_decoding)
        second = load_dataset(folder, cache_dir=tmp_path / "cache")
    assert second.fingerprint == first.fingerprint
    for split in first.splits:
        np.testing.assert_array_equal(first.splits[split].images, second.splits[split].images)
        np.testing.assert_array_equal(first.splits[split].labels, second.splits[split].labels)

    # a changed source gets a new key, not the stale arrays
    (folder / "val" / "happy" / "extra.jpg").write_bytes(next((folder / "val" / "happy").iterdir()).read_bytes())
    third = load_dataset(folder, cache_dir=tmp_path / "cache")
    assert third.fingerprint != first.fingerprint and len(third.splits["val"]) == 29
    assert len(list((tmp_path / "cache").iterdir())) == 2


def _csv(tmp_path, text, name="bad.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


PIXELS = " ".join(["128"] * 2304)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("emotion,pixels,Usage\n3," + " ".join(["1"] * 2303) + ",Training\n", r"row 1 \(line 2\): 2303 pixels"),
        (
            "emotion,pixels,Usage\n3," + PIXELS + ",Training\n2," + PIXELS[:-3] + "abc,Training\n",
            r"row 2 \(line 3\): pixel value 'abc' is not a number",
        ),
        ("emotion,pixels,Usage\n9," + PIXELS + ",Training\n", "row 1.*unknown label 9"),
        ("emotion,pixels,Usage\nhappy," + PIXELS + ",Training\n", "row 1.*'happy' is not a class index"),
        ("emotion,Usage\n3,Training\n", "missing column.*pixels"),
        ("emotion,pixels,Usage\n3," + PIXELS.replace("128", "300", 1) + ",Training\n", "0-255"),
        ("emotion,pixels,Usage\n3," + PIXELS + ",Holdout\n", "unknown Usage 'Holdout'"),
        ("", "not a readable FER2013 CSV"),
    ],
)
def test_bad_csv_is_named(tmp_path, text, needle):
    path = _csv(tmp_path, text)
    with pytest.raises(FerDataError, match=needle) as e:
        load_dataset(path, cache_dir=tmp_path / "c")
    assert "bad.csv" in str(e.value)
    assert not list((tmp_path / "c").glob("*.npz"))  # nothing half-done is cached


def test_bad_gzip_is_named(tmp_path):
    path = tmp_path / "broken.csv.gz"
    path.write_bytes(gzip.compress(b"emotion,pixels\n")[:10])
    with pytest.raises(FerDataError, match="broken.csv.gz"):
        load_dataset(path, cache_dir=tmp_path)


def test_unreadable_and_non_image_files_are_named(small_folder, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(small_folder, root)
    bad = root / "train" / "happy" / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(FerDataError, match="corrupt.jpg: unreadable image"):
        read_folder(root)
    bad.unlink()
    (root / "val" / "sad" / "notes.txt").write_text("hello")
    with pytest.raises(FerDataError, match="notes.txt: not an image file"):
        read_folder(root)


def test_empty_folders_are_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FerDataError, match="empty: empty folder"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "ds" / "train" / "happy").mkdir(parents=True)
    with pytest.raises(FerDataError, match="train: no images"):
        read_folder(tmp_path / "ds")
    with pytest.raises(FerDataError, match="no such file"):
        load_dataset(tmp_path / "missing")


def test_stratified_limit_and_split(small_folder):
    ds = load_dataset(small_folder)
    labels = ds.splits["train"].labels
    index = stratified_indices(labels, 21, seed=0)
    assert len(index) == 21 and np.bincount(labels[index], minlength=7).tolist() == [3] * 7
    only_train = type(ds)({"train": ds.splits["train"]}, ds.source, ds.fingerprint)
    splits = prepare_splits(only_train, val_fraction=0.25, seed=1)
    assert len(splits["train"]) + len(splits["val"]) == 84
    assert np.bincount(splits["val"].labels, minlength=7).tolist() == [3] * 7
    assert prepare_splits(ds, limit=14)["val"].class_counts().tolist() == [2] * 7
