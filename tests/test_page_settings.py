"""Dashboard settings users change, through Streamlit's AppTest: the Data page on a dataset of
the user's (sizes, class counts, sample faces, split switch, a bad path), the Train page's
concurrency cap, and Compare runs' live update (on by itself while a run is running; the
refresh in a real browser is in test_browser.py)."""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from fer_core.classes import CLASSES
from fer_core.data.fer2013 import load_dataset
from fer_core.runs.runstore import RunStore
from fer_core.runs.status import now_iso
from tests.conftest import SAMPLE_CSV, app_page
from trainers.jobs import JobQueue


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    return tmp_path


# -- Data -------------------------------------------------------------------------------------


def class_counts(at: AppTest) -> dict[tuple[str, str], int]:
    """(split, class) -> images, as the class-distribution bars show them."""
    from tests.test_compare_runs import values  # plotly's base64 arrays

    [chart] = at.get("plotly_chart")
    bars = json.loads(chart.proto.spec)["data"]
    return {(bar["name"], c): int(n) for bar in bars for c, n in zip(bar["x"], values(bar["y"]), strict=True)}


def test_the_data_page_shows_the_bundled_sample(home):
    at = app_page("data")
    sample = load_dataset(SAMPLE_CSV)
    assert at.text_input(key="data_path").value == str(SAMPLE_CSV)
    assert {m.label: m.value for m in at.metric} == {f"{s} images": f"{len(v):,}" for s, v in sample.splits.items()}
    expected = {
        (s, c): int(n) for s, v in sample.splits.items() for c, n in zip(CLASSES, v.class_counts(), strict=True)
    }
    assert class_counts(at) == expected


@pytest.fixture
def shown_images(monkeypatch) -> list[np.ndarray]:
    """The pixels of every image the page shows, in order (from Streamlit's media manager)."""
    from PIL import Image
    from streamlit.runtime.media_file_manager import MediaFileManager

    shown, add = [], MediaFileManager.add

    def spy(self, data, mimetype, *args, **kwargs):
        if mimetype.startswith("image/"):
            shown.append(np.asarray(Image.open(io.BytesIO(data)).convert("L")))
        return add(self, data, mimetype, *args, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", spy)
    return shown


def test_the_data_page_on_a_folder_of_the_users(home, small_folder, shown_images, monkeypatch):
    monkeypatch.setenv("FER_DATA_ROOTS", str(small_folder.parent))  # as the README's Serving section says
    at = app_page("data")
    at.text_input(key="data_path").set_value(str(small_folder)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric} == {"train images": "84", "val images": "28"}
    assert set(class_counts(at).values()) == {12, 4}  # 12 train and 4 val faces of every class
    assert at.radio(key="data_split").options == ["train", "val"]
    dataset = load_dataset(small_folder)
    for split in ("val", "train"):
        shown_images.clear()
        at.radio(key="data_split").set_value(split).run()
        assert [m.value for m in at.markdown if m.value.startswith("**")] == [f"**{c}**" for c in CLASSES]
        faces = dataset.splits[split]
        assert len(shown_images) == len(CLASSES)  # one strip of sample faces per class
        for c, strip in enumerate(shown_images):  # its first faces of that class, side by side
            expected = np.concatenate(list(faces.images[faces.labels == c][:8]), axis=1)
            assert strip.shape == expected.shape
            assert np.abs(strip.astype(int) - expected).mean() < 8  # the same faces, JPEG-encoded


def test_a_path_that_is_no_dataset_is_named(home, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_DATA_ROOTS", str(tmp_path))  # inside a data root: said plainly
    at = app_page("data")
    at.text_input(key="data_path").set_value(str(tmp_path / "nowhere")).run()
    assert any(str(tmp_path / "nowhere") in e.value and "no such file" in e.value for e in at.error)
    assert not at.metric and not at.get("plotly_chart")


# -- Train: how many jobs run at once ---------------------------------------------------------


def pretend_to_start(self, job: dict) -> None:
    """JobQueue._start without a trainer: the job runs as this (living) process, as far as the
    queue can tell; what is under test is which jobs the cap lets start."""
    job.update(status="running", pid=os.getpid(), started=now_iso())
    self._save(job)


def test_the_concurrency_cap_is_a_setting_of_the_queue(home, monkeypatch):
    monkeypatch.setattr(JobQueue, "_start", pretend_to_start)
    at = app_page("train")
    cap = at.number_input(key="max_running")
    assert cap.value == JobQueue().max_running == 1 and (cap.min, cap.max) == (1, 8)
    for name in ("first", "second", "third"):
        at.number_input(key="train_limit").set_value(70)
        at.text_input(key="train_name").set_value(name)
        next(b for b in at.button if b.label == "Start training").click().run()
    assert sorted(j["status"] for j in JobQueue().jobs()) == ["queued", "queued", "running"]

    at.number_input(key="max_running").set_value(2).run()  # the jobs panel starts one more
    assert JobQueue().max_running == 2 and json.loads((home / "jobs" / "settings.json").read_text()) == {
        "max_running": 2
    }
    assert sorted(j["status"] for j in JobQueue().jobs()) == ["queued", "running", "running"]
    assert app_page("train").number_input(key="max_running").value == 2  # kept for the next visit


# -- Compare runs: live update ----------------------------------------------------------------


def test_live_update_is_on_while_a_run_is_running(home):
    store = RunStore(home / "runs")
    writer = store.create({"model": "stcnn", "epochs": 3}, name="busy")
    writer.update(status="finished", epochs_completed=3)
    assert app_page("runs").toggle(key="live").value is False  # nothing to follow

    running = store.create({"model": "stcnn", "epochs": 3}, name="training")
    running.update(status="running", pid=os.getpid(), heartbeat_unix=time.time(), started=now_iso())
    at = app_page("runs")
    assert at.toggle(key="live").value is True
    at.toggle(key="live").set_value(False).run()  # and a user may turn it off
    assert not at.exception and at.toggle(key="live").value is False
