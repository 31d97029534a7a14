"""Any decoder that takes a flat batch of latents (issue 21 item 4) and bad input (item 7)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from kexue.density import (
    BernoulliDecoder,
    GaussianEncoder,
    LatentModel,
    LinearGaussian,
    iwae_loss,
    log_likelihood,
    log_weights,
    multi_sample_vae_loss,
    vae_loss,
)


class ConvEncoder(nn.Module):
    """``[N, 1, 8, 8]`` images to a diagonal Gaussian over ``R^d``."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(4 * 4 * 4, 2 * latent_dim),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> Distribution:
        loc, raw = self.net(x).chunk(2, dim=-1)
        return Independent(Normal(loc, nn.functional.softplus(raw) + 1e-3), 1)


class ConvDecoder(nn.Module):
    """A standard convolutional decoder: ``[N, d]`` latents only (ConvTranspose2d refuses the
    5-D input that an extra sample dimension ``[S, B, d]`` would produce)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 4 * 4 * 4), nn.Unflatten(-1, (4, 4, 4)), nn.ReLU(),
            nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> Distribution:
        if z.ndim != 2:
            raise RuntimeError(f"ConvDecoder takes latents [N, d], got {tuple(z.shape)}")
        return Independent(Bernoulli(logits=self.net(z)), 3)


def _conv_vae() -> LatentModel:
    torch.manual_seed(0)
    return LatentModel(ConvEncoder(3), ConvDecoder(3), latent_dim=3).double()


def _images(n: int = 5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    probabilities = torch.full((n, 1, 8, 8), 0.4, dtype=torch.float64)
    return torch.bernoulli(probabilities, generator=generator)


def test_a_conv_vae_works_with_every_estimator_and_objective() -> None:
    model, x = _conv_vae(), _images()
    estimate = log_likelihood(model, x, 64, chunk_size=50, seed=0)
    assert estimate.log_likelihood.shape == (5,)
    assert torch.isfinite(estimate.log_likelihood).all()
    assert (estimate.log_likelihood < 0).all()  # a probability mass of binary data
    weights = log_weights(model, x, 7)
    assert weights.shape == (5, 7)
    # The flattened evaluation is the per-sample evaluation.
    torch.manual_seed(3)
    proposal = model.encode(x)
    z = proposal.rsample(torch.Size([2]))
    by_sample = torch.stack([model.decode(z[s]).log_prob(x) for s in range(2)])
    torch.manual_seed(3)
    weights = log_weights(model, x, 2)
    expected = by_sample + model.prior().log_prob(z) - proposal.log_prob(z)
    torch.testing.assert_close(weights, expected.T, rtol=0, atol=1e-12)
    for loss in (iwae_loss(model, x, 4), multi_sample_vae_loss(model, x, 4), vae_loss(model, x)):
        assert torch.isfinite(loss)
        loss.backward()
    chunked = log_likelihood(model, x, 64, chunk_size=7, seed=0)
    torch.testing.assert_close(chunked.log_likelihood, estimate.log_likelihood, rtol=0, atol=1e-10)


def _bernoulli_model() -> LatentModel:
    torch.manual_seed(0)
    model = LatentModel(GaussianEncoder(6, (8,), 2), BernoulliDecoder(2, (8,), 6), latent_dim=2)
    return model.double()


@pytest.mark.parametrize("bad", [-0.5, 1.5, 255.0])
def test_data_outside_the_unit_interval_for_a_bernoulli_decoder(bad: float) -> None:
    model = _bernoulli_model()
    x = torch.zeros(4, 6, dtype=torch.float64)
    x[1, 2] = bad
    for call in (
        lambda: log_likelihood(model, x, 10),
        lambda: log_weights(model, x, 3),
        lambda: iwae_loss(model, x, 3),
        lambda: multi_sample_vae_loss(model, x, 3),
        lambda: vae_loss(model, x),
    ):
        with pytest.raises(ValueError, match=r"x must lie in \[0, 1\]"):
            call()
    x[1, 2] = 0.7  # intensities in [0, 1] remain allowed (continuous targets of the BCE)
    assert torch.isfinite(log_likelihood(model, x, 10).log_likelihood).all()


def test_nan_empty_and_sample_counts_name_the_argument() -> None:
    model = _bernoulli_model()
    x = torch.zeros(3, 6, dtype=torch.float64)
    nan = x.clone()
    nan[0, 0] = float("nan")
    for call in (
        lambda data: log_likelihood(model, data, 10),
        lambda data: iwae_loss(model, data, 2),
        lambda data: vae_loss(model, data),
        lambda data: log_weights(model, data, 2),
    ):
        with pytest.raises(ValueError, match="x contains NaN"):
            call(nan)
        with pytest.raises(ValueError, match="x must be a non-empty batch"):
            call(x[:0])
        with pytest.raises(TypeError, match=r"x must be a torch\.Tensor"):
            call(x.tolist())
    for bad_count in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="num_samples"):
            log_likelihood(model, x, bad_count)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="num_samples"):
            iwae_loss(model, x, bad_count)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="num_samples"):
            multi_sample_vae_loss(model, x, bad_count)  # type: ignore[arg-type]


def test_the_oracle_still_broadcasts_and_flattens_identically() -> None:
    oracle = LinearGaussian.random(seed=1)
    x = oracle.sample(4, seed=2)
    estimate = log_likelihood(oracle, x, 20)
    torch.testing.assert_close(estimate.log_likelihood, oracle.log_marginal(x), rtol=0, atol=1e-10)
