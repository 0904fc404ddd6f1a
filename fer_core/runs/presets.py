"""Training configuration as plain data, the options it is made of, and the named presets.

Every field of `TrainConfig` describes itself as an option in its metadata (`option()`):
label, help, bounds or choices, and whether fer-train has a flag for it. From that one
description come fer-train's flags (trainers/cli.py), the check every configuration passes
(`TrainConfig.validate`) and the Train form's inputs (dashboard/views/train.py), so a new
training option is one field here. `to_argv` turns options back into fer-train arguments for
the form and for fer-sweep alike. (Here, not in trainers/, because the dashboard imports
this module and must not import the training code.)

The named presets are data in two modules: `paper-*` (paper_presets.py) reproduce the paper's
setups; the presets without the prefix (our_presets.py) are ours, for the shipped models.
`PRESETS` below is the one registry of their names that everything lists and resolves.
"""

from __future__ import annotations

import functools
import json
import math
import re
import typing
from dataclasses import asdict, dataclass, field, fields

from ..data.augment import AugmentConfig
from ..models import MODELS
from .our_presets import OUR_PRESETS
from .paper_presets import PAPER_PRESETS


def option(
    default=None,
    label: str = "",
    help: str = "",
    *,
    bounds: str | None = None,
    choices=(),
    also: str | None = None,
    metavar: str | None = None,
    cli: str | None = "flag",
    ui: dict | None = None,
    factory=None,
):
    """A TrainConfig field that describes itself as an option (the field's annotation gives its type).

    bounds: an interval such as "(0, 10]" or "[1, inf)"; choices: the allowed values, and
    `also` one more allowed form in which N stands for a whole number (cuda:N). cli: "flag"
    for a fer-train flag made from this; "hand" for a user option whose flag cli.py writes
    because it resolves the value (a model name to a checkpoint path); None for a field that
    is not a fer-train option (`help` says what sets it). ui: how the Train form shows it
    beyond the above: label, tighter min/max, step, format, and none_as (the number shown
    for None, as in "0 = off").
    """
    meta = dict(
        label=label, help=help, bounds=bounds, choices=tuple(choices), also=also, metavar=metavar, cli=cli, ui=ui or {}
    )
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    model: str = option("stcnn", "model", "architecture (default: the preset's)", choices=MODELS)
    model_config: dict = option(
        label="model config", help="architecture options (--model-config KEY=VALUE)", cli=None, factory=dict
    )
    preset: str | None = option(None, "preset", "the preset the configuration started from (--preset)", cli=None)
    data: str = option("", "data", "FER2013 CSV (.csv/.csv.gz) or image-folder root")
    fer_plus: str | None = option(None, "FER+ labels", "FER+ fer2013new.csv to relabel a FER2013 CSV by majority vote")
    limit: int | None = option(
        None,
        "limit",
        "cap every split at N images (stratified)",
        bounds="[14, inf)",
        metavar="N",
        ui=dict(label="Use at most N images per split (0 = all)", min=0, step=100, none_as=0),
    )
    val_fraction: float = option(
        0.1, "val fraction", "used only when the dataset has no val split (preset only)", bounds="(0, 1)", cli=None
    )
    epochs: int = option(30, "epochs", "passes over the training split", bounds="[1, inf)", ui=dict(max=500))
    batch_size: int = option(128, "batch size", "images per training step", bounds="[2, inf)", ui=dict(max=1024))
    optimizer: str = option("adam", "optimizer", "the optimiser", choices=("adam", "adamw", "sgd"))
    lr: float = option(
        1e-3,
        "learning rate",
        "the peak learning rate (after any warmup)",
        bounds="(0, 10]",
        ui=dict(min=1e-6, max=1.0, format="%.6f"),
    )
    weight_decay: float = option(
        0.0,
        "weight decay",
        "coupled L2 for adam/sgd (like Keras' kernel L2), decoupled for adamw",
        bounds="[0, 1]",
        ui=dict(format="%.5f"),
    )
    momentum: float = option(0.9, "momentum", "SGD momentum (preset only)", bounds="[0, 1)", cli=None)
    schedule: str = option("constant", "schedule", "learning-rate schedule", choices=("constant", "cosine", "plateau"))
    warmup_epochs: float = option(
        0.0, "warmup epochs", "linear learning-rate warmup, in epochs (fractions allowed)", bounds="[0, inf)"
    )
    min_lr: float = option(
        0.0, "minimum learning rate", "where cosine and plateau end (preset only)", bounds="[0, inf)", cli=None
    )
    plateau_patience: int = option(
        5, "plateau patience", "plateau schedule: epochs without progress (preset only)", bounds="[0, inf)", cli=None
    )
    plateau_factor: float = option(
        0.2, "plateau factor", "plateau schedule: lr factor (preset only)", bounds="(0, 1)", cli=None
    )
    label_smoothing: float = option(
        0.0, "label smoothing", "share of each label spread over the other classes", bounds="[0, 1)"
    )
    class_weights: str = option(
        "none",
        "class weights",
        "weight the loss by inverse class frequency (balanced) or its square root (sqrt)",
        choices=("none", "balanced", "sqrt"),
    )
    augment: dict = option(
        label="augmentation",
        help="the preset's augmentation (--no-augment turns it off)",
        cli=None,
        factory=lambda: asdict(AugmentConfig()),
    )
    # MixUp mixes image pairs with weight ~ Beta(alpha, alpha); CutMix pastes a rectangle; with both on,
    # one of the two is picked per batch.
    mixup_alpha: float = option(
        0.0,
        "MixUp alpha",
        "MixUp: train on blends of two faces with blended labels (0 = off)",
        bounds="[0, inf)",
        ui=dict(label="MixUp alpha (0 = off)", max=10.0),
    )
    cutmix_alpha: float = option(
        0.0,
        "CutMix alpha",
        "CutMix: paste a patch of another face (0 = off); with MixUp too, each batch gets one of the two",
        bounds="[0, inf)",
        ui=dict(label="CutMix alpha (0 = off)", max=10.0),
    )
    early_stopping: int | None = option(
        None, "early stopping patience", "patience (epochs) on val accuracy", bounds="[1, inf)", metavar="EPOCHS"
    )
    # At the full rate the localisation net's theta leaves the identity within 50 steps (README).
    localization_lr_scale: float = option(
        1.0,
        "localization lr scale",
        "ST-CNN: the localisation network's learning rate as a fraction of --lr (e.g. 0.1)",
        bounds="(0, 1]",
        metavar="SCALE",
    )
    ema_decay: float | None = option(
        None,
        "EMA decay",
        "evaluate and keep an exponential moving average of the "
        "weights instead of the weights themselves; 0.999 averages about the last "
        "1000 steps (trainers/ema.py)",
        bounds="(0, 1)",
        metavar="DECAY",
        ui=dict(label="Weight average: EMA decay (0 = off)", min=0.0, max=0.99999, format="%.5f", none_as=0.0),
    )
    seed: int = option(0, "seed", "random seed (initial weights, batch order, augmentation)")
    device: str = option(
        "auto",
        "device",
        "auto (default), cpu, cuda, cuda:N or mps",
        choices=("auto", "cpu", "cuda", "mps"),
        also="cuda:N",
    )
    precision: str = option(
        "auto",
        "precision",
        "autocast precision (auto: bf16 where the device is fast at it)",
        choices=("auto", "fp32", "bf16", "fp16"),
    )
    channels_last: bool = option(True, "channels last", "memory layout of the batches (preset only)", cli=None)
    eval_batch_size: int = option(
        256, "eval batch size", "batch size of evaluation (preset only)", bounds="[1, inf)", cli=None
    )
    name: str | None = option(None, "name", "a name for the run", ui=dict(label="Run name (optional)"))
    sweep: str | None = option(None, "sweep", "group the run under this sweep id (set by fer-sweep)")
    init_from: str | None = option(
        None,
        "init from",
        "start from these weights (checkpoint, run folder, run id or "
        "shipped name) with a fresh optimizer and schedule: a warm restart or "
        "fine-tuning",
        metavar="MODEL",
        cli="hand",
    )
    distill_from: list | None = option(
        None,
        "distill from",
        "knowledge distillation from these frozen teachers "
        "(shipped name, ensemble, checkpoint, run; several joined by commas are "
        "averaged; trainers/distill.py)",
        metavar="MODEL",
        cli="hand",
    )
    distill_weight: float = option(
        0.5, "distillation weight", "the soft-target loss's share of the loss", bounds="(0, 1]", metavar="W"
    )
    distill_temperature: float = option(
        2.0, "distillation temperature", "softmax temperature of the soft targets", bounds="(0, inf)", metavar="T"
    )

    def validate(self) -> TrainConfig:
        """Refuse values no option allows, naming each (one message for all of them)."""
        problems = [p for o in options(type(self)).values() if (p := o.problem(getattr(self, o.name)))]
        unknown = set(self.augment) - {f.name for f in fields(AugmentConfig)} if isinstance(self.augment, dict) else ()
        if unknown:
            problems.append(f"unknown augmentation option(s): {', '.join(sorted(unknown))}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


_NOUNS = {
    int: "a whole number",
    float: "a number",
    str: "a string",
    bool: "true or false",
    list: "a list",
    dict: "a table",
}


@dataclass(frozen=True)
class Option:
    """One TrainConfig field as an option: its metadata, with its type read from its annotation."""

    name: str
    kind: type  # int, float, str, bool, list or dict
    optional: bool  # None is allowed (and means "not set")
    label: str
    help: str
    bounds: str | None
    choices: tuple
    also: str | None
    metavar: str | None
    cli: str | None
    ui: dict

    @property
    def noun(self) -> str:
        return _NOUNS[self.kind]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def interval(self) -> tuple[float, float, bool, bool]:
        """(low, high, low included, high included) from `bounds`; unbounded: (-inf, inf)."""
        if not self.bounds:
            return -math.inf, math.inf, False, False
        left, low, high, right = re.fullmatch(r"([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])", self.bounds).groups()
        return float(low), float(high), left == "[", right == "]"

    def allowed(self) -> str:
        """What the option allows, as the error messages say it: "a number in (0, 10]"."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices)) + (f" or {self.also}" if self.also else "")
        low, high, with_low, _ = self.interval()
        if high == math.inf and low > -math.inf:  # "a whole number >= 1" reads better than "in [1, inf)"
            return f"{self.noun} {'>=' if with_low else '>'} {self.bounds.strip('[( ').split(',')[0]}"
        return self.noun + (f" in {self.bounds}" if self.bounds else "")

    def problem(self, value) -> str | None:
        """Why `value` is not allowed, naming the option; None if it is allowed."""
        if value is None and self.optional:
            return None
        if self.choices:
            ok = value in self.choices or (
                self.also is not None
                and isinstance(value, str)
                and re.fullmatch(re.escape(self.also).replace("N", r"\d+"), value)
            )
        elif self.kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, self.kind) and (self.kind is bool or not isinstance(value, bool))
        if ok and self.bounds:
            low, high, with_low, with_high = self.interval()
            ok = (low <= value if with_low else low < value) and (value <= high if with_high else value < high)
        return None if ok else f"{self.label} must be {self.allowed()} (got {value!r})"


def options(cls: type | None = None) -> dict[str, Option]:
    """Every field of TrainConfig (or `cls`) as an Option, by name, in field order."""
    return _options(cls or TrainConfig)


@functools.cache
def _options(cls: type) -> dict[str, Option]:
    hints, out = typing.get_type_hints(cls), {}
    for f in fields(cls):
        args = typing.get_args(hints[f.name])
        kinds = [a for a in args if a is not type(None)] or [hints[f.name]]
        out[f.name] = Option(name=f.name, kind=kinds[0], optional=type(None) in args, **f.metadata)
    return out


def user_options(cls: type | None = None) -> dict[str, Option]:
    """The options a user sets: fer-train flags (made from the metadata or written by hand)."""
    return {n: o for n, o in options(cls).items() if o.cli}


def to_argv(options: dict) -> list[str]:
    """Options -> fer-train arguments, for the Train form and fer-sweep alike.

    `key: value` becomes `--key value`, True a bare flag, False and None nothing (the preset
    decides); `model_config` (a dict or KEY=VALUE strings) and `model_config.x` keys become
    `--model-config x=...`. It knows no option: fer-train's parser checks them all.
    """
    argv, model_config = [], {}
    for key, value in options.items():
        if key == "model_config" or key.startswith("model_config."):
            items = value if key == "model_config" else {key.split(".", 1)[1]: value}
            if isinstance(items, (str, list)):  # "k=v" strings, as on the fer-train command line
                items = dict(
                    s.split("=", 1) if "=" in s else (s, "") for s in ([items] if isinstance(items, str) else items)
                )
            if not isinstance(items, dict):
                raise ValueError(f"{key}: expected a table of KEY = VALUE, got {value!r}")
            model_config.update(items)
        elif value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value is not False and value is not None:  # 0 is a value (and == False)
            argv += [f"--{key.replace('_', '-')}", str(value)]
    for k, v in model_config.items():
        argv += ["--model-config", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    return argv


NO_AUGMENT = asdict(AugmentConfig.off())  # --no-augment
# One registry of preset names: the paper's setups first, then ours (the Train form lists them so).
PRESETS: dict[str, dict] = {**PAPER_PRESETS, **OUR_PRESETS}
# The preset used when only --model is given.
DEFAULT_PRESET = {"stcnn": "stcnn", "cnn": "cnn", "resnet50": "resnet50", "vit": "vit"}


def preset_config(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return TrainConfig.from_dict(dict(PRESETS[name], preset=name))
