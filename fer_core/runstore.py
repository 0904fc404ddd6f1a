"""The run store: one folder per training run under `results/runs/<run_id>/`.

    run.json                   config, status, progress, heartbeat, final metrics
    metrics/epoch_0001.parquet one row per split for that epoch (test.parquet at the end)
    confusion/epoch_0001.parquet  long-form confusion matrices (run_id, epoch, split, true, pred, count)
    checkpoints/               best.safetensors, last.safetensors (+ optimizer state)
    train.log                  the trainer's output when launched from the dashboard

Every file is written under a hidden temporary name and renamed into place, so a
reader (the dashboard, pandas, DuckDB on `metrics/*.parquet`) never sees half a file.
This module is the only way the dashboard touches runs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .atomic import atomic_write

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(os.environ.get("FER_RESULTS_DIR", PROJECT_ROOT / "results"))
STALE_SECONDS = 30.0
ACTIVE = ("queued", "running")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_parquet_cache: dict[str, tuple[tuple[int, int], pd.DataFrame]] = {}


def default_runs_dir() -> Path:
    return Path(os.environ.get("FER_RUNS_DIR", RESULTS_DIR / "runs"))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_parquet_cached(path: Path) -> pd.DataFrame:
    """Read a Parquet file once per (mtime, size): live views re-read only what changed."""
    st = path.stat()
    key = (st.st_mtime_ns, st.st_size)
    hit = _parquet_cache.get(str(path))
    if hit and hit[0] == key:
        return hit[1]
    frame = pd.read_parquet(path)
    _parquet_cache[str(path)] = (key, frame)
    return frame


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root else default_runs_dir()

    # -- paths -------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        """The folder of a run; ids that could leave the runs folder are refused."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
            raise ValueError(f"invalid run id {run_id!r}")
        path = self.root / run_id
        if path.is_symlink():
            raise ValueError(f"run {run_id!r} is a symbolic link; refusing to use it")
        return path

    def new_run_id(self, model: str, name: str | None = None) -> str:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", name or model).strip("-")[:40] or model
        return f"{stamp}-{label}-{secrets.token_hex(2)}"

    def create(self, config: dict, name: str | None = None, run_id: str | None = None,
               status: str = "running") -> "RunWriter":
        self.root.mkdir(parents=True, exist_ok=True)
        run_id = run_id or self.new_run_id(config.get("model", "run"), name)
        path = self.run_dir(run_id)
        path.mkdir(parents=False, exist_ok=False)
        writer = RunWriter(self, run_id)
        writer.update(run_id=run_id, name=name or run_id, model=config.get("model"), preset=config.get("preset"),
                      config=config, status=status, created=now_iso(), host=socket.gethostname(), tags=[],
                      notes="", sweep=config.get("sweep"))
        return writer

    # -- reading -----------------------------------------------------------------------
    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "run.json").exists()

    def read_run(self, run_id: str) -> dict:
        info = json.loads((self.run_dir(run_id) / "run.json").read_text())
        return self._effective_status(info)

    def list_runs(self, sweep: str | None = None) -> list[dict]:
        """Every run (or only the trials of one sweep), oldest first."""
        if not self.root.exists():
            return []
        runs = []
        for path in sorted(self.root.iterdir()):
            if path.is_symlink() or not (path / "run.json").is_file():
                continue
            try:
                run = self.read_run(path.name)
            except (ValueError, OSError):
                continue  # a run folder being deleted or a foreign folder
            if sweep is None or run.get("sweep") == sweep:
                runs.append(run)
        return runs

    def sweeps(self) -> dict[str, list[dict]]:
        """Sweep id -> its trials' runs."""
        out: dict[str, list[dict]] = {}
        for run in self.list_runs():
            if run.get("sweep"):
                out.setdefault(run["sweep"], []).append(run)
        return out

    def _effective_status(self, info: dict) -> dict:
        """A run whose trainer died (stale heartbeat or dead pid here) is reported as failed."""
        if info.get("status") != "running":
            return info
        age = time.time() - float(info.get("heartbeat_unix", info.get("started_unix", time.time())))
        pid, host = info.get("pid"), info.get("host")
        dead_here = bool(pid) and host == socket.gethostname() and not _pid_alive(int(pid))
        if age > STALE_SECONDS or dead_here:
            info = dict(info, status="failed",
                        error=info.get("error") or f"trainer stopped (no heartbeat for {age:.0f} s)")
        return info

    def _frames(self, kind: str, run_ids: list[str] | None) -> pd.DataFrame:
        ids = run_ids if run_ids is not None else [r["run_id"] for r in self.list_runs()]
        frames = []
        for run_id in ids:
            folder = self.run_dir(run_id) / kind
            if folder.is_dir():
                for f in sorted(folder.glob("*.parquet")):
                    try:
                        frames.append(read_parquet_cached(f))
                    except FileNotFoundError:
                        continue  # deleted between listing and reading
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def metrics(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """One row per (run, epoch, split[, tta]) for the given runs (all runs if None)."""
        return self._frames("metrics", run_ids)

    def confusion(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        return self._frames("confusion", run_ids)

    def tail(self, run_id: str, after_epoch: int = 0) -> pd.DataFrame:
        """Metric rows of epochs after `after_epoch` (for following a running job)."""
        frame = self.metrics([run_id])
        return frame[frame["epoch"] > after_epoch] if len(frame) else frame

    def checkpoint(self, run_id: str, which: str = "best") -> Path:
        return self.run_dir(run_id) / "checkpoints" / f"{which}.safetensors"

    def log_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "train.log"

    # -- changing ----------------------------------------------------------------------
    def update(self, run_id: str, /, **fields) -> dict:
        """Merge fields (tags, notes, ...) into run.json."""
        path = self.run_dir(run_id) / "run.json"
        info = json.loads(path.read_text()) if path.exists() else {}
        info.update(fields)
        write_json_atomic(path, info)
        return info

    def delete(self, run_id: str) -> None:
        path = self.run_dir(run_id)
        if not (path / "run.json").is_file():
            raise ValueError(f"no run {run_id!r} in {self.root}")
        shutil.rmtree(path)


class RunWriter:
    """What a trainer uses to write one run."""

    def __init__(self, store: RunStore, run_id: str):
        self.store, self.run_id = store, run_id
        self.dir = store.run_dir(run_id)
        self._last_heartbeat = 0.0
        self._lock = threading.Lock()
        self._stop_beating = threading.Event()

    def update(self, **fields) -> dict:
        with self._lock:  # the keep-alive thread updates run.json too
            return self.store.update(self.run_id, **fields)

    def keep_alive(self, every: float = 5.0) -> None:
        """Heartbeat from a background thread until stop_keep_alive(), so that long steps
        between batches (the final ten-crop evaluation takes minutes on a CPU) do not make
        a working trainer read as dead."""
        def beat() -> None:
            while not self._stop_beating.wait(every):
                try:
                    self.update(heartbeat=now_iso(), heartbeat_unix=time.time())
                except OSError:
                    pass  # a full or read-only disk: the trainer's own write reports it
        threading.Thread(target=beat, name="heartbeat", daemon=True).start()

    def stop_keep_alive(self) -> None:
        self._stop_beating.set()

    def heartbeat(self, progress: dict | None = None, force: bool = False, every: float = 2.0) -> None:
        now = time.time()
        if force or now - self._last_heartbeat >= every:
            fields = {"heartbeat": now_iso(), "heartbeat_unix": now}
            if progress is not None:
                fields["progress"] = progress
            self.update(**fields)
            self._last_heartbeat = now

    def write_metrics(self, stem: str, rows: list[dict], confusion_rows: list[dict]) -> None:
        write_parquet_atomic(pd.DataFrame(rows), self.dir / "metrics" / f"{stem}.parquet")
        write_parquet_atomic(pd.DataFrame(confusion_rows), self.dir / "confusion" / f"{stem}.parquet")

    def drop_epochs_after(self, epoch: int) -> None:
        """On resume: forget epochs newer than the checkpoint we continue from."""
        for kind in ("metrics", "confusion"):
            for f in (self.dir / kind).glob("epoch_*.parquet"):
                if int(f.stem.split("_")[1]) > epoch:
                    f.unlink()
