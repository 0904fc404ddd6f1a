"""How fast the Compare-runs page is with many runs: 200 runs x 60 epochs on disk.

    .venv/bin/python benchmarks/dashboard_load.py [--runs 200] [--epochs 60] [--keep DIR] [--browser]
    .venv/bin/python benchmarks/dashboard_load.py --keep results/runs --browser   # the committed runs

Writes the runs through the run store's own writer (one Parquet file per epoch, as the
trainer does; the metric values are synthetic), then times the page's script with
Streamlit's AppTest: the first visit in this process (nothing read yet, the page's own
imports not done), reruns (what every click or live refresh costs), a new session after the
data caches are emptied, and a new session with them warm (a browser's full page load on a
running server), plus the run-store calls behind them and a rerun with 20 runs selected.
`--keep results/runs` (or a copy) times the committed runs instead; nothing is written there.
Not timed: importing torch & co. through dashboard/common.py, which a server does once and
this script does before timing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
PAGE_URL = ""  # set when the server starts


def write_runs(root: Path, n_runs: int, epochs: int) -> None:
    from fer_core.runs.presets import preset_config
    from fer_core.runs.runstore import RunStore
    from trainers.evaluate import split_rows

    rng = np.random.default_rng(0)
    store = RunStore(root)
    labels = rng.integers(0, 7, 500)
    curves = []  # one synthetic learning curve (real metric code), shared by all runs with noise
    for epoch in range(1, epochs + 1):
        for split in ("train", "val"):
            logits = rng.normal(size=(len(labels), 7))
            logits[np.arange(len(labels)), labels] += epoch / 15
            probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            curves.append(split_rows("template", "stcnn", epoch, split, labels, probs, 0.01, 60.0))
    for r in range(n_runs):
        arch = ["stcnn", "cnn", "resnet50", "vit"][r % 4]
        writer = store.create(preset_config(arch).to_dict(), name=f"bench-{r:03d}")
        best = None
        for epoch in range(1, epochs + 1):
            rows, cells = [], []
            for row, conf in curves[2 * (epoch - 1) : 2 * epoch]:
                rows.append(dict(row, run_id=writer.run_id, model=arch, accuracy=row["accuracy"] + rng.normal(0, 0.01)))
                cells += [dict(c, run_id=writer.run_id) for c in conf]
            writer.write_metrics(f"epoch_{epoch:04d}", rows, cells)
            if best is None or rows[1]["accuracy"] > best["accuracy"]:
                best = {k: rows[1][k] for k in ("accuracy", "loss", "macro_f1", "auc")} | {"epoch": epoch}
        writer.update(
            status="finished",
            epochs_completed=epochs,
            best_epoch=best["epoch"],
            best_val_accuracy=best["accuracy"],
            best_val=best,
            train_seconds=epochs * 60.0,
        )


def load(page, label: str) -> list[tuple[str, float]]:
    """Navigate (or reload) and time until the runs table, then the first chart, are drawn."""
    start = time.perf_counter()
    page.goto(page.url if page.url.startswith("http") else PAGE_URL)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=120_000)
    table = time.perf_counter() - start
    page.locator(".js-plotly-plot").first.wait_for(timeout=120_000)
    return [(f"{label}: runs table", table), ("    ... first chart", time.perf_counter() - start)]


def browser_timings(root: Path, visits: int = 3) -> list[tuple[str, float]]:
    """Seconds until the runs table and the first chart show, per full page load in Chromium."""
    from PIL import Image

    from tests.conftest import browser_page, chromium, streamlit_server, write_y4m

    global PAGE_URL
    timings = []
    camera = write_y4m([Image.new("RGB", (64, 48))], root.parent / "camera.y4m")  # no page here uses it
    with streamlit_server(root.parent, root) as url, chromium(camera) as browser:
        PAGE_URL = f"{url}/"
        for visit in range(visits):  # a new browser context: nothing cached, as for a first-time visitor
            with browser_page(browser) as page:
                label = "first visit to a fresh server" if visit == 0 else f"new visitor {visit}"
                timings += load(page, f"browser, {label}")
                timings += load(page, "  the same browser, reload (its cache warm)")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them (default: a temp dir)")
    parser.add_argument("--browser", action="store_true", help="also time full page loads in Chromium")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fer-dashboard-bench-")) / "runs"
    if not (root.exists() and any(root.iterdir())):
        start = time.perf_counter()
        write_runs(root, args.runs, args.epochs)
        print(f"wrote {args.runs} runs x {args.epochs} epochs to {root} in {time.perf_counter() - start:.0f} s")
    os.environ["FER_RUNS_DIR"] = str(root)
    os.environ["FER_JOBS_DIR"] = str(root.parent / "jobs")

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from dashboard.common import runs_table
    from fer_core.runs import run_tables
    from fer_core.runs.runstore import RunStore

    def visit(label: str, at: AppTest | None = None) -> AppTest:
        at = at or AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=120)
        start = time.perf_counter()
        at.run()
        timings.append((label, time.perf_counter() - start))
        assert not at.exception, at.exception
        return at

    def empty_caches() -> None:
        run_tables._parquet_cache.clear()
        st.cache_data.clear()

    timings: list[tuple[str, float]] = []
    at = visit("Compare runs page, first visit (cold)")
    for i in range(3):
        visit(f"Compare runs page, rerun {i + 1}", at)
    empty_caches()
    visit("new session, data caches emptied")
    visit("new session, caches warm (a full page load)")
    store = RunStore(root)
    runs = store.list_runs()
    assert f"{len(runs)} runs" in at.caption[0].value
    at.session_state["runs_table"] = {"selection": {"rows": list(range(min(20, len(runs)))), "columns": []}}
    visit("rerun with 20 runs selected (cold)", at)
    visit("rerun with 20 runs selected", at)

    empty_caches()
    start = time.perf_counter()
    runs = store.list_runs()
    timings.append(("list_runs (all run.json)", time.perf_counter() - start))
    start = time.perf_counter()
    table = runs_table(runs)
    timings.append(("runs table", time.perf_counter() - start))
    newest = table.sort_values("created").run_id[-3:].tolist()
    for label in ("metrics of 3 runs + best-epoch confusion (cold)", "the same (cached)"):
        start = time.perf_counter()
        store.metrics(newest)
        store.confusion(newest, epochs={r["run_id"]: r.get("best_epoch") for r in runs if r["run_id"] in newest})
        timings.append((label, time.perf_counter() - start))
    if args.browser:
        timings += browser_timings(root)
    from fer_core.device import cpu_description

    print(f"\nCPU: {cpu_description()}, load average {os.getloadavg()[0]:.2f}")
    print(f"{len(runs)} runs, {args.epochs} epochs each in the written ones\n\n| step | seconds |\n|---|---|")
    for label, seconds in timings:
        print(f"| {label} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
