"""PerturbMaxCategorical, sampling, the NLL and the expected maximum (spec 09 §3, §5.2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.distributions import Categorical, Distribution

from kexue.discrete import (
    PerturbMaxCategorical,
    expected_max,
    perturb_max_nll,
    perturb_max_probs,
    straight_through_sample,
)

from .conftest import MU

F64 = torch.float64


def test_distribution_basics() -> None:
    logits = torch.tensor([MU, [0.0, 0.0, 0.0, 0.0, 5.0]], dtype=F64)
    dist = PerturbMaxCategorical(logits, "normal", num_nodes=30)
    assert isinstance(dist, Distribution)
    assert dist.batch_shape == (2,)
    assert dist.event_shape == ()
    torch.testing.assert_close(dist.probs, perturb_max_probs(logits, num_nodes=30))
    value = torch.tensor([3, 4])
    torch.testing.assert_close(dist.log_prob(value), dist.log_probs[[0, 1], value])
    assert dist.log_prob(torch.tensor(0)).shape == (2,)
    assert dist.sample((7,)).shape == (7, 2)
    assert dist.enumerate_support().shape == (5, 2)
    assert dist.mode.tolist() == [3, 4]
    assert dist.expand((3, 2)).batch_shape == (3, 2)
    assert "PerturbMaxCategorical" in repr(dist)


def test_gumbel_distribution_equals_categorical() -> None:
    logits = torch.randn(3, 6, dtype=F64, generator=torch.Generator().manual_seed(0))
    ours, reference = PerturbMaxCategorical(logits, "gumbel"), Categorical(logits=logits)
    torch.testing.assert_close(ours.probs, reference.probs)
    torch.testing.assert_close(ours.entropy(), reference.entropy())
    value = torch.tensor([0, 5, 2])
    torch.testing.assert_close(ours.log_prob(value), reference.log_prob(value))


def test_entropy_handles_zero_probabilities() -> None:
    dist = PerturbMaxCategorical(torch.tensor([0.0, 0.3, 9.0], dtype=F64), "uniform")
    assert float(dist.probs[0]) == 0.0
    entropy = dist.entropy()
    assert bool(torch.isfinite(entropy))
    assert float(entropy) == 0.0  # the only possible class is the third
    widening = [float(PerturbMaxCategorical(torch.tensor(MU, dtype=F64), scale=s).entropy())
                for s in (0.1, 1.0, 10.0)]  # fmt: skip
    assert widening == sorted(widening)


def test_samples_are_exact_argmax_draws() -> None:
    logits = torch.tensor(MU, dtype=F64)
    dist = PerturbMaxCategorical(logits, "logistic", num_nodes=64)
    torch.manual_seed(11)
    draws = dist.sample((200_000,))
    counts = np.bincount(draws.numpy(), minlength=5)
    _, p_value = stats.chisquare(counts, dist.probs.numpy() * counts.sum())
    assert p_value > 1e-3


def test_rsample_is_one_hot_with_straight_through_gradient() -> None:
    logits = torch.tensor(MU, dtype=F64, requires_grad=True)
    dist = PerturbMaxCategorical(logits)
    sample = dist.rsample((4,))
    assert sample.shape == (4, 5)
    torch.testing.assert_close(sample.detach().sum(-1), torch.ones(4, dtype=F64))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    weights = torch.arange(5, dtype=F64)
    (sample * weights).sum().backward()
    # the gradient is 4 · ∂(p · w)/∂μ, the Perturb-Max Jacobian applied to w
    jacobian = torch.autograd.functional.jacobian(lambda x: perturb_max_probs(x), logits.detach())
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, 4 * jacobian.T @ weights)
    probs = perturb_max_probs(logits.detach())
    one_hot = straight_through_sample(
        logits.detach(), probs, generator=torch.Generator().manual_seed(0)
    )
    assert float(one_hot.sum()) == pytest.approx(1.0)


def test_distribution_validates_input() -> None:
    with pytest.raises(TypeError, match="floating point"):
        PerturbMaxCategorical(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="NaN"):
        PerturbMaxCategorical(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="n >= 1"):
        PerturbMaxCategorical(torch.zeros(2, 0))
    with pytest.raises(ValueError, match="unknown method"):
        PerturbMaxCategorical(torch.zeros(3), method="quad")
    with pytest.raises(ValueError, match="scale"):
        PerturbMaxCategorical(torch.zeros(3), scale=-2.0)
    dist = PerturbMaxCategorical(torch.zeros(3), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(torch.tensor(5))


def test_nll_and_gumbel_cross_entropy() -> None:
    logits = torch.randn(8, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(
        perturb_max_nll(logits, target, "gumbel"), F.cross_entropy(logits, target)
    )
    losses = perturb_max_nll(logits, target, reduction="none")
    expected = -perturb_max_probs(logits, log=True)[torch.arange(8), target]
    torch.testing.assert_close(losses, expected)
    assert perturb_max_nll(logits, target, reduction="sum").item() == pytest.approx(
        float(losses.sum())
    )
    with pytest.raises(ValueError, match="target values"):
        perturb_max_nll(logits, torch.full((8,), 5))
    with pytest.raises(TypeError, match="integer"):
        perturb_max_nll(logits, target.double())
    with pytest.raises(ValueError, match="shape"):
        perturb_max_nll(logits, target[:3])


def test_expected_max_gradient_is_the_probability_vector() -> None:
    mu = torch.tensor(MU, dtype=F64, requires_grad=True)
    value = expected_max(mu, "normal", "gauss-hermite", 60)
    (gradient,) = torch.autograd.grad(value, mu)
    torch.testing.assert_close(
        gradient, perturb_max_probs(mu.detach(), num_nodes=60), rtol=0, atol=1e-8
    )
    gumbel = expected_max(mu.detach(), "gumbel")
    assert float(gumbel) == pytest.approx(
        float(torch.logsumexp(mu.detach(), 0)) + 0.5772156649015329
    )
    quadrature = expected_max(mu.detach(), "gumbel", "gauss-legendre", 200)
    assert float(quadrature) == pytest.approx(float(gumbel), abs=2e-4)  # log-singular in t
    scaled = expected_max(mu.detach(), "normal", scale=2.0, num_nodes=40)
    assert float(scaled) == pytest.approx(2 * float(expected_max(mu.detach() / 2, num_nodes=40)))
    # Monte-Carlo E max (spec §3: agrees with quadrature; here within 4 standard errors)
    generator = torch.Generator().manual_seed(0)
    draws = (mu.detach() + torch.randn(200_000, 5, dtype=F64, generator=generator)).amax(-1)
    standard_error = float(draws.std()) / np.sqrt(len(draws))
    assert abs(float(draws.mean()) - float(value.detach())) <= 4 * standard_error
    with pytest.raises(ValueError, match="scale > 0"):
        expected_max(mu, scale=0.0)
