"""Shared fixtures: real FER2013 faces from ../shared/data and the bundled sample."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
FER2013 = Path(os.environ.get("FER2013_DIR", PROJECT.parent / "shared" / "data" / "fer2013"))
SAMPLE_CSV = PROJECT / "data" / "fer2013_sample.csv.gz"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own dataset cache, so tests never see a stale one."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def fer2013() -> Path:
    if not FER2013.is_dir():
        pytest.fail(f"the real FER2013 folders are expected at {FER2013} (set FER2013_DIR)")
    return FER2013


@pytest.fixture(scope="session")
def small_folder(fer2013, tmp_path_factory) -> Path:
    """A real image-folder dataset: 12 train and 4 val faces per class."""
    root = tmp_path_factory.mktemp("folder")
    for split, n in (("train", 12), ("val", 4)):
        for class_dir in sorted((fer2013 / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for f in sorted(class_dir.iterdir())[:n]:
                shutil.copy(f, target / f.name)
    return root


def happy_face(fer2013: Path) -> Path:
    return sorted((fer2013 / "val" / "happy").iterdir())[0]
