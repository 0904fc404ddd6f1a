"""How fast the Robustness page opens from the stored results (results/models/robustness/).

    .venv/bin/python benchmarks/robustness_page.py [--visits 3]

Starts `streamlit run dashboard/app.py` on a free port and opens /robustness in Chromium in a new
browser context per visit (nothing cached, as for a first-time visitor; the first visit is also
the server's first run of the page): seconds until the title, the middle-severity table, the
charts, and the eight example faces have loaded; and, for scale, until the Data page's title (a
page that draws little: what Streamlit's own front end costs in a fresh browser context). Prints
the CPU beside the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def open_page(browser, url: str, title: str) -> tuple[list[float], list[float]]:
    """The marks of a first load in a new browser context, then of a reload (its cache warm)."""
    page = browser.new_context(viewport={"width": 1400, "height": 2300}).new_page()
    first = marks(page, lambda: page.goto(url), title)
    again = marks(page, page.reload, title)
    page.context.close()
    return first, again


def marks(page, load, title: str) -> list[float]:
    start = time.perf_counter()
    load()
    page.get_by_role("heading", name=title, exact=True).wait_for(timeout=120_000)
    seen = [time.perf_counter() - start]
    if title != "Robustness":
        return seen
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=120_000)
    seen.append(time.perf_counter() - start)
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    seen.append(time.perf_counter() - start)
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=stImage] img')].filter(i => i.complete && i.naturalWidth).length"
        " >= 8",
        timeout=120_000,
    )
    seen.append(time.perf_counter() - start)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visits", type=int, default=3)
    args = parser.parse_args()
    from PIL import Image

    from fer_core.device import cpu_description
    from tests.conftest import chromium, streamlit_server, write_y4m

    with tempfile.TemporaryDirectory() as tmp:
        camera = write_y4m([Image.new("RGB", (64, 48))], Path(tmp) / "camera.y4m")  # no page here uses it
        with streamlit_server(Path(tmp), PROJECT / "results" / "runs") as url, chromium(camera) as browser:
            print(f"CPU: {cpu_description()}\n{'visit':<30} title  table  charts  faces   Data page title (s)")
            for visit in range(args.visits):
                label = "first visit to a fresh server" if visit == 0 else f"new visitor {visit}"
                robustness, data = (
                    open_page(browser, f"{url}/robustness", "Robustness"),
                    open_page(browser, f"{url}/data", "Data"),
                )
                for kind, page, other in ((label, robustness[0], data[0]), ("  reload", robustness[1], data[1])):
                    print(f"{kind:<30} " + " ".join(f"{t:6.2f}" for t in page) + f"   {other[0]:6.2f}")


if __name__ == "__main__":
    main()
