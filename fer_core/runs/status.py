"""What a run's state is called, named once for the store, the trainers, the job queue and the
pages: the statuses, when a heartbeat is stale, whether a trainer's process lives, and the
errors a run's state raises. Below runstore.py and runwriter.py, which both use it."""

from __future__ import annotations

import os
from datetime import datetime, timezone

STALE_SECONDS = 30.0
# The statuses of runs and jobs, named once: still going; ended by the trainer itself with
# its epochs kept; stopped before the end and resumable.
ACTIVE = ("queued", "running")
COMPLETED = ("finished", "cancelled")
RESUMABLE = ("failed", "cancelled")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunGone(LookupError):
    """The run is not (or no longer) in the store: deleted, perhaps by someone else meanwhile."""


class NotARun(ValueError):
    """A folder in the runs folder that does not read as a run; the message says why."""


class RunActive(ValueError):
    """A run whose trainer is still at work (deleting it is refused: cancel it first)."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
