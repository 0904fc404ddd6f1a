"""`fer-sweep`: many `fer-train` runs from one spec, grouped under a sweep id.

A sweep is only a list of `fer-train` argument lists, so every trial goes through the same
trainer and the same run store as a single run, and the dashboard groups them by the
`sweep` field of run.json. The trials run either on this machine through the dashboard's
job queue (so they respect its concurrency cap and show in its jobs panel) or as Ray Tune
trials on a Ray cluster (an existing engine for many machines, not a home-made one).

A spec is a TOML file (or the same as flags):

    name = "lr-search"
    seeds = [0, 1]               # optional: every point once per seed
    trials = 4                   # random samples per grid point (default 1)
    [base]                       # any fer-train option; relative paths are relative to the repo
    data = "data/fer2013_sample.csv.gz"
    model_config = {widths = [8, 16, 32, 32]}
    [grid]                       # the cartesian product of these lists
    preset = ["stcnn", "cnn"]
    [random]                     # sampled: a list to choose from, or a {low, high, log} range
    lr = {low = 1e-4, high = 1e-2, log = true}
    "model_config.dropout" = [0.1, 0.3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import re
import secrets
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import tomllib

from fer_core.paths import PROJECT_ROOT
from fer_core.runs.presets import to_argv  # one for fer-sweep and the dashboard's Train form
from fer_core.runs.runstore import RunStore
from fer_core.runs.status import ACTIVE, COMPLETED
from trainers.cli import config_from_args, parse_value, train_parser
from trainers.jobs import FER_TRAIN, JobQueue

SET_BY_SWEEP = {"name", "sweep", "run_id", "runs_dir", "resume", "no_progress"}
PATH_OPTIONS = ("data", "fer_plus")


class SweepError(ValueError):
    """A spec or trial that cannot run; nothing has been started when this is raised."""


def _values(text: str) -> list:
    """`a,b,c` or JSON items `[8,16],[8,32]` -> a list of values."""
    try:
        return json.loads(f"[{text}]")
    except json.JSONDecodeError:
        return [parse_value(v.strip()) for v in text.split(",")]


def _keyed(items: list[str], flag: str) -> dict:
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise SweepError(f"{flag} {item!r}: expected KEY=VALUES")
        low, _, rest = text.partition(":")
        if flag == "--random" and rest:  # LOW:HIGH[:log]
            high, _, log = rest.partition(":")
            out[key.strip()] = {"low": parse_value(low), "high": parse_value(high), "log": log == "log"}
        else:
            out[key.strip()] = _values(text)
    return out


def _normalised(options: dict, base_dir: Path) -> dict:
    """Option names with underscores, paths absolute (trials run from other folders and hosts)."""
    out = {}
    for key, value in options.items():
        key = key.replace("-", "_")
        if key in SET_BY_SWEEP:
            raise SweepError(f"option {key!r} is set by fer-sweep itself; remove it from the spec")
        if key in PATH_OPTIONS:

            def resolve(v):
                return str((base_dir / Path(v).expanduser()).resolve()) if isinstance(v, str) else v

            value = [resolve(v) for v in value] if isinstance(value, list) else resolve(value)
        out[key] = value
    return out


def load_spec(path: str | None, flags: argparse.Namespace) -> dict:
    """The spec file (if any) with the command-line flags on top."""
    spec = {}
    if path:
        try:
            spec = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SweepError(f"sweep spec {path}: {e}") from None
        unknown = set(spec) - {"name", "description", "base", "grid", "random", "trials", "seeds", "sample_seed"}
        if unknown:
            raise SweepError(f"sweep spec {path}: unknown key(s) {', '.join(sorted(unknown))}")
        spec.setdefault("name", Path(path).stem)
    # paths in a spec file are relative to the repo (the shipped specs), on the command line to the cwd
    spec["base"] = _normalised(spec.get("base", {}), PROJECT_ROOT)
    for part in ("grid", "random"):
        spec[part] = {
            **_normalised(spec.get(part, {}), PROJECT_ROOT),
            **_normalised(_keyed(getattr(flags, part), f"--{part}"), Path.cwd()),
        }
    for key, values in spec["grid"].items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"grid {key}: expected a non-empty list of values")
    if flags.name:
        spec["name"] = flags.name
    if flags.trials:
        spec["trials"] = flags.trials
    if flags.seeds:
        spec["seeds"] = _values(flags.seeds)
    return spec


def _sample(key: str, choice, rng: random.Random):
    if isinstance(choice, list) and choice:
        return rng.choice(choice)
    if isinstance(choice, dict) and {"low", "high"} <= set(choice):
        low, high = choice["low"], choice["high"]
        if choice.get("log"):
            if not 0 < low < high:
                raise SweepError(f"random {key}: a log range needs 0 < low < high")
            x = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            x = rng.uniform(low, high)
        return round(x) if isinstance(low, int) and isinstance(high, int) else float(f"{x:.4g}")
    raise SweepError(f"random {key}: expected a list or {{low, high[, log]}}, got {choice!r}")


def points(spec: dict) -> list[dict]:
    """The hyperparameters of every trial: grid x random samples x seeds."""
    rng = random.Random(spec.get("sample_seed"))
    trials = int(spec.get("trials", 1))
    if trials < 1:
        raise SweepError("trials must be >= 1")
    seeds = [{"seed": s} for s in spec.get("seeds", [])] or [{}]
    grid = spec["grid"]
    out = []
    for combo in itertools.product(*grid.values()):
        for _ in range(trials if spec["random"] else 1):
            sampled = {k: _sample(k, c, rng) for k, c in spec["random"].items()}
            out += [{**dict(zip(grid, combo, strict=True)), **sampled, **seed} for seed in seeds]
    return out


def _strict_parser() -> argparse.ArgumentParser:
    parser = train_parser()

    def error(message):
        raise SweepError(message)

    parser.error = error
    return parser


def _overrides(argv: list[str]) -> dict:
    """fer-train options given to fer-sweep (e.g. --data, --epochs): only those set."""
    parser = _strict_parser()
    given = vars(parser.parse_args(argv))
    out = {k: v for k, v in given.items() if v != parser.get_default(k)}
    if "model_config" in out:
        out["model_config"] = dict(s.split("=", 1) for s in out["model_config"])
    return _normalised(out, Path.cwd())


def prepare(spec: dict, overrides: dict, check_data: bool = True) -> tuple[str, list[dict]]:
    """The sweep id and every trial's fer-train arguments, all validated before anything runs."""
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", spec.get("name") or "sweep").strip("-")[:40] or "sweep"
    sweep_id = f"{label}-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    parser, trials, datasets = _strict_parser(), [], set()
    for i, params in enumerate(points(spec), 1):
        name = f"{sweep_id}-t{i:02d}"
        args = to_argv({**spec["base"], **overrides, **params}) + ["--name", name, "--sweep", sweep_id]
        shown = " ".join(f"{k}={v}" for k, v in params.items()) or "(base)"
        try:
            cfg = config_from_args(parser.parse_args(args))
        except ValueError as e:
            raise SweepError(f"trial t{i:02d} ({shown}): {e}") from None
        trials.append(
            {
                "trial": f"t{i:02d}",
                "name": name,
                "params": params,
                "shown": shown,
                "args": args,
                "model": cfg.model,
                "epochs": cfg.epochs,
            }
        )
        if check_data and (cfg.data, cfg.fer_plus) not in datasets:
            from fer_core.data.fer2013 import load_dataset

            try:
                load_dataset(cfg.data, cfg.fer_plus)  # a bad dataset refuses the sweep (and warms the cache)
            except Exception as e:
                raise SweepError(f"trial t{i:02d}: dataset {cfg.data}: {e}") from None
            datasets.add((cfg.data, cfg.fer_plus))
    if not trials:
        raise SweepError("the sweep has no trials")
    return sweep_id, trials


def results(trials: list[dict], store: RunStore) -> pd.DataFrame:
    rows = []
    for t in trials:
        run = (store.get(t["run_id"]) if t.get("run_id") else None) or {}
        acc = run.get("best_val_accuracy")
        rows.append(
            {
                "trial": t["trial"],
                **t["params"],
                "status": run.get("status", "not started"),
                "best_val_acc": round(acc, 4) if acc is not None and acc >= 0 else None,
                "run_id": t.get("run_id"),
            }
        )
    return pd.DataFrame(rows)


def run_local(trials: list[dict], store: RunStore, jobs_dir: str | None, wait: bool) -> None:
    """Queue the trials on the dashboard's job queue; with `wait`, keep starting them until all end."""
    queue = JobQueue(jobs_dir, runs=store)
    for t in trials:
        job, _ = queue.submit(t["args"], name=t["name"], model=t["model"])
        t["job_id"], t["run_id"] = job["job_id"], job["run_id"]
    print(f"queued {len(trials)} trials in {queue.root} (at most {queue.max_running} run at once)")
    if not wait:
        print("queued trials start while the dashboard's Train page is open, or run fer-sweep with --wait")
        return
    try:
        while True:
            queue.tick()
            jobs = {j["job_id"]: j["status"] for j in queue.jobs()}
            if not any(jobs.get(t["job_id"]) in ACTIVE for t in trials):
                return
            time.sleep(2)
    except KeyboardInterrupt:
        print("stopping the sweep: cancelling its trials")
        for t in trials:
            queue.cancel(t["job_id"])
        raise


def ray_trial(config: dict, trials: list[dict], runs_dir: str) -> None:
    """One Ray Tune trial: fer-train as a subprocess, each finished epoch reported to Tune.

    A subprocess (not run_training in this thread) because the trainer's SIGTERM handling
    needs a main thread, and stopping the process is how an ASHA-stopped trial ends:
    `tune.report` raises SystemExit, and the run ends `cancelled` with its epochs kept.
    """
    from ray import tune

    trial, store = trials[config["trial"]], RunStore(runs_dir)
    proc = subprocess.Popen(
        [*FER_TRAIN, *trial["args"], "--run-id", trial["run_id"], "--runs-dir", runs_dir, "--no-progress"],
        stdin=subprocess.DEVNULL,
    )
    reported = 0
    try:
        while True:
            ended = proc.poll() is not None
            rows = store.tail(trial["run_id"], reported)
            if len(rows):
                rows = rows[(rows.split == "val") & (rows.tta == "none")].sort_values("epoch")
            for row in rows.itertuples() if len(rows) else ():
                tune.report({"val_accuracy": row.accuracy, "val_loss": row.loss, "epoch": int(row.epoch)})
                reported = int(row.epoch)
            if ended:
                break
            time.sleep(2)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
    if proc.returncode != 0:
        raise RuntimeError(f"fer-train exited with code {proc.returncode} (run {trial['run_id']})")


def run_ray(sweep_id: str, trials: list[dict], store: RunStore, opts: argparse.Namespace) -> None:
    """The trials as a Ray Tune grid over trial indices; the run store must be reachable by every worker."""
    try:
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
    except ImportError:
        raise SweepError("--backend ray needs Ray Tune: .venv/bin/pip install -e '.[ray]'") from None
    for t in trials:
        t["run_id"] = store.new_run_id(t["model"], t["name"])
    started = not ray.is_initialized()
    if started:
        ray.init(address=opts.address) if opts.address else ray.init(include_dashboard=False)
    try:
        gpus = (
            opts.gpus_per_trial if opts.gpus_per_trial is not None else int(ray.cluster_resources().get("GPU", 0) > 0)
        )
        plain = [{k: t[k] for k in ("args", "run_id")} for t in trials]
        trainable = tune.with_resources(
            tune.with_parameters(ray_trial, trials=plain, runs_dir=store.uri), {"cpu": opts.cpus_per_trial, "gpu": gpus}
        )
        scheduler = (
            ASHAScheduler(max_t=max(t["epochs"] for t in trials), grace_period=1, reduction_factor=2)
            if opts.asha
            else None
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(list(range(len(trials))))},
            tune_config=tune.TuneConfig(metric="val_accuracy", mode="max", scheduler=scheduler),
            run_config=tune.RunConfig(name=sweep_id, storage_path=opts.ray_storage, verbose=1),
        )
        tuner.fit()
    finally:
        if started:
            ray.shutdown()


def sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fer-sweep",
        allow_abbrev=False,
        usage="fer-sweep [SPEC.toml] [options] [fer-train options]",
        description="Run a grid or random sweep of fer-train runs, grouped under one sweep id. "
        "Any fer-train option (e.g. --data, --epochs, --limit) overrides the spec's base.",
    )
    p.add_argument("--name", help="sweep name (default: the spec's name or file name)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="grid over an option")
    p.add_argument(
        "--random",
        action="append",
        default=[],
        metavar="KEY=V1,V2|LOW:HIGH[:log]",
        help="sample an option from a list or a range",
    )
    p.add_argument("--trials", type=int, help="random samples per grid point")
    p.add_argument("--seeds", metavar="S1,S2", help="run every point once per seed")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--runs-dir", help="run store folder (default as fer-train; on Ray: shared by all workers)")
    p.add_argument("--jobs-dir", help="local backend: the job queue folder (default as the dashboard)")
    p.add_argument("--wait", action="store_true", help="local backend: wait for the trials and print results")
    p.add_argument("--address", help="ray backend: cluster address (auto, ray://host:10001); default: start one")
    p.add_argument("--asha", action="store_true", help="ray backend: ASHA early stopping on val accuracy")
    p.add_argument("--cpus-per-trial", type=float, default=1)
    p.add_argument("--gpus-per-trial", type=float, help="default: 1 if the cluster has GPUs, else 0")
    p.add_argument("--ray-storage", help="ray backend: where Tune keeps its own records (default ~/ray_results)")
    p.add_argument("--dry-run", action="store_true", help="validate and print the trials, start nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    spec_path = argv.pop(0) if argv and not argv[0].startswith("-") else None
    parser = sweep_parser()
    opts, rest = parser.parse_known_args(argv)
    local_dir = opts.runs_dir and "://" not in opts.runs_dir
    try:
        store = RunStore(Path(opts.runs_dir).resolve() if local_dir else opts.runs_dir)
        spec = load_spec(spec_path, opts)
        sweep_id, trials = prepare(spec, _overrides(rest), check_data=not opts.dry_run)
    except (SweepError, ValueError) as e:
        parser.error(str(e))
    print(f"sweep {sweep_id}: {len(trials)} trials")
    for t in trials:
        print(f"  {t['trial']}  {t['shown']}" + (f"\n       fer-train {' '.join(t['args'])}" if opts.dry_run else ""))
    if opts.dry_run:
        return 0
    try:
        if opts.backend == "ray":
            run_ray(sweep_id, trials, store, opts)
        else:
            run_local(trials, store, opts.jobs_dir, opts.wait)
            if not opts.wait:
                return 0
    except SweepError as e:
        parser.error(str(e))
    table = results(trials, store)
    print(f"\nsweep {sweep_id} in {store.root}\n{table.drop(columns='run_id').to_string(index=False)}")
    return 0 if (table.status.isin(COMPLETED)).all() else 1


if __name__ == "__main__":
    sys.exit(main())
