"""What every test shares. Read this before writing a test; reuse what is here.

Isolation (pytest_configure, before any fixture or test module runs)
    HOME, XDG_CACHE_HOME / XDG_DATA_HOME / XDG_CONFIG_HOME, FER_HOME, FER_CACHE_DIR,
    FER_RUNS_DIR, FER_JOBS_DIR, FER_SCREENSHOT_DIR and Hypothesis's folder all point into one
    folder of the session (<pytest basetemp>/session), for this process and every process it
    starts. So no test, fixture or module-level statement reads or writes the user's home or
    the checkout; the dataset and ONNX caches are made once per session. Set your own with
    monkeypatch.setenv (per test) - never change os.environ for good.

Workers (pytest-xdist; pyproject's addopts: a worker per core, at most 4, a test file at a
    time; `-n0` runs everything in this process, as --pdb wants)
    The cores are shared out: a worker and what it starts get OMP_NUM_THREADS = cores / workers.
    Each worker has its own home, runs and jobs (<session>/<worker id>/...) and shares the
    session's cache: its entries are keyed and written atomically, so a test that writes
    anything else there must point FER_CACHE_DIR at its own folder. A session fixture that
    trains or exports makes its files once for all workers with made_once(name, make).

Fixtures (session-wide unless marked "per test"; the session ones are shared: do not change them)
    fer2013              the real FER2013 folders (../shared/data/fer2013, or FER2013_DIR)
    small_folder         a real image-folder dataset: 12 train and 4 val faces per class
    finished_runs        a runs folder with two 2-epoch ST-CNN runs made by fer-train (b16, b32)
    runs_copy            per test: a private copy of finished_runs; FER_RUNS_DIR/FER_JOBS_DIR point at it
    committed_runs       a copy of the committed results/runs; a test that changes it fails the session
    on_committed_runs    per test: FER_RUNS_DIR at committed_runs (jobs in tmp_path); yields its RunStore
    committed_dashboard  `streamlit run dashboard/app.py` on committed_runs (read only); yields its URL
    browser              one headless Chromium (Playwright) whose fake webcam shows one real face
    page                 per test: a fresh 1400x900 page of `browser`
    s3_server, s3_runs   a real S3 endpoint on localhost (moto); s3_runs: a fresh prefix per test

Helpers (import from tests.conftest)
    make_photo, detectable_faces, happy_face, write_y4m, write_clip, write_video: real faces as media
                         (tests/media.py)
    made_once(name, make)  make(folder) once for the whole run, whichever worker asks first
    wait_for(condition), job_ended(queue, job_id)   polling with a generous deadline, never a sleep
    fer_train(...), run_fer_train(...)   the real fer-train on the bundled sample (TINY_STCNN: a small
                         ST-CNN); the first asserts success and gives stdout, the second its CompletedProcess
    app_page(view)       Streamlit's AppTest of the whole app on one page
    streamlit_server(home[, runs])
    chromium(camera), browser_page, open_in_browser, wait_idle   (tests/browser.py)
    screenshot(page, name)   into FER_SCREENSHOT_DIR: tmp here; `make screenshots` refreshes the README's

Markers
    slow: trains, exports or drives a browser. A test that uses finished_runs, runs_copy, browser
    or page (or test_export.py's exported) is marked slow here automatically; mark one that
    starts fer-train or fer-export itself.
    `pytest -m "not slow"` is the quick loop.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import (  # noqa: F401 - tests import these from here too
    CHROMIUM,
    browser_page,
    chromium,
    open_in_browser,
    screenshot,
    wait_idle,
)
from tests.media import (  # noqa: F401 - tests import these from here too
    detectable_faces,
    happy_face,
    make_photo,
    write_clip,
    write_video,
    write_y4m,
)

PROJECT = Path(__file__).resolve().parents[1]
FER2013 = Path(os.environ.get("FER2013_DIR", PROJECT.parent / "shared" / "data" / "fer2013"))
SAMPLE_CSV = PROJECT / "data" / "fer2013_sample.csv.gz"
BIN = Path(sys.executable).parent
SLOW_FIXTURES = {"finished_runs", "browser", "exported"}  # they train, start Chromium or run fer-export


@pytest.hookimpl(trylast=True)  # after the tmp_path plugin has set up basetemp
def pytest_configure(config) -> None:
    """Point every place the code (and the tools it starts) writes to into the session folder.
    Under pytest-xdist the session folder is the run's, shared by the workers: each worker has
    its own home, runs and jobs in it, and they share the cache (keyed entries, atomic writes)."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    base = config._tmp_path_factory.getbasetemp()
    root = (base.parent if worker else base) / "session"  # a worker's basetemp is <run's>/<worker id>
    own = root / worker if worker else root
    home = own / "home"
    settings = {
        "HOME": home,
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CONFIG_HOME": home / ".config",
        "FER_HOME": own / "fer-home",  # runs and jobs when nothing else is said (fer_core/paths.py)
        "FER_RUNS_DIR": own / "runs",
        "FER_JOBS_DIR": own / "jobs",
        "FER_CACHE_DIR": root / "cache",
        "FER_SCREENSHOT_DIR": Path(os.environ.get("FER_SCREENSHOT_DIR") or root / "screenshots"),
    }
    for name, path in settings.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(path)
    if worker:  # the cores shared out between the workers (and the processes they start), not each on all
        threads = max(1, (os.cpu_count() or 1) // int(config.workerinput["workercount"]))
        os.environ["OMP_NUM_THREADS"] = str(threads)  # torch is not imported yet: it reads this
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(own / "hypothesis")  # not .hypothesis/ in the checkout


def made_once(name: str, make) -> Path:
    """make(folder) once for the whole run, even when xdist's workers all ask for it (the first
    makes it under a file lock, the others wait and share it); the folder. For session fixtures
    that train or export: what they make is read only."""
    from filelock import FileLock

    folder = Path(os.environ["FER_CACHE_DIR"]).parent / "made" / name
    folder.parent.mkdir(exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            (folder / ".made").touch()
    return folder


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# -- data -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fer2013() -> Path:
    if not FER2013.is_dir():
        pytest.fail(f"the real FER2013 folders are expected at {FER2013} (set FER2013_DIR)")
    return FER2013


@pytest.fixture(scope="session")
def small_folder(fer2013, tmp_path_factory) -> Path:
    """A real image-folder dataset: 12 train and 4 val faces per class (copy it to change it)."""
    root = tmp_path_factory.mktemp("folder")
    for split, n in (("train", 12), ("val", 4)):
        for class_dir in sorted((fer2013 / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for f in sorted(class_dir.iterdir())[:n]:
                shutil.copy(f, target / f.name)
    return root


# -- runs -------------------------------------------------------------------------------------

TINY_STCNN = ["--model-config", "widths=[8,16,32,32]"]


def run_fer_train(*args, runs_dir: Path | str, env: dict | None = None, timeout: int = 600):
    """The real `fer-train` on the bundled sample (a later --data wins); its CompletedProcess."""
    command = [str(BIN / "fer-train"), "--data", str(SAMPLE_CSV), "--runs-dir", str(runs_dir), "--no-progress"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env and {**os.environ, **env}
    )


def fer_train(*args, runs_dir: Path | str, timeout: int = 600) -> str:
    """run_fer_train that must succeed; its stdout."""
    result = run_fer_train(*args, runs_dir=runs_dir, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def finished_runs() -> Path:
    """A runs folder with two finished 2-epoch ST-CNN runs (batch 16 and 32), made by fer-train."""

    def train(folder: Path) -> None:
        for batch in (16, 32):
            fer_train(
                *("--preset", f"paper-stcnn-b{batch}", "--epochs", 2, "--limit", 140, "--name", f"b{batch}"),
                *TINY_STCNN,
                runs_dir=folder / "runs",
            )

    return made_once("finished-runs", train) / "runs"


@pytest.fixture
def runs_copy(finished_runs, tmp_path, monkeypatch) -> Path:
    """A private copy of `finished_runs` that the dashboard (FER_RUNS_DIR / FER_JOBS_DIR) works on."""
    runs = tmp_path / "runs"
    shutil.copytree(finished_runs, runs)
    monkeypatch.setenv("FER_RUNS_DIR", str(runs))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    return runs


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root: (size, mtime) by relative path."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def committed_runs(tmp_path_factory):
    """One copy of the committed results/runs (as a clone has them: no checkpoints) for the
    session, to read only: the session fails at its end if any test changed it (copy it
    yourself to change it)."""
    runs = tmp_path_factory.mktemp("committed") / "runs"
    shutil.copytree(PROJECT / "results" / "runs", runs, ignore=shutil.ignore_patterns("checkpoints", "train.log"))
    before = tree_state(runs)
    yield runs
    after = tree_state(runs)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"a test changed the session copy of results/runs: {sorted(changed)[:5]}"


@pytest.fixture
def on_committed_runs(committed_runs, tmp_path, monkeypatch):
    """FER_RUNS_DIR at the session copy of results/runs (jobs in tmp_path); its RunStore."""
    from fer_core.runs.runstore import RunStore

    monkeypatch.setenv("FER_RUNS_DIR", str(committed_runs))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    return RunStore(committed_runs)


# -- processes: Streamlit, S3 -----------------------------------------------------------------


def wait_for(condition, seconds: float = 300, what: str = "the condition", every: float = 0.2):
    """condition()'s first true value, polled every EVERY seconds; an AssertionError naming WHAT
    after SECONDS (generous: a loaded machine is slow, not wrong)."""
    import time

    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        time.sleep(every)
    return value


def job_ended(queue, job_id: str, seconds: float = 300) -> dict:
    """A JobQueue job once it is neither queued nor running."""
    return wait_for(
        lambda: (job := queue.job(job_id))["status"] not in ("queued", "running") and job, seconds, f"job {job_id}"
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(proc: subprocess.Popen, ready, log: Path, seconds: float = 90) -> None:
    """Until ready() is true; the server's log as the error if it dies or takes too long."""
    import time

    deadline = time.time() + seconds
    while not ready():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(log.read_text())
        time.sleep(0.3)


@contextlib.contextmanager
def streamlit_server(home: Path, runs: Path | None = None):
    """`streamlit run dashboard/app.py` with the project's .streamlit/config.toml (so its
    address and XSRF settings apply) on a free port, runs in RUNS (default HOME/runs) and jobs
    in HOME/jobs; yields its URL."""
    import socket

    def listening() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    env = dict(os.environ, FER_RUNS_DIR=str(runs or home / "runs"), FER_JOBS_DIR=str(home / "jobs"))
    port, log = free_port(), home / "streamlit.log"
    with open(log, "wb") as out:
        command = [sys.executable, "-m", "streamlit", "run", str(PROJECT / "dashboard" / "app.py")]
        proc = subprocess.Popen(
            [*command, "--server.port", str(port)], cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until_served(proc, listening, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="session")
def committed_dashboard(committed_runs, tmp_path_factory):
    """The dashboard as `make run` shows it, on the session copy of results/runs: for tests that
    only look (Compare runs, Sweeps, Predict, Live, Faces, Report). Yields its URL."""
    with streamlit_server(tmp_path_factory.mktemp("committed-dashboard"), committed_runs) as url:
        yield url


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 endpoint on localhost (moto's server, spoken to over HTTP by s3fs/botocore);
    the standard AWS_* variables point this process and every child process at it."""
    import urllib.request

    def answers() -> bool:
        with contextlib.suppress(OSError), urllib.request.urlopen(endpoint, timeout=1):
            return True
        return False

    port = free_port()
    endpoint, log = f"http://127.0.0.1:{port}", tmp_path_factory.mktemp("s3") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    wait_until_served(proc, answers, log)
    aws = dict(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    saved = {k: os.environ.get(k) for k in [*aws, "AWS_DEFAULT_REGION"]}
    os.environ.update(aws, AWS_DEFAULT_REGION="us-east-1")
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


# -- the dashboard: AppTest and a real browser ------------------------------------------------


@pytest.fixture(scope="session")
def browser(fer2013, tmp_path_factory):
    """One Chromium for the session; its fake webcam shows one real FER2013 face."""
    camera = tmp_path_factory.mktemp("camera") / "face.y4m"
    with chromium(write_y4m([make_photo(detectable_faces(fer2013, n=1))] * 20, camera)) as browser:
        yield browser


@pytest.fixture
def page(browser):
    with browser_page(browser) as page:
        yield page


def app_page(view: str, timeout: int = 300):
    """Streamlit's AppTest of the whole app, switched to dashboard/views/VIEW.py and run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(f"views/{view}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
