"""The trainer end to end, as a user runs it: real `fer-train` / `fer-eval` processes on real faces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from fer_core.runs.runstore import RunStore
from tests.conftest import SAMPLE_CSV, TINY_STCNN

BIN = Path(sys.executable).parent


def cli(name: str, *args, check=True, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run([str(BIN / name), *map(str, args)], capture_output=True, text=True, timeout=600, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def only_run(runs: Path) -> dict:
    runs_list = RunStore(runs).list_runs()
    assert len(runs_list) == 1
    return runs_list[0]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["stcnn", "cnn", "resnet50", "vit"])
def test_one_epoch_per_architecture(model, tmp_path):
    """The full-size architectures on 70 faces per split: the trainer's final ten-crop pass costs
    13 forward passes a val face, which dominated this test at 140."""
    runs, n = tmp_path / "runs", 70
    # ResNet-50 with the paper's stem: a third of the preset's small stem's compute (README, Performance)
    stem = ["--model-config", "stem=imagenet"] if model == "resnet50" else []
    out = cli(
        "fer-train",
        "--model",
        model,
        *stem,
        "--data",
        SAMPLE_CSV,
        "--epochs",
        1,
        "--limit",
        n,
        "--runs-dir",
        runs,
        "--no-progress",
    )
    run = only_run(runs)
    assert run["run_id"] in out.stdout and run["status"] == "finished"
    assert run["device"] == "cpu" and run["dataset"]["sizes"] == {"train": n, "val": n}
    metrics = pd.concat(pd.read_parquet(f) for f in runs.glob("*/metrics/*.parquet"))
    epoch_rows = metrics[metrics.tta == "none"]
    assert sorted(epoch_rows.split) == ["train", "val"]
    for column in [
        "run_id",
        "model",
        "epoch",
        "split",
        "loss",
        "accuracy",
        "macro_f1",
        "auc",
        "lr",
        "epoch_seconds",
        "images_per_second",
        "weighted_f1",
        "recall_disgust",
        "precision_happy",
    ]:
        assert column in metrics.columns
    assert set(metrics.tta) == {"none", "flip", "tencrop"}
    confusion = pd.concat(pd.read_parquet(f) for f in runs.glob("*/confusion/*.parquet"))
    val_cells = confusion[(confusion.split == "val") & (confusion.epoch == 1) & (confusion.tta == "none")]
    assert len(val_cells) == 49 and val_cells["count"].sum() == n
    result = json.loads(
        cli("fer-eval", "--model", runs / run["run_id"], "--data", SAMPLE_CSV, "--limit", n, "--json").stdout
    )
    assert result["split"] == "val" and result["n"] == n and result["tta"] == "none"  # auto: no card, no TTA
    assert result["accuracy"] == pytest.approx(epoch_rows[epoch_rows.split == "val"].accuracy.iloc[0], abs=1e-9)
    text = cli(
        "fer-eval", "--model", runs / run["run_id"] / "checkpoints" / "best.safetensors", "--data", SAMPLE_CSV
    ).stdout
    assert "accuracy" in text and "disgust" in text


@pytest.mark.slow
def test_test_split_is_evaluated_with_tta(small_folder, tmp_path):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(small_folder / "train", data / "train")
    shutil.copytree(small_folder / "val", data / "val")
    shutil.copytree(small_folder / "val", data / "test")
    runs = tmp_path / "runs"
    cli("fer-train", "--model", "cnn", *TINY_STCNN, "--data", data, "--epochs", 2, "--runs-dir", runs, "--no-progress")
    run = only_run(runs)
    final = run["final"]
    assert {"test_accuracy", "test_accuracy_flip", "test_accuracy_tencrop", "val_accuracy"} <= set(final)
    test_rows = RunStore(runs).metrics().query("split == 'test'")
    assert sorted(test_rows.tta) == ["flip", "none", "tencrop"]
    assert (test_rows.epoch == run["best_epoch"]).all()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--epochs", "-3"], "--epochs: epochs must be a whole number >= 1 (got -3)"),
        (["--batch-size", "0"], "--batch-size: batch size must be a whole number >= 2 (got 0)"),
        (["--ema-decay", "1"], "--ema-decay: EMA decay must be a number in (0, 1) (got 1.0)"),
        (["--mixup-alpha", "-0.2"], "--mixup-alpha: MixUp alpha must be a number >= 0 (got -0.2)"),
        (["--lr", "abc"], "'abc' is not a number"),
        (["--data", "/no/such/path"], "no such file or folder"),
        (["--model", "vit", "--preset", "paper-stcnn-b16"], "is for model stcnn"),
        (["--model-config", "depth=9"], "--model-config"),
        (["--resume", "nope"], "no such run"),
        (["--runs-dir", "nosuchfs://bucket/runs"], "run store nosuchfs://bucket/runs: Protocol not known"),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(tmp_path, capsys, args, needle):
    """fer-train's own entry point, in this process (a fresh process per case costs 6-10 s of
    imports; the exit status and stderr of a real process are checked by the next test)."""
    from trainers.cli import train_main

    base = ["--model", "stcnn", "--data", str(SAMPLE_CSV), "--runs-dir", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_:
        train_main([*base, *args])
    assert exit_.value.code == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_not_a_dataset_is_refused_with_one_clear_line(tmp_path):
    (tmp_path / "fake.csv").write_text("name,age\nbob,3\n")
    result = cli(
        "fer-train", "--model", "cnn", "--data", tmp_path / "fake.csv", "--runs-dir", tmp_path / "runs", check=False
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("fer-train: error:") and "fake.csv: missing column" in last
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_init_from_starts_from_the_given_weights(runs_copy):
    """A warm restart: the new run's weights are the old run's (a learning rate of ~0 keeps them
    there), its optimizer and schedule are fresh, and run.json says where it started."""
    from safetensors.torch import load_file

    runs = runs_copy  # "first": the finished 2-epoch b16 run
    base = ["--model", "stcnn", *TINY_STCNN, "--data", SAMPLE_CSV, "--limit", 140, "--runs-dir", runs, "--no-progress"]
    [first] = [r for r in RunStore(runs).list_runs() if r["name"] == "b16"]
    cli(
        "fer-train",
        *base,
        "--epochs",
        1,
        "--lr",
        1e-12,
        "--weight-decay",
        0,
        "--name",
        "again",
        "--init-from",
        first["run_id"],
    )
    again = next(r for r in RunStore(runs).list_runs() if r["name"] == "again")
    assert again["status"] == "finished"
    assert again["init_from"]["run_id"] == first["run_id"] and again["init_from"]["epoch"] == first["best_epoch"]
    before = load_file(runs / first["run_id"] / "checkpoints" / "best.safetensors")
    after = load_file(runs / again["run_id"] / "checkpoints" / "last.safetensors")
    weights = [k for k in before if "running" not in k and "num_batches" not in k]  # BN statistics do move
    assert weights and all(torch.allclose(before[k], after[k], atol=1e-6) for k in weights)
    assert again["config"]["init_from"].endswith("best.safetensors")

    # With --ema-decay the run evaluates and keeps the average: at a decay of ~1 it stays at the
    # starting weights while the raw weights (last.safetensors) move away at the normal rate.
    cli(
        "fer-train", *base, "--epochs", 1, "--ema-decay", 0.999999, "--name", "averaged", "--init-from", first["run_id"]
    )
    averaged = next(r for r in RunStore(runs).list_runs() if r["name"] == "averaged")
    best = load_file(runs / averaged["run_id"] / "checkpoints" / "best.safetensors")
    raw = load_file(runs / averaged["run_id"] / "checkpoints" / "last.safetensors")
    assert all(torch.allclose(before[k], best[k], atol=1e-4) for k in weights)
    assert not all(torch.allclose(before[k], raw[k], atol=1e-4) for k in weights)

    refused = cli(
        "fer-train",
        "--model",
        "cnn",
        "--data",
        SAMPLE_CSV,
        "--runs-dir",
        runs,
        "--init-from",
        first["run_id"],
        check=False,
    )
    assert refused.returncode == 2 and "is a stcnn, not a cnn" in refused.stderr
    refused = cli("fer-train", *base, "--init-from", "no-such-model", check=False)
    assert refused.returncode == 2 and "--init-from no-such-model" in refused.stderr
    assert len(RunStore(runs).list_runs()) == 4  # b16, b32, again, averaged: the refused ones made none


@pytest.mark.slow
def test_mixup_and_cutmix_change_what_the_model_trains_on(tmp_path):
    """Same seed, same faces: with --mixup-alpha/--cutmix-alpha the model sees blended faces and
    soft labels, so its training loss differs from the plain run; run.json records both alphas."""
    runs = tmp_path / "runs"
    base = [
        "--model",
        "stcnn",
        *TINY_STCNN,
        "--data",
        SAMPLE_CSV,
        "--limit",
        140,
        "--epochs",
        1,
        "--seed",
        3,
        "--runs-dir",
        runs,
        "--no-progress",
    ]
    cli("fer-train", *base, "--name", "plain")
    cli("fer-train", *base, "--name", "mixed", "--mixup-alpha", 0.4, "--cutmix-alpha", 1.0)
    cli("fer-train", *base, "--name", "plain-again")
    by_name = {r["name"]: r for r in RunStore(runs).list_runs()}
    assert by_name["mixed"]["config"]["mixup_alpha"] == 0.4 and by_name["mixed"]["config"]["cutmix_alpha"] == 1.0
    assert by_name["plain"]["config"]["mixup_alpha"] == 0.0
    metrics = pd.concat(pd.read_parquet(f) for f in runs.glob("*/metrics/*.parquet"))
    train_loss = {
        name: metrics[(metrics.run_id == r["run_id"]) & (metrics.split == "train")].loss.iloc[0]
        for name, r in by_name.items()
    }
    assert train_loss["plain"] == pytest.approx(train_loss["plain-again"], abs=1e-6)  # deterministic...
    assert train_loss["mixed"] != pytest.approx(train_loss["plain"], abs=1e-3)  # ...so mixing is the change


def test_weight_ema_moves_a_fraction_of_the_way():
    from trainers.ema import WeightEMA

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = WeightEMA(model, decay=0.75)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(4.0)
        model[1].num_batches_tracked.fill_(7)
    ema.update()
    average = ema.module.state_dict()
    assert torch.allclose(average["0.weight"], start["0.weight"] + 1.0)  # a quarter of the way
    assert torch.equal(average["0.bias"], start["0.bias"])
    assert average["1.num_batches_tracked"].item() == 7  # integer buffers are copied, not averaged
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())


def test_weight_ema_from_scratch_ramps_its_decay_up():
    """From random weights the average first follows the model closely: decay (1+step)/(10+step)
    until that passes the decay asked for, so the random start does not linger in it."""
    from trainers.ema import WeightEMA

    model = torch.nn.Linear(3, 2)
    ema = WeightEMA(model, decay=0.99, warmup=True)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(10.0)
    ema.update(step=0)  # decay 1/10: 90% of the way
    assert torch.allclose(ema.module.weight, start + 9.0)
    ema.update(step=10_000)  # the ramp (0.9991) is past 0.99: the decay asked for
    assert torch.allclose(ema.module.weight, start + 9.0 + 0.01)


@pytest.mark.slow
def test_localization_net_trains_at_its_fraction_of_the_learning_rate(tmp_path):
    """`--localization-lr-scale` (the stcnn preset's 0.1): the localisation net's group keeps its
    fraction through the schedule, so its theta moves about that much less from the identity."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    runs = tmp_path / "runs"
    base = [
        "--model",
        "stcnn",
        *TINY_STCNN,
        "--data",
        SAMPLE_CSV,
        "--limit",
        140,
        "--epochs",
        2,
        "--warmup-epochs",
        0,
        "--batch-size",
        16,
        "--runs-dir",
        runs,
        "--no-progress",
    ]
    moved = {}
    for scale in (1.0, 0.1):
        cli("fer-train", *base, "--localization-lr-scale", scale, "--name", f"scale-{scale}")
        run = next(r for r in RunStore(runs).list_runs() if r["name"] == f"scale-{scale}")
        assert run["config"]["localization_lr_scale"] == scale
        checkpoints = runs / run["run_id"] / "checkpoints"
        with safe_open(str(checkpoints / "last_optimizer.safetensors"), framework="pt") as f:
            groups = json.loads(f.metadata()["param_groups"])
        if scale == 1.0:
            assert len(groups) == 1  # runs saved before the option resume with the same layout
        else:
            assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(groups[0]["lr"] * scale)
        bias = load_file(checkpoints / "last.safetensors")["localization.10.bias"]
        moved[scale] = (bias - torch.tensor([1.0, 0, 0, 0, 1.0, 0])).abs().sum().item()
    assert 0 < moved[0.1] < moved[1.0] / 3


@pytest.mark.slow
def test_distillation_pulls_the_student_to_its_teacher(runs_copy):
    """`--distill-from`: the soft-target loss is zero for a student that is its teacher and
    shrinks as a different student trains on it alone; a real run records its teacher."""
    from fer_core.data.fer2013 import load_dataset
    from fer_core.runs.checkpoint import file_sha256, load_model
    from trainers.distill import Distiller

    runs = runs_copy  # the teacher: the finished 2-epoch b16 run
    base = ["--model", "stcnn", *TINY_STCNN, "--data", SAMPLE_CSV, "--limit", 140, "--runs-dir", runs, "--no-progress"]
    [teacher] = [r for r in RunStore(runs).list_runs() if r["name"] == "b16"]
    teacher_path = runs / teacher["run_id"] / "checkpoints" / "best.safetensors"

    x = torch.from_numpy(load_dataset(SAMPLE_CSV).splits["train"].images[:64]).float().div(255).unsqueeze(1)
    labels = torch.zeros(64, dtype=torch.long)
    never = lambda logits, y: torch.tensor(0.0)  # noqa: E731 - the label loss left out
    distiller = Distiller([str(teacher_path)], weight=1.0, temperature=2.0, device=torch.device("cpu"), dtype=None)
    itself = load_model(teacher_path).eval()
    assert distiller.criterion(never, x)(itself(x), labels).item() == pytest.approx(0.0, abs=1e-5)
    half = Distiller([str(teacher_path)], weight=0.5, temperature=2.0, device=torch.device("cpu"), dtype=None)
    ce = torch.nn.CrossEntropyLoss()
    assert half.criterion(ce, x)(itself(x), labels).item() == pytest.approx(
        0.5 * ce(itself(x), labels).item(), rel=1e-4
    )
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48 * 48, 7))
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    loss_of = distiller.criterion(never, x)
    losses = []
    for _ in range(30):
        loss = loss_of(student(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]

    cli(
        "fer-train",
        *base,
        "--epochs",
        1,
        "--name",
        "student",
        "--distill-from",
        teacher["run_id"],
        "--distill-weight",
        0.7,
        "--distill-temperature",
        3,
    )
    student_run = next(r for r in RunStore(runs).list_runs() if r["name"] == "student")
    assert student_run["status"] == "finished"
    assert student_run["config"]["distill_from"] == [str(teacher_path.resolve())]
    assert student_run["config"]["distill_weight"] == 0.7 and student_run["config"]["distill_temperature"] == 3
    assert student_run["distill_from"][0]["sha256"] == file_sha256(teacher_path)
    assert student_run["distill_from"][0]["run_id"] == teacher["run_id"]
    refused = cli("fer-train", *base, "--distill-from", "no-such-model", check=False)
    assert refused.returncode == 2 and "--distill-from no-such-model" in refused.stderr
