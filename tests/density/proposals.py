"""Proposal families on the exact-likelihood oracles (issue 21 item 1): the exact posterior,
over-dispersed, under-dispersed (the usual VAE encoder) and the prior."""

from __future__ import annotations

import torch
from torch.distributions import Independent, MultivariateNormal, Normal

from kexue.density import LinearGaussian, LinearGaussianMixture, WithProposal


def _moments(
    model: LinearGaussian | LinearGaussianMixture, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the exact posterior (moment-matched for the mixture)."""
    if isinstance(model, LinearGaussian):
        posterior = model.posterior(x)
        return posterior.loc, posterior.covariance_matrix
    mixture = model.posterior(x)
    probabilities = mixture.mixture_distribution.probs  # [B, C]
    locs = mixture.component_distribution.loc  # [B, C, k]
    mean = (probabilities[..., None] * locs).sum(1)
    centred = locs - mean[:, None, :]
    spread = centred[..., :, None] * centred[..., None, :]
    covariance = (
        probabilities[..., None, None] * (mixture.component_distribution.covariance_matrix + spread)
    ).sum(1)
    return mean, covariance


def gaussian_proposal(
    model: LinearGaussian | LinearGaussianMixture, shift: float, variance_factor: float
) -> WithProposal:
    """``N(m + shift · sd, variance_factor · Σ)`` around the (moment-matched) posterior."""

    def proposal(x: torch.Tensor) -> MultivariateNormal:
        mean, covariance = _moments(model, x)
        sd = covariance.diagonal(dim1=-2, dim2=-1).sqrt()
        return MultivariateNormal(mean + shift * sd, variance_factor * covariance)

    return WithProposal(model, proposal)


def prior_proposal(model: LinearGaussian | LinearGaussianMixture) -> WithProposal:
    """The prior as proposal (``N(0, I)`` for the linear-Gaussian model)."""

    def proposal(x: torch.Tensor) -> Independent:
        loc = torch.zeros(x.shape[0], model.A.shape[1], dtype=x.dtype)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)

    return WithProposal(model, proposal)


def families() -> dict[str, tuple[object, LinearGaussian | LinearGaussianMixture]]:
    """name -> (model with its proposal, exact model)."""
    linear = LinearGaussian.random(data_dim=10, latent_dim=2, sigma_x=0.1, seed=0)
    mixture = LinearGaussianMixture.random(data_dim=4, latent_dim=2, sigma_x=1.0, seed=0)
    result: dict[str, tuple[object, LinearGaussian | LinearGaussianMixture]] = {}
    for name, model in (("pPCA", linear), ("mixture", mixture)):
        result[f"{name} matched"] = (model, model)
        result[f"{name} over-dispersed"] = (gaussian_proposal(model, 0.5, 2.0), model)
        result[f"{name} under-dispersed"] = (gaussian_proposal(model, 0.3, 0.5), model)
        result[f"{name} under-dispersed x0.3"] = (gaussian_proposal(model, 0.3, 0.3), model)
    for dim in (2, 10, 50):
        prior_model = LinearGaussian.random(data_dim=dim + 10, latent_dim=dim, sigma_x=1.0, seed=1)
        result[f"prior {dim}-D"] = (prior_proposal(prior_model), prior_model)
    return result
