"""One source for training options: every user-settable TrainConfig field reaches a run's
configuration the same way from fer-train's flags, from the dashboard's Train form and from a
fer-sweep spec, and every bound in its metadata is enforced, by name, before anything starts."""

from __future__ import annotations

import ast
import json
import math
import re
import shutil
from dataclasses import dataclass

import pytest
from streamlit.testing.v1 import AppTest

from fer_core.inference.registry import resolve_model_path
from fer_core.runs import presets
from fer_core.runs.presets import TrainConfig, option, options, preset_config, to_argv, user_options
from tests.conftest import PROJECT, SAMPLE_CSV
from trainers import sweep
from trainers.cli import config_from_args, train_main, train_parser
from trainers.jobs import JobQueue

# A value for every user-settable field, each unlike the stcnn preset's (the default when only
# --data is given), so reaching the configuration cannot be an accident. A new option needs one.
SAMPLES = {
    "model": "cnn",
    "data": "faces.csv.gz",
    "fer_plus": "fer2013new.csv",
    "limit": 140,
    "epochs": 3,
    "batch_size": 48,
    "optimizer": "adamw",
    "lr": 0.0123,
    "weight_decay": 0.0042,
    "schedule": "plateau",
    "warmup_epochs": 0.5,
    "label_smoothing": 0.05,
    "class_weights": "balanced",
    "mixup_alpha": 0.3,
    "cutmix_alpha": 0.7,
    "early_stopping": 4,
    "localization_lr_scale": 0.25,
    "ema_decay": 0.95,
    "seed": 7,
    "device": "cpu",
    "precision": "bf16",
    "name": "walk-name",
    "sweep": "walk-sweep",
    "init_from": "stcnn",
    "distill_from": "stcnn",
    "distill_weight": 0.7,
    "distill_temperature": 3.0,
}


@pytest.fixture
def samples(tmp_path) -> dict:
    """SAMPLES with real paths: the dataset is a copy of the bundled sample (it must exist)."""
    shutil.copy(SAMPLE_CSV, tmp_path / SAMPLES["data"])
    return dict(
        SAMPLES, data=str(tmp_path.resolve() / SAMPLES["data"]), fer_plus=str(tmp_path.resolve() / SAMPLES["fer_plus"])
    )


def expected(name: str, value):
    """What the configuration holds for a given value: model names resolve to checkpoint paths."""
    shipped = str(resolve_model_path(value).resolve()) if name in ("init_from", "distill_from") else None
    return {"init_from": shipped, "distill_from": [shipped]}.get(name, value)


def parsed(argv: list[str]) -> TrainConfig:
    return config_from_args(train_parser().parse_args(argv))


def test_every_user_option_has_a_sample_unlike_the_preset(samples):
    assert set(SAMPLES) == set(user_options()), "give a new option a sample value here"
    stcnn = preset_config("stcnn")
    for name, value in samples.items():
        assert getattr(stcnn, name) != expected(name, value), name
        assert options()[name].problem(expected(name, value)) is None, name


def test_every_user_option_through_the_cli(samples):
    for name, value in samples.items():
        base = [] if name == "data" else ["--data", str(SAMPLE_CSV)]
        cfg = parsed([*base, *to_argv({name: value})])
        assert getattr(cfg, name) == expected(name, value), name


def test_every_user_option_through_a_sweep_spec(samples, tmp_path):
    flags = sweep.sweep_parser().parse_args([])
    for name, value in samples.items():
        spec = tmp_path / f"walk-{name}.toml"
        spec.write_text(
            f'name = "walk"\n[base]\ndata = {json.dumps(str(SAMPLE_CSV))}\n[grid]\n{name} = [{json.dumps(value)}]\n'
        )
        if name in sweep.SET_BY_SWEEP:  # name and sweep: fer-sweep sets them on every trial
            with pytest.raises(sweep.SweepError, match="set by fer-sweep itself"):
                sweep.load_spec(str(spec), flags)
            spec.write_text(f'name = "walk"\n[base]\ndata = {json.dumps(str(SAMPLE_CSV))}\n')
            sweep_id, [trial] = sweep.prepare(sweep.load_spec(str(spec), flags), {}, check_data=False)
            value = {"name": trial["name"], "sweep": sweep_id}[name]
        else:
            sweep_id, [trial] = sweep.prepare(sweep.load_spec(str(spec), flags), {}, check_data=False)
            assert trial["params"] == {name: value}
        assert getattr(parsed(trial["args"]), name) == expected(name, value), name


def form_fields() -> dict[str, str]:
    """FORM_FIELDS of the Train page (a Streamlit script, so read, not imported)."""
    tree = ast.parse((PROJECT / "dashboard" / "views" / "train.py").read_text())
    [node] = [n for n in tree.body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "FORM_FIELDS"]
    return ast.literal_eval(node.value)


def widget(at: AppTest, name: str, key: str):
    opt = options()[name]
    kind = "selectbox" if opt.choices else {bool: "checkbox", str: "text_input"}.get(opt.kind, "number_input")
    return getattr(at, kind)(key=key)


def start(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Start training").click().run()


def test_every_form_field_reaches_the_queued_job(samples, tmp_path, monkeypatch):
    """The form's jobs are kept queued (not started): their arguments are what is checked."""
    monkeypatch.setenv("FER_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FER_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setattr(JobQueue, "_start", lambda self, job: None)
    at = AppTest.from_file(str(PROJECT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/train.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="train_source").options[0] == "Bundled sample (700 faces)"  # counted from the file
    fields = {name: key.format(preset="stcnn") for name, key in form_fields().items()}
    assert set(fields) <= set(user_options())
    for name, key in fields.items():  # labels and bounds from the metadata
        opt, shown = options()[name], widget(at, name, key)
        assert shown.label == opt.ui.get("label", opt.label[:1].upper() + opt.label[1:]) and shown.help == opt.help
        low, _, with_low, _ = opt.interval()
        if getattr(shown, "min", None) is not None and "min" not in opt.ui:
            assert shown.min == low and with_low, name

    start(at)  # the form as it opens: the preset, on the bundled sample
    [untouched] = JobQueue().jobs()
    assert parsed(untouched["args"]).to_dict() == dict(preset_config("stcnn").to_dict(), data=str(SAMPLE_CSV.resolve()))

    for name, key in fields.items():
        widget(at, name, key).set_value(samples[name])
    start(at)
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    [job] = [j for j in JobQueue().jobs() if j["job_id"] != untouched["job_id"]]
    assert job["name"] == samples["name"]
    cfg = parsed(job["args"])
    for name in fields:
        flag = options()[name].flag
        assert job["args"][job["args"].index(flag) + 1] == str(samples[name]), name
        assert getattr(cfg, name) == expected(name, samples[name]), name


def out_of_range(name: str) -> list:
    """Values just outside a field's bounds, on each bounded side."""
    opt = options()[name]
    low, high, with_low, with_high = opt.interval()
    values = ([low - 1 if with_low else low] if low > -math.inf else []) + (
        [high + 1 if with_high else high] if high < math.inf else []
    )
    return [opt.kind(v) for v in values]


BOUNDED = [n for n, o in options().items() if o.bounds]
CHOICES = [n for n, o in options().items() if o.choices]


@pytest.mark.parametrize("name", BOUNDED + CHOICES)
def test_a_value_outside_an_option_is_refused_naming_it(name, tmp_path, capsys):
    opt = options()[name]
    bad = out_of_range(name) if opt.bounds else ["nope"]
    assert bad
    for value in bad:
        with pytest.raises(ValueError, match=re.escape(f"{opt.label} must be")):
            TrainConfig(**{name: value}).validate()
        if opt.cli != "flag":
            continue
        with pytest.raises(SystemExit) as exit_:
            train_main(["--data", str(SAMPLE_CSV), "--runs-dir", str(tmp_path / "runs"), opt.flag, str(value)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and f"argument {opt.flag}:" in err, err
        assert f"{opt.label} must be" in err or "invalid choice" in err, err
        assert not (tmp_path / "runs").exists()


def test_device_accepts_a_numbered_gpu():
    assert parsed(["--data", str(SAMPLE_CSV), "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit):
        train_parser().parse_args(["--device", "cuda:first"])


@dataclass
class Extended(TrainConfig):
    grad_clip: float | None = option(
        None, "gradient clipping", "clip the gradient norm at this", bounds="(0, 100]", metavar="NORM"
    )


def test_a_new_field_becomes_an_option_everywhere(monkeypatch, tmp_path, capsys):
    """A field with metadata is all it takes: the flag, its check, the configuration, sweeps."""
    monkeypatch.setattr(presets, "TrainConfig", Extended)
    assert "--grad-clip" in train_parser().format_help()
    cfg = parsed(["--data", str(SAMPLE_CSV), "--grad-clip", "5"])
    assert isinstance(cfg, Extended) and cfg.grad_clip == 5.0
    assert parsed(["--data", str(SAMPLE_CSV)]).grad_clip is None  # not given: the default
    with pytest.raises(SystemExit):
        train_main(["--data", str(SAMPLE_CSV), "--runs-dir", str(tmp_path / "runs"), "--grad-clip", "0"])
    assert "argument --grad-clip: gradient clipping must be a number in (0, 100] (got 0.0)" in capsys.readouterr().err
    spec = {"base": {"data": str(SAMPLE_CSV)}, "grid": {"grad_clip": [2.5]}, "random": {}}
    _, [trial] = sweep.prepare(spec, {}, check_data=False)
    assert parsed(trial["args"]).grad_clip == 2.5
