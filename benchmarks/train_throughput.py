"""Training images/second: the usual tutorial loop against our trainer's pipeline, side by side.

    .venv/bin/python benchmarks/train_throughput.py [--data ../shared/data/fer2013] [--batches 12]
        [--models stcnn cnn resnet50 resnet50:stem=imagenet vit vit:stem=patch,patch_size=6]

plain: torchvision ImageFolder + per-image transforms (grayscale, random crop with padding,
       flip, rotation, ToTensor, Normalize) + DataLoader(num_workers=2), fp32, default layout.
ours:  decoded uint8 arrays (cached), whole-batch augmentation (fer_core.data.augment), bf16
       autocast + channels-last where the CPU supports it, the trainer's own train_step.
ours fp32: the same without autocast and channels-last (what the precision alone buys).
Same model (each architecture's own preset), batch size, optimizer and loss; all threads.
fp32 ceiling: this CPU's fp32 matmul peak over the plain loop's GFLOP/s, the most that any
fp32 pipeline could gain over it (benchmarks/ceiling.py).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from ceiling import fp32_peak_gflops, gflop_per_image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from fer_core.data.augment import MEAN, STD, AugmentConfig, augment_batch, to_model_input
from fer_core.data.fer2013 import load_dataset
from fer_core.device import autocast_dtype
from fer_core.models import create_model
from fer_core.runs.presets import preset_config
from trainers.cli import parse_value
from trainers.epoch import train_step
from trainers.train import make_optimizer

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013"


def timed(steps, warmup: int = 2) -> float:
    """Images/second over the steps after `warmup` (each step returns its batch size)."""
    images, start = 0, None
    for i, step in enumerate(steps):
        n = step()
        if i == warmup - 1:
            start = time.perf_counter()
        elif i >= warmup:
            images += n
    return images / (time.perf_counter() - start)


def config(spec: str):
    """'resnet50:stem=imagenet' -> the resnet50 preset with model_config stem=imagenet."""
    arch, _, extra = spec.partition(":")
    cfg = preset_config(arch)
    for item in filter(None, extra.split(",")):
        key, _, value = item.partition("=")
        cfg.model_config = {**cfg.model_config, key: parse_value(value)}
    return cfg


def plain_loop(spec: str, data: Path, batches: int) -> float:
    cfg = config(spec)
    model = create_model(cfg.model, **cfg.model_config).train()
    optimizer = make_optimizer(cfg, model, fused=False)  # torch's default implementation
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    tf = transforms.Compose(
        [
            transforms.Grayscale(),
            transforms.RandomCrop(48, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(10),
            transforms.ToTensor(),
            transforms.Normalize([MEAN], [STD]),
        ]
    )
    loader = iter(
        DataLoader(
            datasets.ImageFolder(data / "train", tf),
            batch_size=cfg.batch_size,
            shuffle=True,
            num_workers=2,
            drop_last=True,
        )
    )

    def step():
        x, y = next(loader)
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return len(y)

    return timed([step] * (batches + 2))


def our_pipeline(spec: str, data: Path, batches: int, fast: bool = True) -> float:
    cfg = config(spec)
    device = torch.device("cpu")
    dtype = autocast_dtype(device) if fast else None
    model = create_model(cfg.model, **cfg.model_config).train()
    if fast:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    train = load_dataset(data).splits["train"]
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(labels), generator=generator)
    aug = AugmentConfig(**cfg.augment)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    batch = iter(order.split(cfg.batch_size))

    def step():
        index = next(batch)
        x = augment_batch(to_model_input(images[index]), aug, generator)
        train_step(model, optimizer, criterion, x, labels[index], device, dtype, scaler, channels_last=fast)
        return len(index)

    return timed([step] * (batches + 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FER2013 image folders (train/<class>/)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per measurement")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["stcnn", "cnn", "resnet50", "resnet50:stem=imagenet", "vit", "vit:stem=patch,patch_size=6"],
    )
    args = parser.parse_args()
    load_dataset(args.data)  # decode once, so "ours" reads the cache like every later training run
    peak = fp32_peak_gflops(torch.get_num_threads())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, autocast "
        f"{autocast_dtype(torch.device('cpu'))}, fp32 matmul peak {peak:.0f} GFLOP/s, "
        f"{args.batches} timed batches\n"
    )
    print(
        "| model (preset) | batch | train GFLOP/img | plain fp32 loop img/s | ours fp32 img/s | ours img/s | "
        "ours vs plain | fp32 ceiling vs plain |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for spec in args.models:
        cfg = config(spec)
        gflop = gflop_per_image(create_model(cfg.model, **cfg.model_config), train=True)
        plain = plain_loop(spec, args.data, args.batches)
        ours_fp32 = our_pipeline(spec, args.data, args.batches, fast=False)
        ours = our_pipeline(spec, args.data, args.batches)
        print(
            f"| {spec} | {cfg.batch_size} | {gflop:.2f} | {plain:.0f} | {ours_fp32:.0f} | {ours:.0f} | "
            f"{ours / plain:.2f}x | {peak / (plain * gflop):.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
