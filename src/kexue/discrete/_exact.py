"""Exact Perturb-Max probabilities for every class: one shared grid in the variable of the maximum.

Substituting t = μ_i + ε in spec 09 (pi) (standardised logits μ = logits/σ),

    p_i = ∫ f(t − μ_i) ∏_{j≠i} Φ(t − μ_j) dt = ∫ exp( ℓ(t − μ_i) + L(t) ) dt,             (E.1)
    L(t) = Σ_j log Φ(t − μ_j)   (log of the CDF of the maximum),   ℓ = log f − log Φ,

so every class integrates against the *same* function L(t) of one variable, evaluated once per
logit vector; only the reverse-hazard factor ℓ(t − μ_i) depends on the class. For log-concave
noise (normal, logistic, Gumbel, uniform, exponential) log f and log Φ are concave, ℓ is
concave, and every class's log-integrand ℓ(t − μ_i) + L(t) is a concave function of t: one
smooth bump per class, wherever it lies — near the top for likely classes, half-way down for a
class 40 nats below (normal noise), spread over the whole gap for logistic noise. The rule is
chosen from the noise's support, never a fixed node count:

* **full support** (normal, logistic, Gumbel, a smooth :class:`CustomNoise`): the trapezoidal
  rule on a uniform grid t_m = a + m h covering [min μ + x_lo, max μ + x_hi] (x_lo, x_hi the
  noise's e⁻⁶⁰ quantiles). For an integrand analytic in a strip and decaying at both ends the
  trapezoidal rule converges geometrically (error ~ exp(−2π d/h)); h is halved until the rule
  on the even nodes (spacing 2h) agrees with the rule on all nodes to ``_AGREEMENT`` in every
  log p_i, and the range is widened until every class's integrand at both ends is e⁻⁴⁰ below
  its integral — so the result carries its own a-posteriori check.
* **half-line support** [a, ∞) (exponential): Φ(t − μ_j) = 0 below t₀ = max μ + a, so every
  class integrates over (t₀, ∞); the substitution t = t₀ + eˢ turns the endpoint (where the
  integrand vanishes like a power of t − t₀) into a doubly-exponentially decaying tail, and the
  trapezoidal rule in s is again geometric.
* **bounded support** [a, b] (uniform; any bounded :class:`CustomNoise`): the integrand of
  class i lives on (max μ + a, μ_i + b) and has kinks where a factor Φ(t − μ_j) reaches 1
  (t = μ_j + b). Composite Gauss–Legendre on the pieces between consecutive kinks (nodes
  clustered quadratically towards each piece's left end, where the factors vanish), restricted
  to the pieces where the class's integrand is within e⁻⁶⁰ of its maximum (the integrand is
  increasing in t, so this is a window left of μ_i + b); checked by doubling the nodes.

Everything runs in float64 in log space (no product underflows: a class 1000 nats below has a
finite log-probability), masked classes (μ = −∞) drop out of L and get p = 0 exactly. Cost:
O(n · M) for M grid nodes (M ≈ (range of μ + tails)/h, independent of n for a fixed spread),
with the sum for L restricted to the classes whose CDF factor is not 1 to working precision
(a prefix of the sorted logits). Gradients: autograd through the fixed (detached) grid, which
gives the same rule applied to the derivative integrands ∂/∂μ_k of (E.1), equally accurate.

Also returned: the conditional mean of the maximum given that class i wins, so that
E[max_i(μ_i + ε_i)] = Σ_i p_i · E[t | i] (spec 09 §3) comes from the same pass.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._noises import NOISES, Noise

__all__ = ["ExactLogProbs", "exact_log_probs", "log_reverse_hazard"]

_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)
#: agreement of the spacing-h and spacing-2h rules (absolute, in log p) that accepts spacing h;
#: the rule converges geometrically, so the accepted rule's error is far below this (about its
#: square); checked against adaptive quadrature and mpmath in tests/discrete/test_reference.py
_AGREEMENT = 1e-7
#: the integrand at either end of the grid must be this far (nats) below the integral
_END_MARGIN = 40.0
#: quantile level (log) for the initial grid range: e^-60 of mass beyond the ends
_TAIL_LOG_MASS = -60.0
_MAX_REFINEMENTS = 10
#: a grid column is skipped once the lowest class's envelope is this far below its maximum
_PRUNE = 80.0
#: families whose density is log-concave (ℓ decreasing, every log-integrand concave)
_LOG_CONCAVE = frozenset({"normal", "logistic", "gumbel", "uniform", "exponential"})
#: sup |ℓ″| of the standardised reverse hazard (normal 1, logistic ¼, Gumbel 0)
_HAZARD_CURVATURE = {"normal": 1.0, "logistic": 0.25, "gumbel": 0.0}
_CHUNK_ELEMENTS = 1 << 21
#: refuse grids whose [batch, n, M] work would exceed this many float64 elements per chunk set
_MAX_NODES = 1 << 20


@dataclasses.dataclass(frozen=True)
class ExactLogProbs:
    """Result of :func:`exact_log_probs`.

    ``log_probs`` ``[B, n]`` float64 (−inf for masked classes); ``conditional_max`` ``[B, n]``
    E[max | class i wins] in the standardised variable (NaN where p_i = 0); ``agreement`` the
    largest |Δ log p_i| between the accepted rule and the rule with half the nodes (the
    a-posteriori check; the accepted rule's error is far smaller); ``nodes`` the grid size.
    """

    log_probs: torch.Tensor
    conditional_max: torch.Tensor
    agreement: float
    nodes: int


# --------------------------------------------------------------------------------------------
# ℓ = log f − log Φ, stable for every noise


def log_reverse_hazard(noise: Noise, x: torch.Tensor) -> torch.Tensor:
    """ℓ(x) = log f(x) − log Φ(x) of the standardised noise (the reverse hazard, log scale).

    Normal: log(φ/Φ) by erfcx below 0 (no cancellation) and log φ − log Φ above (Φ ≥ ½);
    logistic: log σ(−x); Gumbel: −x; uniform: −log(x + ½); exponential: −x − log(1 − e⁻ˣ);
    otherwise ``standard_log_pdf − standard_log_cdf``. −inf outside the support."""
    name = noise.name
    if name == "normal" and type(noise).standard_log_cdf is _normal_method():
        # log φ − log Φ: for x < 0 both are ≈ −x²/2 and the difference loses ulp(x²/2)
        # (1e-13 at |x| = 30); far below (|x| > 1e3) the erfcx form takes over
        far = x < -1e3
        near = torch.where(far, torch.zeros_like(x), x)
        direct = -0.5 * near * near - _LOG_SQRT_2PI - torch.special.log_ndtr(near)
        if not bool(far.any()):
            return direct  # type: ignore[no-any-return]
        tail = torch.where(far, x, torch.zeros_like(x))
        from_erfcx = _LOG_SQRT_2_OVER_PI - torch.log(torch.special.erfcx(-tail / _SQRT_2))
        return torch.where(far, from_erfcx, direct)
    if name == "logistic":
        return F.logsigmoid(-x)
    if name == "gumbel":
        return -x
    if name == "exponential":
        positive = x > 0
        safe = torch.where(positive, x, torch.ones_like(x))
        value = -safe - torch.log(-torch.expm1(-safe))
        return torch.where(positive, value, torch.full_like(x, -math.inf))
    if name == "uniform":
        lo, hi = noise.support
        inside = (x > lo) & (x <= hi)
        safe = torch.where(inside, x, torch.zeros_like(x))
        return torch.where(inside, -torch.log(safe - lo), torch.full_like(x, -math.inf))
    log_pdf = noise.standard_log_pdf(x)
    log_cdf = noise.standard_log_cdf(x)
    valid = torch.isfinite(log_pdf) & torch.isfinite(log_cdf)
    return torch.where(valid, log_pdf - torch.where(valid, log_cdf, torch.zeros_like(log_cdf)),
                       torch.full_like(x, -math.inf))  # fmt: skip


_FAMILY_QUANTILES: dict[tuple[str, float, bool], float] = {}
_BUILTIN_FAMILIES = frozenset(NOISES.values())


def _normal_method() -> object:
    from ._noises import Normal

    return Normal.standard_log_cdf


def _log_cdf(noise: Noise, x: torch.Tensor) -> torch.Tensor:
    """log Φ(x) with log Φ(+inf) = 0 (masked classes contribute nothing to L)."""
    infinite = torch.isposinf(x)
    safe = torch.where(infinite, torch.zeros_like(x), x)
    return torch.where(infinite, torch.zeros_like(x), noise.standard_log_cdf(safe))


# --------------------------------------------------------------------------------------------
# Tail quantiles of the standardised noise (float64 bisection on log Φ and log(1 − Φ))


def _quantile_from_log_cdf(noise: Noise, level: float, upper: bool) -> float:
    """x with log Φ(x) = level (upper=False) or log(1 − Φ(x)) = level (upper=True); cached on
    the noise object (the standardised law does not depend on its scale)."""
    builtin = type(noise) in _BUILTIN_FAMILIES
    cache = _FAMILY_QUANTILES if builtin else noise.__dict__.setdefault("_quantile_cache", {})
    key = (type(noise).__name__ if builtin else "", level, upper)
    if key not in cache:
        cache[key] = _bisect_quantile(noise, level, upper)
    return cache[key]


def _bisect_quantile(noise: Noise, level: float, upper: bool) -> float:
    lo_support, hi_support = noise.support

    def excess(x: float) -> float:
        value = float(noise.standard_log_cdf(torch.tensor([x], dtype=torch.float64))[0])
        if upper:
            tail = math.log(-math.expm1(value)) if value < 0 else -math.inf
            return tail - level  # decreasing in x
        return value - level  # increasing in x

    if upper:
        if math.isfinite(hi_support):
            return hi_support
        low = 0.0 if not math.isfinite(lo_support) else lo_support
        high = max(1.0, low + 1.0)
        while excess(high) > 0:
            high = low + 2.0 * (high - low)
            if high > 1e8:
                raise ValueError(f"noise {noise.name!r}: the upper tail does not decay")
    else:
        if math.isfinite(lo_support):
            return lo_support
        high = 0.0 if not math.isfinite(hi_support) else hi_support
        low = min(-1.0, high - 1.0)
        while excess(low) > 0:
            low = high - 2.0 * (high - low)
            if low < -1e8:
                raise ValueError(f"noise {noise.name!r}: the lower tail does not decay")
    for _ in range(100):
        middle = 0.5 * (low + high)
        if (excess(middle) > 0) != upper:
            high = middle
        else:
            low = middle
    return high if upper else low


# --------------------------------------------------------------------------------------------
# Shared pieces: L on the grid and the per-class log-sum-exp


def _max_cdf_log(
    t: torch.Tensor, logits: torch.Tensor, noise: Noise, order: torch.Tensor, cutoff: float
) -> torch.Tensor:
    """L(t) = Σ_j log Φ(t − μ_j) ``[B, M]`` for grid ``t`` ``[B, M]`` (ascending in M).

    Terms with t − μ_j ≥ ``cutoff`` are 0 to working precision and skipped: per chunk of grid
    columns only the classes with μ_j > t_min − cutoff (a prefix of the descending order)."""
    batch, m_total = t.shape
    n = logits.shape[1]
    descending = logits.gather(1, order)
    out = []
    chunk = max(1, _CHUNK_ELEMENTS // max(1, batch * n))
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    for first in range(0, m_total, chunk):
        block = t[:, first : first + chunk]
        threshold = block[:, :1] - cutoff
        counts = (descending.detach() > threshold).sum(1)
        count = max(1, int(counts.max()))
        prefix = descending[:, :count]
        if need_grad:
            out.append(checkpoint(_l_block, block, prefix, noise, use_reentrant=False))
        else:
            out.append(_l_block(block, prefix, noise))
    return torch.cat(out, dim=1)


def _l_block(t: torch.Tensor, prefix: torch.Tensor, noise: Noise) -> torch.Tensor:
    return _log_cdf(noise, t[:, :, None] - prefix[:, None, :]).sum(-1)


def _class_block(
    rows: torch.Tensor,
    t: torch.Tensor,
    log_weights: torch.Tensor,
    big_l: torch.Tensor,
    noise: Noise,
    parity: torch.Tensor,
) -> torch.Tensor:
    """For classes ``rows`` [B, r]: (log p, log p on the even nodes, end values, E[t | i])."""
    x = t[:, None, :] - rows[:, :, None]  # [B, r, M]
    terms = log_reverse_hazard(noise, x) + big_l[:, None, :] + log_weights[:, None, :]
    log_p = torch.logsumexp(terms, dim=-1)
    coarse = torch.logsumexp(terms + parity[:, None, :], dim=-1)
    ends = torch.maximum(terms[..., 0], terms[..., -1])
    finite = torch.isfinite(log_p)
    safe = torch.where(finite, log_p, torch.zeros_like(log_p))
    posterior = torch.exp(terms - safe[..., None])
    mean_t = (posterior * t[:, None, :]).sum(-1)
    return torch.stack((log_p, coarse, ends, mean_t))


def _per_class(
    logits: torch.Tensor,
    t: torch.Tensor,
    log_weights: torch.Tensor,
    coarse_log_weights: torch.Tensor,
    big_l: torch.Tensor,
    noise: Noise,
) -> torch.Tensor:
    """[4, B, n]: log p, the coarse rule's log p, the largest end term, E[t | i]."""
    batch, n = logits.shape
    m_total = t.shape[1]
    parity = coarse_log_weights - log_weights  # 0 / log 2 on even nodes, −inf on odd ones
    chunk = max(1, _CHUNK_ELEMENTS // max(1, batch * m_total))
    need_grad = torch.is_grad_enabled() and logits.requires_grad
    blocks = []
    for first in range(0, n, chunk):
        rows = logits[:, first : first + chunk]
        if need_grad:
            blocks.append(checkpoint(_class_block, rows, t, log_weights, big_l, noise, parity,
                                     use_reentrant=False))  # fmt: skip
        else:
            blocks.append(_class_block(rows, t, log_weights, big_l, noise, parity))
    return torch.cat(blocks, dim=-1)


def _trapezoid_log_weights(m_total: int, log_jacobian: torch.Tensor, spacing: float) -> tuple[
    torch.Tensor, torch.Tensor
]:  # fmt: skip
    """log weights [B, M] of the trapezoid with spacing h and of the one on even nodes (2h)."""
    base = torch.full((m_total,), math.log(spacing), dtype=torch.float64,
                      device=log_jacobian.device)  # fmt: skip
    coarse = torch.full_like(base, -math.inf)
    coarse[0::2] = math.log(2.0 * spacing)
    return base + log_jacobian, coarse + log_jacobian


# --------------------------------------------------------------------------------------------
# The three rules


def _smooth_rule(z: torch.Tensor, noise: Noise, finite: torch.Tensor) -> ExactLogProbs:
    detached = z.detach()
    top = torch.where(finite, detached, torch.full_like(detached, -math.inf)).amax(1)
    bottom = torch.where(finite, detached, torch.full_like(detached, math.inf)).amin(1)
    x_lo = _quantile_from_log_cdf(noise, _TAIL_LOG_MASS, upper=False)
    x_hi = _quantile_from_log_cdf(noise, _TAIL_LOG_MASS, upper=True)
    cutoff = _cdf_one(noise)
    order = torch.argsort(detached, dim=1, descending=True)
    filled = _filled(z, finite, top)
    spacing = _initial_spacing(noise)
    low_pad, high_pad = -x_lo, x_hi
    curvature_checked = False
    agreement = math.inf
    for _ in range(_MAX_REFINEMENTS):
        start = bottom - low_pad
        stop = top + high_pad
        m_total = math.ceil(float((stop - start).max()) / spacing) + 1
        m_total += m_total % 2 == 0  # odd: the coarse rule uses nodes 0, 2, …, M − 1
        _check_size(z, m_total)
        steps = torch.arange(m_total, dtype=torch.float64, device=z.device)
        t = start[:, None] + spacing * steps
        with torch.no_grad():
            first, l_values, weight = _relevant_columns(
                t, detached, noise, order, cutoff, bottom, top, spacing
            )
        if not curvature_checked:
            curvature_checked = True
            finer = _spacing_for_curvature(l_values, weight, spacing, noise)
            if finer < spacing:
                spacing = finer
                continue
        t = t[:, first:]
        log_w, coarse_w = _trapezoid_log_weights(t.shape[1], torch.zeros_like(t), spacing)
        if torch.is_grad_enabled() and z.requires_grad:
            big_l = _max_cdf_log(t, z, noise, order, cutoff)
        else:
            big_l = l_values[:, first:]
        out = _per_class(filled, t, log_w, coarse_w, big_l, noise)
        log_p, coarse, ends, mean_t = out[0], out[1], out[2], out[3]
        agreement, ends_ok = _assess(log_p, coarse, ends, finite)
        if not ends_ok:
            low_pad, high_pad = 2.0 * low_pad, 2.0 * high_pad
            continue
        if agreement > _AGREEMENT:
            spacing /= 2.0
            continue
        return _finish(log_p, mean_t, finite, agreement, t.shape[1])
    raise RuntimeError(
        f"exact Perturb-Max quadrature did not converge for noise {noise.name!r} "
        f"(agreement {agreement:.2e} at spacing {spacing:g}); please report this input"
    )


def _relevant_columns(
    t: torch.Tensor,
    logits: torch.Tensor,
    noise: Noise,
    order: torch.Tensor,
    cutoff: float,
    bottom: torch.Tensor,
    top: torch.Tensor,
    spacing: float,
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """L on the grid, computed from the top down, and the first grid column that matters.

    For log-concave noise ℓ is decreasing, so every class's term at t is at most the top
    class's, e(t) = ℓ(t − max μ) + L(t), a concave function of t, and every class has
    log p_i ≥ log p_min ≥ max_t [ℓ(t − min μ) + L(t)] + log h (the trapezoid sum is at least its
    largest term). Once e has fallen ``_PRUNE`` nats below that lower bound (walking down from
    the top, past e's peak), every column further left contributes below e⁻⁸⁰ of any class and
    is skipped, together with the cost of L there, where all n classes count. Returns (first
    column, even; L ``[B, M]`` with −inf in the skipped columns; e relative to its maximum,
    −inf where not computed).
    """
    batch, m_total = t.shape
    big_l = torch.full_like(t, -math.inf)
    envelopes = torch.full_like(t, -math.inf)
    prune = noise.name in _LOG_CONCAVE
    chunk = max(2, (_CHUNK_ELEMENTS // max(1, batch * logits.shape[1])) // 2 * 2)
    best = torch.full((batch,), -math.inf, dtype=torch.float64, device=t.device)
    stop = m_total
    first = 0
    while stop > 0:
        begin = max(0, stop - chunk)
        block = t[:, begin:stop]
        big_l[:, begin:stop] = _max_cdf_log(block, logits, noise, order, cutoff)
        if prune:
            values = big_l[:, begin:stop]
            envelope = log_reverse_hazard(noise, block - top[:, None]) + values
            lowest = log_reverse_hazard(noise, block - bottom[:, None]) + values
            envelopes[:, begin:stop] = envelope
            best = torch.maximum(best, lowest.amax(1) + math.log(spacing))
            peak = envelopes[:, begin:].amax(1)
            # e is concave: past its peak (walking left) and below the bound, it only falls
            below = (envelope[:, 0] < best - _PRUNE) & (envelope[:, 0] < peak)
            if bool(below.all()):
                first = begin
                break
        stop = begin
    first -= first % 2
    if not prune:
        envelopes = torch.zeros_like(t)
    return first, big_l, envelopes - envelopes.amax(1, keepdim=True)


def _spacing_for_curvature(
    big_l: torch.Tensor, envelope: torch.Tensor, spacing: float, noise: Noise
) -> float:
    """A spacing for which the trapezoidal rule is accurate on bumps of the measured curvature:
    error ≈ exp(−2π²/(κ h²)) for a log-integrand of curvature κ (Gaussian bump), so h ≤
    π√2/√(37 κ) gives ≈ e⁻³⁷; κ = sup|ℓ″| + max of −L″ (second differences of L) over the
    columns where a class's integrand can matter (envelope within 60 nats of its maximum)."""
    finite = torch.isfinite(big_l) & (envelope >= -60.0)
    both = finite[:, 2:] & finite[:, 1:-1] & finite[:, :-2]
    if not bool(both.any()):
        return spacing
    second = (big_l[:, 2:] - 2 * big_l[:, 1:-1] + big_l[:, :-2]) / spacing**2
    second = torch.where(both, second, torch.zeros_like(second))
    kappa = float((-second).clamp_min(0).max()) + _HAZARD_CURVATURE.get(noise.name, 1.0)
    # a first guess only (the halving check decides): twice the Gaussian-bump estimate
    target = math.pi * math.sqrt(2.0) / math.sqrt(37.0 * kappa)
    while spacing > target:
        spacing /= 2.0
    return spacing


def _half_line_rule(z: torch.Tensor, noise: Noise, finite: torch.Tensor) -> ExactLogProbs:
    detached = z.detach()
    lower = noise.support[0]
    top = torch.where(finite, detached, torch.full_like(detached, -math.inf)).amax(1)
    bottom = torch.where(finite, detached, torch.full_like(detached, math.inf)).amin(1)
    x_hi = _quantile_from_log_cdf(noise, _TAIL_LOG_MASS, upper=True)
    top_index = torch.where(finite, detached, torch.full_like(detached, -math.inf)).argmax(1)
    origin = z.gather(1, top_index[:, None]).squeeze(1) + lower  # [B], differentiable (Leibniz)
    order = torch.argsort(detached, dim=1, descending=True)
    cutoff = _cdf_one(noise)
    spacing = 0.25
    s_low = -70.0
    s_high = torch.log((top - bottom) + (x_hi - lower) + 1.0)  # [B]
    for _ in range(_MAX_REFINEMENTS):
        m_total = math.ceil(float((s_high - s_low).max()) / spacing) + 1
        m_total += m_total % 2 == 0
        _check_size(z, m_total)
        s = s_low + spacing * torch.arange(m_total, dtype=torch.float64, device=z.device)
        s = s[None, :].expand(z.shape[0], -1)
        t = origin[:, None] + torch.exp(s)
        log_w, coarse_w = _trapezoid_log_weights(m_total, s, spacing)  # dt = eˢ ds
        big_l = _max_cdf_log(t, z, noise, order, cutoff)
        out = _per_class(_filled(z, finite, top), t, log_w, coarse_w, big_l, noise)
        log_p, coarse, ends, mean_t = out[0], out[1], out[2], out[3]
        agreement, ends_ok = _assess(log_p, coarse, ends, finite)
        if not ends_ok:
            s_low -= 30.0
            s_high = s_high + 1.0
            continue
        if agreement > _AGREEMENT:
            spacing /= 2.0
            continue
        return _finish(log_p, mean_t, finite, agreement, m_total)
    raise RuntimeError(
        f"exact Perturb-Max quadrature did not converge for noise {noise.name!r} "
        f"(agreement {agreement:.2e}); please report this input"
    )


def _bounded_rule(z: torch.Tensor, noise: Noise, finite: torch.Tensor) -> ExactLogProbs:
    """Per row: composite Gauss–Legendre between the kinks μ_j + b (module docstring)."""
    rows_log_p, rows_mean, agreements, sizes = [], [], [], []
    for row, mask in zip(z, finite, strict=True):
        log_p, mean_t, agreement, size = _bounded_row(row, mask, noise)
        rows_log_p.append(log_p)
        rows_mean.append(mean_t)
        agreements.append(agreement)
        sizes.append(size)
    return ExactLogProbs(torch.stack(rows_log_p), torch.stack(rows_mean), max(agreements),
                         max(sizes))  # fmt: skip


def _bounded_row(
    row: torch.Tensor, mask: torch.Tensor, noise: Noise
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    lower, upper = noise.support
    n = row.shape[0]
    log_p = torch.full((n,), -math.inf, dtype=torch.float64, device=row.device)
    mean_t = torch.full((n,), math.nan, dtype=torch.float64, device=row.device)
    log_p = log_p + 0.0 * row[mask].sum()  # keep the graph (zero gradient, impossible classes)
    values = row[mask]
    detached = values.detach()
    top_index = int(detached.argmax())
    origin = float(detached[top_index]) + lower
    # classes that can win: μ_i + b > max μ + a
    alive = detached + upper > origin
    index_alive = torch.nonzero(alive).squeeze(1)
    alive_values = values[index_alive]
    # edges: the origin max μ + a and the kinks μ_j + b above it, as differentiable tensors (the
    # pieces move with the logits: Leibniz's boundary terms come through the substitution)
    kink_values = detached.cpu().numpy() + upper
    kink_classes = np.nonzero(kink_values > origin)[0]
    kink_classes = kink_classes[np.argsort(kink_values[kink_classes], kind="stable")]
    _, first_of_each = np.unique(kink_values[kink_classes], return_index=True)
    kink_classes = kink_classes[np.sort(first_of_each)]
    kinks = kink_values[kink_classes]
    edges = np.concatenate(([origin], kinks))
    kink_index = torch.as_tensor(kink_classes, device=values.device)
    edge_tensor = torch.cat((values[top_index : top_index + 1] + lower, values[kink_index] + upper))
    # A window per class: the integrand of class i increases up to μ_i + b; left of it the
    # log-integrand falls at least at rate (#factors < 1) − 1 per unit, so beyond 60/rate the
    # rest is below e⁻⁶⁰ of the top. Pieces to keep: those within some class's window.
    ends = kink_values[alive.cpu().numpy()]
    above = len(kinks) - np.searchsorted(kinks, ends, side="right")  # factors below 1 at the end
    rate = np.maximum(above.astype(float), 1.0)
    window_left = ends - 60.0 / rate
    keep = np.zeros(len(edges) - 1, dtype=bool)
    left_edges, right_edges = edges[:-1], edges[1:]
    for left_limit, right_limit in zip(window_left, ends, strict=True):
        keep |= (right_edges > left_limit) & (left_edges < right_limit)
    kept = torch.as_tensor(np.nonzero(keep)[0], device=values.device)
    pieces = torch.stack((edge_tensor[kept], edge_tensor[kept + 1]), 1)
    result = None
    agreement = math.inf
    for nodes_per_piece in (16, 32, 64, 128):
        fine = _bounded_pieces(alive_values, values, pieces, noise, nodes_per_piece)
        if result is not None:
            agreement = _bounded_agreement(result[0], fine[0])
            if agreement <= _AGREEMENT:
                result = fine
                break
        result = fine
    assert result is not None
    if agreement > _AGREEMENT:
        raise RuntimeError(
            f"exact Perturb-Max quadrature did not converge for noise {noise.name!r} "
            f"(agreement {agreement:.2e}); please report this input"
        )
    positions = torch.nonzero(mask).squeeze(1)[index_alive]
    log_p = log_p.index_put((positions,), result[0])
    mean_t = mean_t.index_put((positions,), result[1])
    return log_p, mean_t, agreement, int(pieces.shape[0] * 128)


def _bounded_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    both = torch.isfinite(a) & torch.isfinite(b)
    if not bool((torch.isfinite(a) == torch.isfinite(b)).all()):
        return math.inf
    if not bool(both.any()):
        return 0.0
    return float((a - b)[both].detach().abs().max())


def _bounded_pieces(
    alive: torch.Tensor, values: torch.Tensor, pieces: torch.Tensor, noise: Noise, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite Gauss–Legendre on ``pieces`` [P, 2] (nodes u² clustered to each piece's left
    end, t = left + width · u²), differentiable in the piece ends."""
    x, w = np.polynomial.legendre.leggauss(k)
    device = values.device
    u = torch.tensor(0.5 * (x + 1.0), dtype=torch.float64, device=device)
    weights = torch.tensor(0.5 * w, dtype=torch.float64, device=device)
    left = pieces[:, :1]
    width = pieces[:, 1:] - pieces[:, :1]
    t_tensor = (left + width * u**2).reshape(-1)
    log_w_tensor = (torch.log(width) + torch.log(2.0 * u * weights)).reshape(-1)
    big_l = _log_cdf(noise, t_tensor[:, None] - values[None, :]).sum(-1)  # [T]
    terms = log_reverse_hazard(noise, t_tensor[None, :] - alive[:, None]) + big_l + log_w_tensor
    log_p = torch.logsumexp(terms, dim=-1)
    safe = torch.where(torch.isfinite(log_p), log_p, torch.zeros_like(log_p))
    mean_t = (torch.exp(terms - safe[:, None]) * t_tensor).sum(-1)
    return log_p, mean_t


# --------------------------------------------------------------------------------------------


def _initial_spacing(noise: Noise) -> float:
    return {"normal": 0.25, "logistic": 0.5, "gumbel": 0.5}.get(noise.name, 0.25)


def _cdf_one(noise: Noise) -> float:
    """x above which log Φ(x) rounds to 0 in float64 relative to a sum (|log Φ| < 1e-300) or
    to an absolute 1e-20 per term (negligible against any total)."""
    return (
        _quantile_from_log_cdf(noise, math.log(1e-20), upper=True)
        if math.isinf(noise.support[1])
        else noise.support[1]
    )


def _assess(
    log_p: torch.Tensor, coarse: torch.Tensor, ends: torch.Tensor, finite: torch.Tensor
) -> tuple[float, bool]:
    lp = log_p.detach()
    usable = finite & torch.isfinite(lp)
    if not bool(usable.any()):
        return 0.0, True
    difference = (lp - coarse.detach()).abs()
    difference = torch.where(usable, difference, torch.zeros_like(difference))
    agreement = float(difference.max())
    if not math.isfinite(agreement):
        agreement = math.inf
    margin = torch.where(usable, ends.detach() - lp, torch.full_like(lp, -math.inf))
    ends_ok = bool((margin <= -_END_MARGIN).all())
    return agreement, ends_ok


def _finish(
    log_p: torch.Tensor, mean_t: torch.Tensor, finite: torch.Tensor, agreement: float, m: int
) -> ExactLogProbs:
    masked = torch.full_like(log_p, -math.inf)
    log_p = torch.where(finite, log_p, masked)
    mean_t = torch.where(finite, mean_t, torch.full_like(mean_t, math.nan))
    return ExactLogProbs(log_p, mean_t, agreement, m)


def _filled(z: torch.Tensor, finite: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """Masked classes replaced by the row's top (their results are overwritten by −inf)."""
    return torch.where(finite, z, top[:, None].expand_as(z))


def _check_size(z: torch.Tensor, m_total: int) -> None:
    if m_total > _MAX_NODES:
        raise ValueError(
            f"the exact quadrature would need {m_total} grid nodes (more than {_MAX_NODES}): "
            "the spread of logits/scale is too large; use a larger scale or mask (-inf) classes "
            "far below the top"
        )


def exact_log_probs(z: torch.Tensor, noise: Noise) -> ExactLogProbs:
    """Exact log p ``[B, n]`` (float64) for standardised logits ``z`` ``[B, n]`` (−inf =
    masked; every row needs one finite entry), by the rule the noise's support selects (module
    docstring). Differentiable in ``z``."""
    z = z.to(torch.float64)
    finite = torch.isfinite(z.detach())
    safe = torch.where(finite, z, torch.full_like(z, -math.inf))
    lower, upper = noise.support
    if math.isinf(lower) and math.isinf(upper):
        return _smooth_rule(safe, noise, finite)
    if math.isinf(upper):
        return _half_line_rule(safe, noise, finite)
    return _bounded_rule(safe, noise, finite)
