"""The Live page through Streamlit's AppTest: what it offers (a model, int8 on by default where
the model ships one, the runtime otherwise, the detector and its confidence floor), what reaches
the webcam component (its arguments: the stream's key and FER_ICE_SERVERS), and what every frame
gets from the page's own frame callback on a real face (a box, a label, the fps readout). The
stream itself, in Chromium with a fake webcam: test_browser_video.py."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import streamlit_webrtc.component
import torch
from streamlit.testing.v1 import AppTest

from fer_core.inference.loading import BACKENDS
from fer_core.inference.onnx_export import OnnxModel
from fer_core.inference.registry import int8_names, int8_path
from tests.conftest import app_page, detectable_faces, make_photo

BOX = np.array([123, 63, 160])  # RGB of the boxes and labels Live draws
FPS = np.array([0, 160, 0])  # RGB of its fps readout


@pytest.fixture
def live(monkeypatch, tmp_path) -> AppTest:
    """The Live page with an empty run store (the shipped models). AppTest's runtime is a stand-in
    without browser sessions, which streamlit-webrtc looks up by a private attribute; it is told
    there is none, as it is outside a live server (its own no-session path)."""
    monkeypatch.setattr(streamlit_webrtc.component, "get_this_session_info", lambda: None)
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("FER_ICE_SERVERS", raising=False)
    return app_page("live")


def stream(at: AppTest) -> dict:
    """The arguments the page gives the webcam component."""
    [component] = [c for c in at.get("component_instance") if "webrtc" in c.proto.component_name]
    return json.loads(component.proto.json_args)


def spec(label: str) -> str:
    return label.split(" (")[0]  # "stcnn (shipped)" -> "stcnn"


def assert_fp32(model) -> None:
    """auto: ONNX Runtime in fp32 once the model is in the cache (`make run` prepares it), PyTorch
    in fp32 until then (fer_core/inference/loading.py); never int8."""
    if isinstance(model, OnnxModel):
        assert model.precision == "fp32"
    else:
        assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_a_model_with_an_int8_version_runs_it_by_default(live):
    picked = live.selectbox(key="live_model").value
    assert spec(picked) in int8_names(), picked  # the page opens on a model shipped with int8 (stcnn)
    assert live.toggle(key="live_int8").value is True
    assert not [s for s in live.selectbox if s.key == "live_backend"]  # int8 runs on ONNX Runtime only
    model = live.session_state["live_annotator"].model
    assert isinstance(model, OnnxModel) and model.precision == "int8" and model.path == int8_path(spec(picked))
    assert stream(live)["component_key"] == f"live-{spec(picked)}-int8"


def test_switching_int8_off_offers_the_runtimes(live):
    live.toggle(key="live_int8").set_value(False).run()
    runtime = live.selectbox(key="live_backend")
    assert runtime.options == list(BACKENDS) and runtime.value == "auto"
    assert_fp32(live.session_state["live_annotator"].model)
    assert stream(live)["component_key"] == f"live-{spec(live.selectbox(key='live_model').value)}"
    runtime.set_value("torch").run()
    model = live.session_state["live_annotator"].model
    assert not isinstance(model, OnnxModel) and sum(p.numel() for p in model.parameters()) > 0  # PyTorch's


def test_a_model_without_int8_has_no_switch(live):
    without = next(o for o in live.selectbox(key="live_model").options if spec(o) not in int8_names())
    live.selectbox(key="live_model").set_value(without).run()
    assert not live.toggle and live.selectbox(key="live_backend").value == "auto"
    assert_fp32(live.session_state["live_annotator"].model)


def test_detector_and_floor_reach_the_running_stream(live):
    """They change the frame callback in place: the stream (its component key) stays."""
    key = stream(live)["component_key"]
    live.selectbox(key="live_detector").set_value("haar")
    live.slider(key="live_min_confidence").set_value(0.8).run()
    annotator = live.session_state["live_annotator"]
    assert (annotator.detector, annotator.min_confidence) == ("haar", 0.8)
    assert stream(live)["component_key"] == key


def test_ice_servers_come_from_fer_ice_servers(live, monkeypatch):
    assert stream(live)["rtc_configuration"] == {"iceServers": []}  # localhost needs none, and none is asked
    servers = [{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "c"}]
    monkeypatch.setenv("FER_ICE_SERVERS", json.dumps(servers))
    live.run()
    assert stream(live)["rtc_configuration"] == {"iceServers": servers}
    assert stream(live)["media_stream_constraints"] == {"video": {"width": 640, "height": 480}, "audio": False}


def test_every_frame_gets_a_box_a_label_and_the_fps(live, fer2013):
    """The page's frame callback on a webcam-sized frame of one real face: a box around it, its
    label above, and from the second frame on the frames per second, top left."""
    annotator = type(live.session_state["live_annotator"])()  # a fresh one: no frame timed yet
    page = live.session_state["live_annotator"]
    annotator.configure(page.model, page.detector, page.min_confidence)
    frame = av.VideoFrame.from_ndarray(np.asarray(make_photo(detectable_faces(fer2013, n=1))), format="rgb24")

    def drawn(colour, image, region) -> int:
        return int((np.abs(image[region].astype(int) - colour).max(axis=2) < 40).sum())

    first = annotator(frame).to_ndarray(format="rgb24")
    second = annotator(frame).to_ndarray(format="rgb24")
    corner = np.s_[:40, :160]
    assert drawn(FPS, first, corner) == 0 and drawn(FPS, second, corner) > 30  # "12.3 fps" from frame 2
    face = np.s_[120:360, 200:440]  # the 180-px face in the middle of the 640x480 frame, and its label
    assert drawn(BOX, second, face) > 300 and drawn(BOX, second, np.s_[:, :100]) == 0
