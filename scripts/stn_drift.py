"""How far the ST-CNN's theta moves from the identity in its first steps, at a given
localisation learning-rate scale (README, Reference models).

    .venv/bin/python scripts/stn_drift.py [--scale 1.0] [--steps 300] [--data ../shared/data/fer2013]

Trains the `stcnn` preset from scratch at its peak learning rate (no warmup) with the trainer's
own optimizer and step, and prints theta's mean over 256 val faces every 50 steps: the six
entries of the 2x3 affine (identity: 1 0 0 0 1 0) and their spread across faces.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from fer_core.data.augment import AugmentConfig, augment_batch, to_model_input
from fer_core.data.fer2013 import load_dataset
from fer_core.device import autocast_dtype
from fer_core.models import create_model
from fer_core.runs.presets import preset_config
from trainers.epoch import train_step
from trainers.train import make_optimizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="localisation lr as a fraction of the lr")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    cfg = preset_config("stcnn")
    cfg.localization_lr_scale = args.scale
    torch.manual_seed(0)
    model = create_model(cfg.model, **cfg.model_config).train().to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    dataset = load_dataset(args.data)
    train, val = dataset.splits["train"], dataset.splits["val"]
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    val_faces = to_model_input(torch.from_numpy(val.images[:256]))
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator)
    device, aug = torch.device("cpu"), AugmentConfig(**cfg.augment)
    dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    start = time.time()
    print(f"localization lr scale {args.scale}: step, seconds, mean theta, spread across faces")
    for step in range(1, args.steps + 1):
        index = order[(step - 1) * cfg.batch_size % len(labels) :][: cfg.batch_size]
        x = augment_batch(to_model_input(images[index]), aug, generator)
        train_step(model, optimizer, criterion, x, labels[index], device, dtype, scaler)
        if step % 50 == 0:
            with torch.no_grad():
                theta = model.theta(val_faces)
            mean = " ".join(f"{v:+.2f}" for v in theta.mean(0).flatten().tolist())
            print(f"{step:5d} {time.time() - start:5.0f}s  {mean}  spread {theta.std(0).mean():.3f}", flush=True)


if __name__ == "__main__":
    main()
