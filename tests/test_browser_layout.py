"""Every page fits a 1400x900 window: in Chromium, no table or chart is wider than the page's
content area (no column hidden behind a sideways scroll), and no cell shows None, nan or a
number in scientific notation. Checked on the committed runs and shipped models (what a
newcomer sees), each tab of Faces & errors, Predict with a photo, and the Paper report's
downloaded HTML file in a 1400-px window."""

from __future__ import annotations

import pytest

from tests.conftest import (
    browser_page,
    detectable_faces,
    make_photo,
    open_in_browser,
    wait_idle,
)

pytestmark = pytest.mark.slow

# Streamlit draws st.dataframe cells on a canvas: record every string drawn there, with the
# headers of its table, so that a cell showing "None" is seen as the reader sees it.
RECORD_DRAWN_TEXT = """
window.__drawn = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  const table = this.canvas.closest && this.canvas.closest('[data-testid="stDataFrame"]');
  if (table) window.__drawn.push([String(text), [...table.querySelectorAll('th')].map(t => t.textContent).join('|')]);
  return fillText.call(this, text, ...rest);
};
"""

# What does not fit, or reads badly: one line per problem.
LAYOUT_PROBLEMS = """
() => {
  const problems = [];
  const main = document.querySelector('[data-testid="stMainBlockContainer"]') || document.body;
  const style = getComputedStyle(main);
  const right = main.getBoundingClientRect().right - parseFloat(style.paddingRight) + 1;
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const headers = e => [...e.querySelectorAll('th')].slice(0, 4).map(t => t.textContent.trim()).join(', ');
  const bad = /^(None|nan|NaN|NaT|null|undefined)$/;
  for (const e of main.querySelectorAll('[data-testid="stDataFrame"]')) {
    if (!shown(e)) continue;
    const scroller = e.querySelector('.dvn-scroller');
    if (e.getBoundingClientRect().right > right) problems.push(`table [${headers(e)}] runs past the right edge`);
    if (scroller && scroller.scrollWidth > scroller.clientWidth + 2)
      problems.push(`table [${headers(e)}] is cut: ${scroller.scrollWidth} px of columns in ${scroller.clientWidth}`);
  }
  for (const e of main.querySelectorAll('table')) {
    if (!shown(e) || e.closest('[data-testid="stDataFrame"]')) continue;
    if (e.getBoundingClientRect().right > right) problems.push(`table [${headers(e)}] runs past the right edge`);
    for (const cell of e.querySelectorAll('td, th')) {
      const text = cell.textContent.trim();
      if (bad.test(text) || /\\d\\.?\\d*e[+-]\\d+/.test(text)) problems.push(`table [${headers(e)}] shows "${text}"`);
    }
  }
  for (const e of main.querySelectorAll('.js-plotly-plot')) {
    if (!shown(e)) continue;
    const box = e.getBoundingClientRect();
    const title = [...e.querySelectorAll('.gtitle, .xtitle')].map(t => t.textContent)[0] || '';
    if (box.right > right) problems.push(`chart "${title}" runs past the right edge`);
    const svg = e.querySelector('.main-svg');
    if (svg && svg.getBoundingClientRect().width > box.width + 2) problems.push(`chart "${title}" is too wide`);
    for (const t of e.querySelectorAll('text'))
      if (bad.test(t.textContent.trim())) problems.push(`chart "${title}" shows "${t.textContent}"`);
  }
  for (const [text, where] of window.__drawn || [])
    if (bad.test(text.trim())) problems.push(`table [${where.slice(0, 60)}] shows "${text}"`);
  if (document.documentElement.scrollWidth > window.innerWidth) problems.push('the page scrolls sideways');
  return [...new Set(problems)];
}
"""

PAGES = ["", "faces", "report", "sweeps", "train", "predict", "live", "data"]


# The element that scrolls the page; tables and charts below the fold are drawn once scrolled to.
SCROLLER = """
() => { let e = document.querySelector('[data-testid="stMainBlockContainer"]');
  const scrolls = e => e.scrollHeight > e.clientHeight + 5 && /auto|scroll/.test(getComputedStyle(e).overflowY);
  while (e && !scrolls(e)) e = e.parentElement;
  return e; }
"""
CONTENT = "() => document.querySelector('[data-testid=stMainBlockContainer]').getElementsByTagName('*').length"


def settle(page) -> None:
    """Until the script run is over and nothing has been added to the page for 2 s."""
    before = -1
    while True:
        wait_idle(page)
        page.wait_for_function("!document.querySelector('[data-testid=stSpinner]')", timeout=180_000)
        page.wait_for_timeout(2000)
        now = page.evaluate(CONTENT)
        if now == before:
            return
        before = now


def problems_on(page) -> list[str]:
    """LAYOUT_PROBLEMS once the page's script has run and every part of it has been in view."""
    page.locator("[data-testid=stMainBlockContainer] h1").first.wait_for()
    settle(page)
    scroller = page.evaluate_handle(SCROLLER)
    height = page.evaluate("e => e ? e.scrollHeight : 0", scroller)
    for top in range(0, height + 800, 600):
        page.evaluate("([e, top]) => e && e.scrollTo(0, top)", [scroller, top])
        page.wait_for_timeout(400)
    page.wait_for_timeout(1000)  # plotly and the grids lay out after they come into view
    return page.evaluate(LAYOUT_PROBLEMS)


@pytest.mark.parametrize("path", PAGES)
def test_every_page_fits_1400_by_900(committed_dashboard, browser, path, fer2013, tmp_path):
    with browser_page(browser) as page:
        page.context.add_init_script(RECORD_DRAWN_TEXT)
        open_in_browser(page, f"{committed_dashboard}/{path}")
        found = problems_on(page)
        if path == "faces":  # each tab's tables and charts, not only the first
            for tab in page.get_by_role("tab").all():
                tab.click()
                found += [f"{tab.inner_text()}: {p}" for p in problems_on(page)]
        if path == "sweeps":  # every sweep: each varies other settings
            sweeps = page.get_by_test_id("stSelectbox").first
            sweeps.click()
            count = page.get_by_role("option").count()
            page.keyboard.press("Escape")
            for k in range(count):
                sweeps.click()
                page.keyboard.press("Home")
                for _ in range(k):
                    page.keyboard.press("ArrowDown")
                page.keyboard.press("Enter")
                found += [f"sweep {k + 1}: {p}" for p in problems_on(page)]
        if path == "predict":  # with a photo: the verdict, its chart and caption
            photo = tmp_path / "face.jpg"
            make_photo(detectable_faces(fer2013, n=1)).save(photo)
            page.locator("input[type=file]").set_input_files(str(photo))
            page.get_by_text("Face 1:").wait_for()
            found += problems_on(page)
    assert not found, "\n".join(found)


def test_the_downloaded_report_fits_a_1400_px_window(committed_dashboard, browser, tmp_path):
    with browser_page(browser) as page:
        open_in_browser(page, f"{committed_dashboard}/report")
        with page.expect_download() as download:
            page.get_by_role("button", name="Download the report").click()
        report = tmp_path / "report.html"
        download.value.save_as(report)
        page.goto(report.as_uri())
        page.wait_for_timeout(2000)
        found = page.evaluate(LAYOUT_PROBLEMS)
        width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1400 and not found, "\n".join(found)
