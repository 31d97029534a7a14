"""C10.1 (ball/cube volume ratio, spec 10 §5) and the mean minimiser C10.2."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from kexue.hubness import ball_cube_ratio, log_ball_cube_ratio, log_unit_ball_volume

# spec 10 §5: V_n / 2^n
SPEC_RATIOS = {
    1: 1.0,
    2: 0.7854,
    3: 0.5236,
    5: 0.1645,
    10: 0.00249,
    20: 2.46e-8,
    50: 1.54e-28,
    100: 1.87e-70,
    128: 1.52e-96,
    256: 9.67e-230,
}


@pytest.mark.parametrize(("n", "expected"), sorted(SPEC_RATIOS.items()))
def test_ratio_matches_spec_table(n: int, expected: float) -> None:
    # C10.1: relative 1e-4 in log space; the printed values carry 3-4 significant digits, so the
    # ratio itself agrees to half a unit of their last digit (< 0.25 %).
    assert math.isclose(log_ball_cube_ratio(n), math.log(expected), rel_tol=1e-4, abs_tol=1e-12)
    assert math.isclose(ball_cube_ratio(n), expected, rel_tol=2.5e-3)


def test_log_ratio_512_and_underflow() -> None:
    assert math.isclose(log_ball_cube_ratio(512) / math.log(10), -533.8, abs_tol=0.01)
    assert ball_cube_ratio(512) == 0.0  # underflows float64, as documented
    assert ball_cube_ratio(339) > 0.0


def test_exact_low_dimensions() -> None:
    assert math.isclose(math.exp(log_unit_ball_volume(2)), math.pi, rel_tol=1e-12)
    assert math.isclose(math.exp(log_unit_ball_volume(3)), 4 * math.pi / 3, rel_tol=1e-12)
    assert math.isclose(ball_cube_ratio(2), math.pi / 4, rel_tol=1e-12)
    assert math.isclose(ball_cube_ratio(1), 1.0, rel_tol=1e-12)


def test_strictly_decreasing_to_1024() -> None:
    values = [log_ball_cube_ratio(n) for n in range(1, 1025)]
    assert all(math.isfinite(value) for value in values)
    assert all(b < a for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("bad", [0, -3])
def test_bad_dimension_value(bad: int) -> None:
    with pytest.raises(ValueError, match="dimension"):
        log_ball_cube_ratio(bad)


@pytest.mark.parametrize("bad", [2.0, True, "3"])
def test_bad_dimension_type(bad: object) -> None:
    with pytest.raises(TypeError, match="dimension"):
        ball_cube_ratio(bad)  # type: ignore[arg-type]


def test_mean_minimises_sum_of_squared_distances() -> None:
    """C10.2: the gradient 2Σ(c − x_i) vanishes at the mean; any perturbation increases the sum."""
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(500, 7, generator=generator, dtype=torch.float64) * 3 + 1
    center = points.mean(dim=0).requires_grad_(True)
    objective = ((points - center) ** 2).sum()
    (gradient,) = torch.autograd.grad(objective, center)
    assert float(gradient.abs().max()) < 1e-10
    base = float(objective.detach())
    for _ in range(20):
        delta = torch.randn(7, generator=generator, dtype=torch.float64) * 1e-3
        perturbed = float(((points - (center.detach() + delta)) ** 2).sum())
        assert perturbed > base
        # Exactly N‖δ‖² more (the cross term vanishes at the mean).
        assert math.isclose(perturbed - base, 500 * float(delta @ delta), rel_tol=1e-6)
