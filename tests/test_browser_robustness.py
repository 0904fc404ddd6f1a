"""The Robustness page in a real browser: `streamlit run` on localhost driven by Playwright +
Debian's Chromium, on the stored results. The charts draw a line per model and perturbation, the
example faces load, and choosing another perturbation redraws them.

On the session's committed_dashboard and Chromium. Screenshot: robustness (`make screenshots`).
"""

from __future__ import annotations

import pytest

from fer_core.data.perturb import PERTURBATIONS
from fer_core.evaluation import robustness
from tests.conftest import browser_page, open_in_browser, screenshot, wait_idle

pytestmark = pytest.mark.slow


def test_the_robustness_page_draws_curves_and_examples(browser, committed_dashboard):
    results = robustness.load_results(robustness.STORED_DIR)
    with browser_page(browser, height=2300) as page:  # tall enough for the whole page in one screenshot
        open_in_browser(page, f"{committed_dashboard}/robustness")
        page.get_by_role("heading", name="Robustness", exact=True).wait_for()
        plot = page.locator(".js-plotly-plot").first
        plot.wait_for()
        lines = plot.locator(".scatterlayer .trace")
        assert lines.count() == len(results) * len(PERTURBATIONS)
        images = page.get_by_test_id("stImage").locator("img")
        page.wait_for_function(
            "n => [...document.querySelectorAll('[data-testid=stImage] img')]"
            ".filter(i => i.complete && i.naturalWidth === 144).length >= n",
            arg=8,
        )
        before = images.first.get_attribute("src"), images.nth(1).get_attribute("src")
        assert page.get_by_text("What stcnn's spatial transformer made of each face").count() == 1
        screenshot(page, "robustness")
        page.set_viewport_size({"width": 1400, "height": 1000})
        page.get_by_text("What stcnn's spatial transformer").scroll_into_view_if_needed()

        page.get_by_test_id("stSelectbox").filter(has_text="Perturbation").click()
        page.get_by_role("option", name="band over the eyes").click()
        wait_idle(page)
        assert page.get_by_text("10 (band height, px)").count() == 1
        after = images.first.get_attribute("src"), images.nth(1).get_attribute("src")
        assert after[0] == before[0] and after[1] != before[1]  # the same clean face, another perturbation
