"""Chromium driven by Playwright, and waiting on Streamlit in it: the browser tests' helpers
(tests/conftest.py re-exports them and holds the `browser` and `page` fixtures)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"


@contextlib.contextmanager
def chromium(camera: Path):
    """Debian's Chromium driven by Playwright, headless, offline, with `camera` (a Y4M file) as
    its webcam; under CI a missing browser or Playwright is an error, elsewhere a skip."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    if os.environ.get("CI") == "true":
        from playwright import sync_api
    else:
        sync_api = pytest.importorskip("playwright.sync_api")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    camera_flags = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[*flags, *camera_flags, f"--use-file-for-fake-video-capture={camera}"],
        )
        yield browser
        browser.close()


@contextlib.contextmanager
def browser_page(browser, height: int = 900):
    """One 1400-px-wide page in a fresh browser context (nothing cached; downloads accepted)."""
    context = browser.new_context(viewport={"width": 1400, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(300_000)  # the first model load in a server may export it to ONNX; slow, not wrong
    try:
        yield page
    finally:
        context.close()


def wait_idle(page) -> None:
    """Until Streamlit has finished the current script run and redrawn every element: the app's
    own run state (a rerun still requested counts as running), its status widget, no stale element."""
    page.wait_for_timeout(500)
    page.wait_for_function(
        "document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'",
        timeout=180_000,
    )
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=180_000)
    page.wait_for_function("!document.querySelector('[data-stale=\"true\"]')", timeout=60_000)


def open_in_browser(page, url: str) -> None:
    page.goto(url)
    page.get_by_test_id("stApp").wait_for()
    wait_idle(page)


def screenshot(page, name: str) -> Path:
    """A full-page PNG in FER_SCREENSHOT_DIR (the session's folder; `make screenshots` gives the
    README's results/screenshots only after every screenshot test has passed)."""
    path = Path(os.environ["FER_SCREENSHOT_DIR"]) / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path
