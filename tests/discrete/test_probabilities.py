"""perturb_max_probs: the claims C9.1–C9.9 of spec 09 and the issue-10 list."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from kexue.discrete import (
    CustomNoise,
    Noise,
    Normal,
    expected_max,
    perturb_max_log_probs,
    perturb_max_probs,
    perturb_max_sample,
)

from .conftest import LOGISTIC_REFERENCE, MU, NORMAL_REFERENCE

F64 = torch.float64
NOISES = ("normal", "gumbel", "logistic", "uniform", "exponential")
RULES = ("post", "midpoint", "gauss-legendre")


def mu64() -> torch.Tensor:
    return torch.tensor(MU, dtype=F64)


def rules_for(noise: str) -> tuple[str, ...]:
    return (*RULES, "gauss-hermite") if noise == "normal" else RULES


# --------------------------------------------------------------------------------------------
# C9.1: the four conditions


@pytest.mark.parametrize("noise", NOISES)
def test_conditions_hold_for_every_rule_float64(noise: str) -> None:
    mu = mu64()
    for method in (*rules_for(noise), "auto"):
        p = perturb_max_probs(mu, noise, method, 24)
        assert bool((p >= 0).all())
        assert abs(float(p.sum()) - 1.0) <= 1e-12
        order = torch.argsort(mu)
        if noise != "uniform":  # bounded noise: distinct logits can tie at p = 0 or ... below
            assert bool((p[order].diff() > 0).all()), (noise, method, p)
        for shift in (-100.0, 3.7, 100.0):
            shifted = perturb_max_probs(mu + shift, noise, method, 24)
            torch.testing.assert_close(shifted, p, rtol=0, atol=1e-12)


def test_conditions_hold_in_float32() -> None:
    mu = mu64().float()
    for noise in NOISES:
        p = perturb_max_probs(mu, noise)
        assert p.dtype == torch.float32
        assert abs(float(p.sum()) - 1.0) <= 1e-6


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-30, 30, allow_nan=False), min_size=2, max_size=7, unique=True),
    shift=st.floats(-1000, 1000, allow_nan=False),
    noise=st.sampled_from(("normal", "logistic", "gumbel", "exponential")),
)
def test_properties_sum_shift_order(values: list[float], shift: float, noise: str) -> None:
    mu = torch.tensor(values, dtype=F64)
    log_p = perturb_max_log_probs(mu, noise, num_nodes=16)
    p = log_p.exp()
    assert not bool(log_p.isnan().any())
    if noise != "exponential":  # full support: every class keeps p > 0 (log-space, no underflow)
        assert bool(torch.isfinite(log_p).all())
    assert abs(float(p.sum()) - 1.0) <= 1e-12
    shifted = perturb_max_log_probs(mu + shift, noise, num_nodes=16)
    # shift invariance: the differences μ_i − μ_j are recomputed after rounding μ + c
    finite = log_p[torch.isfinite(log_p)]
    tolerance = 1e-9 * max(1.0, abs(shift)) * max(1.0, float(finite.abs().max()))
    torch.testing.assert_close(shifted, log_p, rtol=0, atol=tolerance)
    order = torch.argsort(mu)
    assert bool((p[order].diff() >= -1e-15).all())  # non-decreasing up to rounding


# --------------------------------------------------------------------------------------------
# C9.2 Gumbel = softmax; C9.3 normal reference; C9.8 logistic


def test_gumbel_dispatch_is_bitwise_softmax() -> None:
    for dtype in (torch.float32, F64):
        logits = torch.randn(4, 9, dtype=dtype, generator=torch.Generator().manual_seed(0))
        assert torch.equal(perturb_max_probs(logits, "gumbel"), torch.softmax(logits, -1))
        assert torch.equal(
            perturb_max_probs(logits, "gumbel", log=True), torch.log_softmax(logits, -1)
        )


def test_gumbel_quadrature_equals_softmax(oracle: Callable[..., np.ndarray]) -> None:
    mu = mu64()
    softmax = torch.softmax(mu, -1).numpy()
    assert np.abs(oracle(MU, "gumbel") - softmax).max() <= 1e-8
    gl = perturb_max_probs(mu, "gumbel", "gauss-legendre", 200, renormalize=False)
    assert float((gl - torch.softmax(mu, -1)).abs().max()) <= 1e-8
    # the integrand t^(Σ e^(μ_j−μ_i)) is not smooth at t = 0: algebraic convergence in K
    gl = perturb_max_probs(mu, "gumbel", "gauss-legendre", 600)
    assert float((gl - torch.softmax(mu, -1)).abs().max()) <= 1e-10
    post = perturb_max_probs(mu, "gumbel", "post", 100, renormalize=False)
    assert float((post - torch.softmax(mu, -1)).abs().max()) <= 5e-3  # spec §4: 4.4e-3


def test_normal_gauss_hermite_matches_adaptive_quadrature_and_reference(
    oracle: Callable[..., np.ndarray],
) -> None:
    reference = oracle(MU, "normal")
    assert np.abs(reference - np.array(NORMAL_REFERENCE)).max() <= 5e-7  # 6 printed digits
    p = perturb_max_probs(mu64(), "normal", "gauss-hermite", 30).numpy()
    assert np.abs(p - reference).max() <= 1e-8


@pytest.mark.parametrize("noise", ["logistic", "uniform", "exponential"])
def test_default_rule_matches_adaptive_quadrature(
    noise: str, oracle: Callable[..., np.ndarray]
) -> None:
    p = perturb_max_probs(mu64(), noise, num_nodes=64).numpy()
    tolerance = {"logistic": 1e-10, "uniform": 1e-10, "exponential": 2e-4}[noise]
    assert np.abs(p - oracle(MU, noise)).max() <= tolerance


def test_logistic_is_not_softmax() -> None:
    p = perturb_max_probs(mu64(), "logistic", num_nodes=64)
    assert float((p - torch.tensor(LOGISTIC_REFERENCE, dtype=F64)).abs().max()) <= 1e-3
    softmax = torch.softmax(mu64(), -1)
    assert float((softmax - p)[3]) > 0.05  # the largest coordinate differs by > 0.05


# --------------------------------------------------------------------------------------------
# C9.4: n = 2 closed forms


def test_two_class_closed_forms(oracle: Callable[..., np.ndarray]) -> None:
    for d in (-3.0, -1.5, -0.7, -0.2, 0.0, 0.4, 0.99, 1.3, 2.5):
        mu = torch.tensor([d, 0.0], dtype=F64)
        expected = {
            "gumbel": 1 / (1 + math.exp(-d)),
            "normal": stats.norm.cdf(d / math.sqrt(2)),
            "uniform": (0.5 + d - d * d / 2 if d >= 0 else (1 + d) ** 2 / 2)
            if abs(d) <= 1
            else float(d > 0),
            "exponential": 1 - 0.5 * math.exp(-d) if d >= 0 else 0.5 * math.exp(d),
        }
        for noise, value in expected.items():
            p = perturb_max_probs(mu, noise, "exact")
            assert abs(float(p[0]) - value) <= 1e-10, (noise, d)
            assert abs(float(p.sum()) - 1.0) <= 1e-12
            if noise != "gumbel" and abs(d) < 40:
                assert abs(float(p[0]) - oracle((d, 0.0), noise)[0]) <= 1e-10, (noise, d)


def test_exact_is_available_for_every_noise_and_is_the_default(
    oracle: Callable[..., np.ndarray],
) -> None:
    # no closed form: the exact shared-grid rule (kexue.discrete._exact), = "auto"
    for noise in ("normal", "logistic", "uniform", "exponential"):
        exact = perturb_max_probs(mu64(), noise, "exact")
        assert torch.equal(exact, perturb_max_probs(mu64(), noise))
        reference = torch.tensor(oracle(mu64().numpy(), noise), dtype=F64)
        assert torch.allclose(exact, reference, atol=1e-10), noise
    assert float(perturb_max_probs(torch.tensor([3.0]), "logistic", "exact")) == 1.0


# --------------------------------------------------------------------------------------------
# C9.5: temperature


def test_temperature_scaling_and_limits() -> None:
    mu = mu64()
    for sigma in (0.1, 0.5, 2.0, 10.0):
        torch.testing.assert_close(
            perturb_max_probs(mu, scale=sigma), perturb_max_probs(mu / sigma), rtol=0, atol=1e-12
        )
        torch.testing.assert_close(
            perturb_max_probs(mu, Normal(scale=sigma)), perturb_max_probs(mu / sigma),
            rtol=0, atol=1e-12,
        )  # fmt: skip
    one_hot = torch.tensor([0, 0, 0, 1, 0], dtype=F64)
    assert float((perturb_max_probs(mu, scale=1e-3) - one_hot).abs().max()) <= 1e-6
    assert torch.equal(perturb_max_probs(mu, scale=0.0), one_hot)
    tied = perturb_max_probs(torch.tensor([2.0, 1.0, 2.0]), scale=0.0)
    assert tied.tolist() == [0.5, 0.0, 0.5]
    wide = perturb_max_probs(mu, scale=1e4)
    assert float((wide - 0.2).abs().max()) <= 1e-4


def test_entropy_increases_with_scale() -> None:
    expected = (0.000, 0.315, 0.956, 1.407, 1.601, 1.609)  # spec 09 §3
    entropies = []
    for sigma in (0.1, 0.5, 1.0, 2.0, 10.0, 100.0):
        p = perturb_max_probs(mu64(), scale=sigma, num_nodes=60)
        entropies.append(float(-(p * p.clamp_min(1e-300).log()).sum()))
    assert all(b >= a for a, b in itertools.pairwise(entropies))
    assert np.abs(np.array(entropies) - np.array(expected)).max() <= 1.5e-3


def test_zero_scale_has_zero_gradient() -> None:
    mu = mu64().requires_grad_(True)
    perturb_max_probs(mu, scale=0.0)[3].backward()
    assert mu.grad is None or float(mu.grad.abs().max()) == 0.0


# --------------------------------------------------------------------------------------------
# C9.6: the post's rule does not sum to 1


def test_post_rule_deficit_matches_the_table_and_shrinks_like_one_over_k() -> None:
    table = {10: 1 - 0.939, 100: 1 - 0.989, 1000: 1 - 0.9986}  # spec 09 §4
    deficits = {}
    for k, expected in table.items():
        p = perturb_max_probs(mu64(), "normal", "post", k, renormalize=False)
        deficits[k] = 1 - float(p.sum())
        assert deficits[k] > 0
        assert abs(deficits[k] - expected) <= 0.2 * expected, (k, deficits[k])
    assert deficits[10] > deficits[100] > deficits[1000]
    scaled = [k * deficits[k] for k in (10, 100, 1000)]
    assert all(0.3 <= v <= 3.0 for v in scaled)  # K · deficit ≈ 0.6, 1.1, 1.4 (spec §4)


def test_gauss_hermite_sums_to_one_closely_without_renormalizing() -> None:
    p = perturb_max_probs(mu64(), "normal", "gauss-hermite", 30, renormalize=False)
    assert abs(float(p.sum()) - 1.0) <= 1e-8


# --------------------------------------------------------------------------------------------
# C9.7: gradients


@pytest.mark.parametrize(
    ("noise", "method"),
    [("normal", "gauss-hermite"), ("logistic", "gauss-legendre"), ("normal", "midpoint"),
     ("exponential", "gauss-legendre"), ("gumbel", "exact"), ("normal", "exact")],
)  # fmt: skip
def test_gradcheck_float64(noise: str, method: str) -> None:
    n = 2 if method == "exact" and noise == "normal" else 4
    mu = torch.tensor([0.3, -0.4, 1.1, 0.05][:n], dtype=F64, requires_grad=True)

    def log_probs(x: torch.Tensor) -> torch.Tensor:
        return perturb_max_probs(x, noise, method, 16, log=True)

    assert torch.autograd.gradcheck(log_probs, (mu,), eps=1e-6, atol=1e-7, rtol=1e-6)
    assert torch.autograd.gradgradcheck(log_probs, (mu,), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("noise", "method", "symmetry"),
    [("normal", "gauss-hermite", 1e-8), ("logistic", "gauss-legendre", 1e-8),
     ("normal", "midpoint", 1e-3)],
)  # fmt: skip
def test_jacobian_is_symmetric_psd_with_zero_row_and_column_sums(
    noise: str, method: str, symmetry: float
) -> None:
    """Row and column sums vanish for every rule (renormalisation and shift invariance are
    exact); symmetry and PSD hold for the exact integral, so a rule reproduces them only to its
    quadrature error (midpoint, K = 40: ≈ 2.5e-4)."""
    jacobian = torch.autograd.functional.jacobian(
        lambda x: perturb_max_probs(x, noise, method, 40), mu64()
    )
    assert float((jacobian - jacobian.T).abs().max()) <= symmetry
    assert (
        float(torch.linalg.eigvalsh(0.5 * (jacobian + jacobian.T)).min())
        >= -max(symmetry, 1e-10) * 1e-2
    )
    assert float(jacobian.sum(0).abs().max()) <= 1e-10
    assert float(jacobian.sum(1).abs().max()) <= 1e-10


def test_normal_jacobian_eigenvalues_match_the_spec() -> None:
    jacobian = torch.autograd.functional.jacobian(
        lambda x: perturb_max_probs(x, "normal", num_nodes=60), mu64()
    )
    eigenvalues = torch.linalg.eigvalsh(jacobian).numpy()
    expected = np.array([0.0, 0.036, 0.086, 0.158, 0.419])  # spec 09 §3
    assert np.abs(eigenvalues - expected).max() <= 1e-3


def test_gumbel_jacobian_is_diag_p_minus_ppt() -> None:
    mu = mu64()
    jacobian = torch.autograd.functional.jacobian(
        lambda x: perturb_max_probs(x, "gumbel", "gauss-legendre", 200), mu
    )
    p = torch.softmax(mu, -1)
    assert float((jacobian - (torch.diag(p) - torch.outer(p, p))).abs().max()) <= 1e-8


# --------------------------------------------------------------------------------------------
# Monte Carlo: argmax frequencies vs the quadrature (chi-square, fixed seed)


@pytest.mark.parametrize("noise", ["normal", "gumbel", "logistic"])
def test_argmax_frequencies_agree_with_quadrature(noise: str) -> None:
    mu = mu64()
    p = perturb_max_probs(mu, noise, num_nodes=64).numpy()
    generator = torch.Generator().manual_seed(1234)
    draws = perturb_max_sample(mu, noise, (400_000,), generator=generator)  # C9.3
    counts = np.bincount(draws.numpy(), minlength=5)
    _, p_value = stats.chisquare(counts, p * counts.sum())
    assert p_value > 1e-3
    standard_error = np.sqrt(p * (1 - p) / counts.sum())
    assert np.all(np.abs(counts / counts.sum() - p) <= 4 * standard_error)


def test_monte_carlo_nodes_converge_with_a_fixed_generator() -> None:
    generator = torch.Generator().manual_seed(0)
    p = perturb_max_probs(mu64(), "normal", "monte-carlo", 100_000, generator=generator)
    reference = torch.tensor(NORMAL_REFERENCE, dtype=F64)
    assert float((p - reference).abs().max()) <= 5e-3
    again = perturb_max_probs(mu64(), "normal", "monte-carlo", 1000,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    first = perturb_max_probs(mu64(), "normal", "monte-carlo", 1000,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.equal(again, first)


# --------------------------------------------------------------------------------------------
# C9.9: stability in low precision and extreme gaps


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("noise", NOISES)
def test_extreme_logits_give_no_nan(dtype: torch.dtype, noise: str) -> None:
    logits = torch.tensor([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, 1e4, 1e4]], dtype=dtype)
    logits.requires_grad_(True)
    p = perturb_max_probs(logits, noise)
    log_p = perturb_max_probs(logits, noise, log=True)
    assert p.dtype == dtype
    assert log_p.dtype == dtype
    assert not bool(p.isnan().any())
    assert not bool(log_p.isnan().any())
    assert not bool((log_p == math.inf).any())
    torch.testing.assert_close(p.float().sum(-1), torch.ones(2), rtol=0, atol=1e-2)
    (log_p[:, 0].clamp_min(-1e3).sum() + p[:, 2].sum()).backward()
    assert logits.grad is not None
    assert bool(torch.isfinite(logits.grad).all())
    assert float(p.detach().float()[0, 0]) > 0.99


def test_tiny_probabilities_stay_finite_in_log_space() -> None:
    mu = torch.tensor([0.0, -40.0, -200.0], dtype=F64)
    log_p = perturb_max_probs(mu, "normal", log=True)
    assert bool(torch.isfinite(log_p).all())
    assert float(log_p[2]) < float(log_p[1]) < -100  # underflows to 0 as a probability
    assert float(perturb_max_probs(mu)[2]) == 0.0


def test_sampling_in_half_precision_has_no_nan() -> None:
    for dtype in (torch.float16, torch.bfloat16):
        logits = torch.tensor([1e4, -1e4, 0.0, 65000.0 if dtype == torch.float16 else 1e30])
        draws = perturb_max_sample(logits.to(dtype), "gumbel", (10_000,),
                                   generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert bool((draws == 3).all())


# --------------------------------------------------------------------------------------------
# Shapes and bad input


def test_dim_and_batch_shapes() -> None:
    logits = torch.randn(3, 5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    p = perturb_max_probs(logits, dim=1)
    assert p.shape == logits.shape
    torch.testing.assert_close(p[:, :, 1], perturb_max_probs(logits[:, :, 1]))
    assert perturb_max_probs(torch.zeros(0, 4)).shape == (0, 4)
    assert perturb_max_probs(torch.tensor([0.5])).tolist() == [1.0]


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    mu = mu64()
    with pytest.raises(ValueError, match="no classes"):
        perturb_max_probs(torch.zeros(3, 0))
    with pytest.raises(TypeError, match="floating point"):
        perturb_max_probs(torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        perturb_max_probs([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        perturb_max_probs(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\+inf"):
        perturb_max_probs(torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match="at least one finite"):
        perturb_max_probs(torch.tensor([[0.0, 1.0], [-float("inf"), -float("inf")]]))
    with pytest.raises(ValueError, match="unknown noise"):
        perturb_max_probs(mu, "cauchy")
    with pytest.raises(ValueError, match="unknown method"):
        perturb_max_probs(mu, "normal", "gauss_hermite")
    with pytest.raises(ValueError, match="unknown algorithm"):
        perturb_max_probs(mu, algorithm="fast")
    with pytest.raises(ValueError, match="num_nodes"):
        perturb_max_probs(mu, num_nodes=0)
    with pytest.raises(ValueError, match="scale"):
        perturb_max_probs(mu, scale=-1.0)
    with pytest.raises(ValueError, match="scale"):
        perturb_max_probs(mu, scale=float("nan"))
    with pytest.raises(ValueError, match="gauss-hermite"):
        perturb_max_probs(mu, "logistic", "gauss-hermite")
    with pytest.raises(ValueError, match="dim"):
        perturb_max_probs(mu, dim=3)

    class Incomplete(Noise):
        def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(x)

    with pytest.raises(TypeError, match="standard_icdf"):
        perturb_max_probs(mu, Incomplete())
    with pytest.raises(TypeError, match="Noise instance"):
        perturb_max_probs(mu, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        CustomNoise(log_cdf=None, icdf=torch.special.ndtri)  # type: ignore[arg-type]


def test_custom_noise_reproduces_the_builtin_family() -> None:
    custom = CustomNoise(torch.special.log_ndtr, torch.special.ndtri, name="my-normal")
    p = perturb_max_probs(mu64(), custom, "gauss-legendre", 48)
    q = perturb_max_probs(mu64(), "normal", "gauss-legendre", 48)
    torch.testing.assert_close(p, q, rtol=0, atol=1e-14)


def test_a_call_larger_than_memory_is_refused_naming_the_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 19 item 6: logits whose exact working set exceeds the device's memory get a
    ValueError naming the GiB needed and the way out, before any float64 copy is made."""
    from kexue.discrete import _exact

    monkeypatch.setattr(_exact, "_available_bytes", lambda device: 1 << 20)  # a 1 MiB device
    logits = torch.zeros(64, 1000)
    for call in (
        lambda: perturb_max_probs(logits, "normal"),
        lambda: perturb_max_probs(logits, "uniform", log=True),
        lambda: expected_max(logits, "logistic"),
    ):
        with pytest.raises(ValueError, match=r"need about 0\.0 GiB|GiB of working memory"):
            call()
    assert perturb_max_probs(logits, "gumbel").shape == (64, 1000)  # softmax: no grid, no limit
    small = perturb_max_probs(torch.zeros(2, 3), "normal")  # 6 logits × 640 B fit in 1 MiB
    torch.testing.assert_close(small, torch.full((2, 3), 1 / 3))
