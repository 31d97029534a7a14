"""log_likelihood on the linear-Gaussian oracle (spec 02 C2.1-C2.4, C2.8) and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from kexue.density import (
    LinearGaussian,
    WithProposal,
    bits_per_dim,
    dequantized_bits_per_dim,
    log_likelihood,
    log_weights,
)


@pytest.fixture(scope="module")
def oracle() -> LinearGaussian:
    return LinearGaussian.random(data_dim=10, latent_dim=2, sigma_x=0.1, seed=0)


def _mismatched(model: LinearGaussian) -> WithProposal:
    """The posterior with its mean shifted by 0.5 sigma and its variance doubled (C2.4)."""

    def proposal(x: torch.Tensor) -> MultivariateNormal:
        exact = model.posterior(x)
        std = exact.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt()
        return MultivariateNormal(exact.loc + 0.5 * std, 2 * exact.covariance_matrix)

    return WithProposal(model, proposal)


def _prior_proposal(model: LinearGaussian) -> WithProposal:
    def proposal(x: torch.Tensor) -> Independent:
        loc = torch.zeros(x.shape[0], model.A.shape[1], dtype=x.dtype)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)

    return WithProposal(model, proposal)


def test_c2_3_exact_posterior_gives_a_zero_variance_estimate(oracle: LinearGaussian) -> None:
    x = oracle.sample(5, seed=1)
    weights = log_weights(oracle, x, num_samples=64)
    exact = oracle.log_marginal(x)
    torch.testing.assert_close(weights, exact[:, None].expand_as(weights), rtol=0, atol=1e-10)
    assert weights.std(dim=1).max() < 1e-10
    estimate = log_likelihood(oracle, x, num_samples=10)
    torch.testing.assert_close(estimate.log_likelihood, exact, rtol=0, atol=1e-10)
    torch.testing.assert_close(
        estimate.effective_sample_size, torch.full((5,), 10.0, dtype=torch.float64)
    )
    assert estimate.standard_error.max() < 1e-6


@pytest.mark.parametrize("num_samples", [1, 5, 50])
def test_c2_1_the_weight_average_is_unbiased_for_the_likelihood(
    oracle: LinearGaussian, num_samples: int
) -> None:
    x = oracle.sample(1, seed=2)
    exact = oracle.log_marginal(x).exp().item()
    torch.manual_seed(0)
    repetitions = 10_000
    weights = log_weights(_mismatched(oracle), x.expand(repetitions, -1), num_samples).exp()
    means = weights.mean(dim=1)  # one estimate of p(x) per repetition
    standard_error = means.std().item() / math.sqrt(repetitions)
    assert abs(means.mean().item() - exact) < 3 * standard_error


def test_c2_2_bound_is_monotone_in_m_and_converges(oracle: LinearGaussian) -> None:
    x = oracle.sample(1, seed=3)
    exact = oracle.log_marginal(x).item()
    torch.manual_seed(1)
    model = _mismatched(oracle)
    bounds, errors = {}, {}
    for m in (1, 5, 50):
        repetitions = 4000
        lw = log_weights(model, x.expand(repetitions, -1), m)
        estimates = torch.logsumexp(lw, dim=1) - math.log(m)
        bounds[m] = estimates.mean().item()
        errors[m] = estimates.std().item() / math.sqrt(repetitions)
    assert bounds[1] < bounds[5] < bounds[50] <= exact + 3 * errors[50]
    assert bounds[5] - bounds[1] > 3 * math.hypot(errors[1], errors[5])  # significantly positive
    repeated = torch.stack(
        [log_likelihood(model, x, 5000, seed=s).log_likelihood[0] for s in range(100)]
    )
    assert abs(repeated.mean().item() - exact) < 0.01


def test_c2_4_prior_sampling_fails_and_a_mismatched_posterior_converges(
    oracle: LinearGaussian,
) -> None:
    x = oracle.sample(1, seed=4)
    exact = oracle.log_marginal(x).item()
    prior_runs = torch.stack(
        [
            log_likelihood(_prior_proposal(oracle), x, 500, seed=s).log_likelihood[0]
            for s in range(200)
        ]
    )
    mismatched = _mismatched(oracle)
    m50 = torch.stack(
        [log_likelihood(mismatched, x, 50, seed=s).log_likelihood[0] for s in range(200)]
    )
    m500 = torch.stack(
        [log_likelihood(mismatched, x, 500, seed=s).log_likelihood[0] for s in range(200)]
    )
    assert prior_runs.std() > 5 * m50.std()
    assert abs(m500.mean().item() - exact) < 0.02
    # The per-point standard error flags the prior proposal as unreliable.
    prior_once = log_likelihood(_prior_proposal(oracle), x, 500, seed=0)
    assert prior_once.effective_sample_size[0] < 20
    assert prior_once.standard_error[0] > log_likelihood(mismatched, x, 500).standard_error[0]


@pytest.mark.parametrize("chunk_size", [1, 7, 499, 500, 10_000])
def test_c2_8_chunking_never_changes_the_estimate(oracle: LinearGaussian, chunk_size: int) -> None:
    x = oracle.sample(13, seed=5)
    model = _mismatched(oracle)
    reference = log_likelihood(model, x, 500, chunk_size=10**9, seed=7)
    chunked = log_likelihood(model, x, 500, chunk_size=chunk_size, seed=7)
    torch.testing.assert_close(chunked.log_likelihood, reference.log_likelihood, rtol=0, atol=1e-10)
    torch.testing.assert_close(chunked.effective_sample_size, reference.effective_sample_size,
                               rtol=1e-10, atol=0)  # fmt: skip


def test_c2_8_equals_a_per_point_loop_and_is_reproducible(oracle: LinearGaussian) -> None:
    x = oracle.sample(6, seed=6)
    model = _mismatched(oracle)
    batched = log_likelihood(model, x, 333, chunk_size=100, seed=3)
    one_by_one = torch.cat(
        [
            log_likelihood(model, x[i : i + 1], 333, seed=3, first_index=i).log_likelihood
            for i in range(6)
        ]
    )
    torch.testing.assert_close(one_by_one, batched.log_likelihood, rtol=0, atol=1e-10)
    again = log_likelihood(model, x, 333, chunk_size=100, seed=3)
    assert torch.equal(batched.log_likelihood, again.log_likelihood)
    assert not torch.equal(
        batched.log_likelihood, log_likelihood(model, x, 333, seed=4).log_likelihood
    )
    # Against an explicit reference: logsumexp of the same weights, one point at a time.
    for i in range(6):
        weights = log_weights(model, x[i : i + 1], 20_000)[0]
        reference = (torch.logsumexp(weights, 0) - math.log(20_000)).item()
        assert (
            abs(batched.log_likelihood[i].item() - reference)
            < 5 * batched.standard_error[i].item() + 1e-3
        )


def test_float32_models_and_non_gaussian_proposals(oracle: LinearGaussian) -> None:
    x = oracle.sample(4, seed=8)
    exact = oracle.log_marginal(x)
    float32 = LinearGaussian(oracle.A.float(), oracle.b.float(), oracle.sigma_x)
    estimate = log_likelihood(float32, x.float(), 100)
    assert estimate.log_likelihood.dtype == torch.float64
    torch.testing.assert_close(estimate.log_likelihood, exact, rtol=0, atol=1e-4)

    def student_proposal(batch: torch.Tensor) -> Independent:
        exact_posterior = oracle.posterior(batch)
        return Independent(
            torch.distributions.StudentT(
                5.0, exact_posterior.loc, torch.ones_like(exact_posterior.loc) * 0.05
            ),
            1,
        )

    heavy = WithProposal(oracle, student_proposal)
    first = log_likelihood(heavy, x, 2000, seed=1)
    assert torch.equal(first.log_likelihood, log_likelihood(heavy, x, 2000, seed=1).log_likelihood)
    assert (first.log_likelihood - exact).abs().max() < 0.05


def test_bits_per_dim() -> None:
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert dequantized_bits_per_dim(0.0, 3) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="num_dims"):
        bits_per_dim(1.0, 0)
    with pytest.raises(ValueError, match="levels"):
        dequantized_bits_per_dim(1.0, 3, levels=1)


def test_bad_input(oracle: LinearGaussian) -> None:
    x = oracle.sample(3, seed=9)
    with pytest.raises(ValueError, match="num_samples"):
        log_likelihood(oracle, x, 0)
    with pytest.raises(ValueError, match="num_samples"):
        log_weights(oracle, x, -1)
    with pytest.raises(ValueError, match="NaN"):
        log_likelihood(oracle, torch.full_like(x, float("nan")), 10)
    with pytest.raises(ValueError, match="non-empty"):
        log_likelihood(oracle, x[:0], 10)
    with pytest.raises(TypeError, match="floating"):
        log_likelihood(oracle, x.long(), 10)
    with pytest.raises(TypeError, match="protocol"):
        log_likelihood(object(), x, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_size"):
        log_likelihood(oracle, x, 10, chunk_size=0)
    with pytest.raises(RuntimeError):
        log_likelihood(oracle, x[:, :4], 10)  # wrong data dimension for the decoder


def test_summed_event_dimensions_are_required(oracle: LinearGaussian) -> None:
    class NotIndependent(WithProposal):
        def decode(self, z: torch.Tensor) -> Normal:  # log_prob is per dimension: a common bug
            loc = z @ oracle.A.T + oracle.b
            return Normal(loc, torch.full_like(loc, oracle.sigma_x))

    model = NotIndependent(oracle, oracle.posterior)
    with pytest.raises(ValueError, match="Independent"):
        log_likelihood(model, oracle.sample(3), 10)
