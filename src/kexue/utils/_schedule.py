"""Learning-rate schedules shared by the trainers."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine_lr"]


def warmup_cosine_lr(
    step: int, total: int, *, peak: float, warmup_steps: int, min_ratio: float
) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to ``min_ratio·peak``
    at step ``total`` (and flat after it)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    span = max(1, total - warmup_steps)
    done = min(1.0, (step - warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * done))
    return peak * (min_ratio + (1.0 - min_ratio) * cosine)
