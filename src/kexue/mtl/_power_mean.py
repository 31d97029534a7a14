"""The generalised (power) mean of task losses and its per-task gradient weights (spec 06 §2, §3).

    L(γ) = ( (1/n) Σᵢ Lᵢ^γ )^(1/γ),   L(0) = (Πᵢ Lᵢ)^(1/n),   L(+∞) = max Lᵢ,   L(−∞) = min Lᵢ

computed as exp((logsumexp(γ·log L) − log n)/γ) (stable for any finite γ), as
exp(mean log L) for |γ| < 10⁻⁸, and as max/min for γ = ±∞. Gradient weights (spec 06 §3):
∂L(γ)/∂Lᵢ = (1/n)·L(γ)^(1−γ)·Lᵢ^(γ−1) = (1/n)·exp((γ−1)(log Lᵢ − log L(γ))).
"""

from __future__ import annotations

import math

import torch

from ._checks import LossesLike, check_losses, check_positive_float

__all__ = ["GEOMETRIC_GAMMA_TOL", "power_mean", "power_mean_weights"]

GEOMETRIC_GAMMA_TOL = 1e-8
"""|γ| below this is treated as γ = 0 (the geometric mean), spec 06 §3."""


def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
        raise TypeError(f"gamma must be a real number (float('inf') allowed), got {gamma!r}")
    gamma = float(gamma)
    if math.isnan(gamma):
        raise ValueError("gamma is NaN")
    return gamma


def _log_losses(losses: LossesLike, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    _, stacked = check_losses(losses, nonnegative=True)
    eps = check_positive_float(eps, "eps", allow_zero=True)
    clamped = stacked.clamp_min(eps) if eps > 0 else stacked
    return clamped, torch.log(clamped)


def power_mean(losses: LossesLike, gamma: float, *, eps: float = 1e-12) -> torch.Tensor:
    """Differentiable power mean L(γ) of non-negative task losses (spec 06 §2 "Generalised mean").

    ``gamma``: any real number or ±``inf``; γ = 1 is the arithmetic mean (equal weights), γ → 0
    the geometric mean (real-time normalisation's direction, spec 06 (sg)), +∞ the worst task, −∞
    the best. Numerically stable through logsumexp (spec 06 §3). Losses are clamped below at
    ``eps`` before the logarithm (pitfall 2: losses tending to 0), so gradients stay finite.
    Raises ValueError for NaN or negative losses.
    """
    gamma = _check_gamma(gamma)
    clamped, log_l = _log_losses(losses, eps)
    n = log_l.shape[0]
    if gamma == math.inf:
        return clamped.amax()
    if gamma == -math.inf:
        return clamped.amin()
    if abs(gamma) < GEOMETRIC_GAMMA_TOL:
        return torch.exp(log_l.mean())
    return torch.exp((torch.logsumexp(gamma * log_l, dim=0) - math.log(n)) / gamma)


def power_mean_weights(losses: LossesLike, gamma: float, *, eps: float = 1e-12) -> torch.Tensor:
    """The gradient weights ∂L(γ)/∂Lᵢ = (1/n)·L(γ)^(1−γ)·Lᵢ^(γ−1) (spec 06 §3), detached, ``[n]``.

    Proportional to Lᵢ^(γ−1): γ = 0 gives 1/(n·Lᵢ)·L(0) (real-time normalisation's 1/Lᵢ up to a
    common factor), γ = 1 gives 1/n, γ = 2 weights ∝ Lᵢ. For γ = ±∞ the (sub)gradient puts weight
    1 on the largest (smallest) loss, split equally between ties. Same clamping as
    :func:`power_mean`.
    """
    gamma = _check_gamma(gamma)
    _, log_l = _log_losses(losses, eps)
    log_l = log_l.detach()
    n = log_l.shape[0]
    if math.isinf(gamma):
        extreme = log_l.amax() if gamma > 0 else log_l.amin()
        hits = (log_l == extreme).to(log_l.dtype)
        return hits / hits.sum()
    if abs(gamma) < GEOMETRIC_GAMMA_TOL:
        gamma = 0.0  # the value is the geometric mean: use its exact derivative
        log_mean = log_l.mean()
    else:
        log_mean = (torch.logsumexp(gamma * log_l, dim=0) - math.log(n)) / gamma
    return torch.exp((gamma - 1.0) * (log_l - log_mean)) / n
