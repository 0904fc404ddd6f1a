"""Measure the shipped models' robustness once and keep it beside them (results/models/robustness/).

    .venv/bin/python scripts/robustness.py [--limit 1000] [--only stcnn,vit]
    .venv/bin/python scripts/robustness.py --no-shipped \\
        --run paper-stcnn-b128=/path/to/runs/RUN_ID --run paper-cnn-b128=/path/to/runs/RUN_ID

For each shipped model (and the shipped stcnn again with its spatial transformer bypassed),
and for each `--run KEY=SPEC` (a run folder, run id or checkpoint; an ST-CNN run also with its
transformer bypassed): `fer_core.evaluation.robustness.evaluate` on a stratified subset of val - every
perturbation at every severity, PyTorch fp32, one view - written as KEY.json. The same as
`fer-eval --model SPEC --data DATA --split val --limit N --perturb all [--bypass-transformer]
--out results/models/robustness/`, which the Robustness page and the paper report read. Runs'
checkpoints are not committed, so their results are kept here as data. CPU-heavy: tens of
minutes per model on two busy cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fer_core.evaluation import robustness
from fer_core.inference.registry import ENSEMBLE, resolve_model_path
from fer_core.paths import PROJECT_ROOT
from fer_core.runs.checkpoint import read_checkpoint_metadata

ST_MODELS = ("stcnn",)  # architectures with a transformer to bypass


def jobs(shipped: bool, runs: list[str], runs_dir: str | None) -> list[tuple[str, str, bool]]:
    """(key, spec, bypass) for everything asked for, in the page's order."""
    todo = []
    for name in ENSEMBLE if shipped else ():
        todo.append((name, name, False))
        if name in ST_MODELS:
            todo.append((f"{name}{robustness.NO_ST}", name, True))
    for item in runs:
        key, _, spec = item.partition("=")
        if not spec:
            raise SystemExit(f"--run {item!r}: expected KEY=SPEC")
        todo.append((key, spec, False))
        if read_checkpoint_metadata(resolve_model_path(spec, runs_dir))["model"] in ST_MODELS:
            todo.append((f"{key}{robustness.NO_ST}", spec, True))
    return todo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(PROJECT_ROOT.parent / "shared" / "data" / "fer2013"))
    parser.add_argument("--limit", type=int, default=1000, help="val faces (stratified subset, seed 0)")
    parser.add_argument("--only", help="keys to measure, joined by commas (stcnn-no-st: the bypassed stcnn)")
    parser.add_argument("--shipped", action=argparse.BooleanOptionalAction, default=True, help="the shipped models")
    parser.add_argument("--run", action="append", default=[], metavar="KEY=SPEC", help="a run to measure too")
    parser.add_argument("--runs-dir", help="run store for run ids given to --run")
    parser.add_argument("--out", default=str(robustness.STORED_DIR))
    args = parser.parse_args()
    todo = jobs(args.shipped, args.run, args.runs_dir)
    if args.only:
        todo = [job for job in todo if job[0] in [k.strip() for k in args.only.split(",")]]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for key, spec, bypass in todo:
        start = time.time()
        result = robustness.evaluate(spec, args.data, "val", args.limit, bypass=bypass, runs_dir=args.runs_dir, key=key)
        path = robustness.save(result, args.out)
        print("\n".join(robustness.summary_lines(result)), f"\n  -> {path} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
