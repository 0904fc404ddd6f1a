"""The run store: one folder per training run under `results/runs/<run_id>/`.

    run.json                   config, status, progress, heartbeat, final metrics
    metrics/epoch_0001.parquet one row per split for that epoch (final.parquet at the end)
    confusion/epoch_0001.parquet  long-form confusion matrices (run_id, epoch, split, true, pred, count)
    predictions/val-none.parquet  each face's label and probabilities at the best epoch (per split, view)
    checkpoints/               best.safetensors, last.safetensors (+ optimizer state)

The root is a local folder or any fsspec URI (`s3://bucket/runs`, `gs://...`, `memory://`
for tests), so trainers on a Ray cluster and the dashboard can share runs through an object
store. Locally every file is written under a hidden temporary name and renamed into place;
on an object store a PUT is atomic by itself. Either way a reader (the dashboard, pandas,
DuckDB on `metrics/*.parquet`) never sees half a file. Trainers keep checkpoints in a local
folder and upload them after each save; readers fetch them into a local cache.
This module is the only way the dashboard touches runs; a trainer writes its run through
`RunStore.create`'s RunWriter (runwriter.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from datetime import datetime
from pathlib import Path

import fsspec
import pandas as pd

from ..atomic import atomic_write
from ..paths import RESULTS_DIR, cache_dir
from . import run_tables
from .runwriter import RunWriter
from .status import STALE_SECONDS, NotARun, RunActive, RunGone, now_iso, pid_alive

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def default_runs_dir() -> Path | str:
    """FER_RUNS_DIR (a folder or a URI such as s3://bucket/runs), else results/runs."""
    root = os.environ.get("FER_RUNS_DIR")
    return root if root and "://" in root else Path(root or RESULTS_DIR / "runs")


def write_json_atomic(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2, default=str)
    atomic_write(path, lambda tmp: tmp.write_text(text))


def run_info(data: bytes, run_id: str) -> dict:
    """run.json's content as a run, or NotARun saying why it is none."""
    try:
        info = json.loads(data)
    except ValueError:  # bad JSON, or not UTF-8
        raise NotARun("run.json is not valid JSON") from None
    if not isinstance(info, dict):
        raise NotARun("run.json holds no JSON object")
    if "run_id" not in info:
        raise NotARun("run.json has no run_id")
    if info["run_id"] != run_id:
        raise NotARun(f"run.json names another run ({str(info['run_id'])[:60]!r})")
    return info


class RunStore:
    def __init__(self, root: str | os.PathLike | None = None):
        uri = str(root or default_runs_dir())
        self.local = "://" not in uri or uri.startswith("file://")
        if self.local:
            self.root: Path | str = Path(uri.removeprefix("file://")).expanduser()
            self.fs, self.base = fsspec.filesystem("file"), str(self.root)
        else:  # listings uncached: the dashboard polls runs that trainers elsewhere are writing
            self.root = uri.rstrip("/")
            try:
                self.fs, self.base = fsspec.core.url_to_fs(self.root, use_listings_cache=False)
            except (ImportError, ValueError) as e:  # e.g. "Please install gcsfs to access Google Storage"
                raise ValueError(f"run store {self.root}: {e}") from None
            self.base = self.base.rstrip("/")

    @property
    def uri(self) -> str:
        """What to pass as --runs-dir to a trainer so it writes into this store."""
        return str(self.root)

    # -- paths -------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path | str:
        """The folder of a run (a URI on a remote store); ids that could leave the runs
        folder are refused."""
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
            raise ValueError(f"invalid run id {run_id!r}")
        if not self.local:
            return f"{self.root}/{run_id}"
        path = self.root / run_id
        if path.is_symlink():
            raise ValueError(f"run {run_id!r} is a symbolic link; refusing to use it")
        return path

    def _path(self, run_id: str, *parts: str) -> str:
        """A path inside a run, as the filesystem (self.fs) names it."""
        self.run_dir(run_id)  # validates the id
        return "/".join((self.base, run_id, *parts))

    def _write(self, path: str, data: bytes, new_run: bool = False) -> None:
        """Write one file of a run that exists (or is being created, `new_run`): a deleted run
        is never brought back (RunGone)."""
        run_id = path[len(self.base) + 1 :].split("/", 1)[0]
        if self.local:
            folder = Path(path).parent
            try:
                folder.mkdir(exist_ok=True)  # metrics/ and the like; not the run's own folder
                atomic_write(path, lambda tmp: tmp.write_bytes(data))
            except FileNotFoundError:
                raise RunGone(f"run {run_id} no longer exists in {self.root}") from None
        else:
            if not new_run and not self.exists(run_id):
                raise RunGone(f"run {run_id} no longer exists in {self.root}")
            self.fs.pipe_file(path, data)

    def _ls(self, path: str) -> list[dict]:
        try:
            return self.fs.ls(path, detail=True)
        except FileNotFoundError:
            return []

    def new_run_id(self, model: str, name: str | None = None) -> str:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        label = re.sub(r"[^A-Za-z0-9_-]+", "-", name or model).strip("-")[:40] or model
        return f"{stamp}-{label}-{secrets.token_hex(2)}"

    def create(
        self, config: dict, name: str | None = None, run_id: str | None = None, status: str = "running"
    ) -> RunWriter:
        run_id = run_id or self.new_run_id(config.get("model", "run"), name)
        if self.local:
            self.root.mkdir(parents=True, exist_ok=True)
            self.run_dir(run_id).mkdir(parents=False, exist_ok=False)
        elif self.exists(run_id):
            raise FileExistsError(f"run {run_id!r} already exists in {self.root}")
        writer = RunWriter(self, run_id)
        info = {
            "run_id": run_id,
            "name": name or run_id,
            "model": config.get("model"),
            "preset": config.get("preset"),
            "config": config,
            "status": status,
            "created": now_iso(),
            "host": socket.gethostname(),
            "tags": [],
            "notes": "",
            "sweep": config.get("sweep"),
        }
        self._write_info(info, new_run=True)
        return writer

    # -- reading -----------------------------------------------------------------------
    def exists(self, run_id: str) -> bool:
        return self.fs.isfile(self._path(run_id, "run.json"))

    def read_run(self, run_id: str) -> dict:
        """The run's run.json (status as readers should see it); RunGone when there is no
        run.json, NotARun when it does not read as this run's."""
        try:
            data = self.fs.cat_file(self._path(run_id, "run.json"))
        except FileNotFoundError:
            raise RunGone(f"no run {run_id!r} in {self.root}") from None
        return self._effective_status(run_info(data, run_id))

    def get(self, run_id: str) -> dict | None:
        """The run, or None when there is no such run (or its folder does not read as one)."""
        try:
            return self.read_run(run_id)
        except (RunGone, ValueError, OSError):
            return None

    def scan(self, sweep: str | None = None) -> tuple[list[dict], dict[str, str]]:
        """(every run, oldest first, or only the trials of one sweep; the folders in the runs
        folder that do not read as runs -> why). Every reader skips those folders (a foreign
        folder, a run.json without run_id or not JSON, a run deleted while its trainer wrote);
        Compare runs names them."""
        runs, skipped = [], {}
        for entry in sorted(self._ls(self.base), key=lambda e: e["name"]):
            name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
            if entry["type"] != "directory" or name.startswith("."):
                continue
            if entry.get("islink"):
                skipped[name] = "a symbolic link"
                continue
            if not _RUN_ID.match(name):
                skipped[name] = "not a run folder name"
                continue
            try:
                run = self.read_run(name)
            except RunGone:
                skipped[name] = "no run.json"
                continue
            except NotARun as e:
                skipped[name] = str(e)
                continue
            except OSError as e:
                skipped[name] = f"run.json cannot be read ({e.strerror or e})"
                continue
            if sweep is None or run.get("sweep") == sweep:
                runs.append(run)
        return runs, skipped

    def list_runs(self, sweep: str | None = None) -> list[dict]:
        """Every run (or only the trials of one sweep), oldest first; folders that are no run are skipped."""
        return self.scan(sweep)[0]

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
        dead_here = bool(pid) and host == socket.gethostname() and not pid_alive(int(pid))
        if age > STALE_SECONDS or dead_here:
            info = dict(
                info, status="failed", error=info.get("error") or f"trainer stopped (no heartbeat for {age:.0f} s)"
            )
        return info

    def _parquet_files(self, run_id: str, kind: str) -> list[dict]:
        """The finished Parquet files of one kind (run_tables.py reads them)."""
        return run_tables.finished_parquet(self._ls(self._path(run_id, kind)))

    def _frames(self, kind: str, run_ids: list[str] | None, epochs: dict | None = None) -> pd.DataFrame:
        """All files of a kind as one frame. `epochs`: run id -> the one epoch file to read (None:
        the run's newest)."""
        ids = run_ids if run_ids is not None else [r["run_id"] for r in self.list_runs()]
        tables = []
        for run_id in ids:
            entries = self._parquet_files(run_id, kind)
            if epochs is not None:  # one epoch file per run: the one asked for, else the newest
                entries = run_tables.one_epoch(entries, epochs.get(run_id))
            for entry in entries:
                try:
                    tables.append(run_tables.read_table(self.fs, entry, self.local))
                except FileNotFoundError:
                    continue  # deleted between listing and reading
        return run_tables.as_frame(tables)

    def metrics(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """One row per (run, epoch, split[, tta]) for the given runs (all runs if None)."""
        return self._frames("metrics", run_ids)

    def confusion(self, run_ids: list[str] | None = None, epochs: dict[str, int | None] | None = None) -> pd.DataFrame:
        """Long-form confusion cells; with `epochs` (run id -> epoch, None for the newest) only
        that epoch of each run, not the hundred files of a long run."""
        return self._frames("confusion", run_ids, epochs)

    def predictions(self, run_ids: list[str] | None = None) -> pd.DataFrame:
        """Per-face rows (fer_core/runs/predictions.py) of the runs' best checkpoints, every split and view."""
        return self._frames("predictions", run_ids)

    def write_predictions(self, run_id: str, frame: pd.DataFrame) -> None:
        """Replace the run's rows for each (split, view) in `frame`."""
        from .predictions import file_name

        for (split, tta), rows in frame.groupby(["split", "tta"]):
            self._write(self._path(run_id, "predictions", file_name(split, tta)), rows.to_parquet(index=False))

    def tail(self, run_id: str, after_epoch: int = 0) -> pd.DataFrame:
        """Metric rows of epochs after `after_epoch` (for following a running job)."""
        frame = self.metrics([run_id])
        return frame[frame["epoch"] > after_epoch] if len(frame) else frame

    def has_checkpoint(self, run_id: str, which: str = "best") -> bool:
        return self.fs.isfile(self._path(run_id, "checkpoints", f"{which}.safetensors"))

    def checkpoint(self, run_id: str, which: str = "best") -> Path:
        """A local path to a run's checkpoint (fetched into the cache from a remote store)."""
        if self.local:
            return self.run_dir(run_id) / "checkpoints" / f"{which}.safetensors"
        return self.fetch(run_id, f"{which}.safetensors", self.local_checkpoint_dir(run_id))

    def local_checkpoint_dir(self, run_id: str) -> Path:
        """Where checkpoints of this run live on this machine."""
        if self.local:
            return self.run_dir(run_id) / "checkpoints"
        store_key = hashlib.sha1(self.uri.encode()).hexdigest()[:12]
        return cache_dir() / "runs" / store_key / run_id / "checkpoints"

    def fetch(self, run_id: str, filename: str, folder: Path) -> Path:
        """Copy checkpoints/<filename> of a remote run into `folder` unless the copy is current."""
        remote, local = self._path(run_id, "checkpoints", filename), folder / filename
        try:
            version = json.dumps(run_tables.file_version(self.fs.info(remote)), default=str)
        except FileNotFoundError:
            return local  # nothing to fetch; callers check local.exists()
        stamp = folder / f".{filename}.version"
        if local.exists() and stamp.exists() and stamp.read_text() == version:
            return local
        data = self.fs.cat_file(remote)
        atomic_write(local, lambda tmp: tmp.write_bytes(data))
        atomic_write(stamp, lambda tmp: tmp.write_text(version))
        return local

    # -- changing ----------------------------------------------------------------------
    def update(self, run_id: str, /, **fields) -> dict:
        """Merge fields (tags, notes, ...) into run.json; RunGone when the run was deleted
        (a run.json is never written afresh: it would be a run without an id)."""
        try:
            data = self.fs.cat_file(self._path(run_id, "run.json"))
        except FileNotFoundError:
            raise RunGone(f"run {run_id} no longer exists in {self.root}") from None
        info = run_info(data, run_id)
        info.update(fields)
        return self._write_info(info)

    def _write_info(self, info: dict, new_run: bool = False) -> dict:
        path = self._path(info["run_id"], "run.json")
        self._write(path, json.dumps(info, indent=2, default=str).encode(), new_run)
        return info

    def delete(self, run_id: str) -> None:
        """Remove a run and its checkpoints. Refused (RunActive) while its trainer works:
        a trainer that finds its run gone stops, but cancelling keeps its epochs."""
        info = self.read_run(run_id)  # RunGone when there is none
        if info["status"] == "running" and "heartbeat_unix" in info:  # a trainer is at work on it
            raise RunActive(
                f"run {info.get('name') or run_id} is still training: cancel it first "
                "(Cancel, on the Train page or here), then delete it"
            )
        if self.local:
            shutil.rmtree(self.run_dir(run_id))
        else:
            self.fs.rm(self._path(run_id), recursive=True)
