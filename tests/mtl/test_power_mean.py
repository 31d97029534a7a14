"""Power mean (spec 06 §2, §3): C6.5 (monotonicity, limits, γ → 0, gradient formula), C6.4
(geometric mean ∥ real-time normalisation), numerical stability."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.mtl import GEOMETRIC_GAMMA_TOL, power_mean, power_mean_weights

from .conftest import MultiTaskNet, cosine, flat_grad

GRID = [float(g) for g in np.linspace(-50, 50, 201)]  # step 0.5, includes 0


def geometric_mean(values: torch.Tensor) -> torch.Tensor:
    return values.prod() ** (1 / values.numel())


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.floats(0.05, 20.0), min_size=1, max_size=5),
)
def test_power_mean_monotone_and_limits(values: list[float]) -> None:
    """C6.5: L(γ) non-decreasing on γ ∈ [−50, 50]; min ≤ L(γ) ≤ max; L(±50) within 10% of
    max/min; L(±∞) = max/min exactly; L(10⁻⁶) = geometric mean to 1e-5; L(1) = mean."""
    losses = torch.tensor(values, dtype=torch.float64)
    means = [float(power_mean(losses, g)) for g in GRID]
    for before, after in itertools.pairwise(means):
        assert after >= before * (1 - 1e-13)
    lo, hi = float(losses.min()), float(losses.max())
    assert all(lo * (1 - 1e-13) <= m <= hi * (1 + 1e-13) for m in means)
    assert abs(means[-1] - hi) / hi < 0.1
    assert abs(means[0] - lo) / lo < 0.1
    assert float(power_mean(losses, math.inf)) == hi
    assert float(power_mean(losses, -math.inf)) == lo
    geo = float(geometric_mean(losses))
    assert float(power_mean(losses, 1e-6)) == pytest.approx(geo, rel=1e-5)
    assert float(power_mean(losses, 0.0)) == pytest.approx(geo, rel=1e-13)
    assert float(power_mean(losses, 1.0)) == pytest.approx(float(losses.mean()), rel=1e-13)


@pytest.mark.parametrize("gamma", [-7.0, -1.0, -0.3, 0.0, 1e-9, 0.5, 1.0, 2.0, 9.0])
def test_power_mean_gradient_formula(gamma: float) -> None:
    """C6.5: ∂L(γ)/∂Lᵢ = (1/n)L(γ)^(1−γ)Lᵢ^(γ−1) (spec 06 §3) matches autograd (1e-10)."""
    gen = torch.Generator().manual_seed(3)
    losses = (torch.rand(5, generator=gen, dtype=torch.float64) * 5 + 0.1).requires_grad_(True)
    value = power_mean(losses, gamma)
    (autograd,) = torch.autograd.grad(value, losses)
    weights = power_mean_weights(losses, gamma)
    torch.testing.assert_close(weights, autograd, rtol=1e-10, atol=0)
    g = 0.0 if abs(gamma) < GEOMETRIC_GAMMA_TOL else gamma  # |γ| < 1e-8 is the geometric mean
    closed = (1 / 5) * value.detach() ** (1 - g) * losses.detach() ** (g - 1)
    torch.testing.assert_close(weights, closed, rtol=1e-10, atol=0)
    assert not weights.requires_grad


def test_power_mean_special_weights() -> None:
    """γ = 1: 1/n; γ = 2: ∝ Lᵢ; γ = 0: ∝ 1/Lᵢ; γ = ±∞: one-hot on max/min (ties split)."""
    losses = torch.tensor([1.0, 2.0, 4.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(power_mean_weights(losses, 1.0), torch.full((4,), 0.25).double())
    w2 = power_mean_weights(losses, 2.0)
    torch.testing.assert_close(w2 / w2.sum(), losses / losses.sum())
    w0 = power_mean_weights(losses, 0.0)
    torch.testing.assert_close(w0 / w0.sum(), (1 / losses) / (1 / losses).sum())
    assert power_mean_weights(losses, math.inf).tolist() == [0.0, 0.0, 0.5, 0.5]
    assert power_mean_weights(losses, -math.inf).tolist() == [1.0, 0.0, 0.0, 0.0]


def test_power_mean_is_numerically_stable() -> None:
    """logsumexp form: no overflow for huge γ·log L, finite gradients for losses near 0."""
    losses = torch.tensor([1e-30, 1.0, 1e4], dtype=torch.float64, requires_grad=True)
    for gamma in (-1000.0, -50.0, -1.0, 0.0, 1.0, 50.0, 1000.0):
        value = power_mean(losses, gamma)
        (grad,) = torch.autograd.grad(value, losses)
        assert math.isfinite(float(value.detach()))
        assert bool(torch.isfinite(grad).all())
    assert float(power_mean(losses.detach(), 1000.0)) == pytest.approx(
        1e4 * 3 ** (-1 / 1000), rel=1e-12
    )
    zero = torch.tensor([0.0, 2.0], dtype=torch.float64, requires_grad=True)
    value = power_mean(zero, -1.0)  # clamped at eps = 1e-12
    (grad,) = torch.autograd.grad(value, zero)
    assert float(value.detach()) == pytest.approx(2e-12, rel=1e-6)
    assert bool(torch.isfinite(grad).all())
    float32 = torch.tensor([1.0, 3.0], dtype=torch.float32)
    assert power_mean(float32, 2.0).dtype == torch.float32


def test_geometric_mean_direction_matches_real_time() -> None:
    """C6.4: ∇Σᵢ log Lᵢ and ∇(ΠᵢLᵢ)^(1/n) (and ∇L(0)) have cosine ≥ 1 − 1e-12."""
    net = MultiTaskNet(4)
    losses = net.losses()
    params = net.shared() + net.task_params()
    stacked = torch.stack(losses)
    log_sum = flat_grad(torch.log(stacked).sum(), params)
    geo = flat_grad(geometric_mean(stacked), params)
    pm0 = flat_grad(power_mean(losses, 0.0), params)
    assert cosine(log_sum, geo) >= 1 - 1e-12
    assert cosine(log_sum, pm0) >= 1 - 1e-12
    torch.testing.assert_close(pm0, geo, rtol=1e-12, atol=1e-15)


def test_power_mean_bad_inputs() -> None:
    good = torch.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="negative"):
        power_mean(torch.tensor([1.0, -2.0]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        power_mean(torch.tensor([1.0, float("nan")]), 1.0)
    with pytest.raises(ValueError, match="gamma is NaN"):
        power_mean(good, float("nan"))
    with pytest.raises(TypeError, match="gamma"):
        power_mean(good, "2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        power_mean([], 1.0)
    with pytest.raises(ValueError, match="one element"):
        power_mean([torch.ones(2)], 1.0)
    with pytest.raises(TypeError, match="floating"):
        power_mean(torch.tensor([1, 2]), 1.0)
    with pytest.raises(ValueError, match="1-D"):
        power_mean(torch.ones(2, 2), 1.0)
