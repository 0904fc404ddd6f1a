"""Peak memory per entry point for a normal photo against very large images (the image budget).

    .venv/bin/python benchmarks/image_budget.py [--model stcnn]

Writes the images into a temporary folder: a real faces-dev photo (565x800 JPEG), the same
enlarged to a 12 MP phone-size JPEG, a 12000x8000 (96 MP) uniform grey PNG (112 KB, as in
issue 59), a 96 MP RGB PNG and a 96 MP JPEG with the face pasted in, and a 101 MP PNG. Then,
for each, the peak resident memory of: the Python API (`Recognizer(model)(path)` in a fresh
process), `fer-predict`, the dashboard's Predict page (Streamlit's AppTest in a fresh process,
the upload as a user drops it) - each the process's maxrss from wait4 - and a running
`fer-serve` (its VmHWM after the request; images in order of size, so each row's peak is its
own); video frames as `fer-predict` on a clip of 640x360 against one of 6000x4000 frames.
"Refused" is the one-line refusal over the limit. Run with another checkout's Python (its
fer_core and its console scripts) to measure that checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
from PIL import Image

import fer_core
from fer_core.device import cpu_description

PROJECT = Path(fer_core.__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PHOTO = PROJECT.parent / "shared" / "data" / "faces-dev" / "Tom_Cruise_avp_2014_4.jpg"

API = """
    import sys
    from fer_core import Recognizer
    print(len(Recognizer(sys.argv[2], backend="torch")(sys.argv[1])))
"""
PAGE = """
    import sys
    from pathlib import Path
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file("dashboard/app.py", default_timeout=600)
    at.run()
    at.switch_page("views/predict.py")
    at.run()
    at.multiselect(key="predict_models").set_value([f"{sys.argv[2]} (shipped)"]).run()
    path = Path(sys.argv[1])
    at.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/png")).run()
    errors = [e.value for e in [*at.exception, *at.error]]
    print(errors[0] if errors else sum(m.value.startswith("**Face") for m in at.markdown))
"""


def write_images(root: Path) -> dict[str, Path]:
    face = Image.open(PHOTO).convert("RGB")
    phone = Image.new("RGB", (4000, 3000), (128, 128, 128))
    phone.paste(face.resize((face.width * 3, face.height * 3)), (1000, 300))
    big = Image.new("RGB", (12000, 8000), (128, 128, 128))
    big.paste(face.resize((face.width * 3, face.height * 3)), (4000, 3000))
    images = {
        "faces-dev photo, 0.45 MP JPEG": PHOTO,
        "phone photo, 12 MP JPEG": root / "phone.jpg",
        "96 MP grey PNG (uniform)": root / "grey96.png",
        "96 MP RGB PNG, a face": root / "rgb96.png",
        "96 MP JPEG, a face": root / "big96.jpg",
        "101 MP grey PNG": root / "grey101.png",
    }
    phone.save(images["phone photo, 12 MP JPEG"], quality=90)
    Image.new("L", (12000, 8000), 128).save(images["96 MP grey PNG (uniform)"], optimize=True)
    big.save(images["96 MP RGB PNG, a face"])
    big.save(images["96 MP JPEG, a face"], quality=90)
    Image.new("L", (10050, 10050), 128).save(images["101 MP grey PNG"])
    return images


MAXRSS = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(f"maxrss_kb={usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_peak(command: list[str]) -> tuple[int, str, str]:
    """A command's peak resident memory in MB, its last output line and, if it failed, its error.
    Measured by a small launcher process: a child of this (large) process would count this one's
    memory as its own peak."""
    result = subprocess.run([sys.executable, "-S", "-c", MAXRSS, *command], capture_output=True, text=True, cwd=PROJECT)
    *err, last = result.stderr.rstrip().splitlines() or [""]
    mb = int(last.removeprefix("maxrss_kb=")) >> 10
    out = (result.stdout.strip().splitlines() or [""])[-1]
    return mb, out, "" if result.returncode == 0 else "\n".join(err)[-160:]


def cell(mb: int, out: str, err: str) -> str:
    """A process's column: its peak, or that it refused the image, or what went wrong."""
    if "megapixels" in out + err:
        return f"refused ({mb})"
    return f"{mb}" if not err and out.strip().isdigit() else f"error: {(err or out)[-80:]}"


def high_water_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) >> 10
    return -1


def serve_column(images: dict[str, Path], model: str) -> dict[str, str]:
    """fer-serve's VmHWM after each image, the images sent smallest first."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "fer_core.programs.serve",
        "--model",
        model,
        "--port",
        str(port),
        "--no-access-log",
    ]
    server = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, column = f"http://127.0.0.1:{port}", {}
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        for label, path in images.items():
            answer = httpx.post(f"{url}/predict", files={"files": (path.name, path.read_bytes())}, timeout=600)
            peak = high_water_mb(server.pid)
            column[label] = f"{peak}" if answer.status_code == 200 else f"refused ({answer.status_code}, {peak})"
    finally:
        server.terminate()
        server.wait(timeout=30)
    return column


def video_rows(root: Path) -> list[tuple[str, str]]:
    import cv2

    rows = []
    for label, size in (("640x360 frames", (640, 360)), ("6000x4000 frames (24 MP)", (6000, 4000))):
        path = root / f"clip-{size[0]}.avi"
        frame = cv2.resize(cv2.imread(str(PHOTO)), size)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, size)
        for _ in range(5):
            writer.write(frame)
        writer.release()
        command = [str(BIN / "fer-predict"), "--model", "stcnn", "--backend", "torch", "--json", str(path)]
        mb, out, err = run_peak(command)
        rows.append((label, f"{mb}" if not err else f"error: {err[-80:]}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="stcnn", help="a shipped model (the image's cost hardly depends on it)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fer-image-budget-"))
    images = write_images(root)
    print(f"CPU: {cpu_description()}; {PROJECT}; model {args.model} (PyTorch)")
    print("peak resident memory, MB\n")
    print("| image | Python API | fer-predict | Predict page | fer-serve |")
    print("|---|---|---|---|---|")
    serve = serve_column(images, args.model)
    for label, path in images.items():
        api = cell(*run_peak([sys.executable, "-c", textwrap.dedent(API), str(path), args.model]))
        cli = [str(BIN / "fer-predict"), "--model", args.model, "--backend", "torch", str(path)]
        mb, _, err = run_peak(cli)
        predict = cell(mb, "0", err)
        page = cell(*run_peak([sys.executable, "-c", textwrap.dedent(PAGE), str(path), args.model]))
        print(f"| {label} | {api} | {predict} | {page} | {serve[label]} |", flush=True)
    print("\n| video (fer-predict, 5 frames, MJPG) | peak MB |\n|---|---|")
    for label, mb in video_rows(root):
        print(f"| {label} | {mb} |")


if __name__ == "__main__":
    main()
