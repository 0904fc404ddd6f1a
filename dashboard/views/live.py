"""Live: the webcam through streamlit-webrtc, faces boxed and labelled frame by frame."""

from __future__ import annotations

import threading
import time
from collections import deque

import av
import cv2
import numpy as np
import streamlit as st
from PIL import Image
from streamlit_webrtc import webrtc_streamer

from dashboard.common import get_model, model_choices, rtc_configuration
from fer_core.faces.detection import DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE, DETECTORS, VIDEO_DETECT_MAX_SIDE
from fer_core.faces.drawing import draw_tags, face_tag
from fer_core.faces.predict import classify_faces, find_faces
from fer_core.inference.loading import BACKENDS
from fer_core.inference.registry import default_model, int8_names

st.title("Live")
choices = model_choices()
if not choices:
    st.warning("No trained model yet: train one on the **Train** page.")
    st.stop()
labels = list(choices)
# the default model when it is one model (fer_core.inference.registry.default_model), else stcnn: one view per frame
start = default_model() if default_model() in choices.values() else "stcnn"
default = next((i for i, label in enumerate(labels) if choices[label] == start), 0)
video_column, settings = st.columns([3, 2])  # the video in a column: STOP stays above the fold
with settings:
    picked = st.selectbox("Model", labels, index=default, key="live_model")
    int8 = False
    if choices[picked] in int8_names():
        int8 = st.toggle(
            "int8",
            value=True,
            key="live_int8",
            help="the int8 version on ONNX Runtime: several times faster on a CPU, the same val "
            "accuracy (see the model card)",
        )
    backend = (
        "auto"
        if int8
        else st.selectbox(
            "Runtime",
            BACKENDS,
            key="live_backend",
            help="auto: the faster one ready - ONNX Runtime for the shipped models once exported into the cache "
            "(`make run` does it), else PyTorch; PyTorch for runs",
        )
    )
    detector = st.selectbox(
        "Face detector",
        DETECTORS,
        index=DETECTORS.index(DEFAULT_DETECTOR),
        key="live_detector",
        help="takes effect on the next frame, no restart needed",
    )
    min_confidence = st.slider(
        "Minimum detection confidence",
        0.0,
        1.0,
        float(DEFAULT_MIN_CONFIDENCE),
        0.05,
        key="live_min_confidence",
        help="faces the detector is less sure of are left out (Haar reports 1.0)",
    )
    st.caption(
        "Press START and allow the camera. Frames are processed on this machine; nothing is sent elsewhere. "
        "With no STUN/TURN server this works on localhost; set FER_ICE_SERVERS for remote use."
    )
model = get_model(choices[picked], int8, backend)


class Annotator:
    """Runs in streamlit-webrtc's worker thread: detect, classify, draw, count frames per second.
    The page's reruns change its model and detector settings in place (under the lock)."""

    def __init__(self):
        self.model, self.detector, self.min_confidence = None, DEFAULT_DETECTOR, DEFAULT_MIN_CONFIDENCE
        self.lock = threading.Lock()
        self.times: deque[float] = deque(maxlen=30)

    def configure(self, model, detector: str, min_confidence: float) -> None:
        with self.lock:
            self.model, self.detector, self.min_confidence = model, detector, min_confidence

    def __call__(self, frame: av.VideoFrame) -> av.VideoFrame:
        image = frame.to_ndarray(format="bgr24")
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        with self.lock:
            faces = find_faces(
                rgb, max_side=VIDEO_DETECT_MAX_SIDE, detector=self.detector, min_confidence=self.min_confidence
            )
            faces = classify_faces(faces, {"model": self.model})
        if faces:  # the same tags as Predict (fer_core.faces.drawing): never overlapping, inside the frame
            tagged = draw_tags(Image.fromarray(rgb), [face_tag(face.box, face.combined()) for face in faces])
            image = cv2.cvtColor(np.asarray(tagged), cv2.COLOR_RGB2BGR)
        self.times.append(time.perf_counter())
        if len(self.times) > 1:
            fps = (len(self.times) - 1) / (self.times[-1] - self.times[0])
            cv2.putText(image, f"{fps:.1f} fps", (10, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 160, 0), 2)
        return av.VideoFrame.from_ndarray(image, format="bgr24")


annotator = st.session_state.setdefault("live_annotator", Annotator())
annotator.configure(model, detector, min_confidence)
with video_column:
    webrtc_streamer(
        key=f"live-{choices[picked]}{'-int8' if int8 else ''}",
        video_frame_callback=annotator,
        rtc_configuration=rtc_configuration(),
        media_stream_constraints={"video": {"width": 640, "height": 480}, "audio": False},
    )
