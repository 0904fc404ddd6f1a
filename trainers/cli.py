"""Console entry points: `fer-train` and `fer-eval`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_core.classes import CLASSES
from fer_core.data import load_dataset, stratified_indices
from fer_core.device import autocast_dtype, select_device
from fer_core.inference import ensemble_probs, load_models, resolve_tta
from fer_core.metrics import classification_metrics
from fer_core.models import MODELS
from fer_core.presets import DEFAULT_PRESET, PRESETS, TrainConfig, preset_config
from fer_core.runstore import RunStore


def parse_value(text: str):
    """A --model-config value: JSON if it parses (numbers, true, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _positive(kind: type, noun: str):
    """An argparse type: a finite number of `kind` above zero, else a message that says why."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not 0 < value < float("inf"):  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text} must be a positive number")
        return value
    return parse


_positive_int = _positive(int, "a whole number")
_positive_float = _positive(float, "a number")


def _non_negative_float(text: str) -> float:
    value = _positive_float(text) if text.strip() not in ("0", "0.0") else 0.0
    return value


# What may go with --resume: a resumed run keeps its configuration, except where it ends.
RESUME_OPTIONS = {"resume", "epochs", "runs_dir", "no_progress"}


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fer-train", description="Train a FER model and record it in the run store.")
    p.add_argument("--model", choices=sorted(MODELS), help="architecture (default: the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="named configuration (paper-* reproduce the paper)")
    p.add_argument("--data", help="FER2013 CSV (.csv/.csv.gz) or image-folder root")
    p.add_argument("--fer-plus", help="FER+ fer2013new.csv to relabel a FER2013 CSV by majority vote")
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--lr", type=_positive_float)
    p.add_argument("--weight-decay", type=_non_negative_float)
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--schedule", choices=["constant", "cosine", "plateau"])
    p.add_argument("--warmup-epochs", type=_non_negative_float)
    p.add_argument("--label-smoothing", type=_non_negative_float)
    p.add_argument("--class-weights", choices=["none", "balanced", "sqrt"])
    p.add_argument("--mixup-alpha", type=_non_negative_float, help="MixUp alpha (0 = off)")
    p.add_argument("--cutmix-alpha", type=_non_negative_float, help="CutMix alpha (0 = off)")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--early-stopping", type=_positive_int, help="patience (epochs) on val accuracy")
    p.add_argument("--ema-decay", type=_positive_float, metavar="DECAY",
                   help="evaluate and checkpoint an exponential moving average of the weights (e.g. 0.999)")
    p.add_argument("--localization-lr-scale", type=_positive_float, metavar="SCALE",
                   help="ST-CNN: the localisation network's learning rate as a fraction of --lr (e.g. 0.1)")
    p.add_argument("--model-config", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture option, e.g. stem=small or patch_size=14 (repeatable)")
    p.add_argument("--limit", type=_positive_int, help="cap every split at N images (stratified)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--seed", type=int)
    p.add_argument("--runs-dir", help="run store: a folder or a URI such as s3://bucket/runs (default results/runs)")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--sweep", help="group the run under this sweep id (set by fer-sweep)")
    p.add_argument("--resume", metavar="RUN_ID",
                   help="continue a stopped run from its last finished epoch (with --epochs: to a new end)")
    p.add_argument("--init-from", metavar="MODEL",
                   help="start from these weights (checkpoint, run folder, run id or shipped name) with a fresh "
                        "optimizer and schedule: a warm restart or fine-tuning")
    p.add_argument("--distill-from", metavar="MODEL",
                   help="knowledge distillation from these frozen teachers (shipped name, ensemble, checkpoint, run; "
                        "several joined by commas are averaged)")
    p.add_argument("--distill-weight", type=_positive_float, metavar="W",
                   help="the soft-target loss's share of the loss (default 0.5)")
    p.add_argument("--distill-temperature", type=_positive_float, metavar="T", help="softmax temperature (default 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")
    p.add_argument("--run-id", help=argparse.SUPPRESS)  # chosen by the dashboard's job queue
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    preset = args.preset or DEFAULT_PRESET[args.model or "stcnn"]
    cfg = preset_config(preset)
    if args.model and args.model != cfg.model:
        raise ValueError(f"preset {preset} is for model {cfg.model}, not {args.model}")
    overrides = {"data": args.data, "fer_plus": args.fer_plus, "epochs": args.epochs, "batch_size": args.batch_size,
                 "lr": args.lr, "weight_decay": args.weight_decay, "optimizer": args.optimizer,
                 "schedule": args.schedule, "warmup_epochs": args.warmup_epochs,
                 "label_smoothing": args.label_smoothing, "class_weights": args.class_weights,
                 "early_stopping": args.early_stopping, "ema_decay": args.ema_decay,
                 "localization_lr_scale": args.localization_lr_scale,
                 "mixup_alpha": args.mixup_alpha, "cutmix_alpha": args.cutmix_alpha, "limit": args.limit,
                 "device": args.device, "precision": args.precision, "seed": args.seed, "name": args.name,
                 "sweep": args.sweep, "distill_weight": args.distill_weight,
                 "distill_temperature": args.distill_temperature}
    for key, value in overrides.items():
        if value is not None:
            setattr(cfg, key, value)
    if args.no_augment:
        from fer_core.presets import NO_AUGMENT
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
    from fer_core.checkpoint import check_fits
    from fer_core.inference import resolve_model_path
    try:
        path = resolve_model_path(spec, runs_dir).resolve()
        check_fits(path, cfg.model, cfg.model_config)
    except (FileNotFoundError, ValueError) as e:
        raise ValueError(f"--init-from {spec}: {e}") from None
    return path


def _teacher_checkpoints(spec: str, runs_dir) -> list[str]:
    """The checkpoint paths --distill-from names (as `fer-eval --model` reads them)."""
    from fer_core.inference import model_names, resolve_model_path
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
            ignored = [f"--{key.replace('_', '-')}" for key, value in vars(args).items()
                       if key not in RESUME_OPTIONS and value not in (None, False, [])]
            if ignored:
                parser.error(f"--resume continues the run as it was configured: {', '.join(ignored)} cannot "
                             f"change it (--epochs can move its end)")
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


def eval_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fer-eval", description="Evaluate a model on a FER2013-style dataset.")
    p.add_argument("--model", required=True,
                   help="checkpoint file, run folder, run id, shipped name (stcnn, resnet50, vit, ensemble) "
                        "or several joined by commas (averaged)")
    p.add_argument("--data", required=True, help="FER2013 CSV or image-folder root")
    p.add_argument("--split", help="split to evaluate (default: test if present, else val, else train)")
    p.add_argument("--tta", nargs="?", const="tencrop", default="auto", choices=["auto", "none", "flip", "tencrop"],
                   help="test-time augmentation (--tta alone means tencrop; default auto: the one a shipped "
                        "model's card chose on val, none for other models)")
    p.add_argument("--limit", type=_positive_int, help="evaluate a stratified subset of N images")
    p.add_argument("--device", default="auto")
    p.add_argument("--int8", action="store_true",
                   help="int8 inference on the CPU for the shipped models calibrated for it (stcnn); others stay fp")
    p.add_argument("--runs-dir", help="run store for a run id given as --model (folder or URI)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        dataset = load_dataset(args.data)
        split = args.split or next(s for s in ("test", "val", "train") if s in dataset.splits)
        if split not in dataset.splits:
            raise ValueError(f"{args.data} has no split {split!r} (found: {', '.join(dataset.splits)})")
        data = dataset.splits[split]
        if args.limit:
            data = data.subset(stratified_indices(data.labels, args.limit, seed=0))
        device = select_device("cpu" if args.int8 else args.device)
        models = load_models(args.model, device, args.runs_dir, int8=args.int8)
        args.tta = resolve_tta(args.tta, args.model)
        probs = ensemble_probs(models, data.images, device, autocast_dtype(device), tta=args.tta)
    except (ValueError, FileNotFoundError) as e:
        print(f"fer-eval: error: {e}", file=sys.stderr)
        return 1
    m = classification_metrics(data.labels, probs)
    result = {"model": args.model, "int8": args.int8, "data": str(Path(args.data).resolve()), "split": split,
              "tta": args.tta,
              "n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"],
              "auc": m["auc"], "per_class_recall": {c: m[f"recall_{c}"] for c in CLASSES},
              "per_class_n": dict(zip(CLASSES, data.class_counts().tolist()))}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model}{' (int8)' if args.int8 else ''} on {split} of {args.data} (n={m['n']}, tta={args.tta})")
        print(f"accuracy  {m['accuracy']:.4f}\nmacro-F1  {m['macro_f1']:.4f}\nAUC       {m['auc']:.4f}")
        print("per-class recall:")
        for c in CLASSES:
            print(f"  {c:<9} {m[f'recall_{c}']:.4f}  (n={result['per_class_n'][c]})")
    return 0
