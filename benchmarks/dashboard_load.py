"""How fast the Compare-runs page is with many runs: 200 runs x 60 epochs on disk.

    .venv/bin/python benchmarks/dashboard_load.py [--runs 200] [--epochs 60] [--keep DIR]

Writes the runs through the run store's own writer (one Parquet file per epoch, as the
trainer does; the metric values are synthetic), then times the page's script with
Streamlit's AppTest: a cold first visit (no caches) and a warm rerun (what every click or
live refresh costs), plus the run-store calls behind them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]


def write_runs(root: Path, n_runs: int, epochs: int) -> None:
    from fer_core.presets import preset_config
    from fer_core.runstore import RunStore
    from trainers.train import split_rows

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them (default: a temp dir)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fer-dashboard-bench-")) / "runs"
    if not (root.exists() and any(root.iterdir())):
        start = time.perf_counter()
        write_runs(root, args.runs, args.epochs)
        print(f"wrote {args.runs} runs x {args.epochs} epochs to {root} in {time.perf_counter() - start:.0f} s")
    os.environ["FER_RUNS_DIR"] = str(root)
    os.environ["FER_JOBS_DIR"] = str(root.parent / "jobs")

    from streamlit.testing.v1 import AppTest

    from dashboard.common import runs_table
    from fer_core.runstore import RunStore

    store = RunStore(root)
    timings = []
    start = time.perf_counter()
    runs = store.list_runs()
    timings.append(("list_runs (all run.json)", time.perf_counter() - start))
    start = time.perf_counter()
    table = runs_table(runs)
    timings.append(("runs table", time.perf_counter() - start))
    newest = table.sort_values("created").run_id[-3:].tolist()
    for label in ("metrics of 3 runs (cold)", "metrics of 3 runs (cached)"):
        start = time.perf_counter()
        store.metrics(newest)
        store.confusion(newest)
        timings.append((label, time.perf_counter() - start))

    at = AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=120)
    start = time.perf_counter()
    at.run()
    timings.append(("Compare runs page, first visit", time.perf_counter() - start))
    assert not at.exception, at.exception
    assert f"{len(runs)} runs" in at.caption[0].value
    for i in range(3):
        start = time.perf_counter()
        at.run()
        timings.append((f"Compare runs page, rerun {i + 1}", time.perf_counter() - start))
    print(f"\n{len(runs)} runs x {args.epochs} epochs\n\n| step | seconds |\n|---|---|")
    for label, seconds in timings:
        print(f"| {label} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
