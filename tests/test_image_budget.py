"""One image budget at every entry point (fer_core/faces/detection.py): a 96-megapixel grey PNG costs
at most 400 MB more peak memory than a normal photo, with the face boxed in the file's own
pixels; over 100 MP, one clear refusal. Peak memory is the real process's (wait4's maxrss for
fer-predict, the Python API and the Predict page; VmHWM of a running fer-serve)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from benchmarks.image_budget import MAXRSS
from fer_core.faces import detection as faces
from fer_core.faces.detection import ImageError, load_photo
from fer_core.faces.recognizer import Recognizer
from fer_core.faces.video import Video, VideoError, predict_video
from tests.conftest import PROJECT, free_port, write_clip

FACES_DEV = PROJECT.parent / "shared" / "data" / "faces-dev"
PHOTO = FACES_DEV / "Tom_Cruise_avp_2014_4.jpg"  # one close-up face; boxes.json: [86, 155, 391, 556]
PASTE_AT, ENLARGE = (4000, 3000), 3
FACE = (4000 + 86 * 3, 3000 + 155 * 3, 391 * 3, 556 * 3)  # where the face is in the big image
BUDGET_MB = 400
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """The normal photo, the same face in a 12000x8000 (96 MP) grey PNG, and a 101 MP one."""
    root = tmp_path_factory.mktemp("budget")
    face = Image.open(PHOTO).convert("L")
    big = Image.new("L", (12000, 8000), 128)
    big.paste(face.resize((face.width * ENLARGE, face.height * ENLARGE)), PASTE_AT)
    big.save(root / "grey96.png")
    Image.new("L", (10050, 10050), 128).save(root / "grey101.png")
    return {"normal": PHOTO, "big": root / "grey96.png", "over": root / "grey101.png"}


def overlaps(box, truth=FACE) -> bool:
    """IoU >= 0.3, as boxes.json's README counts a hit."""
    (x, y, w, h), (a, b, c, d) = box, truth
    inter = max(0, min(x + w, a + c) - max(x, a)) * max(0, min(y + h, b + d) - max(y, b))
    return inter / (w * h + c * d - inter) >= 0.3


def run_peak(command: list[str], **popen) -> tuple[int, subprocess.CompletedProcess]:
    """Run a command; its peak resident memory in MB and its result. Measured by a small launcher
    process: a child of this (large) process would count this one's memory as its own peak."""
    result = subprocess.run([sys.executable, "-S", "-c", MAXRSS, *command], capture_output=True, text=True, **popen)
    *err, last = result.stderr.rstrip().splitlines() or [""]
    assert last.startswith("maxrss_kb="), result.stderr
    return int(last.removeprefix("maxrss_kb=")) >> 10, subprocess.CompletedProcess(
        command, result.returncode, result.stdout, "\n".join(err)
    )


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.mark.slow
def test_fer_predict_reduces_a_96_mp_png_and_refuses_over_100(images):
    command = [str(BIN / "fer-predict"), "--model", "stcnn", "--backend", "torch", "--json"]
    normal, _ = run_peak([*command, str(images["normal"])])
    big, result = run_peak([*command, str(images["big"])])
    assert result.returncode == 0, result.stderr
    [face] = json.loads(result.stdout)["faces"]
    assert overlaps(face["box"]), face["box"]  # in the file's pixels, not the reduced image's
    assert big - normal <= BUDGET_MB, f"{big} MB for 96 MP against {normal} MB for a photo"

    _, refused = run_peak([*command, str(images["over"])])
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"fer-predict: {images['over']}: 10050x10050 is 101,002,500 pixels; images of up to 100 megapixels "
        "(100,000,000 pixels) are accepted"
    )


@pytest.mark.slow
def test_the_python_api_within_budget_for_paths_and_pil_images(images):
    script = """
        import json, sys
        from PIL import Image
        from fer_core import Recognizer
        recognize = Recognizer("stcnn", backend="torch")
        source = sys.argv[1]
        found = recognize(Image.open(source) if sys.argv[2] == "pil" else source)
        print(json.dumps([f.box for f in found]))
    """
    normal, _ = run_peak([*python(script), str(images["normal"]), "path"])
    for kind in ("path", "pil"):
        big, result = run_peak([*python(script), str(images["big"]), kind])
        assert result.returncode == 0, result.stderr
        [box] = json.loads(result.stdout)
        assert overlaps(box), (kind, box)
        assert big - normal <= BUDGET_MB, (kind, big, normal)
    with pytest.raises(ImageError, match="images of up to 100 megapixels"):
        load_photo(images["over"])


@pytest.mark.slow
def test_the_predict_page_within_budget(images):
    """The Predict page (Streamlit's AppTest) with the upload as a user drops it."""
    script = """
        import sys
        from pathlib import Path
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file("dashboard/app.py", default_timeout=600)
        at.run()
        at.switch_page("views/predict.py")
        at.run()
        at.multiselect(key="predict_models").set_value(["stcnn (shipped)"]).run()
        path = Path(sys.argv[1])
        at.file_uploader(key="uploads").set_value((path.name, path.read_bytes(), "image/png")).run()
        assert not at.exception, [e.value for e in at.exception]
        print("\\n".join([m.value for m in at.markdown if m.value.startswith("**Face")] + [e.value for e in at.error]))
    """
    env = dict(os.environ, FER_RUNS_DIR=str(images["big"].parent / "runs"))
    commands = {name: [*python(script), str(images[name])] for name in images}
    normal, _ = run_peak(commands["normal"], env=env, cwd=PROJECT)
    big, result = run_peak(commands["big"], env=env, cwd=PROJECT)
    assert result.returncode == 0 and "**Face 1:" in result.stdout, result.stdout + result.stderr
    assert big - normal <= BUDGET_MB, (big, normal)
    _, refused = run_peak(commands["over"], env=env, cwd=PROJECT)
    assert "images of up to 100 megapixels" in refused.stdout and "**Face" not in refused.stdout, refused.stdout


def high_water_mb(pid: int) -> int:
    """The peak resident memory so far of a running process (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_fer_serve_within_budget_and_refuses_over_100_mp(images, tmp_path):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "fer_core.programs.serve",
        "--model",
        "stcnn",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with open(tmp_path / "serve.log", "wb") as log:
        server = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
            assert time.time() < deadline and server.poll() is None, (tmp_path / "serve.log").read_text()

        def post(name: str) -> httpx.Response:
            files = {"files": (images[name].name, images[name].read_bytes())}
            return httpx.post(f"{url}/predict", files=files, timeout=300)

        assert post("normal").status_code == 200
        normal = high_water_mb(server.pid)
        answer = post("big")
        assert answer.status_code == 200, answer.text
        [[face]] = [result["faces"] for result in answer.json()]
        assert overlaps(face["box"]), face["box"]
        assert high_water_mb(server.pid) - normal <= BUDGET_MB
        refused = post("over")
        assert refused.status_code == 413 and "10050x10050 is 101,002,500 pixels" in refused.json()["detail"]
    finally:
        server.terminate()
        server.wait(timeout=20)


# -- in this process, the budget made small so that small images cross it ---------------------


@pytest.fixture
def small_budget(monkeypatch):
    monkeypatch.setattr(faces, "WORKING_PIXELS", 200_000)
    monkeypatch.setattr(faces, "MAX_PIXELS", 2_000_000)


def test_every_input_kind_is_reduced_and_boxed_in_its_own_pixels(small_budget):
    photo = Image.open(PHOTO)  # 565x800 = 452,000 pixels: reduced by 2
    truth = (86, 155, 391, 556)
    recognize = Recognizer("stcnn", backend="torch")
    loaded = load_photo(PHOTO)
    assert loaded.size == (283, 400) and loaded.info["fer_scale"] == (565 / 283, 2.0)
    for given in (PHOTO, PHOTO.read_bytes(), photo, np.asarray(photo.convert("RGB")), loaded):
        [face] = recognize(given)
        assert overlaps(face.box, truth), (type(given), face.box)
    bgr = np.ascontiguousarray(np.asarray(photo.convert("RGB"))[..., ::-1])
    [face] = recognize(bgr, color="bgr")
    assert overlaps(face.box, truth)
    with pytest.raises(ImageError, match="images of up to 2 megapixels"):
        recognize(np.zeros((1500, 1500), np.uint8))


def test_video_frames_are_reduced_and_boxed_in_the_videos_pixels(small_budget, tmp_path):
    from fer_core.inference.loading import load_named_model

    frame = np.asarray(Image.open(PHOTO).convert("RGB").resize((560, 800)))
    clip = write_clip(tmp_path / "portrait.avi", [frame] * 5, fps=5)
    video = Video(clip)
    assert video.working == {"width": 280, "height": 400}
    [(_, _, rgb), *_] = video.frames()
    assert rgb.shape == (400, 280, 3) and video.scale == (2.0, 2.0) and video.size == (560, 800)
    video.close()
    result = predict_video(clip, {"stcnn": load_named_model("stcnn", backend="torch")})
    assert (result["video"]["width"], result["video"]["height"]) == (560, 800)
    boxes = [face["box"] for f in result["frames"] for face in f["faces"]]
    assert len(boxes) == 5 and all(overlaps(b, (86 * 560 // 565, 155, 391 * 560 // 565, 556)) for b in boxes), boxes

    faces.MAX_PIXELS = 400_000  # (restored by monkeypatch) a frame over the limit: refused at once
    with pytest.raises(VideoError, match=r"portrait.avi: 560x800 is 448,000 pixels; .* per frame"):
        Video(clip)


def test_decoding_large_images_one_at_a_time(small_budget, tmp_path):
    """Over the budget an image decodes in full before it is reduced (all but JPEG): the lane lets
    one such decode run at a time in a process, so many uploads at once hold one full image."""
    import threading

    held, most = [0], [0]
    lock = threading.Lock()
    original = faces.reduce_image

    def counting(im, factor):
        with lock:
            held[0] += 1
            most[0] = max(most[0], held[0])
        time.sleep(0.2)
        with lock:
            held[0] -= 1
        return original(im, factor)

    faces.reduce_image = counting
    try:
        data = io.BytesIO()
        Image.new("L", (1000, 1000), 128).save(data, "PNG")
        threads = [threading.Thread(target=load_photo, args=(data.getvalue(),)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        faces.reduce_image = original
    assert most[0] == 1
