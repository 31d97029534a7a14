"""Quadrature rules for the Perturb-Max integral (spec 09 §2 (pi), §4).

p_i = E_ε[∏_{j≠i} Φ(μ_i − μ_j + ε)] is a one-dimensional expectation over ε. A rule gives nodes
ε_k and weights w_k (Σ w_k = 1 for every rule here) in the standardised variable:

* ``"post"`` — the post's rule: ε_k = Φ⁻¹(k/(K+1)), w_k = 1/K. Under-weights the tails, so
  Σ_i p_i < 1 with a deficit ≈ c/K (spec 09 §4, C9.6);
* ``"midpoint"`` — ε_k = Φ⁻¹((k − ½)/K), w_k = 1/K;
* ``"gauss-legendre"`` — Gauss–Legendre on t ∈ (0, 1) mapped through the quantile, ε_k = Φ⁻¹(t_k)
  (never t ∈ {0, 1}, pitfall 3);
* ``"gauss-hermite"`` — probabilists' Gauss–Hermite (``numpy.polynomial.hermite_e.hermegauss``;
  ``scipy.special.roots_hermitenorm`` where numpy overflows, K ≳ 500), weights divided by their
  sum: for normal noise only, far more accurate at the same K (§4);
* ``"monte-carlo"`` — K nodes drawn from the noise (``generator``), w_k = 1/K: for tests.

Raw rules are computed once in float64 and cached per (rule, K).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ._noises import Noise

__all__ = ["QUADRATURE_METHODS", "quadrature_nodes"]

#: the quadrature rules (the exact path is ``"exact"``, chosen by ``"auto"`` where it exists)
QUADRATURE_METHODS: tuple[str, ...] = (
    "post",
    "midpoint",
    "gauss-legendre",
    "gauss-hermite",
    "monte-carlo",
)


@functools.lru_cache(maxsize=256)
def _raw_rule(rule: str, num_nodes: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(points, weights) in float64: t-points in (0, 1) for post/midpoint/gauss-legendre,
    ε-points for gauss-hermite; weights summing to 1."""
    k = np.arange(1, num_nodes + 1, dtype=np.float64)
    if rule == "post":
        points = k / (num_nodes + 1)
        weights = np.full(num_nodes, 1.0 / num_nodes)
    elif rule == "midpoint":
        points = (k - 0.5) / num_nodes
        weights = np.full(num_nodes, 1.0 / num_nodes)
    elif rule == "gauss-legendre":
        x, w = np.polynomial.legendre.leggauss(num_nodes)
        points = 0.5 * (x + 1.0)
        weights = w / w.sum()
    elif rule == "gauss-hermite":
        with np.errstate(all="ignore"):
            points, w = np.polynomial.hermite_e.hermegauss(num_nodes)
        if not (np.isfinite(points).all() and np.isfinite(w).all()):
            # numpy's recurrence overflows for large K (≳ 500): SciPy's asymptotic nodes
            from scipy.special import roots_hermitenorm

            points, w = roots_hermitenorm(num_nodes)
        weights = w / w.sum()
    else:  # pragma: no cover - validated by the caller
        raise ValueError(f"unknown rule {rule!r}")
    return tuple(points.tolist()), tuple(weights.tolist())


def quadrature_nodes(
    noise: Noise,
    method: str,
    num_nodes: int,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes ε_k (standardised noise) and log-weights log w_k of a rule, each ``[K]``.

    The t-rules map their points through ``noise.standard_icdf`` in float64, then cast to
    ``dtype``. Raises ValueError for an unknown rule, K < 1, Gauss–Hermite with a non-normal
    noise, or a quantile that is not finite at an interior point.
    """
    if method not in QUADRATURE_METHODS:
        raise ValueError(f"unknown quadrature rule {method!r}; use one of {QUADRATURE_METHODS}")
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise ValueError(f"num_nodes must be an int >= 1, got {num_nodes!r}")
    if method == "monte-carlo":
        uniform = torch.rand(num_nodes, generator=generator, dtype=torch.float64)
        eps = torch.finfo(torch.float64).eps
        nodes = noise.standard_icdf(uniform.clamp(eps, 1.0 - eps))
        log_weights = torch.full((num_nodes,), -math.log(num_nodes), dtype=torch.float64)
    else:
        if method == "gauss-hermite" and noise.name != "normal":
            raise ValueError(
                "method='gauss-hermite' integrates against the normal density and needs "
                f"noise='normal', got {noise.name!r}; use 'gauss-legendre' or 'midpoint'"
            )
        points, weights = _raw_rule(method, num_nodes)
        raw = torch.tensor(points, dtype=torch.float64)
        nodes = raw if method == "gauss-hermite" else noise.standard_icdf(raw)
        log_weights = torch.log(torch.tensor(weights, dtype=torch.float64))
    if not bool(torch.isfinite(nodes).all()):
        raise ValueError(
            f"noise {noise.name!r}: the quantile is not finite at the interior nodes of "
            f"{method!r} (K = {num_nodes}); check standard_icdf"
        )
    return nodes.to(dtype=dtype, device=device), log_weights.to(dtype=dtype, device=device)
