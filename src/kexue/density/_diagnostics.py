"""Reliability of an importance-sampled ``log p̂(x)`` (spec 02 §3.3; issue 21 item 1).

Two pieces, both from the log weights of one point:

* **Pareto k̂** (PSIS diagnostic; Vehtari, Simpson, Gelman, Yao, Gabry, "Pareto smoothed
  importance sampling", arXiv 1507.02646, JMLR 2024). A generalized Pareto distribution (GPD) is
  fitted to the ``n = ceil(min(M / 5, 3 √M))`` largest weights above the ``(n+1)``-th largest; its
  shape ``k`` is the tail index of the weights: moments of order ``< 1/k`` exist. (The 2024
  version of the paper lowers the threshold to ``min(1 - 1 / log10 M, 0.7)`` for small ``M``;
  ``log_likelihood(pareto_k_threshold=...)`` accepts it.) ``k < 1/2``:
  finite variance, the central limit theorem holds; ``1/2 <= k <= 0.7``: infinite variance but the
  estimate is usable; ``k > 0.7``: the mean converges too slowly for any practical ``M`` and no
  interval can be trusted. The fit is Zhang and Stephens' (Technometrics 2009) empirical-Bayes
  estimate (posterior mean of ``θ = -k/σ`` over a quantile grid of the profile likelihood),
  followed by the PSIS paper's weakly informative prior ``k̂ ← (n k̂ + 10 · 0.5) / (n + 10)``.
  Written from the papers' formulas.

* **A calibrated interval for log p(x).** With ``w̄`` the mean weight and ``r`` the delta-method
  relative standard error ``s_w / (√M w̄)`` (the standard error of ``log w̄``, spec 02 §3.3), the
  statistic ``T = (log w̄ - log p) / r`` is standard normal only when the weights have light tails
  and ``M`` is large. Under heavy tails ``log w̄`` is usually too low (Jensen; the large weights
  that carry the mean have not been drawn yet) *and* ``r`` is too small at the same time, so
  ``±1.96 r`` covers the truth far less than 95 % of the time. The interval here uses the
  quantiles of ``T`` for i.i.d. GPD weights with a tail index two standard errors above the
  point's ``k̂`` (``k̂ + 2 (1 + k̂) / √n``, since ``k̂`` from ``n`` tail weights is noisy; rounded
  up to a grid of 0.05, between 0 and 0.95), simulated once per ``(k, M)`` and cached: all the
  mass of such weights is tail, the worst case for a given ``k``. One standard error gave
  0.83-0.85 coverage on the variance-×0.3 proposals at ``M = 1000``, two gave 0.93-0.94 (README).
  Each end is the wider of the GPD-calibrated and the normal one, so the interval is never
  narrower than ``log w̄ ± z r``:

  ``[log w̄ - max(q_hi, z) r,  log w̄ - min(q_lo, -z) r]``.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["calibrated_interval", "pareto_k", "tail_length"]

_K_GRID_STEP = 0.05
CALIBRATION_MARGIN = 2.0
_SIMULATION_REPEATS = 2000
_MAX_SIMULATED_SAMPLES = 2000


def tail_length(num_samples: int) -> int:
    """``ceil(min(M / 5, 3 √M))``: the number of largest weights the GPD is fitted to (PSIS)."""
    return math.ceil(min(num_samples / 5, 3 * math.sqrt(num_samples)))


def pareto_k(top_log_weights: torch.Tensor, rounding: torch.Tensor | None = None) -> torch.Tensor:
    """Pareto k̂ per row from the ``n + 1`` largest log weights ``[B, n + 1]`` (any order).

    Computed in log space throughout, so weights that span thousands of nats (the prior as
    proposal in 50 dimensions) are fitted rather than underflowing to zero exceedances. With
    ``y_i`` the exceedances over the threshold and ``r_i = y_i / max y``, the Zhang–Stephens grid
    ``θ_j = 1 / max y + (1 - sqrt(m / (j - 1/2))) / (3 y_(q1))`` becomes ``a_j = -θ_j max y =
    (sqrt(m / (j - 1/2)) - 1) R - 1`` with ``R = max y / (3 y_(q1))``; the profile shape is
    ``ξ(a) = mean log(1 + a r_i)`` and the profile log-likelihood ``n (log(a / ξ) - ξ - 1)`` up
    to a constant.

    Args:
        top_log_weights: the largest log weights of each point.
        rounding: ``[B]`` floating-point error of the log weights (nats): largest weights within it
            of the threshold count as equal.

    Returns float64 ``[B]``: ``nan`` when ``n < 5`` (too few samples to fit a tail: ``M < 25``),
    ``-inf`` when the ``n`` largest weights all equal the threshold (no tail at all, e.g. the
    exact posterior as proposal, where every weight is ``p(x)``).
    """
    values = torch.sort(top_log_weights.to(torch.float64), dim=1).values  # threshold first
    rows, width = values.shape
    n = width - 1
    if width < 2:  # one weight says nothing about the others
        return torch.full((rows,), math.nan, dtype=torch.float64, device=values.device)
    tolerance = torch.zeros(rows, dtype=torch.float64) if rounding is None else rounding
    spread = values[:, -1] - values[:, 0]
    no_tail = ~(spread > tolerance.to(values.device))
    if n < 5:
        return torch.where(no_tail, -math.inf, math.nan).to(torch.float64)
    threshold = values[:, :1]
    gap = values[:, 1:] - threshold  # [B, n] >= 0
    # log y_i = log(w_i - u) = log w_i + log(1 - exp(-gap_i)), relative to the largest.
    log_y = values[:, 1:] + torch.log(-torch.expm1(-gap))
    log_r = log_y - log_y[:, -1:]  # log(y_i / max y) <= 0, -inf for ties with the threshold
    log_r = torch.where(no_tail[:, None], torch.zeros_like(log_r), log_r)
    quartile = max(0, math.floor(n / 4 + 0.5) - 1)
    log_r_quartile = torch.clamp(log_r[:, quartile], min=-1e4)  # a tie: a very heavy tail
    log_scale = -log_r_quartile - math.log(3)  # log R
    grid_size = 30 + math.floor(math.sqrt(n))
    j = torch.arange(1, grid_size + 1, dtype=torch.float64, device=values.device)
    grid_spread = torch.sqrt(grid_size / (j - 0.5)) - 1  # > 0
    exponent = torch.log(grid_spread)[None, :] + log_scale[:, None]  # log(a + 1)
    sign, log_abs_a = _expm1_in_log_space(exponent)  # a_j = expm1(exponent) = sign e^log_abs_a
    xi = _mean_log1p(sign, log_abs_a, log_r)  # [B, m]
    # a and ξ share their sign; a = 0 has ξ = 0 and the limit log(a / ξ) = -log mean r.
    ratio = torch.where(sign == 0, -torch.log(log_r.exp().mean(dim=1, keepdim=True)), log_abs_a)
    ratio = torch.where(sign == 0, ratio, ratio - torch.log(xi.abs()))
    profile = n * (ratio - xi - 1)
    weights = torch.softmax(torch.nan_to_num(profile, nan=-math.inf), dim=1)
    # â = Σ w_j a_j, in log space for the positive a_j (they can be astronomically large).
    log_weights = torch.log(weights)
    positive = torch.logsumexp(torch.where(sign > 0, log_weights + log_abs_a, -math.inf), dim=1)
    negative = (weights * torch.where(sign < 0, -log_abs_a.exp(), 0.0)).sum(dim=1)
    large = positive > 30
    direct = positive.exp() + negative
    a_sign = torch.where(large, torch.ones_like(direct), torch.sign(direct))
    a_log = torch.where(large, positive, torch.log(direct.abs()))
    xi_hat = _mean_log1p(a_sign[:, None], a_log[:, None], log_r)[:, 0]
    k_hat = (n * xi_hat + 10 * 0.5) / (n + 10)  # the PSIS paper's weakly informative prior
    return torch.where(no_tail, torch.full_like(k_hat, -math.inf), k_hat)


def _expm1_in_log_space(exponent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sign, log|expm1(x)|)`` without overflow for large ``x``."""
    safe = torch.where(exponent > 0, exponent, torch.ones_like(exponent))
    positive_log = safe + torch.log(-torch.expm1(-safe))
    small = torch.expm1(torch.clamp(exponent, max=0))  # in (-1, 0]
    sign = torch.where(exponent > 0, torch.ones_like(exponent), torch.sign(small))
    log_abs = torch.where(exponent > 0, positive_log, torch.log(small.abs()))
    return sign, log_abs


def _mean_log1p(sign: torch.Tensor, log_abs_a: torch.Tensor, log_r: torch.Tensor) -> torch.Tensor:
    """``mean_i log(1 + a r_i)`` for ``a = sign e^log_abs_a`` ``[B, m]`` and ``r`` ``[B, n]``:
    ``softplus(log a + log r)`` for ``a > 0``, ``log1p(a r)`` for ``-1 < a <= 0``."""
    combined = log_abs_a[:, :, None] + log_r[:, None, :]  # [B, m, n]
    positive = torch.logaddexp(torch.zeros_like(combined), combined)
    negative = torch.log1p(-torch.exp(combined))
    value = torch.where(sign[:, :, None] > 0, positive, negative)
    value = torch.where(sign[:, :, None] == 0, torch.zeros_like(value), value)
    return value.mean(dim=2)


@functools.lru_cache(maxsize=64)
def _statistic_quantiles(
    k: float, num_samples: int, level: float
) -> tuple[float, float, float, float]:
    """Quantiles ``(q_lo, q_hi)`` at ``(1 ∓ level) / 2`` of ``T = (log w̄ - log E w) / r`` for
    ``M`` i.i.d. GPD(k, σ = 1) weights (``M`` capped at 2000; 2000 repetitions; fixed seed), and
    the bias and standard deviation of ``log w̄`` in units of the mean ``r``."""
    m = min(num_samples, _MAX_SIMULATED_SAMPLES)
    generator = torch.Generator().manual_seed(20_260_421 + round(k * 1000) + 7 * m)
    uniform = torch.rand((_SIMULATION_REPEATS, m), generator=generator, dtype=torch.float64)
    tail = -torch.log1p(-uniform)  # exponential draws: the GPD with k = 0
    draws = tail if k == 0 else torch.expm1(k * tail) / k
    mean_weight = 1 / (1 - k)
    sample_mean = draws.mean(dim=1)
    relative = draws.std(dim=1) / (math.sqrt(m) * sample_mean)
    statistic = (torch.log(sample_mean) - math.log(mean_weight)) / relative
    alpha = (1 - level) / 2
    quantiles = torch.quantile(statistic, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    error = torch.log(sample_mean) - math.log(mean_weight)
    typical = relative.mean()
    bias, spread = float(error.mean() / typical), float(error.std() / typical)
    return float(quantiles[0]), float(quantiles[1]), bias, spread


def normal_quantile(level: float) -> float:
    """``z`` with ``P(|N(0, 1)| <= z) = level``."""
    return math.sqrt(2) * float(torch.special.erfinv(torch.tensor(level, dtype=torch.float64)))


def calibrated_interval(
    log_mean: torch.Tensor,
    relative_error: torch.Tensor,
    k_hat: torch.Tensor,
    num_samples: int,
    level: float,
    max_k: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-point ``(lower, upper, bias, error_scale)`` for ``log p`` (module docstring): the
    interval (``nan`` where ``k̂ > max_k`` or ``k̂`` is ``nan``), and the bias ``E[log p̂ - log p]``
    and standard deviation of ``log p̂`` at ``k̂`` itself (``r`` times the simulated values, the
    standard deviation at least ``r``), which ``LogLikelihoodEstimate.mean_interval`` combines
    over points."""
    z = normal_quantile(level)
    lower_factor = torch.full_like(log_mean, z)
    upper_factor = torch.full_like(log_mean, z)
    bias_factor = torch.zeros_like(log_mean)
    spread_factor = torch.ones_like(log_mean)
    finite = torch.isfinite(k_hat) & (k_hat <= max_k)
    # k̂ is noisy (standard error about (1 + k) / sqrt(n) for n tail weights): calibrate for a
    # tail heavier by CALIBRATION_MARGIN standard errors, rounded up to the grid (1e-9 absorbs
    # rounding), at most 0.95 (k < 1 for a finite mean).
    n = tail_length(num_samples)
    margin = CALIBRATION_MARGIN * (1 + torch.clamp(k_hat, min=0)) / math.sqrt(n)
    calibrated = torch.clamp(k_hat + margin, max=0.95)
    grid = torch.clamp(torch.ceil(calibrated / _K_GRID_STEP - 1e-9), min=0)
    for index in torch.unique(grid[finite]).tolist():
        k = round(index * _K_GRID_STEP, 10)
        q_lo, q_hi, _, _ = _statistic_quantiles(k, num_samples, level)
        selected = finite & (grid == index)
        lower_factor[selected] = max(q_hi, z)
        upper_factor[selected] = max(-q_lo, z)
    # The bias and spread for the mean over many points: at k̂ itself (its noise averages out).
    plain = torch.clamp(torch.ceil(k_hat / _K_GRID_STEP - 1e-9), min=0)
    for index in torch.unique(plain[finite]).tolist():
        k = round(index * _K_GRID_STEP, 10)
        _, _, bias, spread = _statistic_quantiles(k, num_samples, level)
        selected = finite & (plain == index)
        bias_factor[selected] = min(bias, 0.0)
        spread_factor[selected] = max(spread, 1.0)
    lower = log_mean - lower_factor * relative_error
    upper = log_mean + upper_factor * relative_error
    trusted = finite | (k_hat == -math.inf)
    nan = torch.full_like(log_mean, math.nan)
    return (
        torch.where(trusted, lower, nan),
        torch.where(trusted, upper, nan),
        torch.where(trusted, bias_factor * relative_error, nan),
        torch.where(trusted, spread_factor * relative_error, nan),
    )
