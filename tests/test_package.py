"""`pip install` of the wheel, outside the checkout: the console scripts and the library call
work with the shipped models inside the package, and runs and caches go to the user's folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import PROJECT, detectable_faces, make_photo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh venv with only the built wheel installed; the heavy dependencies (torch, OpenCV...)
    are this venv's, reached through one path line rather than installed again."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"  # a copy: building in the checkout would leave build/ and egg-info there
    junk = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "screenshots")

    def left_out(folder: str, names: list[str]) -> set[str]:  # results/runs and jobs, not fer_core/runs
        return junk(folder, names) | ({"runs", "jobs"} & set(names) if Path(folder).name == "results" else set())

    shutil.copytree(PROJECT, source, ignore=left_out)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = (root / "dist").glob("fer_lab-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    [site] = (venv / "lib").glob("python*/site-packages")
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FER_", "XDG_"))}
    env.update(HOME=str(root / "home"), PYTHONPATH="")
    return venv, env


def run(venv: Path, env: dict, *command, cwd: Path) -> str:
    result = subprocess.run(
        [str(venv / "bin" / command[0]), *map(str, command[1:])],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_installed_fer_predict_and_library_call(installed, fer2013, tmp_path):
    venv, env = installed
    photo = tmp_path / "face.png"
    make_photo(detectable_faces(fer2013, n=1)).save(photo)
    out = json.loads(run(venv, env, "fer-predict", photo, "--model", "stcnn", "--json", cwd=tmp_path))
    assert [face["label"] for face in out["faces"]] == ["happy"]
    where = json.loads(
        run(
            venv,
            env,
            "python",
            "-c",
            f"""
import json
import fer_core, fer_core.paths as p
from fer_core import Recognizer
faces = Recognizer("stcnn", tta="none")({str(photo)!r})
print(json.dumps({{"package": fer_core.__file__, "models": str(p.SHIPPED_MODELS_DIR), "results": str(p.RESULTS_DIR),
                  "cache": str(p.cache_dir()), "labels": [f.label for f in faces]}}))
""",
            cwd=tmp_path,
        )
    )
    assert where["labels"] == ["happy"]
    assert str(venv) in where["package"] and str(PROJECT) not in where["package"] and "source" not in where["package"]
    assert where["models"].startswith(str(venv)) and Path(where["models"], "stcnn.safetensors").is_file()
    assert where["results"] == str(Path(env["HOME"], ".local", "share", "fer-lab"))
    assert where["cache"] == str(Path(env["HOME"], ".cache", "fer-lab"))


def test_installed_fer_eval_and_entry_points(installed, fer2013, tmp_path):
    venv, env = installed
    out = json.loads(
        run(
            venv,
            env,
            "fer-eval",
            "--model",
            "stcnn",
            "--data",
            fer2013,
            "--split",
            "val",
            "--limit",
            70,
            "--tta",
            "none",
            "--json",
            cwd=tmp_path,
        )
    )
    assert out["n"] == 70 and out["accuracy"] > 0.4
    for script in ("fer-train", "fer-sweep", "fer-predict", "fer-eval", "fer-export", "fer-serve"):
        assert "usage" in run(venv, env, script, "--help", cwd=tmp_path)
