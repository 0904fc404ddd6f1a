"""Where the project keeps things, from a checkout or from an installed package.

From a checkout (the folder with pyproject.toml) everything stays in it, as the dashboard and
the tests expect: runs in results/runs, jobs in results/jobs, shipped models in results/models.
Installed with `pip install` elsewhere, runs and jobs go to FER_HOME (default the user data
folder, ~/.local/share/fer-lab) and the shipped models are the copy inside the package.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IN_CHECKOUT = (PROJECT_ROOT / "pyproject.toml").is_file()


def _user_dir(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable) or Path.home() / default) / "fer-lab"


RESULTS_DIR = Path(
    os.environ.get("FER_RESULTS_DIR")
    or os.environ.get("FER_HOME")
    or (PROJECT_ROOT / "results" if IN_CHECKOUT else _user_dir("XDG_DATA_HOME", ".local/share"))
)


def _models_dir() -> Path:
    if os.environ.get("FER_MODELS_DIR"):
        return Path(os.environ["FER_MODELS_DIR"])
    if os.environ.get("FER_RESULTS_DIR"):
        return RESULTS_DIR / "models"
    if IN_CHECKOUT:
        return PROJECT_ROOT / "results" / "models"
    return Path(__file__).resolve().parent / "shipped"  # the wheel's copy of results/models (pyproject.toml)


SHIPPED_MODELS_DIR = _models_dir()


def cache_dir() -> Path:
    """Decoded datasets and local copies of remote checkpoints (FER_CACHE_DIR, else ~/.cache/fer-lab)."""
    return Path(os.environ.get("FER_CACHE_DIR") or _user_dir("XDG_CACHE_HOME", ".cache"))
