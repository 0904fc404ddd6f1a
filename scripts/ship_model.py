"""Ship a run's best checkpoint as `results/models/<name>.safetensors` (fp16) with its record and card.

    python scripts/ship_model.py results/runs/RUN_ID stcnn [DATA] [--force]
    python scripts/ship_model.py --ensemble [DATA]   # the record of `ensemble` (shipped models averaged)
    python scripts/ship_model.py --int8 NAME [DATA]  # its int8 model (done by the first form too)
    python scripts/ship_model.py --cards             # rewrite every card from its record

Each shipped model has one machine-readable record, `NAME.json`: architecture and config, the
run and epoch it came from, the val metrics of the shipped (fp16) weights per test-time view,
the chosen view (`tta`, the best on val, which `fer-eval` and `fer-predict` then use), the int8
calibration and the weights' SHA-256. The Markdown card `NAME.md` is generated from it and
never read back. `val.subset` is the accuracy on a fixed subset (VAL_SUBSET stratified faces,
seed 0) that tests/test_shipped_models.py recomputes in seconds.

Shipped weights stay in every clone's history, so a model is replaced only when the candidate
gains at least MIN_GAIN of val accuracy in its chosen view (`--force` overrides).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from fer_core.classes import CLASSES
from fer_core.data.fer2013 import load_dataset, stratified_indices
from fer_core.evaluation.metrics import classification_metrics
from fer_core.inference.loading import load_models
from fer_core.inference.onnx_export import ExportError, OnnxModel
from fer_core.inference.onnx_int8 import CALIBRATION_FACES, export_int8
from fer_core.inference.probabilities import ensemble_probs
from fer_core.inference.registry import SHIPPED_MODELS_DIR, ensemble_members, int8_path, model_record, record_path
from fer_core.models import count_parameters
from fer_core.runs.checkpoint import file_sha256, load_model, save_checkpoint
from fer_core.runs.runstore import RunStore

DATA = "../shared/data/fer2013"
VAL_SUBSET = 700
MIN_GAIN = 0.01
VIEWS = ("none", "flip", "tencrop")
RECIPE_KEYS = (
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "schedule",
    "label_smoothing",
    "class_weights",
    "ema_decay",
    "localization_lr_scale",
    "mixup_alpha",
    "cutmix_alpha",
    "distill_weight",
    "distill_temperature",
)


def subset_accuracy(labels, probs) -> float:
    subset = stratified_indices(labels, VAL_SUBSET, seed=0)
    return classification_metrics(labels[subset], probs[subset])["accuracy"]


def evaluate_val(models: list[torch.nn.Module], data_path: str) -> dict:
    """Val metrics per view, per-class recall and the fixed-subset accuracy (no TTA), and the
    view with the best val accuracy (the first of equals: a tie goes to the cheaper view)."""
    val = load_dataset(data_path).splits["val"]
    metrics, recall, subset = {}, {}, None
    for tta in VIEWS:
        probs = ensemble_probs(models, val.images, tta=tta)
        m = classification_metrics(val.labels, probs)
        metrics[tta] = {key: round(m[key], 4) for key in ("accuracy", "macro_f1", "auc")}
        if tta == "none":
            recall = {c: round(m[f"recall_{c}"], 3) for c in CLASSES}
            subset = round(subset_accuracy(val.labels, probs), 4)
    return {
        "faces": len(val),
        "metrics": metrics,
        "per_class_recall": recall,
        "subset": {"faces": VAL_SUBSET, "seed": 0, "tta": "none", "accuracy": subset},
        "tta": max(metrics, key=lambda t: metrics[t]["accuracy"]),
    }


def training_hours(store: RunStore, run_id: str) -> float:
    """Sum of a run's epoch times: across resumes, unlike one process's train_seconds."""
    return round(store.metrics([run_id]).query("tta == 'none'").epoch_seconds.sum() / 3600, 2)


def lineage(info: dict, stores: list[RunStore]) -> list[dict]:
    """The chain of warm restarts behind a run (`--init-from`), each with its training hours:
    the weights a restart started from took time to train too. Each earlier run is looked up in
    `stores` (the run's own store, then the shipped runs); the chain stops at one found in neither."""
    chain, source = [], info.get("init_from")
    while source:
        store = next((s for s in stores if s.exists(source["run_id"])), None)
        chain.append(
            {
                "run_id": source["run_id"],
                "epoch": source.get("epoch"),
                "hours": training_hours(store, source["run_id"]) if store else None,
            }
        )
        source = store.read_run(source["run_id"]).get("init_from") if store else None
    return chain


def source_record(info: dict, epoch: int, store: RunStore) -> dict:
    cfg = info["config"]
    started_from = lineage(info, [store, RunStore()])
    hours = training_hours(store, info["run_id"])
    return {
        "run_id": info["run_id"],
        "epoch": epoch,
        "status": info.get("status"),
        "epochs_completed": info.get("epochs_completed"),
        "epochs": cfg["epochs"],
        "preset": cfg.get("preset"),
        "recipe": {key: cfg.get(key) for key in RECIPE_KEYS},
        "device": info.get("device"),
        "precision": info.get("precision"),
        "hours": hours,
        "started_from": started_from,
        "hours_in_all": round(hours + sum(s["hours"] or 0 for s in started_from), 2),
        "distilled_from": [
            {key: t.get(key) for key in ("run_id", "epoch", "sha256")} for t in info.get("distill_from") or []
        ],
    }


def write_record(record: dict) -> None:
    path = record_path(record["name"])
    path.write_text(json.dumps(record, indent=1) + "\n")
    path.with_suffix(".md").write_text(render_card(record))
    print(f"wrote {path} and {path.with_suffix('.md')}")


def chosen_accuracy(record: dict) -> float:
    return record["val"]["metrics"][record["val"]["tta"]]["accuracy"]


def ship(run_dir: str, name: str, data_path: str = DATA, force: bool = False) -> None:
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    model = load_model(run_dir / "checkpoints" / "best.safetensors")
    epoch = model.checkpoint_info.get("epoch")
    target = SHIPPED_MODELS_DIR / f"{name}.safetensors"
    with tempfile.TemporaryDirectory() as tmp:  # the candidate is judged before it replaces anything
        candidate = Path(tmp) / target.name
        save_checkpoint(model, candidate, dtype=torch.float16, run_id=info["run_id"], epoch=epoch)
        shipped = load_model(candidate)
        cfg = info["config"]
        record = {
            "name": name,
            "architecture": cfg["model"],
            "model_config": cfg.get("model_config") or {},
            "parameters": count_parameters(shipped),
            "weights": {"file": target.name, "dtype": "float16", "sha256": file_sha256(candidate)},
            "source": source_record(info, epoch, RunStore(run_dir.parent)),
            "val": evaluate_val([shipped], data_path),
            "int8": None,
        }
        current = model_record(name)
        if current and chosen_accuracy(record) < chosen_accuracy(current) + MIN_GAIN and not force:
            sys.exit(
                f"not shipped: {name} would read {chosen_accuracy(record):.4f} on val against "
                f"{chosen_accuracy(current):.4f} now; a shipped model changes for a gain of {MIN_GAIN} "
                "or more (--force to ship anyway)"
            )
        shutil.move(candidate, target)
    write_record(record)
    int8_model(name, data_path)


def int8_model(name: str, data_path: str = DATA) -> None:
    """`NAME.int8.onnx`: ONNX Runtime static (QDQ) quantization calibrated on CALIBRATION_FACES
    stratified train faces (seed 0), kept only within half a point of the fp32 val accuracy;
    its val accuracy goes into the record."""
    record = model_record(name)
    try:
        export_int8(name, int8_path(name), data_path)
    except ExportError as e:
        print(f"{name}: no int8 model ({e})")
        record["int8"] = None
    else:
        record["int8"] = int8_record(name)
    write_record(record)


def int8_record(name: str) -> dict:
    """What the int8 file says of itself (fer-export writes its accuracies into its metadata)."""
    metadata = OnnxModel(int8_path(name)).metadata
    return {
        "file": int8_path(name).name,
        "runtime": "onnxruntime, static QDQ",
        "calibration": {"split": "train", "faces": CALIBRATION_FACES, "seed": 0},
        "val_accuracy": float(metadata["fer.int8_val_accuracy"]),
        "val_subset_accuracy": float(metadata["fer.int8_val_subset_accuracy"]),
    }


def ship_ensemble(data_path: str = DATA) -> None:
    """`ensemble` has no weights of its own: its record describes the average of the shipped models."""
    write_record(
        {
            "name": "ensemble",
            "members": ensemble_members(),
            "val": evaluate_val(load_models(",".join(ensemble_members()), backend="torch"), data_path),
            "int8": None,
        }
    )


LIMITS = """## Limits
48x48 grayscale FER2013-style crops of frontal faces; photos and video frames go through a
face detector first (`fer_core/faces/detection.py`). FER2013 labels are noisy (human accuracy is about
65%), `disgust` is rare (1.5% of train) and recognised worst.
"""


def render_card(record: dict) -> str:
    """The Markdown card: for people only; code reads the JSON record."""
    name, val = record["name"], record["val"]
    if "members" in record and "weights" in record:
        head = (
            "The weighted mean of the shipped models' temperature-scaled probabilities, itself scaled by "
            f"T={record['temperature']} (`fer-eval --model ensemble`; weights and temperatures fitted on val by "
            "`scripts/calibrate_models.py`):\n"
            + "".join(
                f"- `{m}` (card `{m}.md`): weight {record['weights'][m]}, T={record['temperatures'][m]}, "
                f"view {record['views'][m]}\n"
                if record["weights"][m] > 0
                else f"- `{m}` (card `{m}.md`): weight 0, so not run\n"
                for m in record["members"]
            )
        )
    elif "members" in record:
        head = "The mean of the softmax probabilities of the shipped models (`fer-eval --model ensemble`):\n" + "".join(
            f"- `{m}` (card `{m}.md`)\n" for m in record["members"]
        )
    else:
        src, recipe = record["source"], record["source"]["recipe"]
        extras = "".join(
            f", {key.replace('_', ' ')} {recipe[key]}"
            for key in RECIPE_KEYS[7:]
            if recipe.get(key)
            and not (key == "localization_lr_scale" and recipe[key] == 1.0)
            and not (key.startswith("distill") and not src["distilled_from"])
        )
        history = "".join(
            f"- {'which started' if i else 'started'} from: epoch {s['epoch']} of run `{s['run_id']}` "
            f"(`--init-from`), trained {s['hours']} h\n"
            for i, s in enumerate(src["started_from"])
        )
        if src["started_from"]:
            history += f"- {src['hours_in_all']:.1f} h of training in all\n"
        history += "".join(
            f"- distilled from: best epoch {t['epoch']} of run `{t['run_id']}` (sha256 "
            f"{t['sha256'][:12]}, `--distill-from`)\n"
            for t in src["distilled_from"]
        )
        head = (
            f"- architecture: `{record['architecture']}` {json.dumps(record['model_config'])}, "
            f"{record['parameters']:,} parameters\n"
            f"- weights: `{record['weights']['file']}` ({record['weights']['dtype']}, sha256 "
            f"{record['weights']['sha256'][:12]}), best epoch {src['epoch']} of run `{src['run_id']}`, "
            f"status `{src['status']}` after {src['epochs_completed']} of {src['epochs']} epochs\n"
            f"- data: FER2013 Training split (train), PublicTest (val)\n"
            f"- preset: `{src['preset']}` - {recipe['optimizer']} lr {recipe['lr']}, weight decay "
            f"{recipe['weight_decay']}, batch {recipe['batch_size']}, {recipe['schedule']} schedule, "
            f"label smoothing {recipe['label_smoothing']}, class weights {recipe['class_weights']}{extras}\n"
            f"- trained on: {src['device']} ({src['precision']}), {src['hours']:.1f} h (sum of epoch times)\n" + history
        )
    rows = "".join(
        f"| {tta} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['auc']:.4f} |\n" for tta, m in val["metrics"].items()
    )
    weighted = "members" in record and "weights" in record
    plain = ", the plain mean of the members in one view" if weighted else ""
    chosen = (
        "The ensemble runs each member in the view listed above (what `fer-eval` and `fer-predict` use unless "
        "given `--tta`)."
        if weighted
        else f"Chosen view: **{val['tta']}** (the best val accuracy above; what `fer-eval` and `fer-predict` use "
        "unless given\n`--tta`)."
    )
    int8 = record.get("int8")
    int8_text = (
        ""
        if not int8
        else (
            f"\n## int8\n`--int8` (`fer-eval`, `fer-predict`; the Live page's int8 switch) runs `{int8['file']}` on "
            f"{int8['runtime']}, calibrated on {int8['calibration']['faces']} train faces: val accuracy "
            f"{int8['val_accuracy']:.4f} (subset {int8['val_subset_accuracy']:.4f}), no TTA.\n"
        )
    )
    return f"""# {name}

<!-- generated by scripts/ship_model.py from {name}.json; edit the record, not this card -->
{head}
## Val (PublicTest, {val["faces"]} faces), shipped fp16 weights computed in fp32 (PyTorch){plain}

| TTA | accuracy | macro-F1 | AUC |
|---|---|---|---|
{rows}
{chosen} On {val["subset"]["faces"]} stratified val faces (seed 0, no TTA): {val["subset"]["accuracy"]:.4f}.

Per-class recall (no TTA): {" | ".join(CLASSES)}
{" | ".join(f"{val['per_class_recall'][c]:.3f}" for c in CLASSES)}
{int8_text}{calibration_text(record)}
{LIMITS}"""


def calibration_text(record: dict) -> str:
    """The card's calibration section: a model's temperature per view, or the ensemble's options and
    the default model."""
    calibration = record.get("calibration")
    if not calibration:
        return ""
    if "members" not in record:
        rows = "".join(
            f"| {view} | {c['temperature']} | {'**yes**' if c['applied'] else 'no'} | {c['ece']:.4f} | "
            f"{c['ece_out_of_fold']:.4f} | {c['nll']:.4f} | {c['nll_out_of_fold']:.4f} |\n"
            for view, c in calibration["views"].items()
        )
        return f"""
## Calibration
A temperature per view, fitted on {calibration["fitted_on"]}; {calibration["rule"]} ({calibration["folds"]}-fold
cross-validation within val: each fold scaled by the temperature fitted on the others). Where applied,
fer-predict, fer-serve, the Recognizer and Predict report the scaled probabilities (the label never
changes); `fer-eval --uncalibrated` gives the raw ones.

| view | T | applied | ECE | ECE with T, out of fold | NLL | NLL with T, out of fold |
|---|---|---|---|---|---|---|
{rows}"""
    rows = "".join(
        f"| {o['option']} | {o['plain_mean']['accuracy']:.4f} | {o['plain_mean']['ece']:.4f} "
        f"| {o['calibrated_out_of_fold']['accuracy']:.4f} | {o['calibrated_out_of_fold']['ece']:.4f} |\n"
        for o in calibration["options"]
    )
    return f"""
## Weighted and calibrated
Each way of choosing the members' views: the plain mean on val, and the weighted, calibrated ensemble
scored out of fold ({calibration["folds"]}-fold cross-validation within val: a face is scored by weights and
temperatures fitted without it).

| members' views | mean: accuracy | mean: ECE | calibrated, out of fold: accuracy | ECE |
|---|---|---|---|---|
{rows}
Chosen: **{calibration["chosen"]}**, then fitted on all of val (in-sample accuracy
{calibration["in_sample"]["accuracy"]:.4f}, ECE {calibration["in_sample"]["ece"]:.4f}).
{default_text(record)}"""


def default_text(record: dict) -> str:
    """The ensemble card's last section: which model is the default, by what rule and test."""
    choice = record.get("default_choice")
    if not choice:
        return f"\n**Default model: `{record['default_model']}`**: {record['default_reason']}.\n"
    rows = "".join(
        f"| `{c['name']}` | {', '.join(f'{m} {v}' for m, v in c['views'].items())} | {c['gflop_per_face']:.2f} "
        f"| {c['accuracy']:.4f}{' (out of fold)' if c.get('scored') else ''} | {c['only_best_right']} / "
        f"{c['only_candidate_right']} | {c['p']:.2g} | {'yes' if c['significantly_below_best'] else 'no'} |\n"
        for c in choice["candidates"]
    )
    return f"""
## The default model
**`{record["default_model"]}`** is what fer-predict, fer-serve, the Recognizer and Predict use unless told:
{choice["rule"]}. Test: {choice["test"]}. Cost: GFLOP of one face's forward passes (fp32, counted by
torch's FlopCounterMode) times the views averaged, over the members run.

| candidate | views run | GFLOP per face | val accuracy | faces only the best / it gets right | p | below the best |
|---|---|---|---|---|---|---|
{rows}
{record["default_reason"]}.
"""


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--ensemble"]:
        ship_ensemble(*args[1:2])
    elif args[:1] == ["--int8"]:
        int8_model(*args[1:3])
    elif args[:1] == ["--cards"]:
        for path in sorted(SHIPPED_MODELS_DIR.glob("*.json")):
            write_record(json.loads(path.read_text()))
    else:
        force = "--force" in args
        ship(*[a for a in args if a != "--force"][:3], force=force)
