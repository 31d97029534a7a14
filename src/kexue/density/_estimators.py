"""Gradient estimators of the IWAE bound: the standard one, STL and DReG (spec 02 §3.2, (6)).

With z_i = z(ε_i; φ) reparameterised, log w_i = log p_θ(x, z_i) − log q_φ(z_i | x) and
normalised weights w̃_i = w_i / Σ_j w_j, the IWAE bound's gradient is Σ_i w̃_i ∇ log w_i. For the
encoder φ it has two parts, a path part through z_i and a score part ∂/∂φ log q_φ(z) at fixed z,
whose variance grows with K (Rainforth et al. 2018: the encoder's signal-to-noise ratio falls like
1/√K). The estimators differ only in φ's gradient:

* ``"iwae"`` — the standard one, Σ w̃_i ∇_φ log w_i (path + score);
* ``"stl"`` — "sticking the landing" (Roeder et al. 2017): the score part dropped,
  Σ w̃_i ∂log w_i/∂z_i · ∂z_i/∂φ with q's parameters held fixed (biased for K > 1);
* ``"dreg"`` — doubly reparameterised (Tucker et al. 2019, eq. 7): the score part rewritten by a
  second reparameterisation, Σ w̃_i² ∂log w_i/∂z_i · ∂z_i/∂φ — unbiased for the IWAE bound and
  of lower variance.

θ (decoder and prior) always receives the IWAE gradient Σ w̃_i ∇_θ log p_θ(x, z_i).

Implementation: one surrogate −Σ_i w̃_i·log w_i (w̃ detached) whose gradient is the estimator's,
added to the bound with a zero forward value. DReG's extra factor w̃_i on the path through z_i
comes from an identity map on z whose backward multiplies by w̃_i, filled in after the forward
pass (:class:`_ScaleGradient`); so the decoder runs once, as for the standard estimator.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.distributions import Distribution, Independent

from ._protocol import LatentVariableModel

__all__ = ["GRADIENT_ESTIMATORS", "detached_distribution", "surrogate_iwae_losses"]

GRADIENT_ESTIMATORS = ("iwae", "stl", "dreg")


class _ScaleGradient(torch.autograd.Function):
    """Identity in the forward pass; the backward multiplies the gradient by ``holder`` (its
    shape a prefix of the input's), whose values may be set after the forward pass."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, holder: torch.Tensor) -> torch.Tensor:
        ctx.holder = holder  # by reference: read in backward, after it has been filled
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        scale = ctx.holder
        scale = scale.reshape(*scale.shape, *([1] * (grad.dim() - scale.dim())))
        return grad * scale.to(grad.dtype), None


def detached_distribution(distribution: Distribution) -> Distribution | None:
    """The same distribution with its parameters detached (``log_prob`` differentiable in the
    value only): rebuilt from ``arg_constraints`` (through ``Independent``); None if that fails."""
    if isinstance(distribution, Independent):
        base = detached_distribution(distribution.base_dist)
        if base is None:
            return None
        return Independent(base, distribution.reinterpreted_batch_ndims, validate_args=False)
    parameters = {
        name: value.detach()
        for name in distribution.arg_constraints
        if isinstance(value := distribution.__dict__.get(name), torch.Tensor)
    }
    try:
        rebuilt = type(distribution)(**parameters, validate_args=False)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return rebuilt if isinstance(rebuilt, Distribution) else None


def surrogate_iwae_losses(
    model: LatentVariableModel,
    x: torch.Tensor,
    num_samples: int,
    estimator: str,
) -> torch.Tensor:
    """Per-point IWAE losses −(logsumexp_i log w_i − log M) ``[B]`` whose gradient is the
    ``estimator``'s (``"stl"`` or ``"dreg"``; module docstring)."""
    from ._objectives import latent_log_weights

    proposal = model.encode(x)
    fixed = detached_distribution(proposal)
    if fixed is None:
        raise TypeError(
            f"gradient_estimator={estimator!r} needs the encoder's distribution with its "
            f"parameters held fixed; {type(proposal).__name__} could not be rebuilt from its "
            "arg_constraints: use a torch.distributions family (Normal, MultivariateNormal, "
            "...) wrapped in Independent, or gradient_estimator='iwae'"
        )
    if not proposal.has_rsample:
        raise TypeError(
            f"gradient_estimator={estimator!r} needs a reparameterisable encoder "
            f"({type(proposal).__name__}.has_rsample is False)"
        )
    z = proposal.rsample(torch.Size([num_samples]))  # [M, B, ...]
    holder = torch.ones(z.shape[:2], dtype=z.dtype, device=z.device)
    path = _ScaleGradient.apply(z, holder) if estimator == "dreg" else z  # type: ignore[no-untyped-call]
    log_w = latent_log_weights(model, path, x, fixed)  # [M, B]
    normalised = torch.softmax(log_w.detach(), dim=0)  # w̃ over the samples, [M, B]
    holder.copy_(normalised)  # DReG: the path through z carries a second factor w̃_i
    surrogate = -(normalised * log_w).sum(0)
    value = -(torch.logsumexp(log_w.detach(), dim=0) - math.log(num_samples))
    return value + (surrogate - surrogate.detach())
