"""How close to the hardware a benchmark runs: this CPU's fp32 matmul rate and a model's FLOPs.

A pipeline cannot beat the plain loop by more than (fp32 peak) / (the plain loop's
GFLOP/s) without doing its arithmetic in a cheaper precision, so the benchmarks print
that ceiling beside their ratios. The peak is a large fp32 matmul, the best case for the
CPU's vector units; convolutions get somewhat less.
"""

from __future__ import annotations

import copy
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def fp32_peak_gflops(threads: int, n: int = 1024, repeats: int = 10, rounds: int = 5) -> float:
    """GFLOP/s of an n x n fp32 matmul on `threads` threads, the best of a few rounds (a
    peak: other load on a shared machine only lowers it). Restores the thread count."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(repeats):
                a @ b
            best = min(best, time.perf_counter() - start)
        return 2 * n**3 * repeats / best / 1e9
    finally:
        torch.set_num_threads(before)


def gflop_per_image(model: torch.nn.Module, train: bool) -> float:
    """FLOPs of one 48x48 face: the forward pass, or forward + backward when `train`.

    Counted by torch's FlopCounterMode (convolutions, matmuls and attention: nearly all of
    it) on a copy in training mode, on a batch of two: in eval mode PyTorch's fused
    transformer layer hides its matmuls from the counter, and BatchNorm trains on no fewer.
    """
    model = copy.deepcopy(model).train()
    with FlopCounterMode(display=False) as counter:
        if train:
            model(torch.randn(2, 1, 48, 48)).sum().backward()
        else:
            with torch.no_grad():
                model(torch.randn(2, 1, 48, 48))
    return counter.get_total_flops() / 2 / 1e9
