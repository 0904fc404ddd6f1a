"""Shared fixtures: real FER2013 faces from ../shared/data and the bundled sample."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

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


def detectable_faces(fer2013: Path, split: str = "val", cls: str = "happy", n: int = 2) -> list[Path]:
    """Real FER2013 faces that the default detector finds once enlarged (most of them)."""
    from fer_core.faces import detect_faces

    found = []
    for f in sorted((fer2013 / split / cls).iterdir()):
        if len(detect_faces(np.asarray(make_photo([f], size=(400, 400))))) == 1:
            found.append(f)
            if len(found) == n:
                return found
    raise AssertionError("no detectable faces found")


def make_photo(faces: list[Path], size=(640, 480), face_px: int = 180) -> Image.Image:
    """A grayscale 'photo': real 48x48 faces enlarged and pasted side by side on a plain background."""
    canvas = Image.new("L", size, 128)
    step = size[0] // len(faces)
    for i, f in enumerate(faces):
        face = Image.open(f).convert("L").resize((face_px, face_px), Image.Resampling.BICUBIC)
        canvas.paste(face, (i * step + (step - face_px) // 2, (size[1] - face_px) // 2))
    return canvas.convert("RGB")


def write_y4m(frames: list[Image.Image], path: Path, fps: int = 10) -> Path:
    """A Y4M video (Chromium's fake camera format) from RGB frames of the same size."""
    w, h = frames[0].size
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y = np.asarray(frame.convert("L"), dtype=np.uint8)
            out.write(b"FRAME\n" + y.tobytes() + bytes([128]) * (w * h // 2))
    return path


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 25) -> Path:
    """RGB frames to a real video file: mp4v in .mp4, MJPG in .avi (OpenCV's writers)."""
    import cv2

    fourcc = "mp4v" if path.suffix == ".mp4" else "MJPG"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write {path}"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def write_video(path: Path, faces: list[Path], seconds: float = 3, fps: int = 10, size=(640, 360)) -> Path:
    """A video of real FER2013 faces: each face in turn for an equal share of the frames,
    drifting a little to the right (so tracking has something to follow)."""
    n = round(seconds * fps)
    frames = [
        np.roll(np.asarray(make_photo([faces[i * len(faces) // n]], size=size, face_px=170)), 2 * i, axis=1)
        for i in range(n)
    ]
    return write_clip(path, frames, fps)


TINY_STCNN = ["--model-config", "widths=[8,16,32,32]"]


def fer_train(*args, runs_dir: Path, timeout: int = 600) -> str:
    """Run the real `fer-train` on the bundled sample; returns its stdout."""
    import subprocess
    import sys

    command = [
        str(Path(sys.executable).parent / "fer-train"),
        "--data",
        str(SAMPLE_CSV),
        "--runs-dir",
        str(runs_dir),
        "--no-progress",
        *map(str, args),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory) -> Path:
    """A runs folder with two finished 2-epoch ST-CNN runs (batch 16 and 32), made by fer-train."""
    runs = tmp_path_factory.mktemp("finished") / "runs"
    for batch in (16, 32):
        fer_train(
            "--preset",
            f"paper-stcnn-b{batch}",
            "--epochs",
            2,
            "--limit",
            140,
            "--name",
            f"b{batch}",
            *TINY_STCNN,
            runs_dir=runs,
        )
    return runs


@pytest.fixture
def runs_copy(finished_runs, tmp_path, monkeypatch) -> Path:
    """A private copy of `finished_runs` that the dashboard (FER_RUNS_DIR / FER_JOBS_DIR) works on."""
    runs = tmp_path / "runs"
    shutil.copytree(finished_runs, runs)
    monkeypatch.setenv("FER_RUNS_DIR", str(runs))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    return runs


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(home: Path):
    """`streamlit run dashboard/app.py` with the project's .streamlit/config.toml (so its
    address and XSRF settings apply) on a free port, runs and jobs in HOME; yields its URL."""
    import socket
    import subprocess
    import sys
    import time

    env = dict(os.environ, FER_RUNS_DIR=str(home / "runs"), FER_JOBS_DIR=str(home / "jobs"))
    port = free_port()
    with open(home / "streamlit.log", "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(PROJECT / "dashboard" / "app.py"),
                "--server.port",
                str(port),
            ],
            cwd=PROJECT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise AssertionError((home / "streamlit.log").read_text()) from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 endpoint on localhost (moto's server, spoken to over HTTP by s3fs/botocore);
    the standard AWS_* variables point this process and every child process at it."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    log = tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                raise AssertionError(log.read_text()) from None
            time.sleep(0.3)
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import fsspec

    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("fer-runs")
    try:
        yield endpoint
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def s3_runs(s3_server, request) -> str:
    """A fresh run store URI in the S3 bucket, one prefix per test."""
    import secrets

    return f"s3://fer-runs/{request.node.name.replace('[', '-').strip(']')}-{secrets.token_hex(3)}"


CHROMIUM = "/usr/bin/chromium"


@contextlib.contextmanager
def chromium(camera: Path):
    """Debian's Chromium driven by Playwright, headless, offline, with `camera` (a Y4M file) as
    its webcam; under CI a missing browser or Playwright is an error, elsewhere a skip."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    if os.environ.get("CI") == "true":
        from playwright import sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-video-capture={camera}",
            ],
        )
        yield browser
        browser.close()


def app_page(view: str, timeout: int = 300):
    """Streamlit's AppTest of the whole app, switched to dashboard/views/VIEW.py and run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(f"views/{view}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@contextlib.contextmanager
def browser_page(browser, height: int = 900):
    """One 1400-px-wide page in a fresh browser context (nothing cached; downloads accepted)."""
    context = browser.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        yield page
    finally:
        context.close()


def wait_idle(page) -> None:
    """Until Streamlit has finished the current script run and redrawn every element."""
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
    page.wait_for_function("!document.querySelector('[data-stale=\"true\"]')", timeout=60_000)


def open_in_browser(page, url: str) -> None:
    page.goto(url)
    page.get_by_test_id("stApp").wait_for()
    wait_idle(page)
