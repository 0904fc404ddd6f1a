"""Who can reach what: no unpickling, no shell, the dashboard on loopback with XSRF on.

Run ids escaping the runs folder are tested in test_runstore.py; form and CLI values out of
range in test_dashboard.py and test_training.py.
"""

from __future__ import annotations

import ast
import pickle
import socket
import subprocess
import urllib.error
import urllib.request

import pytest
import tomllib
import torch
from safetensors import SafetensorError

from fer_core.runs.checkpoint import load_model
from fer_core.runs.runstore import RunStore
from tests.conftest import PROJECT, SAMPLE_CSV, TINY_STCNN, job_ended
from trainers.jobs import JobQueue

SOURCES = [
    p
    for d in ("fer_core", "trainers", "dashboard", "benchmarks", "scripts")
    for p in sorted((PROJECT / d).rglob("*.py"))
]


def unsafe_calls(source: str) -> list[str]:
    """Calls that can run code from a file: pickle and friends, torch.load without weights_only=True."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            found += [f"import {n}" for n in names if n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib")]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, keywords = node.func.attr, {k.arg: k.value for k in node.keywords}
            if name == "load" and ast.unparse(node.func.value) == "torch":
                flag = keywords.get("weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(f"line {node.lineno}: torch.load without weights_only=True")
            elif name == "read_pickle" or (
                name == "load"
                and isinstance(keywords.get("allow_pickle"), ast.Constant)
                and keywords["allow_pickle"].value is True
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node.func)}")
    return found


def test_the_checker_finds_unsafe_loads():
    assert unsafe_calls("import torch\ntorch.load('x.pt')")
    assert unsafe_calls("import torch\ntorch.load('x.pt', weights_only=False)")
    assert unsafe_calls("import pickle")
    assert unsafe_calls("import pandas as pd\npd.read_pickle('x')")
    assert not unsafe_calls("import torch\ntorch.load('x.pt', weights_only=True)")


def test_no_source_file_unpickles():
    assert len(SOURCES) > 20
    problems = {str(p.relative_to(PROJECT)): found for p in SOURCES if (found := unsafe_calls(p.read_text()))}
    assert not problems


class _Payload:
    """Unpickling this creates a file: what a malicious .pt checkpoint would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickled_checkpoint_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    for name in ("evil.safetensors", "evil.pt"):
        path = tmp_path / name
        torch.save({"state_dict": _Payload(str(marker))}, path)  # a real pickle-based torch checkpoint
        with pytest.raises(SafetensorError):  # not a safetensors file: refused before anything is run
            load_model(path)
        assert not marker.exists()
    assert pickle.loads(pickle.dumps(_Payload(str(marker)))) and marker.exists()  # the payload does work


@pytest.mark.slow
def test_the_trainer_is_launched_without_a_shell(tmp_path):
    """Shell metacharacters in a run name reach fer-train as one literal argument."""
    name = "x; touch PWNED1 && $(touch PWNED2) `touch PWNED3` | tee PWNED4 > PWNED5 'q\" *"
    runs = RunStore(tmp_path / "runs")
    queue = JobQueue(tmp_path / "jobs", runs)
    job, _ = queue.submit(
        ["--model", "stcnn", "--data", str(SAMPLE_CSV), "--epochs", "1", "--limit", "70", "--name", name, *TINY_STCNN],
        name="metachars",
        model="stcnn",
    )
    assert job_ended(queue, job["job_id"])["status"] == "finished", queue.log_tail(job["job_id"])
    assert runs.read_run(job["run_id"])["name"] == name
    for where in (tmp_path, PROJECT, PROJECT / "dashboard", runs.root):
        assert not list(where.glob("PWNED*"))
    with pytest.raises(ValueError):
        queue.submit(["--name", "a\0b"])


def test_streamlit_config_binds_loopback_with_xsrf():
    server = tomllib.loads((PROJECT / ".streamlit" / "config.toml").read_text())["server"]
    assert server["address"] == "127.0.0.1"
    assert server["enableXsrfProtection"] is True
    assert 0 < server["maxUploadSize"] <= 50


def other_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:  # no hostname command: the /proc/net check below still holds
        return []
    return [a for a in out if "." in a and not a.startswith("127.")]


def listening_addresses(port: int) -> set[str]:
    """The local addresses of sockets listening on PORT, from /proc/net/tcp{,6} (hex, as the kernel writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def test_the_dashboard_is_served_on_loopback_only_and_refuses_forged_uploads(committed_dashboard):
    """The dashboard as `make run` starts it (the project's .streamlit/config.toml)."""
    url = committed_dashboard
    port = int(url.rsplit(":", 1)[1])
    assert reachable("127.0.0.1", port)
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0 or ::
    for address in other_addresses():
        assert not reachable(address, port), f"the dashboard answers on {address}"
    # A cross-site upload without Streamlit's XSRF cookie and token is refused.
    request = urllib.request.Request(
        f"{url}/_stcore/upload_file/some-session/some-file",
        data=b"x" * 10,
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert urllib.request.urlopen(url, timeout=10).status == 200  # and the app still serves
