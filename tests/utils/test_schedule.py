"""The shared warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import itertools

import pytest

from kexue.utils import warmup_cosine_lr


def test_warmup_then_cosine_to_the_floor() -> None:
    def lr(step: int) -> float:
        return warmup_cosine_lr(step, 110, peak=1.0, warmup_steps=10, min_ratio=0.1)

    assert lr(0) == pytest.approx(0.1)
    assert lr(9) == pytest.approx(1.0)
    assert lr(10) == pytest.approx(1.0)
    assert lr(60) == pytest.approx(0.55)  # halfway through the cosine: (1 + 0.1) / 2
    assert lr(110) == pytest.approx(0.1)
    assert lr(500) == pytest.approx(0.1)  # flat after the end
    values = [lr(step) for step in range(10, 111)]
    assert all(a >= b for a, b in itertools.pairwise(values))
