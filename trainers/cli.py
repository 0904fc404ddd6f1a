"""Console entry points: `fer-train` and `fer-eval`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fer_core.classes import CLASSES
from fer_core.data.fer2013 import load_dataset, stratified_indices
from fer_core.device import autocast_dtype, select_device
from fer_core.evaluation.metrics import classification_metrics
from fer_core.inference.calibration import expected_calibration_error
from fer_core.inference.loading import add_runtime_options, load_models
from fer_core.inference.probabilities import ensemble_probs
from fer_core.inference.registry import member_views, shipped_blend
from fer_core.runs.predictions import predictions_frame, write_shipped_predictions
from fer_core.runs.presets import DEFAULT_PRESET, NO_AUGMENT, PRESETS, Option, TrainConfig, preset_config, user_options
from fer_core.runs.runstore import RunStore


def parse_value(text: str):
    """A --model-config value: JSON if it parses (numbers, true, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _positive_int(text: str) -> int:
    """fer-eval's --limit: a whole number above zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be a positive number")
    return value


def _checked(opt: Option):
    """An argparse type for one option: the text as the option's type, refused (with the
    option's own message) unless the option allows it, so bad values stop at the command line."""

    def parse(text: str):
        try:
            value = opt.kind(text) if opt.kind in (int, float) else text
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {opt.noun}") from None
        problem = opt.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def _add_option(p: argparse.ArgumentParser, opt: Option) -> None:
    """A fer-train flag made from a TrainConfig field's metadata (default None: the preset decides)."""
    kw = {"help": opt.help + (f" ({opt.allowed()})" if opt.bounds else ""), "metavar": opt.metavar}
    if opt.kind is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif opt.choices and not opt.also:
        kw["choices"] = opt.choices
    elif opt.kind in (int, float) or opt.also:
        kw["type"] = _checked(opt)
    p.add_argument(opt.flag, **kw)


# What may go with --resume: a resumed run keeps its configuration, except where it ends.
RESUME_OPTIONS = {"resume", "epochs", "runs_dir", "no_progress"}


def train_parser() -> argparse.ArgumentParser:
    """fer-train's options: one flag per user-settable TrainConfig field (fer_core/runs/presets.py),
    then those that are not fields, or whose values are resolved here."""
    p = argparse.ArgumentParser(prog="fer-train", description="Train a FER model and record it in the run store.")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named configuration (paper-* reproduce the paper)")
    fields = user_options()
    for opt in fields.values():
        if opt.cli == "flag":
            _add_option(p, opt)
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument(
        "--model-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="architecture option, e.g. stem=small or patch_size=14 (repeatable)",
    )
    for name in ("init_from", "distill_from"):  # model names, resolved to checkpoint paths by config_from_args
        p.add_argument(fields[name].flag, metavar=fields[name].metavar, help=fields[name].help)
    p.add_argument("--runs-dir", help="run store: a folder or a URI such as s3://bucket/runs (default results/runs)")
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue a stopped run from its last finished epoch (with --epochs: to a new end)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # chosen by the dashboard's job queue
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    preset = args.preset or DEFAULT_PRESET[args.model or "stcnn"]
    cfg = preset_config(preset)
    if args.model and args.model != cfg.model:
        raise ValueError(f"preset {preset} is for model {cfg.model}, not {args.model}")
    for opt in user_options().values():  # the flags made from the fields; a flag not given keeps the preset's
        if opt.cli == "flag" and getattr(args, opt.name) is not None:
            setattr(cfg, opt.name, getattr(args, opt.name))
    if args.no_augment:
        cfg.augment = dict(NO_AUGMENT)
    for item in args.model_config:
        if "=" not in item:
            raise ValueError(f"--model-config {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        cfg.model_config = dict(cfg.model_config, **{key.strip(): parse_value(value.strip())})
    if not cfg.data:
        raise ValueError("--data is required (a FER2013 CSV or image folder)")
    if not Path(cfg.data).expanduser().exists():
        raise ValueError(f"--data {cfg.data}: no such file or folder")
    cfg.data = str(Path(cfg.data).expanduser().resolve())
    from fer_core.models import create_model

    try:
        create_model(cfg.model, **cfg.model_config)
    except TypeError as e:
        raise ValueError(f"--model-config: {e}") from None
    if args.init_from:
        cfg.init_from = str(_init_checkpoint(args.init_from, args.runs_dir, cfg))
    if args.distill_from:
        cfg.distill_from = _teacher_checkpoints(args.distill_from, args.runs_dir)
    return cfg.validate()


def _init_checkpoint(spec: str, runs_dir, cfg: TrainConfig) -> Path:
    """The checkpoint --init-from names, refused unless its weights fit the model being trained."""
    from fer_core.inference.registry import resolve_model_path
    from fer_core.runs.checkpoint import check_fits

    try:
        path = resolve_model_path(spec, runs_dir).resolve()
        check_fits(path, cfg.model, cfg.model_config)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"--init-from {spec}: {e}") from None
    return path


def _teacher_checkpoints(spec: str, runs_dir) -> list[str]:
    """The checkpoint paths --distill-from names (as `fer-eval --model` reads them)."""
    from fer_core.inference.registry import model_names, resolve_model_path

    try:
        return [str(resolve_model_path(name, runs_dir).resolve()) for name in model_names(spec)]
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"--distill-from {spec}: {e}") from None


def train_main(argv: list[str] | None = None) -> int:
    from trainers.train import TrainingFailed, failure_reason, run_training

    parser = train_parser()
    args = parser.parse_args(argv)
    try:
        store = RunStore(args.runs_dir)
        if args.resume:
            if not store.exists(args.resume):
                parser.error(f"--resume {args.resume}: no such run in {store.root}")
            ignored = [
                f"--{key.replace('_', '-')}"
                for key, value in vars(args).items()
                if key not in RESUME_OPTIONS and value not in (None, False, [])
            ]
            if ignored:
                parser.error(
                    f"--resume continues the run as it was configured: {', '.join(ignored)} cannot "
                    f"change it (--epochs can move its end)"
                )
            run_training(None, store, resume=args.resume, show_bar=not args.no_progress, epochs=args.epochs)
        else:
            cfg = config_from_args(args)
            load_dataset(cfg.data, cfg.fer_plus)  # refuse a bad dataset before a run exists (and warm the cache)
            run_training(cfg, store, show_bar=not args.no_progress, run_id=args.run_id)
    except ValueError as e:  # bad arguments or a bad dataset: nothing was started
        parser.error(str(e))
    except Exception as e:  # one clear line; the run records the same reason
        print(f"fer-train: error: {e if isinstance(e, TrainingFailed) else failure_reason(e)}", file=sys.stderr)
        return 1
    return 0


def predictions_target(spec: str, runs_dir):
    """Where `fer-eval --save` keeps per-face rows: a function taking the frame, or a ValueError
    before any work for a spec that is neither a run nor a shipped model."""
    from fer_core.inference.registry import shipped_names

    if spec in [*shipped_names(), "ensemble"]:
        return lambda frame: write_shipped_predictions(frame.assign(model=spec))
    store, run_id = RunStore(runs_dir), spec
    if Path(spec).is_dir() and (Path(spec) / "run.json").is_file():
        store, run_id = RunStore(Path(spec).resolve().parent), Path(spec).resolve().name
    try:
        if store.exists(run_id):
            return lambda frame: store.write_predictions(run_id, frame.assign(run_id=run_id))
    except ValueError:
        pass
    raise ValueError(f"--save keeps predictions in a run or beside a shipped model; {spec!r} is neither")


def runtime_of(model, precision: str) -> dict[str, str]:
    """The runtime a loaded model runs on and the precision of its arithmetic."""
    from fer_core.inference.onnx_export import OnnxModel

    if isinstance(model, OnnxModel):
        return {"runtime": "onnx", "precision": model.precision}
    return {"runtime": "torch", "precision": precision}


def one_or_mixed(values) -> str:
    values = set(values)
    return values.pop() if len(values) == 1 else "mixed (see members)"


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-eval", description="Evaluate a model on a FER2013-style dataset.")
    p.add_argument(
        "--model",
        required=True,
        help="checkpoint file, run folder, run id, shipped name (stcnn, resnet50, vit, ensemble) "
        "or several joined by commas (averaged)",
    )
    p.add_argument("--data", required=True, help="FER2013 CSV or image-folder root")
    p.add_argument("--split", help="split to evaluate (default: test if present, else val, else train)")
    p.add_argument(
        "--tta",
        nargs="?",
        const="tencrop",
        default="auto",
        choices=["auto", "none", "flip", "tencrop"],
        help="test-time augmentation (--tta alone means tencrop; default auto: the one a shipped "
        "model's card chose on val, none for other models)",
    )
    p.add_argument("--limit", type=_positive_int, help="evaluate a stratified subset of N images")
    p.add_argument("--device", default="auto")
    add_runtime_options(p)
    p.add_argument("--runs-dir", help="run store for a run id given as --model (folder or URI)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="fp32 (default: the same figure on every CPU) or bf16 autocast (on PyTorch; faster where the CPU has "
        "bf16 units, and a few faces may change)",
    )
    p.add_argument(
        "--save",
        action="store_true",
        help="keep each face's label and probabilities: in the run (a run id or folder) or beside a shipped model",
    )
    p.add_argument(
        "--uncalibrated",
        action="store_true",
        help="the plain mean of raw probabilities (default: the temperatures and ensemble weights the records hold)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_robustness_options(p)
    return p


def eval_main(argv: list[str] | None = None) -> int:
    parser = eval_parser()
    args = parser.parse_args(argv)
    if args.perturb:
        return robustness_eval(args)
    if args.bypass_transformer or args.out:
        parser.error("--bypass-transformer and --out go with --perturb")
    try:
        evaluated = eval_model(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"fer-eval: error: {e}", file=sys.stderr)
        return 1
    result = eval_result(args, **evaluated)
    if args.json:
        print(json.dumps(result))
    else:
        print_eval_result(result, args.data)
    return 0


def eval_model(args: argparse.Namespace) -> dict:
    """The model's probabilities on the split (a blend of them for several models), kept per face
    with --save. ValueError or FileNotFoundError for what the user can fix, before any work where possible."""
    dataset = load_dataset(args.data)
    split = args.split or next(s for s in ("test", "val", "train") if s in dataset.splits)
    if split not in dataset.splits:
        raise ValueError(f"{args.data} has no split {split!r} (found: {', '.join(dataset.splits)})")
    data = dataset.splits[split]
    index = stratified_indices(data.labels, args.limit, seed=0) if args.limit else None
    if index is not None:
        data = data.subset(index)
    save = predictions_target(args.model, args.runs_dir) if args.save else None
    if args.precision == "bf16" and (args.int8 or args.backend == "onnx"):
        raise ValueError("bf16 runs on PyTorch: drop --int8 / --backend onnx, or use --precision fp32")
    device = select_device("cpu" if args.int8 or args.backend == "onnx" else args.device)
    backend = "torch" if args.precision == "bf16" else args.backend
    models = load_models(args.model, device, args.runs_dir, int8=args.int8, backend=backend)
    views = member_views(args.model, args.tta)
    dtype = autocast_dtype(device, args.precision)
    ran = {name: runtime_of(m, args.precision) for name, m in zip(views, models, strict=True)}
    member_probs = {
        name: ensemble_probs([m], data.images, device, dtype, tta=views[name])
        for name, m in zip(views, models, strict=True)
    }
    blend = None if args.uncalibrated else shipped_blend(args.model, views)
    probs = blend(member_probs) if blend else np.mean(list(member_probs.values()), axis=0)
    used = set(views.values())
    tta = used.pop() if len(used) == 1 else "auto"
    if save:
        save(predictions_frame(data.labels, probs, split, tta, index))
    return {"split": split, "data": data, "probs": probs, "members": ran, "tta": tta, "calibrated": blend is not None}


def eval_result(args: argparse.Namespace, split, data, probs, members, tta, calibrated) -> dict:
    """fer-eval's result, the one JSON object of --json: what ran on what, and the metrics."""
    m = classification_metrics(data.labels, probs)
    return {
        "model": args.model,
        "int8": args.int8,
        "backend": args.backend,
        "runtime": one_or_mixed(r["runtime"] for r in members.values()),  # what ran: torch or onnx, never auto
        "precision": one_or_mixed(r["precision"] for r in members.values()),  # fp32, bf16 or int8 arithmetic
        "members": members,
        "data": str(Path(args.data).resolve()),
        "split": split,
        "tta": tta,
        "n": m["n"],
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "weighted_f1": m["weighted_f1"],
        "auc": m["auc"],
        "ece": expected_calibration_error(data.labels, probs),
        "calibrated": calibrated,
        "per_class_recall": {c: m[f"recall_{c}"] for c in CLASSES},
        "per_class_n": dict(zip(CLASSES, data.class_counts().tolist(), strict=True)),
    }


def print_eval_result(result: dict, data_arg: str) -> None:
    """The result as a few lines to read (`data_arg`: --data as the user gave it)."""
    print(
        f"{result['model']} on {result['split']} of {data_arg} (n={result['n']}, tta={result['tta']}; "
        f"{result['precision']} on {result['runtime']})"
    )
    print(f"accuracy  {result['accuracy']:.4f}\nmacro-F1  {result['macro_f1']:.4f}\nAUC       {result['auc']:.4f}")
    print(f"ECE       {result['ece']:.4f}{'' if result['calibrated'] else ' (uncalibrated)'}")
    print("per-class recall:")
    for c in CLASSES:
        print(f"  {c:<9} {result['per_class_recall'][c]:.4f}  (n={result['per_class_n'][c]})")


# -- fer-eval --perturb: robustness curves (fer_core/evaluation/robustness.py) ---------------------------


def add_robustness_options(p: argparse.ArgumentParser) -> None:
    from fer_core.data.perturb import PERTURBATIONS

    p.add_argument(
        "--perturb",
        metavar="NAMES",
        help="robustness: the accuracy clean and under each perturbation at each severity, 'all' or names "
        f"joined by commas ({', '.join(PERTURBATIONS)}); always PyTorch in fp32 with one view",
    )
    p.add_argument(
        "--bypass-transformer",
        action="store_true",
        help="with --perturb: an ST-CNN with its spatial transformer bypassed (the same weights, identity warp)",
    )
    p.add_argument("--out", metavar="FILE", help="with --perturb: write the result as JSON to FILE (or into a folder)")


def robustness_eval(args: argparse.Namespace) -> int:
    """One model's robustness result: printed as a table (or JSON with --json), saved with --out."""
    from fer_core.data.perturb import perturbation_names
    from fer_core.evaluation import robustness

    def progress(fraction: float, step: str) -> None:
        print(f"\r[{fraction:4.0%}] {step:<20}", end="\n" if fraction >= 1 else "", file=sys.stderr, flush=True)

    try:
        result = robustness.evaluate(
            args.model,
            args.data,
            args.split,
            args.limit,
            bypass=args.bypass_transformer,
            names=perturbation_names(args.perturb),
            runs_dir=args.runs_dir,
            progress=None if args.json else progress,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"fer-eval: error: {e}", file=sys.stderr)
        return 1
    if args.out:
        print(f"wrote {robustness.save(result, args.out)}", file=sys.stderr)
    print(json.dumps(result) if args.json else "\n".join(robustness.summary_lines(result)))
    return 0
