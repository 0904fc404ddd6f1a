"""fer-serve as a real server process over real HTTP on 127.0.0.1: every endpoint with good and
bad input, the body/pixel/file limits, the busy pool's 503, slow and vanishing clients."""

from __future__ import annotations

import contextlib
import io
import json
import math
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import httpx
import psutil
import pytest
from PIL import Image

from fer_core.classes import CLASSES
from fer_core.faces.detection import DEFAULT_DETECTOR
from fer_core.faces.detection import MAX_PIXELS as IMAGE_BUDGET_PIXELS  # every entry point's limit
from fer_core.inference.registry import model_record
from tests.conftest import PROJECT, detectable_faces, free_port, make_photo, wait_until_served

pytest.importorskip("fastapi")

MODELS = ["stcnn", "resnet50", "vit", "ensemble"]
BODY_TIMEOUT = 2  # seconds; the server is started with it so that the 408 test is short
MAX_PIXELS = 1_000_000  # the server's per-image limit here: a two-face photo is 405,000, so three make two batches


@pytest.fixture(scope="module")
def photos(fer2013) -> dict[str, bytes]:
    one, two = detectable_faces(fer2013, n=2)
    out = {}
    for name, image in (("one", make_photo([one])), ("two", make_photo([one, two], size=(900, 450)))):
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90)
        out[name] = buf.getvalue()
    return out


@contextlib.contextmanager
def fer_serve(log_path, *flags):
    """`python -m fer_core.programs.serve` with FLAGS on a free port, until it answers /health."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "fer_core.programs.serve",
        "--port",
        str(port),
        "--no-access-log",
        *map(str, flags),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        return False

    wait_until_served(proc, healthy, log_path)
    try:
        yield {"url": url, "port": port, "proc": proc, "log": log_path}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """stcnn with the defaults for host and upload size; one inference thread and no queue, so
    that two requests at once are enough for a 503."""
    flags = ["--model", "stcnn", "--workers", 1, "--queue", 0, "--body-timeout", BODY_TIMEOUT]
    with fer_serve(tmp_path_factory.mktemp("serve") / "serve.log", *flags, "--max-pixels", MAX_PIXELS) as server:
        yield server


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """`fer-serve` as shipped: no options but the port."""
    with fer_serve(tmp_path_factory.mktemp("serve-default") / "serve.log") as server:
        yield server


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server["url"], timeout=60) as c:
        yield c


def error(response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return body["detail"]


# --------------------------------------------------------------------------- good input


def test_binds_localhost_by_default(server):
    listening = [
        c.laddr for c in psutil.Process(server["proc"].pid).net_connections("inet") if c.status == psutil.CONN_LISTEN
    ]
    assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening
    assert any(addr.port == server["port"] for addr in listening)


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model"] == "stcnn" and "stcnn" in body["loaded"]
    assert body["workers"] == 1 and body["queue"] == 0


def test_one_photo_gives_one_labelled_face_as_the_library_does(client, photos):
    r = client.post("/predict", params={"tta": "none"}, files={"file": ("one.jpg", photos["one"], "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body, dict) and body["path"] == "one.jpg" and body["tta"] == "none"
    [face] = body["faces"]
    assert face["label"] in CLASSES and face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    assert list(face["probabilities"]) == list(CLASSES) and math.isclose(
        sum(face["probabilities"].values()), 1, abs_tol=1e-3
    )
    x, y, w, h = face["box"]
    assert 0 <= x and 0 <= y and x + w <= 640 and y + h <= 480 and w > 50 and h > 50
    assert face["detection_confidence"] > 0.5
    from fer_core import Recognizer  # the same answer as the library call (and so fer-predict)

    expected = [f.to_dict() for f in Recognizer("stcnn", tta="none")(photos["one"])]
    assert body["faces"] == expected


def test_several_files_give_a_list_in_upload_order(client, photos):
    """Three files whose pixels add up to more than one image's limit: two batches, one answer."""
    r = client.post(
        "/predict",
        files=[
            ("files", ("two.jpg", photos["two"], "image/jpeg")),
            ("files", ("one.jpg", photos["one"], "image/jpeg")),
            ("files", ("two-again.jpg", photos["two"], "image/jpeg")),
        ],
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [b["path"] for b in body] == ["two.jpg", "one.jpg", "two-again.jpg"]
    assert [len(b["faces"]) for b in body] == [2, 1, 2] and body[0]["faces"] == body[2]["faces"]
    assert all(b["tta"] == model_record("stcnn")["val"]["tta"] for b in body)  # auto: the record's view
    left, right = body[0]["faces"]
    assert left["box"][0] < right["box"][0]


def test_files_field_is_always_a_list_and_options_may_be_form_fields(client, photos):
    r = client.post(
        "/predict",
        files={"files": ("one.jpg", photos["one"], "image/jpeg")},
        data={"tta": "flip", "min_face_confidence": "0.6", "detector": DEFAULT_DETECTOR},
    )
    assert r.status_code == 200, r.text
    [one] = r.json()
    assert one["tta"] == "flip" and len(one["faces"]) == 1


def test_whole_image_when_no_face(client):
    buf = io.BytesIO()
    Image.new("RGB", (200, 150), (90, 140, 200)).save(buf, "PNG")
    none = client.post("/predict", params={"tta": "none"}, files={"file": ("wall.png", buf.getvalue())}).json()
    assert none["faces"] == []
    whole = client.post(
        "/predict", params={"tta": "none", "whole_image": "true"}, files={"file": ("wall.png", buf.getvalue())}
    ).json()
    assert [f["box"] for f in whole["faces"]] == [[0, 0, 200, 150]]


def test_models_lists_the_shipped_models_with_their_records(client):
    body = client.get("/models").json()
    assert body["default"] == "stcnn"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(MODELS) <= set(by_name)
    for name in set(MODELS) - {"ensemble"}:
        record = model_record(name)
        assert by_name[name]["tta"] == record["val"]["tta"]
        assert by_name[name]["val_accuracy"] == record["val"]["metrics"][record["val"]["tta"]]["accuracy"]
    ensemble, record = by_name["ensemble"], model_record("ensemble")
    assert ensemble["members"] == ["stcnn", "resnet50", "vit"] and ensemble["views"] == record["views"]
    assert ensemble["val_accuracy"] == record["calibration"]["in_sample"]["accuracy"]


def test_docs_and_openapi(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "http" not in docs.text.replace(str(client.base_url), "")  # offline: no CDN
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert asset in docs.text and client.get(asset).status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/models", "/health"} <= set(spec["paths"])
    predict = spec["paths"]["/predict"]["post"]
    assert "A list" in predict["description"] and {"413", "415", "422", "503"} <= set(predict["responses"])
    assert "multipart/form-data" in predict["requestBody"]["content"]


# --------------------------------------------------------------------------- bad input: a 4xx each, never a 5xx


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims WIDTHxHEIGHT (a valid header; the pixel data would never be reached)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "case",
    [
        "text",
        "truncated",
        "empty",
        "no_file",
        "json_body",
        "unknown_model",
        "path_as_model",
        "bad_tta",
        "bad_confidence",
        "nan_confidence",
        "bad_detector",
        "conflicting_options",
        "too_many_files",
        "too_many_pixels",
        "too_narrow",
        "string_as_file",
    ],
)
def test_bad_input_is_a_clear_4xx(client, photos, case):
    one = ("one.jpg", photos["one"], "image/jpeg")
    send = {
        "text": dict(files={"files": ("notes.jpg", b"this is not an image\n")}),
        "truncated": dict(files={"files": ("cut.jpg", photos["one"][: len(photos["one"]) // 2])}),
        "empty": dict(files={"files": ("empty.jpg", b"")}),
        "no_file": dict(data={"tta": "none"}),
        "json_body": dict(json={"files": ["one.jpg"]}),
        "unknown_model": dict(params={"model": "resnet18"}, files={"files": one}),
        "path_as_model": dict(
            params={"model": str(PROJECT / "results" / "models" / "stcnn.safetensors")}, files={"files": one}
        ),
        "bad_tta": dict(params={"tta": "twelvecrop"}, files={"files": one}),
        "bad_confidence": dict(params={"min_face_confidence": "1.5"}, files={"files": one}),
        "nan_confidence": dict(data={"min_face_confidence": "nan"}, files={"files": one}),
        "bad_detector": dict(params={"detector": "no-such-detector"}, files={"files": one}),
        "conflicting_options": dict(params={"tta": "none"}, data={"tta": "flip"}, files={"files": one}),
        "too_many_files": dict(files=[("files", one)] * 17),
        "too_many_pixels": dict(files={"files": ("huge.png", png_header(2_000, 1_000))}),
        "too_narrow": dict(files={"files": ("thread.png", png_header(1, 5_000))}),
        "string_as_file": dict(data={"files": "one.jpg"}),
    }[case]
    r = client.post("/predict", **send)
    expected = {
        "text": 415,
        "truncated": 422,
        "empty": 400,
        "no_file": 400,
        "json_body": 400,
        "too_many_files": 413,
        "too_many_pixels": 413,
    }.get(case, 422)
    detail = error(r, expected)
    if case in ("text", "truncated", "empty", "too_many_pixels", "too_narrow"):
        assert send["files"]["files"][0] in detail  # the file is named
    if case in ("unknown_model", "path_as_model"):
        assert all(m in detail for m in MODELS) and "resnet18" not in client.get("/health").json()["loaded"]
    if case == "too_many_pixels":
        assert "2,000,000" in detail and f"{MAX_PIXELS:,}" in detail


def test_unknown_route_and_method_are_json_4xx(client):
    assert error(client.get("/nowhere"), 404)
    assert error(client.get("/predict"), 405)


def send_raw(port: int, head: bytes, body_chunks=(), pause: float = 0.0, read: bool = True, gate=None) -> bytes:
    """HEAD, then BODY_CHUNKS (PAUSE seconds apart; after the first, wait for GATE, a
    threading.Event, when given), then the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(head)
        for i, chunk in enumerate(body_chunks):
            if i == 1 and gate is not None:
                assert gate.wait(120), "the gate was never opened"
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed: read what it said
            time.sleep(pause)
        if not read:
            return b""
        data = b""
        while True:
            try:
                got = s.recv(65536)
            except ConnectionResetError:
                break
            if not got:
                break
            data += got
        return data


def multipart_head(port: int, length: int | None, boundary: str = "b0undary") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (
        f"POST /predict?tta=none HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n{size}Connection: close\r\n\r\n"
    ).encode()


def part_head(name: str, boundary: str = "b0undary") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def test_a_declared_50_mb_body_is_refused_before_it_is_sent(server):
    answer = send_raw(server["port"], multipart_head(server["port"], 50 * 2**20))  # not one byte of body is sent
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"detail"' in answer and b"26,214,400" in answer  # 25 MB, the dashboard's limit


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(server, client):
    def body():
        yield part_head("big.jpg")
        for _ in range(40):
            yield b"\xff" * 2**20  # 40 MB, no Content-Length

    r = client.post("/predict", content=body(), headers={"content-type": "multipart/form-data; boundary=b0undary"})
    assert "too large" in error(r, 413)
    assert client.get("/health").status_code == 200


def test_a_slow_client_does_not_hold_up_others_and_is_served(server, client, photos):
    """A client that has sent half its photo waits (on the test) until another client's request
    has been answered; then it sends the rest and is answered too."""
    port, data = server["port"], photos["one"]
    body = part_head("slow.jpg") + data + b"\r\n--b0undary--\r\n"
    half, answer, fast_answered = len(body) // 2, {}, threading.Event()
    slow = threading.Thread(
        target=lambda: answer.update(
            raw=send_raw(port, multipart_head(port, len(body)), [body[:half], body[half:]], gate=fast_answered)
        )
    )
    slow.start()
    try:
        fast = client.post("/predict", params={"tta": "none"}, files={"file": ("fast.jpg", data)})
        assert fast.status_code == 200 and "raw" not in answer  # answered while the slow upload is unfinished
    finally:
        fast_answered.set()
    slow.join(60)
    assert answer["raw"].startswith(b"HTTP/1.1 200"), answer["raw"][:300]
    assert json.loads(answer["raw"].split(b"\r\n\r\n", 1)[1])[0]["path"] == "slow.jpg"


def test_a_client_that_stops_sending_gets_408_and_one_that_leaves_is_forgotten(server, client, photos):
    port = server["port"]
    head = multipart_head(port, 10_000)
    for _ in range(5):  # gone mid-upload
        send_raw(port, head, [part_head("gone.jpg") + photos["one"][:2000]], read=False)
    start = time.monotonic()
    answer = send_raw(port, head, [part_head("stalled.jpg") + photos["one"][:2000]])
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert time.monotonic() - start > BODY_TIMEOUT - 0.5  # it waited for the body as long as it was told
    after = client.post("/predict", params={"tta": "none"}, files={"file": ("one.jpg", photos["one"])})
    assert after.status_code == 200


def test_busy_pool_answers_503_with_retry_after(server, photos):
    """One thread, no queue: of several requests at once, those that find the thread busy get 503."""
    files = [("files", (f"{i}.jpg", photos["two"], "image/jpeg")) for i in range(2)]
    results = []

    def post():
        with httpx.Client(base_url=server["url"], timeout=120) as c:
            results.append(c.post("/predict", params={"tta": "flip"}, files=files))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    codes = sorted(r.status_code for r in results)
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    busy = next(r for r in results if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
    assert httpx.get(f"{server['url']}/health").json()["refused_busy"] >= 1


def test_defaults():
    from fer_core.inference.registry import default_model
    from fer_core.programs.serve import parse_args

    args = parse_args([])
    assert (args.host, args.model, args.workers, args.max_upload_mb, args.max_pixels) == (
        "127.0.0.1",
        default_model(),
        2,
        25,
        IMAGE_BUDGET_PIXELS,
    )


# --------------------------------------------------------------------------- fer-serve as shipped


def test_the_shipped_default_answers_as_the_default_recognizer(default_server, photos):
    """No --model: requests that name none get the default model's answer (registry.default_model)."""
    from fer_core import Recognizer
    from fer_core.inference.registry import default_model

    with httpx.Client(base_url=default_server["url"], timeout=120) as c:
        health = c.get("/health").json()
        assert health["model"] == default_model() and default_model() in health["loaded"]  # preloaded
        assert c.get("/models").json()["default"] == default_model()
        r = c.post("/predict", files={"file": ("one.jpg", photos["one"], "image/jpeg")})
    assert r.status_code == 200, r.text
    expected = Recognizer()  # the library's default: the same model, views and blend
    assert r.json()["tta"] == expected.tta
    assert same_faces(r.json()["faces"], [f.to_dict() for f in expected(photos["one"])])


def test_a_request_that_names_a_model_gets_that_model(default_server, photos):
    from fer_core import Recognizer
    from fer_core.inference.registry import default_model

    other = next(m for m in MODELS if m != default_model())
    with httpx.Client(base_url=default_server["url"], timeout=120) as c:
        r = c.post("/predict", params={"model": other}, files={"file": ("one.jpg", photos["one"], "image/jpeg")})
        assert r.status_code == 200, r.text
        assert other in c.get("/health").json()["loaded"]
    assert same_faces(r.json()["faces"], [f.to_dict() for f in Recognizer(other)(photos["one"])])


def test_the_shipped_pixel_limit_over_http(default_server):
    """One pixel over the shared image budget (fer_core.faces.detection.MAX_PIXELS, 100 MP) is refused
    from the header, before decoding; an image of the limit is served (a blank one: no face)."""
    width = 10_000
    with httpx.Client(base_url=default_server["url"], timeout=120) as c:
        over = c.post("/predict", files={"files": ("huge.png", png_header(width, IMAGE_BUDGET_PIXELS // width + 1))})
        at = c.post("/predict", files={"files": ("limit.png", png_header(width, IMAGE_BUDGET_PIXELS // width))})
    assert f"the limit is {IMAGE_BUDGET_PIXELS:,}" in error(over, 413)
    assert at.status_code == 200 and at.json()[0]["faces"] == [], at.text


def same_faces(got: list[dict], expected: list[dict]) -> bool:
    """The same boxes and labels, probabilities equal within float noise (another process)."""
    return len(got) == len(expected) and all(
        a["box"] == b["box"]
        and a["label"] == b["label"]
        and all(math.isclose(a["probabilities"][c], b["probabilities"][c], abs_tol=1e-4) for c in CLASSES)
        for a, b in zip(got, expected, strict=True)
    )


def test_refuses_to_start_with_an_unknown_model():
    r = subprocess.run(
        [sys.executable, "-m", "fer_core.programs.serve", "--model", "../secrets", "--port", str(free_port())],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "unknown model" in r.stderr and "stcnn" in r.stderr
