"""The Predict page's settings as a user changes them (Streamlit's AppTest, real shipped models,
real faces): the runtime selector, test-time augmentation as on the cards, and the photo and
video formats beside JPEG and MP4 (WebP, BMP, MOV, MKV)."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from fer_core.faces.recognizer import Recognizer
from fer_core.faces.video import VIDEO_SUFFIXES
from fer_core.inference.loading import BACKENDS, resolve_backend
from fer_core.inference.onnx_export import OnnxModel
from fer_core.inference.registry import default_model, model_names
from tests.conftest import app_page, detectable_faces, make_photo


@pytest.fixture(scope="module")
def face(fer2013) -> Image.Image:
    return make_photo(detectable_faces(fer2013, n=1))


@pytest.fixture
def predict(tmp_path, monkeypatch) -> AppTest:
    """The Predict page with an empty run store: the shipped models, the default one chosen."""
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    return app_page("predict")


@pytest.fixture
def made(monkeypatch) -> list[Recognizer]:
    """Every Recognizer the page makes from now on (the page keeps them in Streamlit's cache)."""
    import dashboard.common

    dashboard.common.cached_recognizer.clear()
    seen, make = [], Recognizer.__init__

    def record(self, *args, **kwargs):
        make(self, *args, **kwargs)
        seen.append(self)

    monkeypatch.setattr(Recognizer, "__init__", record)
    return seen


def chosen() -> list[str]:
    """What Predict runs before the user picks: the default model (its members for an ensemble)."""
    return model_names(default_model())


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **({"lossless": True} if fmt == "WEBP" else {}))  # the same pixels as the PNG
    return out.getvalue()


def upload(at: AppTest, *files: tuple[str, bytes, str]) -> AppTest:
    at.file_uploader(key="uploads").set_value(list(files)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def verdicts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if m.value.startswith("**Face ")]


def expected_verdict(recognizer: Recognizer, image: Image.Image) -> str:
    [face] = recognizer.faces([image])[0]
    label, confidence = face.label()
    return f"**Face 1: {label}** ({confidence:.0%}"


def test_the_runtime_selector_chooses_what_runs_the_models(predict, made, face):
    runtime = predict.selectbox(key="predict_backend")
    assert runtime.options == list(BACKENDS) and runtime.value == "auto"
    at = upload(predict, ("face.png", encoded(face, "PNG"), "image/png"))
    [auto] = made
    assert list(auto.models) == chosen()
    # auto: ONNX Runtime for a shipped model whose export is in the cache, PyTorch until then
    ready = {name: resolve_backend(name) == "onnx" for name in chosen()}
    assert {name: isinstance(m, OnnxModel) for name, m in auto.models.items()} == ready
    at.selectbox(key="predict_backend").set_value("torch").run()
    [_, torch_made] = made
    assert not any(isinstance(m, OnnxModel) for m in torch_made.models.values())
    [verdict] = verdicts(at)
    assert verdict.startswith(expected_verdict(torch_made, face))
    at.selectbox(key="predict_backend").set_value("onnx").run()  # exported into the cache if need be
    [_, _, onnx_made] = made
    assert all(isinstance(m, OnnxModel) and m.precision == "fp32" for m in onnx_made.models.values())


def test_tta_as_on_the_cards_is_on_by_default_and_can_be_turned_off(predict, face):
    assert predict.toggle(key="predict_tta").value is True
    at = upload(predict, ("face.png", encoded(face, "PNG"), "image/png"))
    on_cards = Recognizer(chosen(), tta="auto")
    views = ", ".join(f"{spec} {view}" for spec, view in on_cards.views.items())  # e.g. "stcnn tencrop"
    assert any(c.value.startswith(f"Runs {views};") for c in at.caption), [c.value for c in at.caption]
    assert verdicts(at)[0].startswith(expected_verdict(on_cards, face))

    at.toggle(key="predict_tta").set_value(False).run()
    one_view = ", ".join(f"{spec} none" for spec in chosen())
    assert any(c.value.startswith(f"Runs {one_view};") for c in at.caption), [c.value for c in at.caption]
    assert verdicts(at)[0].startswith(expected_verdict(Recognizer(chosen(), tta="none"), face))


@pytest.mark.parametrize("fmt,suffix,mime", [("WEBP", "webp", "image/webp"), ("BMP", "bmp", "image/bmp")])
def test_webp_and_bmp_photos(predict, face, fmt, suffix, mime):
    at = upload(predict, (f"face.{suffix}", encoded(face, fmt), mime))
    [verdict] = verdicts(at)
    assert verdict.startswith(expected_verdict(Recognizer(chosen()), face))


def write_container(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """A real video in the container its suffix names (QuickTime .mov, Matroska .mkv), MPEG-4 video."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("suffix,mime", [(".mov", "video/quicktime"), (".mkv", "video/x-matroska")])
def test_mov_and_mkv_videos(predict, face, suffix, mime, tmp_path):
    assert suffix in VIDEO_SUFFIXES
    frames = [np.roll(np.asarray(face.resize((320, 240))), 2 * i, axis=1) for i in range(20)]
    video = write_container(tmp_path / f"clip{suffix}", frames)
    at = upload(predict, (video.name, video.read_bytes(), mime))
    assert at.get("video"), "no player"
    tracks = [m.value for m in at.markdown if m.value.startswith("**Track ")]
    assert len(tracks) == 1 and "mostly" in tracks[0] and "of 2 frame(s)" in tracks[0]  # every 10th of 20
