"""Every class, every noise, against independent references (issue 19 item 1; spec 09 (pi)).

The references integrate each class separately, never with the library's grid:

* ``scipy.integrate.quad`` (adaptive Gauss–Kronrod) of the log-shifted integrand
  exp(log f(t − μ_i) + Σ_{j≠i} log Φ(t − μ_j) − c_i) in the variable of the maximum, with
  c_i the integrand's maximum and the breakpoints of bounded laws, for smooth laws;
* ``mpmath.quad`` (30 digits) with every breakpoint, for the bounded laws and the extremes.

Tolerance (issue 19): |Δ log p_i| ≤ 1e-9 · max(1, |log p_i|) for every class with
log p_i ≥ −700 in float64; 1e-5 relative for float32 inputs.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

from kexue.discrete import (
    CustomNoise,
    expected_max,
    perturb_max_log_probs,
    perturb_max_nll,
    perturb_max_probs,
)

F64 = torch.float64
LAWS: dict[str, stats.rv_continuous] = {
    "normal": stats.norm(),
    "logistic": stats.logistic(),
    "gumbel": stats.gumbel_r(),
    "hypsecant": stats.hypsecant(),
}


def hypsecant_noise() -> CustomNoise:
    """The hyperbolic-secant law (pdf sech(x)/π, CDF (2/π) arctan eˣ) from log-CDF and log-pdf
    callables only: a user noise with full support."""

    def log_cdf(x: torch.Tensor) -> torch.Tensor:
        far = x < -30
        safe = torch.where(far, torch.zeros_like(x), x)
        near = math.log(2 / math.pi) + torch.log(torch.atan(torch.exp(safe)))
        return torch.where(far, math.log(2 / math.pi) + x, near)

    def log_pdf(x: torch.Tensor) -> torch.Tensor:
        return -math.log(math.pi) + math.log(2.0) - x.abs() - torch.log1p(torch.exp(-2 * x.abs()))

    def icdf(q: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.tan(0.5 * math.pi * q))

    return CustomNoise(log_cdf, icdf, log_pdf, name="hypsecant")


def noise_object(name: str) -> str | CustomNoise:
    return hypsecant_noise() if name == "hypsecant" else name


def scipy_log_probs(mu: np.ndarray, name: str, classes: list[int] | None = None) -> np.ndarray:
    """log p_i by adaptive quadrature per class (smooth full-support laws); ``classes``: only
    those (the others are NaN)."""
    law = LAWS[name]
    mu = np.asarray(mu, dtype=np.float64)
    grid = np.linspace(mu.min() - 60, mu.max() + 60, 24001)
    out = np.full(len(mu), np.nan)
    for i in range(len(mu)) if classes is None else classes:
        others = np.delete(mu, i)

        def log_integrand(t: np.ndarray, i: int = i, others: np.ndarray = others) -> np.ndarray:
            t = np.atleast_1d(t)
            with np.errstate(all="ignore"):
                cdfs = law.logcdf(t[:, None] - others[None, :]).sum(1)  # type: ignore[attr-defined]
                return law.logpdf(t - mu[i]) + cdfs  # type: ignore[attr-defined,no-any-return]

        values = log_integrand(grid)
        peak = int(np.nanargmax(values))
        c = values[peak]
        alive = grid[values > c - 120]
        value, _ = integrate.quad(
            lambda t, c=c: float(np.exp(log_integrand(t)[0] - c)), alive.min() - 1, alive.max() + 1,
            points=[grid[peak]], limit=1000, epsabs=0.0, epsrel=1e-13,
        )  # fmt: skip
        out[i] = math.log(value) + c
    return out


def mpmath_log_probs(mu: list[float], name: str) -> np.ndarray:
    """log p_i with mpmath (30 digits) and every breakpoint (uniform, exponential)."""
    mp.mp.dps = 30
    top = max(mu)
    out = []
    for i, mi in enumerate(mu):
        if name == "uniform":
            lo, hi = top - 0.5, mi + 0.5
            if hi <= lo:
                out.append(-math.inf)
                continue

            def cdf(x: mp.mpf) -> mp.mpf:
                return mp.mpf(0) if x <= -0.5 else (mp.mpf(1) if x >= 0.5 else x + mp.mpf(0.5))

            points = sorted({lo, hi, *[m + 0.5 for m in mu if lo < m + 0.5 < hi]})

            def integrand(t: mp.mpf, i: int = i) -> mp.mpf:
                return mp.fprod([cdf(t - mj) for j, mj in enumerate(mu) if j != i])
        else:  # exponential
            points = [top, top + 1e-6, top + 1e-3, top + 0.1, top + 1, top + 10, mp.inf]

            def integrand(t: mp.mpf, i: int = i, mi: float = mi) -> mp.mpf:
                factors = [1 - mp.exp(-(t - mj)) for j, mj in enumerate(mu) if j != i]
                return mp.exp(-(t - mi)) * mp.fprod(factors)

        out.append(float(mp.log(mp.quad(integrand, points))))
    return np.array(out)


def assert_every_class(log_p: torch.Tensor, reference: np.ndarray, tol: float = 1e-9) -> float:
    got = log_p.detach().double().numpy()
    assert np.array_equal(np.isfinite(got), np.isfinite(reference)), (got, reference)
    keep = np.isfinite(reference) & (reference >= -700)
    error = np.abs(got[keep] - reference[keep]) / np.maximum(1.0, np.abs(reference[keep]))
    assert float(error.max()) <= tol, (float(error.max()), got[keep], reference[keep])
    return float(error.max())


SMOOTH_CASES = {
    "two, 40 apart": [0.0, -40.0],
    "spec 09 §3": [1.0, 0.3, -0.5, 2.0, 0.0],
    "distant": [0.0, -5.0, -10.0, -20.0, -35.0, -60.0],
    "ties": [0.0, 0.0, 0.0, -1.0],
    "spread 50": list(np.random.default_rng(0).uniform(-25, 25, size=12)),
    "a few far below": [3.0, 2.5, 1.0, 0.0, -0.5, -40.0, -150.0, -1000.0],
}


@pytest.mark.parametrize("name", ["normal", "logistic", "gumbel", "hypsecant"])
@pytest.mark.parametrize("case", sorted(SMOOTH_CASES))
def test_every_class_matches_adaptive_quadrature(name: str, case: str) -> None:
    mu = np.array(SMOOTH_CASES[case])
    reference = scipy_log_probs(mu, name)
    log_p = perturb_max_log_probs(torch.tensor(mu, dtype=F64), noise_object(name))
    assert_every_class(log_p, reference)


def test_the_issue_examples() -> None:
    # μ = [0, −40], normal noise: the second class is at −404.26, not −503.5 (issue 19)
    log_p = perturb_max_log_probs(torch.tensor([0.0, -40.0], dtype=F64))
    assert abs(float(log_p[1]) - scipy_log_probs(np.array([0.0, -40.0]), "normal")[1]) <= 4e-7
    assert abs(float(log_p[1]) + 404.26249) <= 1e-4


@pytest.mark.parametrize("name", ["normal", "logistic"])
def test_one_hundred_classes_and_the_nll_gradient(name: str) -> None:
    generator = np.random.default_rng(1)
    mu = generator.normal(size=100) * 3
    order = np.argsort(mu)
    checked = sorted({*order[:6].tolist(), *order[-3:].tolist(), *range(0, 100, 10)})
    reference = scipy_log_probs(mu, name, checked)
    logits = torch.tensor(mu, dtype=F64, requires_grad=True)
    log_p = perturb_max_log_probs(logits, name)
    assert_every_class(log_p[checked], reference[checked])
    # the NLL gradient of the lowest class against central differences of the reference
    lowest = int(np.argmin(mu))
    loss = perturb_max_nll(logits[None], torch.tensor([lowest]), name)
    (gradient,) = torch.autograd.grad(loss, logits)
    step = 1e-4
    for k in (lowest, int(np.argmax(mu)), 0):
        up, down = mu.copy(), mu.copy()
        up[k] += step
        down[k] -= step
        numeric = -(
            scipy_log_probs(up, name, [lowest])[lowest]
            - scipy_log_probs(down, name, [lowest])[lowest]
        )
        numeric /= 2 * step
        assert abs(float(gradient[k]) - numeric) <= 1e-6 * max(1.0, abs(numeric)), (k, numeric)


@pytest.mark.parametrize("name", ["uniform", "exponential"])
@pytest.mark.parametrize(
    "mu",
    [
        [0.0, -0.3, -0.7, -2.0, 0.1],
        [0.0, -5.0, -10.0, -20.0, -35.0],
        [0.2, 0.2, -0.1, -0.4, -0.45, -0.9, 0.05],
        list(np.random.default_rng(2).normal(size=8) * 0.5),
    ],
)
def test_bounded_and_half_line_laws_match_mpmath(name: str, mu: list[float]) -> None:
    reference = mpmath_log_probs(mu, name)
    log_p = perturb_max_log_probs(torch.tensor(mu, dtype=F64), name)
    assert_every_class(log_p, reference)


@pytest.mark.parametrize("name", ["normal", "logistic", "uniform", "exponential"])
def test_float32_inputs_are_exact_to_1e5(name: str) -> None:
    mu = [1.0, 0.3, -0.5, 2.0, 0.0, -12.0]
    log32 = perturb_max_log_probs(torch.tensor(mu, dtype=torch.float32), name)
    assert log32.dtype == torch.float32
    reference = (
        mpmath_log_probs(mu, name) if name in ("uniform", "exponential")
        else scipy_log_probs(np.array(mu), name)
    )  # fmt: skip
    assert_every_class(log32, reference, tol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["normal", "logistic", "uniform", "exponential"])
def test_half_precision_inputs_round_the_exact_answer(name: str, dtype: torch.dtype) -> None:
    """fp16/bf16 logits (exactly representable here) give the reference log p rounded to the
    dtype: within one unit of its precision relative to max(1, |log p|); p sums to 1 to the
    dtype's precision; the NLL gradient is the float64 one (checked against finite differences
    of the reference above) rounded."""
    mu = [1.0, 0.25, -0.5, 2.0, 0.0, -12.0]
    logits = torch.tensor(mu, dtype=dtype, requires_grad=True)
    log_p = perturb_max_log_probs(logits, name)
    assert log_p.dtype == dtype
    reference = (
        mpmath_log_probs(mu, name) if name in ("uniform", "exponential")
        else scipy_log_probs(np.array(mu), name)
    )  # fmt: skip
    eps = torch.finfo(dtype).eps
    assert_every_class(log_p.float(), reference, tol=eps)
    p = perturb_max_probs(logits.detach(), name)
    assert abs(float(p.float().sum()) - 1.0) <= 4 * eps
    nll = perturb_max_nll(logits[None], torch.tensor([1]), name)
    (gradient,) = torch.autograd.grad(nll.float().sum(), logits)
    assert gradient.dtype == dtype
    wide = torch.tensor(mu, dtype=F64, requires_grad=True)
    (expected,) = torch.autograd.grad(perturb_max_nll(wide[None], torch.tensor([1]), name), wide)
    error = (gradient.double() - expected).abs() / expected.abs().clamp_min(1.0)
    assert float(error.max()) <= 2 * eps


@pytest.mark.parametrize("name", ["normal", "logistic", "uniform", "exponential", "hypsecant"])
def test_gradcheck_of_the_exact_rule(name: str) -> None:
    mu = torch.tensor([[0.7, 0.3, -0.2, 0.1], [0.2, -0.3, 0.5, 0.45]], dtype=F64)
    noise = noise_object(name)
    for log in (False, True):
        assert torch.autograd.gradcheck(
            lambda x, log=log: perturb_max_probs(x, noise, log=log), (mu.requires_grad_(),),
            atol=1e-9, rtol=1e-7,
        )  # fmt: skip


@pytest.mark.parametrize("name", ["normal", "logistic", "uniform", "exponential", "gumbel"])
def test_masked_classes_get_zero_and_leave_the_rest_unchanged(name: str) -> None:
    mu = torch.tensor([0.4, -math.inf, 0.1, -0.3, -math.inf], dtype=F64, requires_grad=True)
    p = perturb_max_probs(mu, name)
    assert float(p[1]) == 0.0
    assert float(p[4]) == 0.0
    subset = perturb_max_probs(torch.tensor([0.4, 0.1, -0.3], dtype=F64), name)
    assert torch.allclose(p[[0, 2, 3]], subset, atol=1e-13, rtol=0)
    (gradient,) = torch.autograd.grad((p * torch.arange(5.0, dtype=F64)).sum(), mu)
    assert bool(torch.isfinite(gradient).all())
    assert float(gradient[1]) == 0.0
    assert float(gradient[4]) == 0.0
    log_p = perturb_max_log_probs(mu, name)
    assert math.isinf(float(log_p[1]))
    assert float(log_p[1]) < 0


@pytest.mark.parametrize("name", ["normal", "logistic", "hypsecant"])
def test_expected_max_matches_quadrature_and_its_gradient_is_p(name: str) -> None:
    mu = np.array([1.0, 0.3, -0.5, 2.0, 0.0])
    law = LAWS[name]

    def density_of_max(t: float) -> float:
        cdf = law.cdf(t - mu)  # type: ignore[attr-defined]
        pdf = law.pdf(t - mu)  # type: ignore[attr-defined]
        return float(t * sum(pdf[i] * np.prod(np.delete(cdf, i)) for i in range(len(mu))))

    reference = integrate.quad(density_of_max, -80, 80, limit=500, epsabs=1e-13)[0]
    logits = torch.tensor(mu, dtype=F64, requires_grad=True)
    value = expected_max(logits, noise_object(name))
    assert abs(float(value) - reference) <= 1e-10
    (gradient,) = torch.autograd.grad(value, logits)
    assert torch.allclose(gradient, perturb_max_probs(logits.detach(), noise_object(name)),
                          atol=1e-14, rtol=0)  # fmt: skip


def test_normal_closed_form_of_the_expected_max_for_two_classes() -> None:
    d = 0.8
    s = math.sqrt(2.0)
    exact = d * special.ndtr(d / s) + s * math.exp(-0.25 * d * d) / math.sqrt(2 * math.pi)
    value = expected_max(torch.tensor([d, 0.0], dtype=F64))
    assert abs(float(value) - exact) <= 1e-12


def test_bounded_rule_batched_and_per_row_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Uniform noise: all rows at once (few classes can win) and row by row with windowed pieces
    (many can win) give the same log p and gradients, masks and non-winning classes included."""
    from kexue.discrete import _exact

    generator = torch.Generator().manual_seed(3)
    logits = (0.6 * torch.randn(6, 9, generator=generator, dtype=F64)).requires_grad_(True)
    with torch.no_grad():
        logits[0, 3] = -math.inf
        logits[2, 0] = logits[2, 1] - 5.0  # cannot win
    weights = torch.randn(6, 9, generator=generator, dtype=F64)

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        log_p = perturb_max_log_probs(logits, "uniform")
        p = torch.exp(log_p)
        (gradient,) = torch.autograd.grad((p * weights).sum(), logits)
        return log_p.detach(), gradient

    batched = run()
    monkeypatch.setattr(_exact, "_BATCHED_ALIVE", 0)
    per_row = run()
    finite = torch.isfinite(per_row[0])
    assert torch.equal(torch.isfinite(batched[0]), finite)
    assert float((batched[0] - per_row[0])[finite].abs().max()) <= 1e-12
    assert bool(torch.isfinite(batched[1]).all())
    torch.testing.assert_close(batched[1], per_row[1], rtol=0, atol=1e-11)


def test_a_user_noise_whose_log_density_underflows_keeps_finite_exact_gradients() -> None:
    """The minimum-Gumbel law (log f = x − eˣ) as a CustomNoise whose log-pdf is −inf above 700
    (a user's overflow guard): the top blocks of the grid are −inf for the class 1000 below, so
    its running sum adds two −inf logs — log p must match adaptive quadrature and the gradient
    must be finite (torch.logaddexp would give NaN) and match finite differences."""
    limit = 700.0

    def log_cdf(x: torch.Tensor) -> torch.Tensor:
        low, safe = x.clamp_max(-30.0), x.clamp(-30.0, limit)
        return torch.where(
            x < -30.0, low - torch.exp(low), torch.log(-torch.expm1(-torch.exp(safe)))
        )

    def log_pdf(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > limit, -math.inf, x - torch.exp(x.clamp_max(limit)))

    noise = CustomNoise(log_cdf, lambda q: torch.log(-torch.log1p(-q)), log_pdf, name="gumbel-min")
    mu = [0.0, -1.0, -3.0, -1000.0]
    logits = torch.tensor(mu, dtype=F64, requires_grad=True)
    log_p = perturb_max_log_probs(logits, noise)
    LAWS["gumbel-min"] = stats.gumbel_l()
    try:
        reference = scipy_log_probs(np.array(mu), "gumbel-min", classes=[0, 1, 2])
    finally:
        del LAWS["gumbel-min"]
    assert_every_class(log_p[:3], reference[:3])
    (gradient,) = torch.autograd.grad(log_p.sum(), logits)  # the far class included
    assert bool(torch.isfinite(gradient).all())
    step = 1e-6
    for k in range(4):
        shifted = [m + (step if j == k else 0.0) for j, m in enumerate(mu)]
        back = [m - (step if j == k else 0.0) for j, m in enumerate(mu)]
        plus = perturb_max_log_probs(torch.tensor(shifted, dtype=F64), noise).sum()
        minus = perturb_max_log_probs(torch.tensor(back, dtype=F64), noise).sum()
        difference = float(plus - minus) / (2 * step)
        assert abs(float(gradient[k]) - difference) <= 1e-5 * max(1.0, abs(difference))
