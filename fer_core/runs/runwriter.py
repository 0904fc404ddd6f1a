"""What a trainer uses to write one run of the run store (runstore.py): its heartbeat, the
metrics and confusion files of each epoch, and its checkpoints. Every write stops once the run
is found deleted (RunGone), so that a trainer never brings a deleted run back."""

from __future__ import annotations

import threading
import time

import pandas as pd

from .status import RunGone, now_iso


class RunWriter:
    """What a trainer uses to write one run."""

    def __init__(self, store, run_id: str):  # store: the RunStore (runstore.py) that made it
        self.store, self.run_id = store, run_id
        self.dir = store.run_dir(run_id)
        self.checkpoint_dir = store.local_checkpoint_dir(run_id)
        self._last_heartbeat = 0.0
        self._lock = threading.Lock()
        self._stop_beating = threading.Event()
        self.gone = threading.Event()  # set once the run was found deleted: nothing is written after

    def _guarded(self, write, *args, **kwargs):
        """Every write of the run: refused once it was deleted, and marks it so."""
        if self.gone.is_set():
            raise RunGone(f"run {self.run_id} was deleted")
        try:
            return write(*args, **kwargs)
        except RunGone:
            self.gone.set()
            raise

    def update(self, **fields) -> dict:
        with self._lock:  # the keep-alive thread updates run.json too
            return self._guarded(self.store.update, self.run_id, **fields)

    def check(self) -> None:
        """RunGone if the run was deleted: before writing files the store does not write
        (a local run's checkpoints), which would otherwise bring its folder back."""
        self._guarded(self.store.read_run, self.run_id)

    def keep_alive(self, every: float = 5.0, on_gone=None) -> None:
        """Heartbeat from a background thread until stop_keep_alive(), so that long steps
        between batches (the final ten-crop evaluation takes minutes on a CPU) do not make
        a working trainer read as dead. When the run is found deleted the beating stops and
        `on_gone()` is called (the trainer stops then, not at its next write)."""

        def beat() -> None:
            while not self._stop_beating.wait(every):
                try:
                    self.update(heartbeat=now_iso(), heartbeat_unix=time.time())
                except RunGone:
                    if on_gone is not None:
                        on_gone()
                    return
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
        for kind, frame in (("metrics", pd.DataFrame(rows)), ("confusion", pd.DataFrame(confusion_rows))):
            path = self.store._path(self.run_id, kind, f"{stem}.parquet")
            self._guarded(self.store._write, path, frame.to_parquet(index=False))

    def publish_checkpoints(self, *filenames: str) -> None:
        """Upload checkpoints just saved in checkpoint_dir (nothing to do for a local store)."""
        if not self.store.local:
            for name in filenames:
                path = self.store._path(self.run_id, "checkpoints", name)
                self._guarded(self.store._write, path, (self.checkpoint_dir / name).read_bytes())

    def fetch_checkpoints(self, *filenames: str) -> None:
        """Before resuming on this machine: bring the run's checkpoints into checkpoint_dir."""
        if not self.store.local:
            for name in filenames:
                self.store.fetch(self.run_id, name, self.checkpoint_dir)

    def drop_epochs_after(self, epoch: int) -> None:
        """On resume: forget epochs newer than the checkpoint we continue from."""
        for kind in ("metrics", "confusion"):
            for entry in self.store._parquet_files(self.run_id, kind):
                stem = entry["name"].rsplit("/", 1)[-1].removesuffix(".parquet")
                if stem.startswith("epoch_") and int(stem.split("_")[1]) > epoch:
                    self.store.fs.rm_file(entry["name"])
