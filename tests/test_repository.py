"""What a clone carries: no machine's absolute paths, no run checkpoints."""

from __future__ import annotations

import re
import subprocess

from tests.conftest import PROJECT

MACHINE_PATH = re.compile(rb"/(?:work|home|root|Users)/[\w.-]+")


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True).stdout.split()


def test_no_machine_paths_in_committed_files():
    found = [name for name in tracked_files() if MACHINE_PATH.search((PROJECT / name).read_bytes())]
    assert not found, f"absolute paths of a machine in: {found}"


def test_no_run_checkpoints_in_git():
    assert not [name for name in tracked_files() if name.startswith("results/runs/") and name.endswith(".safetensors")]
