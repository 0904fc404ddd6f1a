"""The suite's own promise: every place the code writes to points into the session's folder,
before any test or fixture runs (tests/conftest.py, pytest_configure), for this process and for
the processes it starts - never the user's home or the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT

SESSION_VARIABLES = ["HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "FER_HOME", "FER_RUNS_DIR", "FER_JOBS_DIR"]
SESSION_VARIABLES += ["FER_CACHE_DIR", "FER_SCREENSHOT_DIR"]


def session_folder() -> Path:
    return Path(os.environ["FER_CACHE_DIR"]).parent


def test_every_writable_place_is_in_the_session_folder():
    from fer_core import paths
    from fer_core.runs.runstore import RunStore
    from trainers.jobs import JobQueue

    root = session_folder()
    assert root.name == "session" and not root.is_relative_to(PROJECT)
    for name in SESSION_VARIABLES[:-1]:  # FER_SCREENSHOT_DIR may be given (make screenshots)
        assert Path(os.environ[name]).is_relative_to(root), name
    for where in (paths.cache_dir(), paths.RESULTS_DIR, RunStore().root, JobQueue().root, Path.home()):
        assert Path(where).is_relative_to(root), where
    assert paths.SHIPPED_MODELS_DIR == PROJECT / "results" / "models"  # read from the checkout, as users do


def test_a_started_process_sees_the_same_places():
    """fer-train, fer-serve, Streamlit and the rest inherit the session's folders."""
    code = "import json, fer_core.paths as p; print(json.dumps([str(p.cache_dir()), str(p.RESULTS_DIR)]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PROJECT)
    assert all(Path(where).is_relative_to(session_folder()) for where in json.loads(out.stdout))


def test_hypothesis_keeps_its_examples_in_the_session_folder():
    from hypothesis.configuration import storage_directory

    assert storage_directory("examples").path.is_relative_to(session_folder())
