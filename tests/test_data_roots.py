"""The dashboard reads datasets only under its data roots (the project's data folder,
../shared/data, FER_DATA_ROOTS); elsewhere one line that names the setting and tells nothing
about what is there. The command-line tools read any path their user gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.common import FULL_DATA_HINT, SAMPLE_DATA, dataset_refusal
from tests.conftest import PROJECT, TINY_STCNN
from trainers.jobs import JobQueue

APP = str(PROJECT / "dashboard" / "app.py")


def data_page(path: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("views/data.py")
    at.run()
    at.text_input(key="data_path").set_value(path).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def outside(tmp_path, monkeypatch) -> Path:
    """A folder with a secret file and a subfolder, outside every data root."""
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.delenv("FER_DATA_ROOTS", raising=False)
    folder = tmp_path / "private"
    (folder / "payroll-2026").mkdir(parents=True)
    (folder / "secret.csv").write_text("emotion,pixels\nhunter2 is the password,1 2 3\n")
    return folder


def test_the_data_page_refuses_paths_outside_its_roots_with_one_line(outside):
    lines = set()
    for path in (outside / "secret.csv", outside, outside / "missing.csv", "/etc/passwd", "/etc", "../../etc/passwd"):
        at = data_page(str(path))
        [error] = [e.value for e in at.error]
        assert "FER_DATA_ROOTS" in error and str(SAMPLE_DATA.parent) in error
        for leak in ("hunter2", "emotion", "payroll", "root:", "apt"):  # no content, no listing
            assert leak not in error, (path, error)
        assert not at.metric  # nothing read
        lines.add(error)
    assert len(lines) == 1  # the same line whether the path is a file, a folder or nothing


def test_the_data_page_reads_the_sample_and_folders_added_to_its_roots(small_folder, outside, monkeypatch):
    at = data_page(str(SAMPLE_DATA))
    assert not at.error and at.metric[0].label == "train images"

    link = outside.parent / "roots" / "link-out"  # a link inside a root that leads out of it
    link.parent.mkdir()
    link.symlink_to(outside)
    monkeypatch.setenv("FER_DATA_ROOTS", f"{small_folder}:{link.parent}")
    at = data_page(str(small_folder))
    assert not at.error and [m.value for m in at.metric] == ["84", "28"]  # 12 and 4 faces per class
    at = data_page(str(link / "secret.csv"))
    [error] = [e.value for e in at.error]
    assert "FER_DATA_ROOTS" in error and "hunter2" not in error


def test_shared_data_is_a_root_when_present():
    assert FULL_DATA_HINT.exists(), "the real FER2013 folders are expected in ../shared/data"
    assert dataset_refusal(str(FULL_DATA_HINT)) is None and dataset_refusal(str(FULL_DATA_HINT / "train")) is None
    assert dataset_refusal(str(FULL_DATA_HINT.parent.parent / "seed-paper.txt"))  # ../shared itself is not


def test_the_train_form_refuses_a_dataset_outside_the_roots(outside):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("views/train.py")
    at.run()
    at.radio(key="train_source").set_value("A path on this machine").run()
    at.text_input(key="train_path").set_value(str(outside / "secret.csv"))
    at.button[0].click().run()
    [error] = [e.value for e in at.error]
    assert "FER_DATA_ROOTS" in error and "hunter2" not in error and "emotion" not in error
    assert JobQueue().jobs() == []


@pytest.mark.slow
def test_fer_train_reads_a_dataset_anywhere(small_folder, tmp_path):
    """The roots are the dashboard's: on the command line the user's own paths are theirs to read."""
    fer_train = Path(sys.executable).parent / "fer-train"
    command = [str(fer_train), "--model", "stcnn", *TINY_STCNN, "--data", str(small_folder), "--epochs", "1"]
    result = subprocess.run(
        [*command, "--runs-dir", str(tmp_path / "runs"), "--no-progress"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "epoch 1/1" in result.stdout
