"""Honest uncertainty for log p(x) (issue 21 item 1): Pareto k̂, calibrated intervals, the
unreliable flag, on exact-likelihood models (pPCA and a Gaussian-mixture prior)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from kexue.density import LinearGaussian, LinearGaussianMixture, log_likelihood
from kexue.density._diagnostics import pareto_k, tail_length

from .proposals import families, gaussian_proposal, prior_proposal

FAST = ("pPCA over-dispersed", "pPCA under-dispersed", "mixture matched", "mixture under-dispersed")


def _coverage(name: str, points: int, num_samples: int) -> tuple[float, float, int, float]:
    """(coverage where reliable, old ±2 SE coverage, reliable count, unreliable share)."""
    model, exact_model = families()[name]
    x = exact_model.sample(points, seed=11)
    exact = exact_model.log_marginal(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        estimate = log_likelihood(model, x, num_samples, seed=5)  # type: ignore[arg-type]
    assert estimate.lower is not None
    assert estimate.upper is not None
    assert estimate.unreliable is not None
    reliable = ~estimate.unreliable
    inside = (estimate.lower <= exact) & (exact <= estimate.upper)
    half = 2 * estimate.standard_error
    old = ((estimate.log_likelihood - exact).abs() <= half).double().mean().item()
    count = int(reliable.sum())
    coverage = inside[reliable].double().mean().item() if count else math.nan
    return coverage, old, count, estimate.unreliable.double().mean().item()


@pytest.mark.parametrize("name", FAST)
def test_nominal_95_percent_interval_covers_at_least_90_percent(name: str) -> None:
    coverage, _, count, _ = _coverage(name, points=200, num_samples=1000)
    assert count >= 150
    assert coverage >= 0.90


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(families()))
def test_coverage_on_every_family(name: str) -> None:
    coverage, old, count, unreliable = _coverage(name, points=400, num_samples=1000)
    print(f"{name}: coverage {coverage:.3f} on {count} reliable, old ±2 SE {old:.3f}, "
          f"unreliable {unreliable:.3f}")  # fmt: skip
    if count >= 100:
        assert coverage >= 0.90


def test_the_old_standard_error_undercovers_an_under_dispersed_proposal() -> None:
    _, old, _, _ = _coverage("pPCA under-dispersed", points=200, num_samples=1000)
    assert old < 0.90  # why the interval exists: ±2 SE of spec 02 §3.3 covers 0.875 here


def test_prior_proposal_in_50_dimensions_is_flagged() -> None:
    model = LinearGaussian.random(data_dim=60, latent_dim=50, sigma_x=1.0, seed=1)
    x = model.sample(8, seed=11)
    with pytest.warns(RuntimeWarning, match="unreliable"):
        estimate = log_likelihood(prior_proposal(model), x, 1000, seed=5)
    assert estimate.unreliable is not None
    assert estimate.pareto_k is not None
    assert bool(estimate.unreliable.all())
    assert bool((estimate.pareto_k > 0.7).all())
    assert estimate.lower is not None
    assert bool(estimate.lower.isnan().all())
    assert math.isnan(estimate.mean_interval[0])
    # The estimate is thousands of nats too low while the old standard error stays below 1.
    error = estimate.log_likelihood - model.log_marginal(x)
    assert error.max() < -100
    assert estimate.standard_error.max() < 1


@pytest.mark.parametrize("k", [0.0, 0.3, 0.5, 0.7])
def test_pareto_k_recovers_the_tail_index_and_agrees_with_scipy(k: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    generator = torch.Generator().manual_seed(int(k * 10))
    m = 5000
    uniform = torch.rand(20, m, generator=generator, dtype=torch.float64)
    tail = -torch.log1p(-uniform)
    weights = tail if k == 0 else torch.expm1(k * tail) / k  # GPD(k, 1)
    n = tail_length(m)
    top = torch.topk(weights.log(), n + 1, dim=1).values
    k_hat = pareto_k(top)
    assert abs(k_hat.mean().item() - k) < 0.06
    largest = torch.sort(torch.topk(weights, n + 1, dim=1).values, dim=1).values
    fits = [
        stats.genpareto.fit((row[1:] - row[0]).numpy(), floc=0)[0] for row in largest
    ]  # maximum likelihood on the same exceedances
    assert abs(k_hat.mean().item() - sum(fits) / len(fits)) < 0.05


def test_pareto_k_special_cases() -> None:
    equal = torch.zeros(3, 50, dtype=torch.float64)
    assert bool((pareto_k(equal) == -math.inf).all())
    few = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    assert math.isnan(pareto_k(few).item())
    # Weights spanning thousands of nats do not underflow into a light tail.
    spread = -torch.arange(50, dtype=torch.float64)[None] * 100.0
    assert pareto_k(spread).item() > 5


def test_exact_posterior_interval_is_tight_and_one_sample_says_nothing() -> None:
    model = LinearGaussian.random(seed=0)
    x = model.sample(5, seed=1)
    exact = model.log_marginal(x)
    estimate = log_likelihood(model, x, 100)
    assert estimate.lower is not None
    assert estimate.upper is not None
    assert bool(((estimate.lower <= exact) & (exact <= estimate.upper)).all())
    assert (estimate.upper - estimate.lower).max() < 1e-6
    mismatched = gaussian_proposal(model, 0.5, 2.0)
    with pytest.warns(RuntimeWarning, match="fewer than 25 samples"):
        one = log_likelihood(mismatched, x, 1)
    assert bool(one.standard_error.isnan().all())
    assert one.unreliable is not None
    assert bool(one.unreliable.all())


def test_interval_is_chunk_invariant_and_the_mean_interval_covers() -> None:
    model = LinearGaussianMixture.random(data_dim=4, latent_dim=2, sigma_x=1.0, seed=0)
    proposal = gaussian_proposal(model, 0.5, 2.0)
    x = model.sample(13, seed=5)
    whole = log_likelihood(proposal, x, 500, chunk_size=10**9, seed=7)
    chunked = log_likelihood(proposal, x, 500, chunk_size=7, seed=7)
    for field in ("pareto_k", "lower", "upper", "bias", "error_scale"):
        a, b = getattr(whole, field), getattr(chunked, field)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, equal_nan=True)
    # The mean over groups of 10 points: 40 groups, nominal 95 %.
    points = model.sample(400, seed=12)
    exact = model.log_marginal(points)
    estimate = log_likelihood(proposal, points, 500, seed=3)
    hits = []
    for start in range(0, 400, 10):
        low, high = estimate.select(slice(start, start + 10)).mean_interval
        hits.append(low <= exact[start : start + 10].mean().item() <= high)
    assert sum(hits) / len(hits) >= 0.9
    low, high = estimate.nll_interval
    assert low <= -exact.mean().item() <= high


def test_bad_level_and_threshold() -> None:
    model = LinearGaussian.random(seed=0)
    x = model.sample(2)
    with pytest.raises(ValueError, match="level"):
        log_likelihood(model, x, 30, level=1.5)
    with pytest.raises(ValueError, match="pareto_k_threshold"):
        log_likelihood(model, x, 30, pareto_k_threshold=1.2)
