"""Reference constants for (init) and (prior) normalisation (spec 06 §2, §3): C6.6."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kexue.mtl import (
    binary_cross_entropy_init_loss,
    binary_cross_entropy_prior_loss,
    constant_prior_loss,
    cross_entropy_init_loss,
    cross_entropy_prior_loss,
    l1_prior_loss,
    mse_init_loss,
    mse_prior_loss,
)

P = [0.5, 0.3, 0.15, 0.05]


def labels_with_frequencies() -> torch.Tensor:
    """20 labels with class frequencies exactly P = [.5, .3, .15, .05]."""
    return torch.tensor([0] * 10 + [1] * 6 + [2] * 3 + [3] * 1)


@pytest.mark.parametrize("k", [2, 3, 10, 1000])
def test_zero_logits_cross_entropy_is_log_k(k: int) -> None:
    """C6.6: zero logits give CE = log K exactly."""
    labels = torch.arange(50) % k
    per_sample = F.cross_entropy(torch.zeros(50, k, dtype=torch.float64), labels, reduction="none")
    assert bool((per_sample == math.log(k)).all())  # exactly, per sample
    assert cross_entropy_init_loss(k) == math.log(k)
    assert float(per_sample.mean()) == pytest.approx(math.log(k), rel=1e-15)  # mean: rounding
    bce = F.binary_cross_entropy_with_logits(
        torch.zeros(7, dtype=torch.float64), torch.rand(7, dtype=torch.float64).round()
    )
    assert float(bce) == pytest.approx(binary_cross_entropy_init_loss(), rel=1e-15)


def test_minimum_constant_cross_entropy_is_label_entropy() -> None:
    """C6.6: min CE over constant logits = H(label marginal) = 1.14212 for p = [.5,.3,.15,.05]."""
    labels = labels_with_frequencies()
    entropy = -sum(p * math.log(p) for p in P)
    assert entropy == pytest.approx(1.14212, abs=5e-6)
    assert cross_entropy_prior_loss(labels) == pytest.approx(entropy, rel=1e-14)
    assert cross_entropy_prior_loss(frequencies=P) == pytest.approx(entropy, rel=1e-14)
    assert cross_entropy_prior_loss(frequencies=[10, 6, 3, 1]) == pytest.approx(entropy, rel=1e-14)
    fitted = constant_prior_loss(F.cross_entropy, labels, (4,))
    assert fitted == pytest.approx(entropy, abs=1e-9)
    assert cross_entropy_prior_loss(labels, num_classes=6) == pytest.approx(entropy, rel=1e-14)


def test_mse_best_constant_is_mean_and_loss_is_variance() -> None:
    """C6.6: for MSE the best constant is the mean and its loss the variance (1e-10)."""
    gen = torch.Generator().manual_seed(0)
    y = 3.0 + 2.0 * torch.randn(200, 3, generator=gen, dtype=torch.float64)
    variance = y.var(dim=0, unbiased=False)
    assert mse_prior_loss(y) == pytest.approx(float(variance.mean()), rel=1e-12)
    assert mse_prior_loss(y, reduction="sum") == pytest.approx(float(variance.sum()), rel=1e-12)
    mean_loss = F.mse_loss(y.mean(0).expand_as(y), y)
    assert float(mean_loss) == pytest.approx(mse_prior_loss(y), abs=1e-10)
    fitted = constant_prior_loss(F.mse_loss, y, (3,))
    assert fitted == pytest.approx(mse_prior_loss(y), abs=1e-10)
    # (init): the zero prediction gives E‖y‖² (= variance + mean², larger).
    assert mse_init_loss(y) == pytest.approx(float(F.mse_loss(torch.zeros_like(y), y)), rel=1e-14)
    assert mse_init_loss(y, reduction="sum") == pytest.approx(float((y**2).sum(1).mean()))
    assert mse_init_loss(y) > mse_prior_loss(y)


def test_binary_and_l1_priors_match_brute_force() -> None:
    gen = torch.Generator().manual_seed(1)
    y = (torch.rand(400, 2, generator=gen, dtype=torch.float64) < torch.tensor([0.1, 0.6])).double()
    p = y.mean(0)
    expected = -(p * p.log() + (1 - p) * (1 - p).log())
    assert binary_cross_entropy_prior_loss(y) == pytest.approx(float(expected.mean()), rel=1e-14)
    fitted = constant_prior_loss(F.binary_cross_entropy_with_logits, y, (2,))
    assert fitted == pytest.approx(binary_cross_entropy_prior_loss(y), abs=1e-9)
    # "digit is 0" of E6.1: prior H(0.1) ≈ 0.325 < log 2.
    assert binary_cross_entropy_prior_loss(torch.tensor([1.0] + [0.0] * 9)) == pytest.approx(
        0.3250829733914482, rel=1e-12
    )
    z = torch.randn(101, generator=gen, dtype=torch.float64) ** 3
    grid = torch.linspace(float(z.min()), float(z.max()), 20001, dtype=torch.float64)
    brute = float((z[None, :] - grid[:, None]).abs().mean(1).min())
    assert l1_prior_loss(z) == pytest.approx(brute, abs=1e-3)
    assert l1_prior_loss(z) <= brute + 1e-12


def test_reference_bad_inputs() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        cross_entropy_init_loss(1)
    with pytest.raises(TypeError, match="exactly one"):
        cross_entropy_prior_loss()
    with pytest.raises(TypeError, match="integer"):
        cross_entropy_prior_loss(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=">= num_classes"):
        cross_entropy_prior_loss(torch.tensor([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match="frequencies"):
        cross_entropy_prior_loss(frequencies=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_cross_entropy_prior_loss(torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match="NaN"):
        mse_prior_loss(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="reduction"):
        mse_prior_loss(torch.ones(3), reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch"):
        mse_init_loss(torch.ones(0))
    with pytest.raises(ValueError, match="init has shape"):
        constant_prior_loss(F.mse_loss, torch.ones(3, 2), (2,), init=torch.zeros(3))
