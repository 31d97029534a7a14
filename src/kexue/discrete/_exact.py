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
  trapezoidal rule converges geometrically (error ~ exp(−2π d/h); ~ exp(−c/h²) for the entire,
  Gaussian-decaying normal and Gumbel integrands). Each pass also forms the rule on the even
  nodes (spacing 2h); h is accepted when the two agree to ``_AGREEMENT`` in every log p_i (the
  accepted rule's error is then about the square of that or smaller), otherwise the next h is
  predicted from the observed agreement and the convergence law; the range is widened until
  every class's integrand at both ends is e⁻⁴⁰ below its integral — so the result carries its
  own a-posteriori check.
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
finite log-probability), masked classes (μ = −∞) drop out of L and get p = 0 exactly. One sweep
over blocks of grid columns, from the top down, computes log Φ(t − μ_j) once per (column,
class) and uses it twice: summed into L(t), and subtracted again for the class's own factor
(so the log-integrand is log f(t − μ_i) + L(t) − log Φ(t − μ_i)). Classes whose CDF factor is 1
to 1e-20 on a block (a suffix of the descending order) are left out of L there. For log-concave
noise the sweep stops once every class's remaining left tail is bounded below e⁻⁴⁰ of its sum
by concavity (:func:`_sweep`), so the work follows the classes' bumps rather than the grid.
Cost O(n · M) for the M columns swept (M ≈ (range of μ + tails)/h; h shrinks slowly with n).
Gradients: autograd through the fixed (detached) grid (blocks checkpointed), which gives the
same rule applied to the derivative integrands ∂/∂μ_k of (E.1), equally accurate.

Also returned: the conditional mean of the maximum given that class i wins, so that
E[max_i(μ_i + ε_i)] = Σ_i p_i · E[t | i] (spec 09 §3) comes from the same pass.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ._noises import NOISES, Noise, Normal

__all__ = ["ExactLogProbs", "check_exact_memory", "exact_log_probs", "log_reverse_hazard"]

_LOG_SQRT_2_OVER_PI = 0.5 * math.log(2.0 / math.pi)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)
#: agreement of the spacing-h and spacing-2h rules (absolute, in log p) that accepts spacing h;
#: the rule converges geometrically, so the accepted rule's error is far below this (about its
#: square); checked against adaptive quadrature and mpmath in tests/discrete/test_reference.py
_AGREEMENT = 1e-6
#: the integrand at either end of the grid must be this far (nats) below the integral
_END_MARGIN = 40.0
#: quantile level (log) for the initial grid range: e^-60 of mass beyond the ends
_TAIL_LOG_MASS = -60.0
_MAX_REFINEMENTS = 10
#: families whose density is log-concave (ℓ decreasing, every log-integrand concave)
_LOG_CONCAVE = frozenset({"normal", "logistic", "gumbel", "uniform", "exponential"})
#: sup |ℓ″| of the standardised reverse hazard (normal 1, logistic ¼, Gumbel 0)
#: families whose integrand is entire with Gaussian decay (trapezoid error e^{−c/h²})
_ENTIRE = frozenset({"normal", "gumbel"})
_CHUNK_ELEMENTS = 1 << 21
#: bounded noise: all rows at once while no row has more classes that can win than this
_BATCHED_ALIVE = 256
#: working memory per logit of the exact rule (float64; see _check_memory)
_BYTES_PER_ENTRY = 640  # measured peak: ≈ 570 at 16 × 128,000, normal noise
#: the fewest grid columns per block of the sweep
_MIN_BLOCK = 16
#: refuse grids whose [batch, n, M] work would exceed this many float64 elements per chunk set
_MAX_NODES = 1 << 20


@dataclasses.dataclass(frozen=True)
class ExactLogProbs:
    """Result of :func:`exact_log_probs`.

    ``log_probs`` ``[B, n]`` float64 (−inf for masked classes); ``conditional_max`` ``[B, n]``
    E[max | class i wins] in the standardised variable (NaN where p_i = 0; None unless
    requested); ``agreement`` the
    largest |Δ log p_i| between the accepted rule and the rule with half the nodes (the
    a-posteriori check; the accepted rule's error is far smaller); ``nodes`` the grid size.
    """

    log_probs: torch.Tensor
    conditional_max: torch.Tensor | None
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
    if name == "normal" and type(noise).standard_log_cdf is Normal.standard_log_cdf:
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
# The shared sweep: L and every class's log-sum-exp, one block of grid columns at a time


@dataclasses.dataclass
class _Sweep:
    """One pass of the trapezoid over a grid (classes in descending order of the logits)."""

    log_p: torch.Tensor  # [B, n] the rule at spacing h
    coarse: torch.Tensor  # [B, n] the rule on the even columns (spacing 2h)
    mean_t: torch.Tensor  # [B, n] E[t | i] under the rule
    right_end: torch.Tensor  # [B, n] the log-integrand at the last column
    left_end: torch.Tensor  # [B, n] ... at the first column swept
    left_certified: bool  # the columns left of the sweep were bounded away (concavity)
    columns: int


def _block_terms(
    t: torch.Tensor,
    log_w: torch.Tensor,
    parity: int,
    prefix: torch.Tensor,
    filled: torch.Tensor,
    noise: Noise,
    want_mean: bool,
) -> torch.Tensor:
    """Per-class sums over one block of columns ``t`` [B, c] with log weights ``log_w``.

    ``prefix`` [B, p]: the logits whose CDF factor can differ from 1 on this block (the top p of
    the descending order; the rest have log Φ(t − μ_j) > −1e-20 there and are dropped from L).
    The log-integrand of class i is log f(t − μ_i) + L(t) − log Φ(t − μ_i): one log Φ per
    (column, prefix class) serves both L and the class's own factor. The coarse rule (spacing
    2h) doubles the weights of the even global columns (``parity``: the block's first column's
    global index mod 2) and drops the odd ones. Returns [6, B, n]: the block's log-sum-exp at
    spacing h and 2h, the block's E[t | i], the first, second and last column's log-integrand."""
    p = prefix.shape[1]
    log_cdf = _log_cdf(noise, t[:, :, None] - prefix[:, None, :])  # [B, c, p]
    big_l = log_cdf.sum(-1)  # [B, c]
    terms = noise.standard_log_pdf(t[:, :, None] - filled[:, None, :])  # [B, c, n]
    terms = terms + (big_l + log_w)[:, :, None]
    if p > 0:
        own = torch.where(torch.isfinite(log_cdf), log_cdf, torch.zeros_like(log_cdf))
        terms = torch.cat((terms[:, :, :p] - own, terms[:, :, p:]), dim=2)
    scaled, peak = _shifted_exp(terms, 1)  # peak [B, n]
    log_p = _safe_log(scaled.sum(1)) + peak
    coarse = _safe_log(2.0 * scaled[:, parity::2, :].sum(1)) + peak
    if want_mean:
        total = scaled.sum(1)
        mean_t = (scaled * t[:, :, None]).sum(1) / torch.where(total > 0, total, 1.0)
    else:
        mean_t = torch.zeros_like(log_p)
    second = terms[:, 1, :] if terms.shape[1] > 1 else terms[:, 0, :]
    return torch.stack((log_p, coarse, mean_t, terms[:, 0, :], second, terms[:, -1, :]))


def _shifted_exp(terms: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(exp(terms − peak), peak) with the peak along ``dim`` detached (sums of the shifted
    exponentials are invariant to it) and 0 where a slice is all −inf: then
    ``_safe_log(shifted.sum(dim)) + peak`` is a log-sum-exp whose gradient is zero, not NaN
    (as torch.logsumexp gives), for a class that cannot win."""
    peak = terms.detach().amax(dim, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    return torch.exp(terms - peak), peak.squeeze(dim)


def _safe_log(x: torch.Tensor) -> torch.Tensor:
    """log x with log 0 = −inf and a zero (not NaN) gradient there."""
    positive = x > 0
    return torch.where(positive, torch.log(torch.where(positive, x, 1.0)), -math.inf)


def _log_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """log(eᵃ + eᵇ) with a zero (not NaN, as torch.logaddexp gives) gradient where both are −inf."""
    peak = torch.maximum(a, b).detach()
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    return _safe_log(torch.exp(a - peak) + torch.exp(b - peak)) + peak


def _sweep(
    t: torch.Tensor,
    log_w: torch.Tensor,
    ordered: torch.Tensor,
    filled: torch.Tensor,
    noise: Noise,
    cutoff: float,
    prune: bool,
    want_mean: bool,
    origin: torch.Tensor | None = None,
) -> _Sweep:
    """The trapezoid on grid ``t`` [B, M] (ascending, M odd) with log weights ``log_w`` (spacing
    h; the coarse rule doubles the even columns' weights), for logits ``ordered`` [B, n] in
    descending order (−inf = masked, last) and ``filled`` (masked entries replaced by the top).

    Blocks of columns are taken from the top down. ``prune`` (log-concave noise, where every
    class's log-integrand T_i is concave in t): after each block, a class whose T_i rises from
    the block's first column to its second (by d > 0) has at most e^{T_i − d}/(1 − e^{−d}) of
    mass further left; once that is ``_END_MARGIN`` nats below every class's sum so far, the
    remaining columns are skipped — the cost then follows the classes' bumps, not the grid.
    With ``origin`` (the half-line rule, exponential noise: f ≤ 1, t = origin + eˢ) the bound is
    instead ∫_origin^{t₀} f(t − μ_i)∏_{j≠i}Φ(t − μ_j) dt ≤ (t₀ − origin)·∏_{j≠i}Φ(t₀ − μ_j)
    (every Φ increases): T_i(t₀) − log w₀ − log f(t₀ − μ_i) + log(t₀ − origin)."""
    batch, m_total = t.shape
    n = ordered.shape[1]
    need_grad = torch.is_grad_enabled() and (ordered.requires_grad or t.requires_grad)
    block = max(2, _CHUNK_ELEMENTS // max(1, batch * n))
    if prune:  # a few blocks even for small problems, so that the left part can be skipped
        block = min(block, max(_MIN_BLOCK, m_total // 4))
    block += block % 2
    detached = ordered.detach()
    # running sums over the blocks (O(B·n) memory however many blocks): log-sum-exp at h and 2h,
    # Σ weight · E[t | i] relative to the running log-sum-exp, the last column, the first swept
    log_p = torch.full((batch, n), -math.inf, dtype=torch.float64, device=t.device)
    coarse = log_p
    mean_t = torch.zeros_like(log_p)
    right_end = left_end = log_p
    stop = m_total
    certified = False
    columns = 0
    while stop > 0:
        begin = max(0, stop - block)
        piece = t[:, begin:stop]
        threshold = piece.detach()[:, :1] - cutoff
        count = int((detached > threshold).sum(1).max())
        args = (piece, log_w[:, begin:stop], begin % 2, ordered[:, :count], filled)
        if need_grad:
            out = checkpoint(_block_terms, *args, noise, want_mean, use_reentrant=False)
        else:
            out = _block_terms(*args, noise, want_mean)
        if columns == 0:
            right_end = out[5]
        left_end = out[3]
        if want_mean:
            merged = _log_add(log_p, out[0])
            safe = torch.where(torch.isfinite(merged), merged, torch.zeros_like(merged))
            mean_t = mean_t * torch.exp(log_p - safe) + out[2] * torch.exp(out[0] - safe)
            log_p = merged
        else:
            log_p = _log_add(log_p, out[0])
        coarse = _log_add(coarse, out[1])
        columns += stop - begin
        stop = begin
        if prune and stop > 0:
            values = out.detach()
            running = log_p.detach()
            first, second = values[3], values[4]
            if origin is None:
                rise = second - first
                tail = first - rise - torch.log(-torch.expm1(-rise.clamp_min(1e-300)))
                bounded = (rise > 0) & (tail <= running - _END_MARGIN)
            else:
                t0 = piece.detach()[:, :1]
                own = noise.standard_log_pdf(t0 - filled.detach())
                tail = first - log_w[:, begin, None] - own + torch.log(t0 - origin[:, None])
                bounded = tail <= running - _END_MARGIN
            if bool((bounded | torch.isneginf(first)).all()):
                certified = True
                break
    return _Sweep(log_p, coarse, mean_t, right_end, left_end, certified, columns)


def _next_spacing(spacing: float, agreement: float, order: float) -> float:
    """The spacing predicted to bring the h-vs-2h agreement to ``_AGREEMENT`` when the error
    falls like e^{−c/h^q}: h·(log agreement / log _AGREEMENT)^{1/q}. q = 2 for integrands entire
    in t with Gaussian decay (normal, Gumbel), 1 for those analytic in a strip (logistic, custom
    laws), 1.5 for the half-line substitution (measured: agreement 4.3e-3 at h = 0.3 became
    3.6e-13 at h = 0.107, an exponent 5.2 = (0.3/0.107)^1.6). 90% of it, between a quarter and
    four fifths of h: a slower law costs another pass, never a wrong answer (the check decides)."""
    if not math.isfinite(agreement) or agreement >= 1.0:
        return spacing / 4.0
    ratio = 0.9 * float((math.log(agreement) / math.log(_AGREEMENT)) ** (1.0 / order))
    return spacing * min(0.8, max(0.25, ratio))


def _ordered(z: torch.Tensor, finite: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(order, logits in descending order with −inf masks last, the same with masks filled by
    the top, top, bottom)."""
    detached = z.detach()
    top = torch.where(finite, detached, torch.full_like(detached, -math.inf)).amax(1)
    bottom = torch.where(finite, detached, torch.full_like(detached, math.inf)).amin(1)
    order = torch.argsort(detached, dim=1, descending=True)
    ordered = z.gather(1, order)
    filled = _filled(ordered, finite.gather(1, order), top)
    return order, ordered, filled, top, bottom


def _unorder(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(values).scatter(1, order, values) if not values.requires_grad else (
        torch.zeros_like(values).scatter_add(1, order, values))  # fmt: skip


# --------------------------------------------------------------------------------------------
# The three rules


def _smooth_rule(
    z: torch.Tensor, noise: Noise, finite: torch.Tensor, want_mean: bool
) -> ExactLogProbs:
    order, ordered, filled, top, bottom = _ordered(z, finite)
    x_lo = _quantile_from_log_cdf(noise, _TAIL_LOG_MASS, upper=False)
    x_hi = _quantile_from_log_cdf(noise, _TAIL_LOG_MASS, upper=True)
    cutoff = _cdf_one(noise)
    prune = noise.name in _LOG_CONCAVE
    spacing = _initial_spacing(noise)
    low_pad, high_pad = -x_lo, x_hi
    agreement = math.inf
    for _ in range(_MAX_REFINEMENTS):
        start = bottom - low_pad
        m_total = math.ceil(float((top + high_pad - start).max()) / spacing) + 1
        m_total += m_total % 2 == 0  # odd: the coarse rule uses nodes 0, 2, …, M − 1
        _check_size(z, m_total)
        steps = torch.arange(m_total, dtype=torch.float64, device=z.device)
        t = start[:, None] + spacing * steps
        log_w = torch.full_like(t, math.log(spacing))
        with torch.no_grad():
            result = _sweep(t, log_w, ordered.detach(), filled.detach(), noise,
                            cutoff, prune, want_mean)  # fmt: skip
        agreement, right_ok, left_ok = _assess(result, finite, order)
        if not (right_ok and left_ok):
            low_pad = low_pad if left_ok else 2.0 * low_pad
            high_pad = high_pad if right_ok else 2.0 * high_pad
            continue
        if agreement > _AGREEMENT:
            spacing = _next_spacing(spacing, agreement, 2.0 if noise.name in _ENTIRE else 1.0)
            continue
        if torch.is_grad_enabled() and z.requires_grad:
            result = _sweep(t, log_w, ordered, filled, noise, cutoff, prune, want_mean)
        return _finish(result, order, finite, agreement, want_mean)
    raise RuntimeError(
        f"exact Perturb-Max quadrature did not converge for noise {noise.name!r} "
        f"(agreement {agreement:.2e} at spacing {spacing:g}); please report this input"
    )


def _half_line_rule(
    z: torch.Tensor, noise: Noise, finite: torch.Tensor, want_mean: bool
) -> ExactLogProbs:
    order, ordered, filled, top, bottom = _ordered(z, finite)
    lower = noise.support[0]
    x_hi = _quantile_from_log_cdf(noise, _TAIL_LOG_MASS, upper=True)
    origin = ordered[:, 0] + lower  # [B], differentiable (Leibniz)
    cutoff = _cdf_one(noise)
    prune = noise.name == "exponential"  # f ≤ 1 on the standardised scale (the bound needs it)
    spacing = _initial_spacing(noise)
    s_low = -70.0
    s_high = torch.log((top - bottom) + (x_hi - lower) + 1.0)  # [B]
    agreement = math.inf
    for _ in range(_MAX_REFINEMENTS):
        m_total = math.ceil(float((s_high - s_low).max()) / spacing) + 1
        m_total += m_total % 2 == 0
        _check_size(z, m_total)
        s = s_low + spacing * torch.arange(m_total, dtype=torch.float64, device=z.device)
        s = s[None, :].expand(z.shape[0], -1)
        log_w = s + math.log(spacing)  # dt = eˢ ds
        with torch.no_grad():
            t = origin.detach()[:, None] + torch.exp(s)
            result = _sweep(t, log_w, ordered.detach(), filled.detach(), noise,
                            cutoff, prune, want_mean, origin.detach())  # fmt: skip
        agreement, right_ok, left_ok = _assess(result, finite, order)
        if not (right_ok and left_ok):
            s_low = s_low if left_ok else s_low - 30.0
            s_high = s_high if right_ok else s_high + 1.0
            continue
        if agreement > _AGREEMENT:
            spacing = _next_spacing(spacing, agreement, 1.5)
            continue
        if torch.is_grad_enabled() and z.requires_grad:
            t = origin[:, None] + torch.exp(s)
            result = _sweep(t, log_w, ordered, filled, noise, cutoff, prune, want_mean,
                            origin.detach())  # fmt: skip
        return _finish(result, order, finite, agreement, want_mean)
    raise RuntimeError(
        f"exact Perturb-Max quadrature did not converge for noise {noise.name!r} "
        f"(agreement {agreement:.2e}); please report this input"
    )


def _bounded_rule(z: torch.Tensor, noise: Noise, finite: torch.Tensor) -> ExactLogProbs:
    """Composite Gauss–Legendre between the kinks μ_j + b (module docstring): all rows at once
    while every row has at most ``_BATCHED_ALIVE`` classes that can win, else row by row with
    the pieces restricted to the classes' windows."""
    order, ordered, filled, top, _ = _ordered(z, finite)
    lower, upper = noise.support
    alive = int((ordered.detach() + upper > (top + lower)[:, None]).sum(1).max())
    if alive <= _BATCHED_ALIVE:
        return _bounded_batched(order, ordered, filled, finite, noise, alive)
    rows_log_p, rows_mean, agreements, sizes = [], [], [], []
    for row, mask in zip(z, finite, strict=True):
        log_p, mean_t, agreement, size = _bounded_row(row, mask, noise)
        rows_log_p.append(log_p)
        rows_mean.append(mean_t)
        agreements.append(agreement)
        sizes.append(size)
    return ExactLogProbs(torch.stack(rows_log_p), torch.stack(rows_mean), max(agreements),
                         max(sizes))  # fmt: skip


def _bounded_batched(
    order: torch.Tensor,
    ordered: torch.Tensor,
    filled: torch.Tensor,
    finite: torch.Tensor,
    noise: Noise,
    alive: int,
) -> ExactLogProbs:
    """Every row at once: the first ``alive`` classes of the descending order hold every class
    that can win (μ_i + b > max μ + a). Edges: the origin max μ + a and the kinks μ_j + b of
    those classes (ascending; a row's classes that cannot win give kinks clamped to the origin,
    i.e. empty pieces), differentiable in the logits (Leibniz's boundary terms). Nodes
    t = left + width·u² per piece; the rule with K and 2K nodes per piece must agree."""
    lower, upper = noise.support
    batch, n = ordered.shape
    origin = ordered[:, :1] + lower  # [B, 1]
    kinks = torch.flip(ordered[:, :alive] + upper, dims=(1,))  # ascending
    kinks = torch.maximum(kinks, origin)
    edges = torch.cat((origin, kinks), dim=1)  # [B, A + 1]
    left, width = edges[:, :-1], edges[:, 1:] - edges[:, :-1]  # [B, A]
    candidates = ordered[:, :alive]  # L runs over these: every other factor is 1 on the domain
    own = filled[:, :alive]
    previous = None
    agreement = math.inf
    for k in (16, 32, 64, 128):
        fine = _bounded_pieces(left, width, candidates, own, noise, k)
        if previous is not None:
            agreement = _bounded_agreement(previous[0], fine[0])
            if agreement <= _AGREEMENT:
                previous = fine
                break
        previous = fine
    assert previous is not None
    if agreement > _AGREEMENT:
        raise RuntimeError(
            f"exact Perturb-Max quadrature did not converge for noise {noise.name!r} "
            f"(agreement {agreement:.2e}); please report this input"
        )
    log_p, mean_t = previous
    nodes = int(left.shape[1]) * k
    rest = torch.full((batch, n - alive), -math.inf, dtype=torch.float64, device=ordered.device)
    result = _Sweep(torch.cat((log_p, rest), 1), log_p, torch.cat((mean_t, rest), 1), rest, rest,
                    True, nodes)  # fmt: skip
    return _finish(result, order, finite, agreement, True)


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
        log_p_row, mean_row = _bounded_pieces(
            pieces[None, :, 0], (pieces[:, 1] - pieces[:, 0])[None], alive_values[None],
            alive_values[None], noise, nodes_per_piece,
        )  # fmt: skip
        fine = (log_p_row[0], mean_row[0])
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
    left: torch.Tensor,
    width: torch.Tensor,
    candidates: torch.Tensor,
    own: torch.Tensor,
    noise: Noise,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite Gauss–Legendre with ``k`` nodes on each piece [left, left + width] (``[B, P]``;
    nodes u² clustered to the left end, t = left + width·u², empty pieces weigh nothing),
    differentiable in the piece ends. L runs over ``candidates`` [B, A] (the classes that can
    win: every other factor is 1 on the whole domain t > max μ + a); returns log p and E[t | i]
    of the classes ``own`` [B, A']."""
    batch = left.shape[0]
    x, w = np.polynomial.legendre.leggauss(k)
    u = torch.tensor(0.5 * (x + 1.0), dtype=torch.float64, device=left.device)
    weights = torch.tensor(np.log(0.5 * w * (x + 1.0)), dtype=torch.float64,
                           device=left.device)  # log(2u · w/2)  # fmt: skip
    t = (left[:, :, None] + width[:, :, None] * u**2).reshape(batch, -1)  # [B, P·K]
    log_w = (_safe_log(width)[:, :, None] + weights).reshape(batch, -1)
    big_l = _log_cdf(noise, t[:, :, None] - candidates[:, None, :]).sum(-1)  # [B, T]
    terms = log_reverse_hazard(noise, t[:, None, :] - own[:, :, None])
    terms = terms + (big_l + log_w)[:, None, :]  # [B, A', T]
    scaled, peak = _shifted_exp(terms, 2)
    total = scaled.sum(-1)
    log_p = _safe_log(total) + peak
    mean_t = (scaled * t[:, None, :]).sum(-1) / torch.where(total > 0, total, 1.0)
    return log_p, mean_t


# --------------------------------------------------------------------------------------------


def _initial_spacing(noise: Noise) -> float:
    """Starting spacing (standardised units; s for the half-line rule): what typical logit
    vectors end with (n = 10 … 32,000 at spreads 1–10), so that most need one pass."""
    return {"normal": 0.2, "logistic": 0.4, "gumbel": 0.5, "exponential": 0.24}.get(noise.name, 0.3)


def _cdf_one(noise: Noise) -> float:
    """x above which log Φ(x) rounds to 0 in float64 relative to a sum (|log Φ| < 1e-300) or
    to an absolute 1e-20 per term (negligible against any total)."""
    return (
        _quantile_from_log_cdf(noise, math.log(1e-20), upper=True)
        if math.isinf(noise.support[1])
        else noise.support[1]
    )


def _assess(result: _Sweep, finite: torch.Tensor, order: torch.Tensor) -> tuple[float, bool, bool]:
    """(h-vs-2h agreement, right end ok, left end ok) over the finite classes: each end's
    log-integrand ``_END_MARGIN`` nats below the class's integral (or the left side certified by
    concavity in the sweep)."""
    lp = result.log_p
    usable = finite.gather(1, order) & torch.isfinite(lp)
    if not bool(usable.any()):
        return 0.0, True, True
    difference = torch.where(usable, (lp - result.coarse).abs(), torch.zeros_like(lp))
    agreement = float(difference.max())
    if not math.isfinite(agreement):
        agreement = math.inf
    floor = torch.where(usable, lp - _END_MARGIN, torch.full_like(lp, math.inf))
    right_ok = bool((result.right_end <= floor).all())
    left_ok = result.left_certified or bool((result.left_end <= floor).all())
    return agreement, right_ok, left_ok


def _finish(
    result: _Sweep, order: torch.Tensor, finite: torch.Tensor, agreement: float, want_mean: bool
) -> ExactLogProbs:
    """Back to the input's class order; masked classes −inf (mean NaN)."""
    log_p = _unorder(result.log_p, order)
    log_p = torch.where(finite, log_p, torch.full_like(log_p, -math.inf))
    mean_t = None
    if want_mean:
        mean_t = _unorder(result.mean_t, order)
        mean_t = torch.where(finite, mean_t, torch.full_like(mean_t, math.nan))
    return ExactLogProbs(log_p, mean_t, agreement, result.columns)


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


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # not POSIX: no refusal
        return 1 << 62


def check_exact_memory(z: torch.Tensor) -> None:
    """Refuse, naming the memory, a call whose working set (≈ ``_BYTES_PER_ENTRY`` per logit:
    blocks of at least two grid columns × every class, the running sums, the sort) exceeds the
    device's memory, instead of being killed for it."""
    needed = _BYTES_PER_ENTRY * z.numel()
    available = _available_bytes(z.device)
    if needed > available:
        raise ValueError(
            f"exact Perturb-Max probabilities for logits of shape {tuple(z.shape)} need about "
            f"{needed / 2**30:.1f} GiB of working memory ({_BYTES_PER_ENTRY} bytes per logit) but "
            f"{z.device} has {available / 2**30:.1f} GiB: split the batch or use a fixed-node "
            "method (method='gauss-hermite'/'gauss-legendre')"
        )


def exact_log_probs(
    z: torch.Tensor, noise: Noise, *, conditional_max: bool = False
) -> ExactLogProbs:
    """Exact log p ``[B, n]`` (float64) for standardised logits ``z`` ``[B, n]`` (−inf =
    masked; every row needs one finite entry), by the rule the noise's support selects (module
    docstring). Differentiable in ``z``. ``conditional_max``: also E[max | class i wins] (one
    more exponential per grid point and class); otherwise that field is None."""
    check_exact_memory(z)
    z = z.to(torch.float64)
    finite = torch.isfinite(z.detach())
    safe = torch.where(finite, z, torch.full_like(z, -math.inf))
    lower, upper = noise.support
    if math.isinf(lower) and math.isinf(upper):
        return _smooth_rule(safe, noise, finite, conditional_max)
    if math.isinf(upper):
        return _half_line_rule(safe, noise, finite, conditional_max)
    result = _bounded_rule(safe, noise, finite)
    return result if conditional_max else dataclasses.replace(result, conditional_max=None)
