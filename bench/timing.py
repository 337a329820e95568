"""Timing shared by the benchmarks: triad and its reference take turns, round after round.

Timing one model and then the other lets a slow spell of a shared machine land on one of them
only; on the 2-core CI machines that alone moved a ratio by 15%. Here every round times each
contender once, so a slow spell hits both, and the figures are medians over the rounds: the
median rate of each and the median of the rounds' ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def seconds_per_call(fn: Callable[[], object], calls: int, device: torch.device, warmup: int = 2) -> float:
    """Mean seconds of ``calls`` calls of ``fn``, after ``warmup`` untimed calls (GPU work awaited)."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls


def take_turns(
    contenders: dict[str, Callable[[], object]], rounds: int, calls: int, device: torch.device, warmup: int = 2
) -> dict[str, list[float]]:
    """Seconds per call of each contender in each round; within a round they run one after another."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for round_ in range(rounds):
        for name, fn in contenders.items():
            seconds[name].append(seconds_per_call(fn, calls, device, warmup if round_ == 0 else 0))
    return seconds


def compare(what: str, work: float, unit: str, ours: list[float], theirs: list[float], names: tuple[str, str]) -> float:
    """Print both median rates (``work`` units per call) and the median ratio; return that ratio."""
    ratios = sorted(b / a for a, b in zip(ours, theirs))  # rate ratio = their seconds / our seconds
    ratio = statistics.median(ratios)
    print(
        f"{what}: {names[0]} {work / statistics.median(ours):,.1f} {unit}/s, "
        f"{names[1]} {work / statistics.median(theirs):,.1f} {unit}/s; ratio {names[0]}/{names[1]} "
        f"{ratio:.2f}x (median of {len(ratios)} rounds: {' '.join(f'{r:.2f}' for r in ratios)})"
    )
    return ratio
