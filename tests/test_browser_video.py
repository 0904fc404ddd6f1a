"""A video on the Predict page in a real browser: `streamlit run` on localhost driven by
Playwright + Debian's Chromium, a short mp4 made from real FER2013 faces uploaded as a user
would; its emotion timeline and CSV. Also Live: its detector settings reach the running stream,
the video and STOP stay in view at 1400x900.

On the session's committed_dashboard (its Predict and Live offer the shipped models). The fake
camera (the session's `browser`) shows one real face. Screenshots (predict_video, live,
live_settings) go to FER_SCREENSHOT_DIR (`make screenshots`).
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from fer_core.classes import CLASSES
from fer_core.faces.detection import DEFAULT_DETECTOR, DETECTORS, VIDEO_DETECT_MAX_SIDE, detect_faces
from fer_core.faces.drawing import GREY, PURPLE
from tests.conftest import detectable_faces, make_photo, open_in_browser, screenshot, wait_idle, write_video

pytestmark = pytest.mark.slow


def colour_mask(png: bytes, colours=(PURPLE,)) -> np.ndarray:
    """Pixels in one of `colours` (fer_core/faces/drawing.py: purple boxes and sure tags, grey unsure tags)."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return np.any([np.abs(pixels - np.array(c)).max(axis=2) < 40 for c in colours], axis=0)


def test_predict_a_video_shows_an_emotion_timeline_and_a_csv(page, committed_dashboard, fer2013, tmp_path):
    faces = detectable_faces(fer2013, cls="happy", n=1) + detectable_faces(fer2013, cls="surprise", n=1)
    video = write_video(tmp_path / "clip.mp4", faces, seconds=3, fps=10, size=(640, 360))
    open_in_browser(page, f"{committed_dashboard}/predict")
    page.locator("input[type=file]").set_input_files(str(video))
    page.get_by_text("mostly").first.wait_for()  # "Track 0: mostly happy (2 frame(s), ...)"
    every = page.get_by_label("Videos: classify every Nth frame", exact=True)
    every.fill("2")  # a finer timeline for this short clip, as a user would ask
    every.press("Tab")
    page.get_by_text("one frame in 2 classified").wait_for()
    wait_idle(page)
    legend = page.locator(".js-plotly-plot .legendtext")
    legend.first.wait_for()
    names = set(legend.evaluate_all("texts => texts.map(t => t.textContent)"))
    assert names & set(CLASSES), names  # the timeline names the emotions
    assert page.locator(".js-plotly-plot").count() >= 1
    assert page.get_by_test_id("stVideo").count() == 1  # the player
    button = page.get_by_role("button", name="Download CSV")
    button.wait_for()
    assert page.get_by_test_id("stException").count() == 0 and page.get_by_test_id("stAlertContentError").count() == 0
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # plotly's redraw
    screenshot(page, "predict_video")

    with page.expect_download() as download:
        button.click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows and {"frame", "time", "track", "label", *CLASSES} <= set(rows[0])
    assert {r["label"] for r in rows} <= set(CLASSES)


def purple_pixels(png: bytes) -> int:
    return int(colour_mask(png).sum())


def test_predict_labels_a_photo_legibly(page, committed_dashboard, fer2013, tmp_path):
    """Each box's label is drawn large on a filled tag: as shown on the page it is at least
    ~13 px high (it used to be Pillow's 10 px bitmap font in purple on the photo). The tag is
    purple for a sure answer, grey for an unsure one."""
    make_photo(detectable_faces(fer2013, n=2)).save(tmp_path / "two.jpg")
    open_in_browser(page, f"{committed_dashboard}/predict")
    page.locator("input[type=file]").set_input_files(str(tmp_path / "two.jpg"))
    page.get_by_text("Face 2:").wait_for()
    wait_idle(page)
    mask = colour_mask(page.get_by_test_id("stImage").first.locator("img").screenshot(), (PURPLE, GREY))
    left = mask[:, : mask.shape[1] // 2]  # face 1
    tag_rows = int((left.sum(axis=1) >= 30).sum())  # rows crossing its filled tag, and its box's 2 edges
    assert tag_rows >= 13 + 2, f"the label is {tag_rows - 2} px high on the page"


def test_live_settings_apply_to_the_running_stream_and_stop_stays_in_view(page, committed_dashboard, fer2013):
    """The fake camera shows one real face, which a CNN detector finds with a confidence below 1
    and Haar with 1.0: a 1.0 floor makes the boxes go, switching to Haar brings them back, all
    without pressing STOP. At 1400x900 the video sits in a column, so STOP stays above the fold."""
    open_in_browser(page, f"{committed_dashboard}/live")
    frame = page.frame_locator("iframe[title*='webrtc']").first
    frame.get_by_role("button", name="START").click()
    video = frame.locator("video")
    video.wait_for()

    restarts = 0

    def wait_for_boxes(present: bool, seconds: int = 90) -> None:
        """Until 3 frames in a row do (or do not) show a box. A WebRTC connection can drop on a
        loaded 2-core machine (the component shows START again): pressed again, at most twice."""
        nonlocal restarts
        deadline, streak, found = time.time() + seconds, 0, None
        while time.time() < deadline:
            page.wait_for_timeout(700)
            if not video.count():
                if frame.get_by_role("button", name="START").count() and restarts < 2:
                    restarts += 1
                    frame.get_by_role("button", name="START").click()
                    video.wait_for()
                continue
            try:
                found = purple_pixels(video.first.screenshot(timeout=10_000))
            except PlaywrightTimeout:  # it went between the count and the screenshot
                continue
            streak = streak + 1 if (found >= 300) == present else 0
            if streak >= 3:
                return
        raise AssertionError(
            f"boxes {'never appeared' if present else 'still drawn'} ({found} purple pixels, {restarts} restarts)"
        )

    def choose_detector(name: str) -> None:
        page.get_by_test_id("stSelectbox").filter(has_text="Face detector").click()
        page.get_by_role("option", name=name, exact=True).click()

    camera_face = np.asarray(make_photo(detectable_faces(fer2013, n=1)))  # what the fake camera shows
    confidence = {
        d: max(
            (
                f.confidence
                for f in detect_faces(camera_face, detector=d, min_confidence=0.0, max_side=VIDEO_DETECT_MAX_SIDE)
            ),
            default=None,
        )
        for d in DETECTORS
    }
    graded = next(d for d in DETECTORS if confidence[d] is not None and confidence[d] < 1.0)  # e.g. a CNN
    certain = next(d for d in DETECTORS if confidence[d] == 1.0)  # Haar
    wait_for_boxes(True)  # a box and label drawn on the webcam's face
    screenshot(page, "live")
    assert in_view(video.bounding_box()), f"the video at {video.bounding_box()} is below the fold of 1400x900"
    if graded != DEFAULT_DETECTOR:
        choose_detector(graded)
    slider = page.get_by_role("slider").first
    slider.focus()
    slider.press("End")  # minimum confidence 1.0: above the face's
    wait_for_boxes(False)
    choose_detector(certain)
    wait_for_boxes(True)

    stop = frame.get_by_role("button", name="STOP")
    screenshot(page, "live_settings")
    assert in_view(stop.bounding_box()), f"STOP at {stop.bounding_box()} is below the fold of a 1400x900 window"
    stop.click()


def in_view(box: dict | None) -> bool:
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= 900
