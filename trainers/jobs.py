"""Training jobs launched from the dashboard: a small queue kept on disk.

Each job is `results/jobs/<job_id>.json` plus its log. A job runs the trainer
(`python -m trainers`, the same as `fer-train`) as its own
process group (no shell, arguments as a list), detached from the dashboard, so it
survives page reloads, closed browsers and dashboard restarts; whoever looks at the
queue next (any tab, any dashboard process) sees it through the file and the run store.
The same arguments are never queued twice while a job with them is still active, so a
double click or a second tab cannot start a duplicate. At most `max_running` jobs run
at once (default 1 on a CPU); the rest wait, and `tick()` starts them as others end.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from fer_core.paths import RESULTS_DIR
from fer_core.runs.runstore import RunStore, write_json_atomic
from fer_core.runs.status import ACTIVE, COMPLETED, RESUMABLE, now_iso, pid_alive

# The trainer, run by this interpreter: no guess at where a console script was installed.
FER_TRAIN = [sys.executable, "-m", "trainers"]
_children: dict[int, subprocess.Popen] = {}  # processes this process started (reaped on poll)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    return pid_alive(pid)


class JobQueue:
    def __init__(self, root: str | os.PathLike | None = None, runs: RunStore | None = None):
        self.root = Path(root or os.environ.get("FER_JOBS_DIR") or RESULTS_DIR / "jobs")
        self.runs = runs or RunStore()

    # -- storage -------------------------------------------------------------------------
    @contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _save(self, job: dict) -> None:
        write_json_atomic(self.root / f"{job['job_id']}.json", job)

    def _load_all(self) -> list[dict]:
        if not self.root.exists():
            return []
        jobs = []
        for f in sorted(self.root.glob("*.json")):
            if f.name == "settings.json":
                continue
            try:
                jobs.append(json.loads(f.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        # in the order queued: `created` has whole seconds, and a sweep queues its trials within one
        return sorted(jobs, key=lambda j: (j["created"], j.get("queued_unix", 0.0)))

    @property
    def max_running(self) -> int:
        try:
            return int(json.loads((self.root / "settings.json").read_text())["max_running"])
        except (OSError, ValueError, KeyError):
            return 1

    @max_running.setter
    def max_running(self, value: int) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.root / "settings.json", {"max_running": max(1, int(value))})

    # -- state ---------------------------------------------------------------------------
    def _refresh(self, job: dict) -> dict:
        """Bring a job's status up to date from its process and its run."""
        if job["status"] != "running" or _alive(job.get("pid")):
            return job
        run_status = (self.runs.get(job["run_id"]) or {}).get("status")  # None: no run (yet, or deleted)
        status = run_status if run_status in COMPLETED else "failed"
        if job.get("cancel_requested") and status == "failed":
            status = "cancelled"  # stopped before the trainer could record it (e.g. while still starting)
        job = dict(job, status=status, ended=now_iso())
        if run_status is None and status == "failed":
            job["error"] = self.log_tail(job["job_id"], 1) or "the trainer exited before starting a run"
        self._save(job)
        return job

    def jobs(self) -> list[dict]:
        with self._locked():
            return [self._refresh(j) for j in self._load_all()]

    def job(self, job_id: str) -> dict:
        return next(j for j in self.jobs() if j["job_id"] == job_id)

    def log_path(self, job_id: str) -> Path:
        return self.root / f"{job_id}.log"

    def log_tail(self, job_id: str, lines: int = 20) -> str:
        try:
            text = self.log_path(job_id).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(line.split("\r")[-1] for line in text.splitlines()[-lines:])

    # -- actions -------------------------------------------------------------------------
    def submit(
        self, args: list[str], name: str | None = None, model: str = "run", run_id: str | None = None
    ) -> tuple[dict, bool]:
        """Queue `fer-train ARGS`; returns (job, created). An identical active job is returned instead."""
        if not all(isinstance(a, str) and "\0" not in a for a in args):
            raise ValueError("job arguments must be plain strings")
        key = hashlib.sha256(json.dumps(args).encode()).hexdigest()[:16]
        with self._locked():
            for job in self._load_all():
                job = self._refresh(job)
                if job["key"] == key and job["status"] in ACTIVE:
                    return job, False
            job_id = self.runs.new_run_id(model, name)
            job = {
                "job_id": job_id,
                "run_id": run_id or job_id,
                "name": name or run_id,
                "model": model,
                "args": list(args),
                "key": key,
                "status": "queued",
                "created": now_iso(),
                "queued_unix": time.time(),
                "pid": None,
            }
            self._save(job)
        self.tick()
        return self.job(job["job_id"]), True

    def tick(self) -> None:
        """Start queued jobs while fewer than `max_running` run."""
        with self._locked():
            jobs = [self._refresh(j) for j in self._load_all()]
            running = sum(j["status"] == "running" for j in jobs)
            for job in jobs:
                if running >= self.max_running:
                    break
                if job["status"] == "queued":
                    self._start(job)
                    running += 1

    def active_job(self, run_id: str) -> dict | None:
        """The queued or running job that trains `run_id`, if the dashboard started one."""
        return next((j for j in self.jobs() if j["run_id"] == run_id and j["status"] in ACTIVE), None)

    def resume(self, run_id: str, epochs: int | None = None) -> tuple[dict, bool]:
        """Queue `fer-train --resume RUN_ID` for a stopped (failed or cancelled) run; with `epochs`
        other than its own, `--epochs` too, which moves the run's end."""
        active = self.active_job(run_id)
        if active:  # a second click, or another tab: the job already resuming it
            return active, False
        info = self.runs.read_run(run_id)
        if info["status"] not in RESUMABLE:
            raise ValueError(f"run {run_id} is {info['status']}; only failed or cancelled runs can be resumed")
        moved = ["--epochs", str(epochs)] if epochs and epochs != info["config"].get("epochs") else []
        return self.submit(
            ["--resume", run_id, *moved],
            name=f"{info.get('name') or run_id} (resumed)",
            model=info.get("model") or "run",
            run_id=run_id,
        )

    def _start(self, job: dict) -> None:
        run_id = [] if "--resume" in job["args"] else ["--run-id", job["run_id"]]
        command = [*FER_TRAIN, *job["args"], *run_id, "--runs-dir", self.runs.uri, "--no-progress"]
        with open(self.log_path(job["job_id"]), "ab") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                shell=False,
            )
        _children[proc.pid] = proc
        job.update(status="running", pid=proc.pid, started=now_iso())
        self._save(job)

    def cancel(self, job_id: str) -> dict:
        """A queued job is dropped; a running one is asked to stop (its run ends as `cancelled`)."""
        with self._locked():
            job = next(j for j in self._load_all() if j["job_id"] == job_id)
            if job["status"] == "queued":
                job.update(status="cancelled", ended=now_iso())
                self._save(job)
            elif job["status"] == "running" and _alive(job["pid"]):
                try:
                    os.killpg(job["pid"], signal.SIGTERM)
                except ProcessLookupError:
                    pass
                job.update(cancel_requested=now_iso())
                self._save(job)
        return job

    def forget(self, job_id: str) -> None:
        """Remove an ended job from the list (its run stays in the run store)."""
        with self._locked():
            job = next(j for j in self._load_all() if j["job_id"] == job_id)
            if job["status"] in ACTIVE:
                raise ValueError("cancel the job before removing it")
            (self.root / f"{job_id}.json").unlink(missing_ok=True)
            self.log_path(job_id).unlink(missing_ok=True)
