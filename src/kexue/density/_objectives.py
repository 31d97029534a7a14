"""Importance weights and training objectives (spec 02 §3.2, formulas (5) and (6)).

``log w_i = log decoder(x | z_i) + log prior(z_i) - log encoder(z_i | x)`` with
``z_i ~ encoder(. | x)``.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import (
    Bernoulli,
    ContinuousBernoulli,
    Distribution,
    Independent,
    kl_divergence,
)

from ._estimators import GRADIENT_ESTIMATORS, surrogate_iwae_losses
from ._protocol import LatentVariableModel, check_model

__all__ = [
    "check_data",
    "check_decoder_support",
    "check_log_prob_shapes",
    "decoder_log_prob",
    "iwae_loss",
    "latent_log_weights",
    "log_weight_terms",
    "log_weights",
    "multi_sample_vae_loss",
    "vae_loss",
]


def check_data(x: object, name: str = "x") -> torch.Tensor:
    """``x`` if it is a non-empty, finite, floating-point batch ``[B, ...]``; else a clear error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be floating point, got {x.dtype}; use x.float() or x.double()"
        )
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty batch [B, ...], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf; clean the data before estimating densities")
    return x


def check_decoder_support(distribution: Distribution, x: torch.Tensor, name: str = "x") -> None:
    """A ``ValueError`` naming ``x`` when a Bernoulli (or continuous Bernoulli) decoder is asked for
    the density of data outside ``[0, 1]`` (its ``log_prob`` would silently return a number: spec
    02 §3.1 computes it as a binary cross-entropy, which accepts any real target)."""
    base = distribution
    while isinstance(base, Independent):
        base = base.base_dist
    if isinstance(base, Bernoulli | ContinuousBernoulli):
        low, high = float(x.min()), float(x.max())
        if low < 0 or high > 1:
            raise ValueError(
                f"{name} must lie in [0, 1] for a {type(base).__name__} decoder, got values in "
                f"[{low:.4g}, {high:.4g}]; scale the data to [0, 1] (and binarise it, spec 02 "
                "pitfall 6) or use a Gaussian decoder"
            )


def decoder_log_prob(model: LatentVariableModel, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``decode(z).log_prob(x)`` for latents ``z`` ``[S, B, ...]`` and data ``x`` ``[B, ...]`` as a
    ``[S, B]`` tensor, calling the decoder on a flat batch ``[S·B, ...]``.

    Any decoder that takes a batch of latents ``[N, d]`` works (convolutional decoders, user
    modules that do not broadcast over an extra sample dimension: issue 21 item 4); the data are
    repeated to ``[S·B, ...]`` to match and the result is reshaped back.
    """
    samples, points = z.shape[0], z.shape[1]
    flat_z = z.reshape(samples * points, *z.shape[2:])
    flat_x = x.unsqueeze(0).expand(samples, *x.shape).reshape(samples * points, *x.shape[1:])
    distribution = model.decode(flat_z)
    check_decoder_support(distribution, x)
    log_prob: torch.Tensor = distribution.log_prob(flat_x)
    if log_prob.shape != (samples * points,):
        raise ValueError(
            f"decode(z).log_prob(x) has shape {tuple(log_prob.shape)} for {samples * points} "
            "latents and data points, expected one value per point: log_prob must sum over the "
            "event dimensions; wrap per-dimension distributions in "
            "torch.distributions.Independent(..., 1)"
        )
    return log_prob.reshape(samples, points)


def _check_samples(num_samples: object) -> int:
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    return num_samples


def log_weights(model: LatentVariableModel, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Log importance weights ``[B, M]`` with reparameterised samples (differentiable)."""
    check_model(model)
    x = check_data(x)
    num_samples = _check_samples(num_samples)
    proposal = model.encode(x)
    z = proposal.rsample(torch.Size([num_samples]))  # [M, B, ...]
    return latent_log_weights(model, z, x, proposal).transpose(0, 1)


def log_weight_terms(
    model: LatentVariableModel,
    z: torch.Tensor,
    x: torch.Tensor,
    proposal: Distribution,
    prior: Distribution | None = None,
) -> dict[str, torch.Tensor]:
    """The three terms of ``log w`` for latents ``z`` ``[S, B, ...]``, each ``[S, B]`` and
    checked: ``log decoder(x | z)`` (the decoder sees the latents flat, :func:`decoder_log_prob`),
    ``log prior(z)`` (``prior`` defaults to ``model.prior()``) and ``log proposal(z)``."""
    prior = model.prior() if prior is None else prior
    terms = {
        "decode(z).log_prob(x)": decoder_log_prob(model, z, x),
        "prior().log_prob(z)": prior.log_prob(z),
        "encode(x).log_prob(z)": proposal.log_prob(z),
    }
    check_log_prob_shapes(terms, (z.shape[0], x.shape[0]))
    return terms


def latent_log_weights(
    model: LatentVariableModel,
    z: torch.Tensor,
    x: torch.Tensor,
    proposal: Distribution,
    prior: Distribution | None = None,
) -> torch.Tensor:
    """``log w = log decoder(x | z) + log prior(z) − log proposal(z)`` ``[S, B]``
    (:func:`log_weight_terms`)."""
    terms = log_weight_terms(model, z, x, proposal, prior)
    return (
        terms["decode(z).log_prob(x)"]
        + terms["prior().log_prob(z)"]
        - terms["encode(x).log_prob(z)"]
    )


def check_log_prob_shapes(terms: dict[str, torch.Tensor], expected: tuple[int, int]) -> None:
    """Each log-density must be ``[samples, points]``; a per-dimension ``log_prob`` (a plain
    ``Normal`` instead of ``Independent(Normal, 1)``) is the usual cause of a mismatch."""
    for name, value in terms.items():
        if tuple(value.shape) != expected:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)}, expected {expected} (samples, points): "
                "log_prob must sum over the event dimensions; wrap per-dimension distributions "
                "in torch.distributions.Independent(..., 1)"
            )


def iwae_loss(
    model: LatentVariableModel,
    x: torch.Tensor,
    num_samples: int,
    *,
    reduction: str = "mean",
    gradient_estimator: str = "iwae",
) -> torch.Tensor:
    """IWAE loss (6): ``-(logsumexp_i log w_i - log M)`` per point; ``M = 1`` is the single-sample
    VAE objective (5).

    ``gradient_estimator`` (the value is the same; :mod:`kexue.density._estimators`): ``"iwae"``
    (standard), ``"dreg"`` (doubly reparameterised, Tucker et al. 2019: unbiased, lower-variance
    encoder gradient Σw̃ᵢ²∂log wᵢ/∂zᵢ·∂zᵢ/∂φ; the decoder's gradient is IWAE's) or ``"stl"``
    (sticking the landing: the score term dropped, biased for M > 1). DReG and STL need a
    reparameterisable encoder whose distribution can be rebuilt with detached parameters.

    There is no ``beta``: a weighted KL has no meaning inside the importance-weighted bound, and
    silently ignoring it is a known bug elsewhere (spec 02 §3.2).
    """
    if gradient_estimator not in GRADIENT_ESTIMATORS:
        raise ValueError(
            f"gradient_estimator must be one of {list(GRADIENT_ESTIMATORS)}, got "
            f"{gradient_estimator!r}"
        )
    if gradient_estimator != "iwae":
        check_model(model)
        x = check_data(x)
        num_samples = _check_samples(num_samples)
        losses = surrogate_iwae_losses(model, x, num_samples, gradient_estimator)
        return _reduce(losses, reduction)
    weights = log_weights(model, x, num_samples)
    losses = -(torch.logsumexp(weights, dim=1) - math.log(num_samples))
    return _reduce(losses, reduction)


def multi_sample_vae_loss(
    model: LatentVariableModel, x: torch.Tensor, num_samples: int, *, reduction: str = "mean"
) -> torch.Tensor:
    """The IWAE paper's "VAE with k samples": ``-(1/M) sum_i log w_i`` per point."""
    losses = -log_weights(model, x, num_samples).mean(dim=1)
    return _reduce(losses, reduction)


def vae_loss(
    model: LatentVariableModel,
    x: torch.Tensor,
    *,
    analytic_kl: bool = True,
    beta: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative ELBO with one reparameterised sample: ``-log decoder(x|z) + beta * KL``.

    With ``analytic_kl`` the KL of encoder to prior is ``torch.distributions.kl_divergence`` (exact
    for Gaussians; a ``NotImplementedError`` from torch falls back to the one-sample estimate
    ``log encoder(z|x) - log prior(z)``, whose expectation is the same). With ``beta = 1`` its
    expectation equals the ``M = 1`` IWAE loss (C2.6).
    """
    check_model(model)
    x = check_data(x)
    if (
        not isinstance(beta, int | float)
        or isinstance(beta, bool)
        or not math.isfinite(beta)
        or beta < 0
    ):
        raise ValueError(f"beta must be a finite float >= 0, got {beta!r}")
    proposal = model.encode(x)
    z = proposal.rsample()
    reconstruction = -decoder_log_prob(model, z.unsqueeze(0), x)[0]
    prior = model.prior()
    kl: torch.Tensor | None = None
    if analytic_kl:
        try:
            kl = kl_divergence(proposal, prior)
        except NotImplementedError:
            kl = None
    if kl is None:
        kl = proposal.log_prob(z) - prior.log_prob(z)
    return _reduce(reconstruction + beta * kl, reduction)


def _reduce(losses: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
