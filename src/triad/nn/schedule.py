"""The one learning-rate schedule the heads use: linear warm-up, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int, floor: float = 0.0) -> float:
    """The multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Warm-up rises linearly from ``1/warmup`` to 1 over ``warmup = min(warmup_steps, total_steps // 2)``
    steps; then a half cosine falls from 1 to ``floor`` at ``total_steps`` and stays there.
    """
    warmup = min(warmup_steps, total_steps // 2)
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, floor: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step ``LambdaLR`` following ``warmup_cosine_factor``; call ``step()`` after each optimiser step."""
    total = max(1, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine_factor(step, total, warmup_steps, floor)
    )
