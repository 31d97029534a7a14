"""Objectives (spec 02 C2.5, C2.6, C2.10), models and the protocol."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from kexue.density import (
    BernoulliDecoder,
    GaussianDecoder,
    GaussianEncoder,
    LatentModel,
    LatentVariableModel,
    LinearGaussian,
    TwoLayerModel,
    iwae_architecture,
    iwae_loss,
    log_likelihood,
    log_weights,
    multi_sample_vae_loss,
    vae_loss,
)


def _small_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> LatentModel:
    torch.manual_seed(seed)
    model = LatentModel(GaussianEncoder(6, (16,), 3), BernoulliDecoder(3, (16,), 6), latent_dim=3)
    return model.to(dtype)


def _binary(n: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, 6), 0.3, dtype=torch.float64), generator=generator)


def test_c2_5_posterior_variance_shrinks_with_the_decoder_variance() -> None:
    base = LinearGaussian.random(data_dim=10, latent_dim=2, seed=0)
    traces = [
        LinearGaussian(base.A, base.b, sigma).posterior_covariance.trace().item()
        for sigma in (1.0, 0.3, 0.1, 0.03)
    ]
    assert all(a > b for a, b in itertools.pairwise(traces))
    assert traces[-1] < 1e-2 * traces[0]


def test_oracle_marginal_matches_a_monte_carlo_average_over_the_prior() -> None:
    oracle = LinearGaussian.random(data_dim=3, latent_dim=2, sigma_x=1.0, seed=3)
    x = oracle.sample(2, seed=4)
    torch.manual_seed(0)
    z = torch.randn(200_000, 1, 2, dtype=torch.float64)
    monte_carlo = torch.logsumexp(oracle.decode(z).log_prob(x), dim=0) - math.log(200_000)
    torch.testing.assert_close(monte_carlo, oracle.log_marginal(x), rtol=0, atol=0.01)


def test_c2_6_single_sample_objective_equals_reconstruction_plus_analytic_kl() -> None:
    model = _small_model()
    x = _binary(1).expand(20_000, -1)
    torch.manual_seed(2)
    monte_carlo = iwae_loss(model, x, 1, reduction="none")  # -(log w) with one sample, eq. (5)
    torch.manual_seed(3)
    analytic = vae_loss(model, x, reduction="none")
    difference = monte_carlo.mean() - analytic.mean()
    standard_error = math.hypot(monte_carlo.std().item(), analytic.std().item()) / math.sqrt(20_000)
    assert abs(difference.item()) < 3 * standard_error
    assert analytic.std() < monte_carlo.std()  # the analytic KL removes variance


def test_c2_10_iwae_gradient_is_the_normalised_weight_average() -> None:
    model = _small_model()
    x = _binary(4)
    torch.manual_seed(5)
    weights = log_weights(model, x, 7)
    loss = -(torch.logsumexp(weights, 1) - math.log(7)).sum()
    parameters = list(model.parameters())
    autograd = torch.autograd.grad(loss, parameters, retain_graph=True)
    normalised = torch.softmax(weights.detach(), dim=1)
    surrogate = -(normalised * weights).sum()
    explicit = torch.autograd.grad(surrogate, parameters)
    for a, b in zip(autograd, explicit, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_bounds_are_ordered_on_a_small_model() -> None:
    """C2.2 on a (random) neural model: E[L_1] <= E[L_5] <= E[L_50] <= log p̂ (5000 samples)."""
    model = _small_model(seed=4)
    x = _binary(1, seed=6).expand(3000, -1)
    torch.manual_seed(7)
    bounds = [-iwae_loss(model, x, m).item() for m in (1, 5, 50)]
    estimate = log_likelihood(model, x[:1], 20_000).log_likelihood.item()
    assert bounds[0] < bounds[1] < bounds[2] < estimate + 0.01
    assert -multi_sample_vae_loss(model, x[:300], 5).item() < bounds[1]


def test_models_follow_the_protocol_and_shapes() -> None:
    one = iwae_architecture(1)
    two = iwae_architecture(2)
    x = torch.bernoulli(torch.full((5, 784), 0.2))
    for model in (one, two):
        assert isinstance(model, LatentVariableModel)
        weights = log_weights(model, x, 3)
        assert weights.shape == (5, 3)
        assert torch.isfinite(weights).all()
        loss = iwae_loss(model, x, 2)
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
    assert isinstance(two, TwoLayerModel)
    z = two.prior().sample((4,))
    assert z.shape == (4, 150)
    assert two.encode(x).rsample().shape == (5, 150)
    sizes = [m.out_features for m in one.modules() if isinstance(m, nn.Linear)]
    assert sizes == [200, 200, 100, 200, 200, 784]  # 784-200-200-(50 mean, 50 scale) and back


def test_two_layer_log_prob_matches_its_parts() -> None:
    torch.manual_seed(0)
    model = TwoLayerModel(data_dim=8, hidden=(6, 5), latent_dims=(4, 3)).double()
    x = torch.bernoulli(torch.full((2, 8), 0.5, dtype=torch.float64))
    proposal = model.encode(x)
    z = proposal.rsample((3,))
    z1, z2 = z[..., :4], z[..., 4:]
    expected = model.encoder1(x).log_prob(z1) + model.encoder2(z1).log_prob(z2)
    torch.testing.assert_close(proposal.log_prob(z), expected)
    prior_expected = model.prior1(z2).log_prob(z1) + torch.distributions.Normal(0.0, 1.0).log_prob(
        z2
    ).sum(-1)
    torch.testing.assert_close(model.prior().log_prob(z), prior_expected)


def test_gaussian_decoder_scales() -> None:
    learned = GaussianDecoder(2, (4,), 3, scale="learned", scale_floor=1e-3)
    with torch.no_grad():
        learned.raw_scale.fill_(-100.0)  # type: ignore[union-attr]
    assert learned.scale.item() == pytest.approx(1e-3)
    fixed = GaussianDecoder(2, (4,), 3, scale=0.05)
    assert fixed(torch.zeros(1, 2)).base_dist.scale.unique().item() == pytest.approx(0.05)
    per_dimension = GaussianDecoder(2, (4,), 3, per_dimension=True)
    assert per_dimension.raw_scale is not None
    assert per_dimension.raw_scale.shape == (3,)
    with pytest.raises(ValueError, match="scale"):
        GaussianDecoder(2, (4,), 3, scale=0.0)
    # The normalising constant is included: at its mean, log density = -(D/2) log 2π.
    unit = GaussianDecoder(2, (4,), 3, scale=1.0)
    z = torch.zeros(1, 2)
    mean = unit(z).mean
    assert unit(z).log_prob(mean).item() == pytest.approx(-1.5 * math.log(2 * math.pi), rel=1e-6)


def test_bad_arguments() -> None:
    model = _small_model()
    x = _binary(3)
    with pytest.raises(ValueError, match="beta"):
        vae_loss(model, x, beta=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        iwae_loss(model, x, 2, reduction="avg")
    with pytest.raises(ValueError, match="num_samples"):
        iwae_loss(model, x, 0)
    with pytest.raises(ValueError, match="stochastic_layers"):
        iwae_architecture(3)
    with pytest.raises(ValueError, match="activation"):
        GaussianEncoder(3, (4,), 2, activation="gelu")
    with pytest.raises(ValueError, match="positive"):
        GaussianEncoder(3, (0,), 2)
    with pytest.raises(ValueError, match="NaN"):
        vae_loss(model, torch.full_like(x, float("nan")))


def test_beta_weights_the_kl_term() -> None:
    model = _small_model()
    x = _binary(8)
    torch.manual_seed(0)
    zero = vae_loss(model, x, beta=0.0)
    torch.manual_seed(0)
    one = vae_loss(model, x, beta=1.0)
    torch.manual_seed(0)
    two = vae_loss(model, x, beta=2.0)
    torch.testing.assert_close(two - one, one - zero)
    assert (one - zero).item() > 0
