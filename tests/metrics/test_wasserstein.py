from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.metrics import w1_exact


def test_zero_for_identical_and_permuted_clouds() -> None:
    x = np.random.default_rng(0).normal(size=(64, 2))
    assert w1_exact(x, x) == 0.0
    assert w1_exact(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), tx=st.floats(-10, 10), ty=st.floats(-10, 10))
def test_translation_costs_its_length(seed: int, tx: float, ty: float) -> None:
    x = np.random.default_rng(seed).normal(size=(20, 2))
    shift = np.array([tx, ty])
    assert w1_exact(x, x + shift) == pytest.approx(float(np.linalg.norm(shift)), abs=1e-9)


@pytest.mark.parametrize("n", [1, 3, 6])
def test_matches_brute_force_over_permutations(n: int) -> None:
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    brute = min(
        np.mean([np.linalg.norm(x[i] - y[j]) for i, j in enumerate(perm)])
        for perm in itertools.permutations(range(n))
    )
    assert w1_exact(torch.from_numpy(x), y) == pytest.approx(brute, abs=1e-12)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="equal-size"):
        w1_exact(np.zeros((5, 2)), np.zeros((6, 2)))
    with pytest.raises(ValueError, match="2-D"):
        w1_exact(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="at least 1 rows"):
        w1_exact(np.zeros((0, 2)), np.zeros((0, 2)))


def test_torch_inputs_and_float32() -> None:
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(0))
    assert w1_exact(x, x + torch.tensor([3.0, 4.0])) == pytest.approx(5.0, rel=1e-6)


def test_bad_input_types() -> None:
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        w1_exact([[0.0, 1.0]], np.zeros((1, 2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        w1_exact(np.full((3, 2), np.nan), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="equal-size"):
        w1_exact(np.zeros((3, 2)), np.zeros((3, 3)))
