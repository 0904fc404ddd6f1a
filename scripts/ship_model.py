"""Ship a run's best checkpoint as `results/models/<name>.safetensors` (fp16) with a model card.

    python scripts/ship_model.py results/runs/RUN_ID stcnn
    python scripts/ship_model.py --ensemble [DATA]   # the card of `ensemble` (shipped models averaged)
    python scripts/ship_model.py --int8 NAME [DATA]  # its int8 calibration (done by the first form too)

fp16 halves the size; the card records the val accuracy of the shipped (fp16) weights as
`fer-eval` computes it on the val split, and on a fixed subset (VAL_SUBSET stratified
faces, seed 0) that tests/test_shipped_models.py recomputes in seconds. Its `tta:` line is
the test-time augmentation with the best val accuracy, which `fer-eval` then uses by default.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from fer_core.augment import to_model_input
from fer_core.checkpoint import load_model, save_checkpoint
from fer_core.classes import CLASSES
from fer_core.data import load_dataset, stratified_indices
from fer_core.inference import (SHIPPED_MODELS_DIR, ensemble_members, ensemble_probs, file_sha256, int8_path,
                                load_models, load_named_model)
from fer_core.metrics import classification_metrics
from fer_core.models import count_parameters
from fer_core.quantize import QUANTIZABLE, calibrate, quantize
from fer_core.runstore import RunStore


VAL_SUBSET = 700
CALIBRATION_FACES = 512
LIMITS = """
## Limits
48x48 grayscale FER2013-style crops of frontal faces; photos go through OpenCV's Haar
detector first, which misses profiles and small faces. FER2013 labels are noisy (human
accuracy is about 65%), `disgust` is rare (1.5% of train) and recognised worst.
"""


def val_accuracies(labels, probs) -> tuple[float, float]:
    """Accuracy on all of val, and on the fixed subset (VAL_SUBSET stratified faces, seed 0)."""
    subset = stratified_indices(labels, VAL_SUBSET, seed=0)
    return (classification_metrics(labels, probs)["accuracy"],
            classification_metrics(labels[subset], probs[subset])["accuracy"])


def val_section(models: list[torch.nn.Module], data_path: str) -> str:
    """The card's val table (no TTA, flip, ten-crop), per-class recall and the fixed-subset
    accuracy that tests/test_shipped_models.py checks."""
    val = load_dataset(data_path).splits["val"]
    lines, accuracies = [], {}
    for tta in ("none", "flip", "tencrop"):
        probs = ensemble_probs(models, val.images, tta=tta)
        m = classification_metrics(val.labels, probs)
        lines.append(f"| {tta} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['auc']:.4f} |")
        accuracies[tta] = m["accuracy"]
        if tta == "none":
            accuracy, subset_accuracy = val_accuracies(val.labels, probs)
            recalls = " | ".join(f"{m[f'recall_{c}']:.3f}" for c in CLASSES)
    best_tta = max(accuracies, key=accuracies.get)  # the first of equals: a tie goes to the cheaper view
    return f"""## Val (PublicTest, {len(val)} faces), shipped fp16 weights

| TTA | accuracy | macro-F1 | AUC |
|---|---|---|---|
{chr(10).join(lines)}

val_accuracy: {accuracy:.4f}
val_subset_accuracy: {subset_accuracy:.4f} ({VAL_SUBSET} stratified val faces, seed 0, no TTA)
tta: {best_tta} (the best row above, chosen on val: what `fer-eval` uses unless given `--tta`)

Per-class recall (no TTA): {' | '.join(CLASSES)}
{recalls}
"""


def training_hours(store: RunStore, run_id: str) -> float:
    """Sum of a run's epoch times: across resumes, unlike one process's train_seconds."""
    return store.metrics([run_id]).query("tta == 'none'").epoch_seconds.sum() / 3600


def lineage(info: dict, stores: list[RunStore]) -> tuple[list[str], float]:
    """The card lines for the chain of warm restarts behind a run, and the hours of all of them:
    the weights a restart started from took time to train too. Each earlier run is looked up in
    `stores` (the run's own store, then the shipped runs); the chain stops at one found in neither."""
    lines, hours, source = [], 0.0, info.get("init_from")
    while source:
        store = next((s for s in stores if s.exists(source["run_id"])), None)
        earlier = training_hours(store, source["run_id"]) if store else 0.0
        hours += earlier
        lines.append(f"- {'which ' if lines else ''}started from: epoch {source.get('epoch')} of run "
                     f"`{source['run_id']}` (`--init-from`), trained {earlier:.1f} h"
                     + ("" if store else " (run not found: not counted)"))
        source = store.read_run(source["run_id"]).get("init_from") if store else None
    return lines, hours


def main(run_dir: str, name: str) -> None:
    run_dir = Path(run_dir)
    info = json.loads((run_dir / "run.json").read_text())
    model = load_model(run_dir / "checkpoints" / "best.safetensors")
    target = SHIPPED_MODELS_DIR / f"{name}.safetensors"
    save_checkpoint(model, target, dtype=torch.float16, run_id=info["run_id"],
                    epoch=model.checkpoint_info.get("epoch"))
    shipped = load_model(target)
    cfg = info["config"]
    store = RunStore(run_dir.parent)
    hours = training_hours(store, info["run_id"])
    earlier_lines, earlier_hours = lineage(info, [store, RunStore()])
    history = "".join(f"\n{line}" for line in earlier_lines)
    if earlier_lines:
        history += f"\n- {hours + earlier_hours:.1f} h of training in all"
    extras = [f"weights averaged (EMA, decay {cfg['ema_decay']})"] if cfg.get("ema_decay") else []
    if cfg.get("localization_lr_scale", 1.0) != 1.0:
        extras.append(f"localisation net at {cfg['localization_lr_scale']} of the lr")
    extras += [f"{kind} alpha {cfg[f'{kind}_alpha']}" for kind in ("mixup", "cutmix") if cfg.get(f"{kind}_alpha")]
    for teacher in info.get("distill_from") or []:  # its own training time is on its own card
        history += (f"\n- distilled from: `{Path(teacher['checkpoint']).name}` (best epoch {teacher.get('epoch')} of "
                    f"run `{teacher.get('run_id')}`, sha256 {teacher['sha256'][:12]}), weight "
                    f"{cfg['distill_weight']}, temperature {cfg['distill_temperature']} (`--distill-from`)")
    card = f"""# {name}

- architecture: `{cfg['model']}` {json.dumps(cfg.get('model_config') or {})}, {count_parameters(shipped):,} parameters
- weights: fp16 safetensors, best epoch {model.checkpoint_info.get('epoch')} of run `{info['run_id']}`
  (`results/runs/{info['run_id']}/`), status `{info.get('status')}` after {info.get('epochs_completed')} of
  {cfg['epochs']} epochs
- data: FER2013 Training split (train), PublicTest (val) from `{cfg['data']}`
- preset: `{cfg.get('preset')}` - {cfg['optimizer']} lr {cfg['lr']}, weight decay {cfg['weight_decay']},
  batch {cfg['batch_size']}, {cfg['schedule']} schedule, label smoothing {cfg['label_smoothing']},
  class weights {cfg['class_weights']}{''.join(', ' + e for e in extras)}
- trained on: {info.get('device')} ({info.get('precision')}), {hours:.1f} h (sum of epoch times){history}

{val_section([shipped], cfg['data'])}"""
    target.with_suffix(".md").write_text(card + LIMITS)
    print(f"wrote {target} and {target.with_suffix('.md')}")
    if cfg["model"] in QUANTIZABLE:
        int8_calibration(name, cfg["data"])


def int8_calibration(name: str, data_path: str) -> None:
    """`NAME.int8.json`: the activation ranges of int8 inference, measured on CALIBRATION_FACES
    stratified train faces (seed 0), with the int8 model's val accuracy (all of val and the
    fixed subset that tests/test_shipped_models.py checks); and a line in the card."""
    dataset = load_dataset(data_path)
    train, val = dataset.splits["train"], dataset.splits["val"]
    faces = to_model_input(torch.from_numpy(train.images[stratified_indices(train.labels, CALIBRATION_FACES, 0)]))
    model = load_named_model(name)
    ranges = calibrate(model, faces)
    accuracy, subset_accuracy = val_accuracies(val.labels, ensemble_probs([quantize(model, ranges)], val.images))
    target = int8_path(name)
    target.write_text(json.dumps({
        "model": name, "weights_sha256": file_sha256(SHIPPED_MODELS_DIR / f"{name}.safetensors"),
        "calibration": f"{CALIBRATION_FACES} stratified faces of the train split, seed 0, {data_path}",
        "val_accuracy": round(accuracy, 4), "val_subset_accuracy": round(subset_accuracy, 4),
        "ranges": ranges}, indent=1) + "\n")
    card_path = target.with_name(f"{name}.md")
    card = card_path.read_text().split("\n## int8")[0].split("\n## Limits")[0].rstrip("\n")
    card_path.write_text(f"""{card}

## int8
`--int8` (`fer-eval`, `fer-predict`; the Live page's int8 switch) runs this model with int8
convolutions, calibrated on {CALIBRATION_FACES} train faces (`{target.name}`): val accuracy {accuracy:.4f}
(subset {subset_accuracy:.4f}), no TTA.
""" + LIMITS)
    print(f"wrote {target} and the int8 section of {card_path}")


def ensemble_card(data_path: str) -> None:
    """`ensemble` has no weights of its own: its card describes the average of the shipped models."""
    members = "\n".join(f"- `results/models/{n}.safetensors` (card `{n}.md`)" for n in ensemble_members())
    models = load_models("ensemble")
    card = f"""# ensemble

The mean of the softmax probabilities of the shipped models (`fer-eval --model ensemble`):
{members}

{val_section(models, data_path)}
"""
    target = SHIPPED_MODELS_DIR / "ensemble.md"
    target.write_text(card + LIMITS)
    print(f"wrote {target}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ensemble"]:
        ensemble_card(sys.argv[2] if len(sys.argv) > 2 else "../shared/data/fer2013")
    elif sys.argv[1:2] == ["--int8"]:
        int8_calibration(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "../shared/data/fer2013")
    else:
        main(sys.argv[1], sys.argv[2])
