"""Gradient penalties (spec 01 §5.5; spec 12 §3.4 test targets)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.lipschitz import (
    LazyInterval,
    gradient_penalty,
    input_gradient_norm,
    lazy_optimizer_hyperparameters,
    r1_penalty,
    r2_penalty,
)

from .conftest import relu_mlp, small_cnn


def test_gradient_penalty_matches_an_explicit_per_sample_loop() -> None:
    critic = small_cnn(0)
    real = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    fake = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    value = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    alpha = torch.rand(
        (5, 1, 1, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    expected = 0.0
    for b in range(5):
        point = (alpha[b] * real[b] + (1 - alpha[b]) * fake[b]).unsqueeze(0).requires_grad_(True)
        (gradient,) = torch.autograd.grad(critic(point).sum(), point)
        expected += (gradient.flatten().norm() - 1) ** 2
    assert value.item() == pytest.approx(10 * expected.item() / 5, rel=1e-12)


def test_interpolation_coefficient_is_drawn_per_sample() -> None:
    # A critic that records its input: each interpolate lies on the segment real_b -> fake_b.
    seen: list[torch.Tensor] = []

    def critic(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.detach())
        return x.flatten(1).sum(dim=1)

    real = torch.zeros(4, 3, 5, dtype=torch.float64)
    fake = torch.ones(4, 3, 5, dtype=torch.float64)
    gradient_penalty(critic, real, fake)
    points = seen[0]
    per_sample_constant = points.flatten(1).std(dim=1)
    assert (per_sample_constant == 0).all()  # one alpha per sample, not per element
    assert points.flatten(1)[:, 0].unique().numel() == 4


def test_penalty_vanishes_for_a_unit_gradient_linear_critic() -> None:
    critic = nn.Linear(6, 1, bias=True).double()
    with torch.no_grad():
        critic.weight.copy_(torch.nn.functional.normalize(torch.randn(1, 6, dtype=torch.float64)))
    real, fake = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, 6, dtype=torch.float64)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(0.0, abs=1e-20)
    assert gradient_penalty(critic, real, fake, center=0.0, weight=1.0).item() == pytest.approx(1.0)
    with torch.no_grad():
        critic.weight.mul_(0.5)
    assert gradient_penalty(critic, real, fake, one_sided=True).item() == 0.0
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(10 * 0.25)


def test_penalty_gradcheck_in_critic_parameters() -> None:
    critic = relu_mlp(0, widths=(3, 5, 1))
    real, fake = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    weight = critic[0].weight

    def penalty(w: torch.Tensor) -> torch.Tensor:
        def function(x: torch.Tensor) -> torch.Tensor:
            return critic[2](torch.relu(x @ w.T + critic[0].bias))

        return gradient_penalty(function, real, fake, generator=torch.Generator().manual_seed(1))

    assert torch.autograd.gradcheck(penalty, (weight.detach().clone().requires_grad_(True),))


def test_r1_and_r2() -> None:
    critic = nn.Linear(4, 1).double()
    real = torch.randn(3, 4, dtype=torch.float64)
    squared = critic.weight.norm().item() ** 2
    assert r1_penalty(critic, real, gamma=10.0).item() == pytest.approx(5 * squared)
    assert r2_penalty(critic, real, gamma=2.0).item() == pytest.approx(squared)
    scores, norms = input_gradient_norm(critic, real)
    assert scores.shape == norms.shape == (3,)


def test_zero_gradient_gives_finite_penalty_gradients() -> None:
    critic = nn.Linear(4, 1).double()
    with torch.no_grad():
        critic.weight.zero_()
    real, fake = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    gradient_penalty(critic, real, fake).backward()
    assert torch.isfinite(critic.weight.grad).all()  # type: ignore[arg-type]


def test_lazy_interval_and_hyperparameters() -> None:
    interval = LazyInterval(every=4)
    assert [interval.applies(step) for step in range(5)] == [True, False, False, False, True]
    assert interval.scale(torch.tensor(1.5)).item() == 6.0
    lr, betas = lazy_optimizer_hyperparameters(2e-3, (0.0, 0.99), every=16)
    assert lr == pytest.approx(2e-3 * 16 / 17)
    assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert lazy_optimizer_hyperparameters(1.0, (0.5, 0.9), 1) == (1.0, (0.5, 0.9))
    with pytest.raises(ValueError, match="every"):
        LazyInterval(0)


def test_bad_input() -> None:
    critic = relu_mlp(0)
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="equal shapes"):
        gradient_penalty(critic, x, x[:3])
    with pytest.raises(ValueError, match="weight"):
        gradient_penalty(critic, x, x, weight=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        gradient_penalty(critic, x, x * float("nan"))
    with pytest.raises(ValueError, match="gamma"):
        r1_penalty(critic, x, gamma=-1.0)
