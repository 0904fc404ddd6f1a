"""What every dashboard page shares: cached access to runs, datasets and models.

Pages touch runs only through `fer_core.runs.runstore.RunStore` and start trainings only
through `trainers.jobs.JobQueue` (which launches trainer processes).
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from fer_core.data.fer2013 import load_dataset
from fer_core.inference.registry import SHIPPED_MODELS_DIR, ModelRef, int8_path, resolve
from fer_core.paths import PROJECT_ROOT
from fer_core.runs.runstore import RunStore
from fer_core.runs.status import COMPLETED
from trainers.jobs import JobQueue

if TYPE_CHECKING:  # PyTorch is imported by the pages that run models, not by Compare runs
    from fer_core.faces.recognizer import Recognizer

SAMPLE_DATA = PROJECT_ROOT / "data" / "fer2013_sample.csv.gz"
FULL_DATA_HINT = PROJECT_ROOT.parent / "shared" / "data" / "fer2013"
DATA_ROOTS_VARIABLE = "FER_DATA_ROOTS"


def data_roots() -> list[Path]:
    """The folders the Data and Train pages read datasets from: the project's data folder (the
    bundled sample), ../shared/data when present, and the folders in FER_DATA_ROOTS (joined by
    os.pathsep). Served to a team, the dashboard must not read whatever path a visitor types."""
    extra = [Path(p).expanduser() for p in os.environ.get(DATA_ROOTS_VARIABLE, "").split(os.pathsep) if p.strip()]
    shared = FULL_DATA_HINT.parent
    return [SAMPLE_DATA.parent, *([shared] if shared.is_dir() else []), *extra]


def dataset_refusal(path: str) -> str | None:
    """None when the dashboard may read `path`; else the one line to show. The line is the same
    wherever the path points (a file, a folder, nothing), so it tells nothing about what is there."""
    try:
        real = Path(path).expanduser().resolve()  # symbolic links followed: a link out of a root leads out
        inside = any(real.is_relative_to(root.resolve()) for root in data_roots())
    except (OSError, RuntimeError, ValueError):
        inside = False
    if inside:
        return None
    return (
        f"The dashboard reads datasets only under its data folders "
        f"({', '.join(str(r) for r in data_roots())}). To use one elsewhere, add its folder to "
        f"{DATA_ROOTS_VARIABLE} before starting the dashboard (the README's Serving section), or use fer-train."
    )


def store() -> RunStore:
    return RunStore()


def queue() -> JobQueue:
    return JobQueue(runs=store())


HYPERPARAMETERS = [
    "batch_size",
    "lr",
    "weight_decay",
    "optimizer",
    "schedule",
    "epochs",
    "label_smoothing",
    "ema_decay",
    "mixup_alpha",
    "cutmix_alpha",
]


def shipped_runs() -> dict[str, dict]:
    """Run id -> the shipped model made from it: its name and the epoch taken (the model records)."""
    from fer_core.inference.registry import model_record, shipped_names

    out = {}
    for name in shipped_names():
        source = (model_record(name) or {}).get("source") or {}
        if source.get("run_id"):
            out[source["run_id"]] = {"name": name, **source}
    return out


def runs_table(runs: list[dict]) -> pd.DataFrame:
    """One row per run from run.json alone (no Parquet), so the table stays fast with many runs."""
    rows = []
    names = {r["run_id"]: r.get("name") or r["run_id"] for r in runs}
    shipped = shipped_runs()
    for r in runs:
        cfg = r.get("config", {})
        source = (r.get("init_from") or {}).get("run_id")
        best = r.get("best_val") or {}
        final = r.get("final") or {}
        rows.append(
            {
                "run_id": r["run_id"],
                "name": r.get("name"),
                "model": r.get("model"),
                "preset": r.get("preset"),
                "status": r.get("status"),
                "best_val_accuracy": r.get("best_val_accuracy"),
                "val_macro_f1": best.get("macro_f1"),
                "val_auc": best.get("auc"),
                "val_loss": best.get("loss"),
                "test_accuracy": final.get("test_accuracy"),
                "progress": epochs_progress(r),
                "shipped_as": (
                    f"{shipped[r['run_id']]['name']} (epoch {shipped[r['run_id']]['epoch']})"
                    if r["run_id"] in shipped
                    else None
                ),
                "minutes": round(r.get("train_seconds", 0) / 60, 1),
                "started_from": names.get(source, source),  # --init-from: a warm restart or fine-tuning
                "distilled_from": ", ".join(
                    names.get(t.get("run_id"), str(t.get("run_id")))  # --distill-from teachers
                    for t in r.get("distill_from") or []
                )
                or None,
                **{k: cfg.get(k) for k in HYPERPARAMETERS},
                "model_config": ", ".join(f"{k}={v}" for k, v in (cfg.get("model_config") or {}).items()),
                "device": r.get("device"),
                "error": r.get("error"),
                "sweep": r.get("sweep"),
                "tags": ", ".join(r.get("tags") or []),
                "created": r.get("created"),
            }
        )
    return pd.DataFrame(rows)


def epochs_progress(run: dict) -> str:
    """ "20/60", plus where `fer-train --resume --epochs` moved the run's end, as in "(was 100 until 19)"."""
    moves = "".join(f" (was {m['from']} until {m['after_epoch']})" for m in run.get("epochs_changed") or [])
    return f"{run.get('epochs_completed', 0)}/{(run.get('config') or {}).get('epochs', '?')}{moves}"


@st.cache_data(show_spinner="Reading the dataset...", max_entries=4)
def dataset_summary(path: str) -> dict:
    """Split sizes, class counts and 8 sample faces per class and split (cached per path)."""
    ds = load_dataset(path)
    samples = {}
    for name, split in ds.splits.items():
        samples[name] = {c: split.images[split.labels == c][:8] for c in range(7)}
    return {"summary": ds.summary(), "samples": samples, "source": ds.source}


def model_choices(architecture: str | None = None) -> dict[str, str]:
    """Label -> model spec: shipped models first, then finished runs with a best checkpoint
    (only those of `architecture`, when given)."""
    from fer_core.runs.checkpoint import read_checkpoint_metadata

    shipped = sorted(SHIPPED_MODELS_DIR.glob("*.safetensors"))
    if architecture:  # read the checkpoint headers only when filtering (not on every Predict rerun)
        shipped = [p for p in shipped if read_checkpoint_metadata(p)["model"] == architecture]
    choices = {f"{p.stem} (shipped)": p.stem for p in shipped}
    for r in store().list_runs():
        if (
            r.get("status") in COMPLETED
            and architecture in (None, r.get("model"))
            and store().has_checkpoint(r["run_id"])
        ):
            choices[f"{r.get('name', r['run_id'])} ({r.get('model')}, run)"] = r["run_id"]
    return choices


def weights_version(model: ModelRef, int8: bool = False) -> float:
    """Changes when a model's weights (or int8 version) are replaced, so caches reload them."""
    return os.path.getmtime(model.weights) + (os.path.getmtime(model.int8 or int8_path(model.spec)) if int8 else 0)


@st.cache_resource(max_entries=8, show_spinner="Loading model...")
def cached_model(model: ModelRef, version: float, int8: bool = False, backend: str = "auto"):
    """A model in eval mode, loaded once per version of its weights."""
    from fer_core.inference.loading import load_named_model

    use_inference_threads()
    return load_named_model(model, int8=int8, backend=backend)


def get_model(spec: str, int8: bool = False, backend: str = "auto"):
    model = resolve(spec)
    return cached_model(model, weights_version(model, int8), int8, backend)


@st.cache_resource(max_entries=4, show_spinner=False)  # the page says "Loading the models..." in its own place
def cached_recognizer(specs: tuple[str, ...], versions: tuple[float, ...], card_views: bool, backend: str):
    from fer_core.faces.recognizer import Recognizer

    use_inference_threads()
    return Recognizer(list(specs), tta="auto" if card_views else "none", backend=backend)


CPUS = os.cpu_count() or 1
INFERENCE_LANES = max(1, int(os.environ.get("FER_INFERENCE_LANES") or min(2, CPUS)))
INFERENCE_THREADS = max(1, CPUS // INFERENCE_LANES)
_inference_lanes = threading.BoundedSemaphore(INFERENCE_LANES)


def use_inference_threads() -> None:
    """PyTorch, ONNX Runtime (sessions made after this) and OpenCV each use INFERENCE_THREADS
    threads: the server's cores are shared out between sessions, not within one request. On
    2 cores one thread does a photo's faces in about half the CPU time two threads take (the
    second thread mostly waits and synchronises on 48x48 crops), so two sessions at once get
    through twice as many photos."""
    import cv2
    import torch

    if torch.get_num_threads() != INFERENCE_THREADS:
        torch.set_num_threads(INFERENCE_THREADS)
        cv2.setNumThreads(INFERENCE_THREADS)


@contextlib.contextmanager
def inference_lane():
    """Held while a page runs the models on an upload: at most FER_INFERENCE_LANES inferences at
    once in this server (default 2, or 1 on one core), each on cores / lanes threads. Sessions
    predicting at once used to each run all cores' threads on the same cores (8 sessions x 2
    threads on 2 cores: each answer ~7x one user's); here they take turns."""
    use_inference_threads()
    with _inference_lanes:
        if os.environ.get("FER_INFERENCE_NICE"):  # an experiment: see benchmarks/dashboard_capacity.py
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), int(os.environ["FER_INFERENCE_NICE"]))
        yield


def get_recognizer(specs: list[str], card_views: bool, backend: str) -> Recognizer:
    """The library call (fer_core.Recognizer) over the chosen models, each kept apart, with each
    shipped model's own test-time view when `card_views`."""
    return cached_recognizer(tuple(specs), tuple(weights_version(resolve(s)) for s in specs), card_views, backend)


def rtc_configuration() -> dict:
    """No STUN/TURN by default (works on localhost offline); FER_ICE_SERVERS='[...]' for remote use."""
    import json

    return {"iceServers": json.loads(os.environ.get("FER_ICE_SERVERS", "[]"))}


def data_path_hint() -> str:
    return str(FULL_DATA_HINT) if Path(FULL_DATA_HINT).exists() else "/path/to/fer2013.csv or image folder"


# -- per-face predictions: the Faces & errors and Report pages ------------------------------
# (imports inside the functions keep the block appendable without touching the file's top)


def predictions_version() -> tuple:
    """Changes when shipped models' per-face rows or records are added or rewritten, which
    happens after shipping (`fer-eval --save`, calibration), so caches keyed on it re-read them."""
    from fer_core.runs.predictions import SHIPPED_PREDICTIONS_DIR

    files = [*SHIPPED_PREDICTIONS_DIR.glob("*.parquet"), *SHIPPED_MODELS_DIR.glob("*.json")]
    return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in files))


@st.cache_data(max_entries=2, show_spinner="Reading per-face predictions...")
def cached_shipped_rows(version: tuple) -> pd.DataFrame:
    from fer_core.runs.predictions import shipped_predictions

    return shipped_predictions()


def shipped_rows() -> pd.DataFrame:
    """The shipped models' val rows in every view (fer_core/runs/predictions.py); empty before any."""
    return cached_shipped_rows(predictions_version())


@st.cache_data(max_entries=3, show_spinner="Reading the faces...")
def split_faces(data: str, split: str, limit: int | None = None, val_fraction: float = 0.1, seed: int = 0):
    """(images, labels) of a split as a run made it (prepare_splits), None if there is no such split."""
    from fer_core.data.fer2013 import prepare_splits

    splits = prepare_splits(load_dataset(data), limit, val_fraction, seed)
    return (splits[split].images, splits[split].labels) if split in splits else None


def faces_of(rows: pd.DataFrame, config: dict | None = None) -> tuple:
    """(images, labels, data path) of the faces that per-face rows of one split are about, which
    their `index` counts: the split made again from the run's data, limit and seed (`config`),
    or from the full FER2013 or the bundled sample. A candidate counts only if its labels are the
    rows' labels, so a gallery never shows the wrong faces; (None, None, None) when none fits."""
    config = config or {}
    candidates = [PROJECT_ROOT / config["data"]] if config.get("data") else []
    index, labels = rows["index"].to_numpy(), rows["label"].to_numpy()
    for path in [*candidates, FULL_DATA_HINT, SAMPLE_DATA]:
        if not path.exists():
            continue
        found = split_faces(
            str(path), rows.split.iloc[0], config.get("limit"), config.get("val_fraction", 0.1), config.get("seed", 0)
        )
        if found and index.max() < len(found[1]) and (found[1][index] == labels).all():
            return *found, str(path)
    return None, None, None


@st.cache_data(max_entries=4, show_spinner="Measuring calibration...")
def calibration_of(rows: pd.DataFrame, name: str = "model") -> pd.DataFrame:
    """dashboard.report_html.calibration_table, cached (it fits a temperature per model and view)."""
    from dashboard.report_html import calibration_table

    return calibration_table(rows, name)


@st.cache_data(max_entries=2, show_spinner="Fitting the ensemble...")
def ensemble_calibration(version: tuple) -> pd.DataFrame | None:
    """dashboard.report_html.ensemble_table on the shipped rows, cached (it cross-validates)."""
    from dashboard.report_html import ensemble_table
    from fer_core.inference.registry import model_record

    return ensemble_table(shipped_rows(), model_record("ensemble"))
