"""perturb_max_fy_loss: the Fenchel–Young loss of the perturbed max (spec 09 §3 "Gradient
structure"; Berthet et al. 2020 §4; issue 19 item 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from kexue.discrete import (
    FY_LOSS_OPTIONS,
    CustomNoise,
    Gumbel,
    Normal,
    perturb_max_fy_infimum,
    perturb_max_fy_loss,
    perturb_max_probs,
)

from .conftest import MU

F64 = torch.float64
EULER_GAMMA = 0.5772156649015329
NOISES = ("normal", "gumbel", "logistic", "uniform", "exponential")
#: E max against scipy.integrate.quad (the exact default agrees to ~1e-15; the old fixed
#: Gauss–Hermite rule with K = 32 was off by 2e-9 on these logits)
TOLERANCE_VS_QUAD = 1e-11


def random_logits(shape: tuple[int, ...], seed: int, spread: float = 1.5) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return spread * torch.randn(shape, dtype=F64, generator=generator)


def random_target(shape: tuple[int, ...], n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed + 1000)
    return torch.randint(0, n, shape, generator=generator)


def normal_expected_max_quad(mu: np.ndarray, scale: float = 1.0) -> float:
    """E max(μ + σε), ε ~ N(0, 1) i.i.d., as ∫ t dG(t) with G(t) = ∏_j Φ((t − μ_j)/σ), by
    scipy.integrate.quad (the independent reference for n ≥ 3)."""
    mu = np.asarray(mu, dtype=np.float64)

    def density(t: float) -> float:  # g = G' = Σ_i φ_i ∏_{j≠i} Φ_j
        z = (t - mu) / scale
        cdf, pdf = stats.norm.cdf(z), stats.norm.pdf(z) / scale
        return float(sum(pdf[i] * np.prod(np.delete(cdf, i)) for i in range(len(mu))))

    low, high = float(mu.min()) - 12 * scale, float(mu.max()) + 12 * scale
    value, _ = integrate.quad(lambda t: t * density(t), low, high, epsabs=1e-13, epsrel=1e-13,
                              limit=400, points=sorted(mu.tolist()))  # fmt: skip
    return float(value)


# --------------------------------------------------------------------------------------------
# Value


@pytest.mark.parametrize("scale", [1.0, 0.5, 3.0])
def test_gumbel_value_is_cross_entropy_plus_gamma(scale: float) -> None:
    logits = random_logits((6, 7), seed=1)
    target = random_target((6,), 7, seed=1)
    loss = perturb_max_fy_loss(logits, target, "gumbel", scale=scale, reduction="none")
    expected = (
        scale * F.cross_entropy(logits / scale, target, reduction="none") + scale * EULER_GAMMA
    )
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-12)
    # a Gumbel object with its own scale multiplies the argument
    scaled = perturb_max_fy_loss(logits, target, Gumbel(scale=2.0), scale=scale, reduction="none")
    expected = 2 * scale * F.cross_entropy(logits / (2 * scale), target, reduction="none")
    torch.testing.assert_close(scaled, expected + 2 * scale * EULER_GAMMA, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [1.0, 0.4, 2.5])
def test_normal_two_class_value_matches_the_closed_form(scale: float) -> None:
    """E max(μ₁ + σε₁, μ₂ + σε₂) = μ₂ + dΦ(d/s) + sφ(d/s), d = μ₁ − μ₂, s = σ√2."""
    mu = torch.tensor([[0.7, -0.4], [-2.0, 1.5], [0.3, 0.3], [5.0, -1.0]], dtype=F64)
    target = torch.tensor([0, 0, 1, 1])
    loss = perturb_max_fy_loss(mu, target, "normal", scale=scale, reduction="none")
    s = scale * math.sqrt(2.0)
    for row in range(len(mu)):
        mu1, mu2 = float(mu[row, 0]), float(mu[row, 1])
        d = mu1 - mu2
        expected_max = mu2 + d * stats.norm.cdf(d / s) + s * stats.norm.pdf(d / s)
        expected = expected_max - float(mu[row, target[row]])
        assert float(loss[row]) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_normal_value_matches_adaptive_quadrature(n: int) -> None:
    logits = random_logits((3, n), seed=n, spread=1.0)
    target = random_target((3,), n, seed=n)
    for scale in (1.0, 0.7):
        loss = perturb_max_fy_loss(logits, target, "normal", scale=scale, reduction="none")
        for row in range(3):
            reference = normal_expected_max_quad(logits[row].numpy(), scale)
            expected = reference - float(logits[row, target[row]])
            assert float(loss[row]) == pytest.approx(expected, abs=TOLERANCE_VS_QUAD), (
                n,
                scale,
                row,
            )


def test_spec_logits_value() -> None:
    mu = torch.tensor([MU], dtype=F64)
    reference = normal_expected_max_quad(np.array(MU))
    for y in range(5):
        loss = perturb_max_fy_loss(mu, torch.tensor([y]))
        assert float(loss) == pytest.approx(reference - MU[y], abs=1e-11)


# --------------------------------------------------------------------------------------------
# Infimum


def test_infimum_is_scale_times_the_noise_mean() -> None:
    assert perturb_max_fy_infimum("normal") == 0.0
    assert perturb_max_fy_infimum("logistic") == 0.0
    assert perturb_max_fy_infimum("uniform", scale=3.0) == 0.0
    assert perturb_max_fy_infimum("gumbel", scale=2.0) == pytest.approx(2 * EULER_GAMMA, abs=1e-15)
    assert perturb_max_fy_infimum("exponential", scale=0.5) == pytest.approx(0.5)
    assert perturb_max_fy_infimum(Gumbel(scale=2.0), scale=1.5) == pytest.approx(3 * EULER_GAMMA)
    unknown = CustomNoise(lambda x: F.logsigmoid(x), lambda q: torch.logit(q))
    with pytest.raises(ValueError, match="expected_value"):
        perturb_max_fy_infimum(unknown)
    with pytest.raises(ValueError, match="scale"):
        perturb_max_fy_infimum("normal", scale=0.0)


@pytest.mark.parametrize("noise", NOISES)
def test_loss_is_at_least_the_infimum_and_approaches_it(noise: str) -> None:
    for scale in (0.5, 1.0, 2.0):
        infimum = perturb_max_fy_infimum(noise, scale=scale)
        logits = random_logits((40, 5), seed=7, spread=3.0)
        target = random_target((40,), 5, seed=7)
        loss = perturb_max_fy_loss(logits, target, noise, scale=scale, reduction="none")
        assert bool((loss >= infimum - 1e-9).all()), (noise, scale, float(loss.min()))
        # one class far above the others: the loss tends to σE[ε]
        far = torch.full((1, 5), -40.0 * scale, dtype=F64)
        far[0, 2] = 0.0
        close = perturb_max_fy_loss(far, torch.tensor([2]), noise, scale=scale)
        assert float(close) == pytest.approx(infimum, abs=1e-9), (noise, scale)
        # n = 1: the loss is σE[ε] for every logit
        single = perturb_max_fy_loss(torch.tensor([[3.3], [-1.0]], dtype=F64),
                                     torch.tensor([0, 0]), noise, scale=scale,
                                     reduction="none")  # fmt: skip
        torch.testing.assert_close(single, torch.full((2,), infimum, dtype=F64), rtol=0,
                                   atol=1e-12)  # fmt: skip


def test_uniform_noise_attains_the_infimum_at_a_gap_of_sigma() -> None:
    """Bounded noise: p_y = 1 once μ_y − μ_j ≥ σ for every j ≠ y, and the loss is then σE[ε] = 0
    exactly (up to rounding), with a zero gradient."""
    logits = torch.tensor([[2.0, 0.5, 0.9, 1.0]], dtype=F64, requires_grad=True)
    loss = perturb_max_fy_loss(logits, torch.tensor([0]), "uniform", scale=1.0)
    assert abs(float(loss.detach())) <= 1e-12
    (grad,) = torch.autograd.grad(loss, logits)
    assert float(grad.abs().max()) <= 1e-12


# --------------------------------------------------------------------------------------------
# Gradient


@pytest.mark.parametrize("noise", NOISES)
def test_gradient_is_exactly_p_minus_onehot(noise: str) -> None:
    logits = random_logits((2, 3, 6), seed=3).requires_grad_(True)
    target = random_target((2, 3), 6, seed=3)
    weights = random_logits((2, 3), seed=4)
    loss = perturb_max_fy_loss(logits, target, noise, scale=0.8, reduction="none")
    (grad,) = torch.autograd.grad((loss * weights).sum(), logits)
    p = perturb_max_probs(logits.detach(), noise, scale=0.8)
    expected = weights[..., None] * (p - F.one_hot(target, 6).to(F64))
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-12)


def test_gradient_uses_the_forwarded_rule() -> None:
    logits = random_logits((4, 5), seed=5).requires_grad_(True)
    target = random_target((4,), 5, seed=5)
    loss = perturb_max_fy_loss(logits, target, "normal", reduction="sum", method="gauss-hermite",
                               num_nodes=12)  # fmt: skip
    (grad,) = torch.autograd.grad(loss, logits)
    p = perturb_max_probs(logits.detach(), "normal", "gauss-hermite", 12)
    torch.testing.assert_close(grad, p - F.one_hot(target, 5).to(F64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise", ["normal", "gumbel", "logistic"])
def test_gradcheck_float64(noise: str) -> None:
    logits = random_logits((3, 5), seed=11).requires_grad_(True)
    target = random_target((3,), 5, seed=11)
    assert torch.autograd.gradcheck(
        lambda x: perturb_max_fy_loss(x, target, noise, scale=0.9, reduction="none"), (logits,)
    )


def test_mean_and_sum_gradients() -> None:
    logits = random_logits((5, 4), seed=12).requires_grad_(True)
    target = random_target((5,), 4, seed=12)
    (mean_grad,) = torch.autograd.grad(perturb_max_fy_loss(logits, target), logits)
    (sum_grad,) = torch.autograd.grad(perturb_max_fy_loss(logits, target, reduction="sum"), logits)
    torch.testing.assert_close(mean_grad * 5, sum_grad, rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(lambda x: perturb_max_fy_loss(x, target), (logits,))


def test_second_derivative_is_the_perturb_max_jacobian() -> None:
    """create_graph=True: ∂²ℓ/∂μ² = ∂p/∂μ (symmetric PSD, 1 in its null space; spec 09 C9.7)."""
    mu = torch.tensor(MU, dtype=F64)
    target = torch.tensor(3)
    hessian = torch.autograd.functional.hessian(  # type: ignore[no-untyped-call]
        lambda x: perturb_max_fy_loss(x, target), mu
    )
    jacobian = torch.autograd.functional.jacobian(  # type: ignore[no-untyped-call]
        lambda x: perturb_max_probs(x, "normal"), mu
    )
    torch.testing.assert_close(hessian, jacobian, rtol=0, atol=1e-12)
    torch.testing.assert_close(hessian, hessian.T, rtol=0, atol=1e-8)
    assert float(torch.linalg.eigvalsh(0.5 * (hessian + hessian.T)).min()) >= -1e-10
    # Gumbel: diag(p) − ppᵀ
    gumbel = torch.autograd.functional.hessian(  # type: ignore[no-untyped-call]
        lambda x: perturb_max_fy_loss(x, target, "gumbel"), mu
    )
    p = torch.softmax(mu, -1)
    torch.testing.assert_close(gumbel, torch.diag(p) - torch.outer(p, p), rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise", ["normal", "gumbel"])
def test_gradgradcheck_float64(noise: str) -> None:
    logits = random_logits((2, 4), seed=13).requires_grad_(True)
    target = random_target((2,), 4, seed=13)
    assert torch.autograd.gradgradcheck(
        lambda x: perturb_max_fy_loss(x, target, noise, reduction="none"), (logits,)
    )


# --------------------------------------------------------------------------------------------
# Convexity (E max is convex in μ; spec 09 §3)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(2, 6),
    spread=st.floats(0.1, 4.0),
    noise=st.sampled_from(["normal", "gumbel", "logistic"]),
)
def test_loss_is_convex_along_random_lines(seed: int, n: int, spread: float, noise: str) -> None:
    base = random_logits((1, n), seed=seed, spread=spread)
    direction = random_logits((1, n), seed=seed + 1)
    target = random_target((1,), n, seed=seed)
    steps = torch.linspace(-3.0, 3.0, 31, dtype=F64)
    line = base + steps[:, None] * direction  # [31, n]
    values = perturb_max_fy_loss(line, target.expand(31), noise, reduction="none")
    second = values[2:] - 2 * values[1:-1] + values[:-2]
    assert float(second.min()) >= -1e-10, second


# --------------------------------------------------------------------------------------------
# Shapes, reductions, masks


def test_reductions_and_shapes() -> None:
    logits = random_logits((2, 3, 5), seed=20)
    target = random_target((2, 3), 5, seed=20)
    none = perturb_max_fy_loss(logits, target, reduction="none")
    assert none.shape == (2, 3)
    flat = perturb_max_fy_loss(logits.reshape(6, 5), target.reshape(6), reduction="none")
    torch.testing.assert_close(none.reshape(6), flat, rtol=0, atol=0)
    torch.testing.assert_close(perturb_max_fy_loss(logits, target), none.mean(), rtol=0, atol=0)
    torch.testing.assert_close(perturb_max_fy_loss(logits, target, reduction="sum"), none.sum(),
                               rtol=0, atol=0)  # fmt: skip
    single = perturb_max_fy_loss(logits[0, 0], target[0, 0], reduction="none")  # [n], target []
    assert single.shape == ()
    torch.testing.assert_close(single, none[0, 0], rtol=0, atol=0)


def test_empty_batch() -> None:
    logits = torch.zeros(0, 4, dtype=F64, requires_grad=True)
    target = torch.zeros(0, dtype=torch.long)
    assert perturb_max_fy_loss(logits, target, reduction="none").shape == (0,)
    total = perturb_max_fy_loss(logits, target, reduction="sum")
    assert float(total.detach()) == 0.0
    total.backward()
    assert logits.grad is not None
    assert logits.grad.shape == (0, 4)


def test_float32_input_gives_float32() -> None:
    logits = random_logits((4, 5), seed=21).float().requires_grad_(True)
    target = random_target((4,), 5, seed=21)
    loss = perturb_max_fy_loss(logits, target)
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None
    assert logits.grad.dtype == torch.float32
    reference = perturb_max_fy_loss(logits.detach().double(), target)
    assert float(loss.detach()) == pytest.approx(float(reference), abs=1e-5)


@pytest.mark.parametrize("noise", ["normal", "gumbel", "uniform"])
def test_masked_classes_are_removed(noise: str) -> None:
    logits = random_logits((4, 6), seed=22)
    target = torch.tensor([0, 5, 2, 3])
    masked = logits.clone()
    masked[0, [1, 4]] = -math.inf
    masked[2, 0] = -math.inf
    masked[3, [0, 1, 2, 4, 5]] = -math.inf  # a single class left
    masked.requires_grad_(True)
    loss = perturb_max_fy_loss(masked, target, noise, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), masked)
    assert bool(torch.isfinite(grad).all())
    assert bool((grad[torch.isinf(masked.detach())] == 0).all())
    for row in range(4):
        keep = torch.isfinite(masked[row].detach())
        kept = logits[row, keep][None]
        index = int(keep[: int(target[row])].sum())
        sub_target = torch.tensor([index])
        sub_kept = kept.clone().requires_grad_(True)
        expected = perturb_max_fy_loss(sub_kept, sub_target, noise)
        assert float(loss[row].detach()) == pytest.approx(float(expected.detach()), abs=1e-12)
        (sub_grad,) = torch.autograd.grad(expected, sub_kept)
        torch.testing.assert_close(grad[row, keep], sub_grad[0], rtol=0, atol=1e-12)
    # the last row has one class: the loss is σE[ε]
    assert float(loss[3].detach()) == pytest.approx(perturb_max_fy_infimum(noise), abs=1e-12)


def test_masked_classes_gradcheck_and_second_derivative() -> None:
    logits = random_logits((3, 5), seed=23)
    logits[0, 2] = -math.inf
    logits[1, [0, 3]] = -math.inf
    logits.requires_grad_(True)
    target = torch.tensor([1, 4, 0])
    assert torch.autograd.gradcheck(
        lambda x: perturb_max_fy_loss(x, target, reduction="none"), (logits,)
    )
    (grad,) = torch.autograd.grad(perturb_max_fy_loss(logits, target, reduction="sum"), logits,
                                  create_graph=True)  # fmt: skip
    (second,) = torch.autograd.grad(grad[1].sum() + grad[1, 1], logits)
    assert bool(torch.isfinite(second).all())
    assert bool((second[0] == 0).all())
    assert bool((second[2] == 0).all())
    assert bool((second[1, [0, 3]] == 0).all())


# --------------------------------------------------------------------------------------------
# Bad input


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    logits = random_logits((3, 4), seed=30)
    target = torch.tensor([0, 1, 3])
    with pytest.raises(TypeError, match=r"logits must be a torch\.Tensor"):
        perturb_max_fy_loss(np.zeros((3, 4)), target)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating point"):
        perturb_max_fy_loss(torch.zeros(3, 4, dtype=torch.long), target)
    with pytest.raises(ValueError, match="at least one dimension"):
        perturb_max_fy_loss(torch.tensor(1.0), torch.tensor(0))
    with pytest.raises(ValueError, match="n >= 1"):
        perturb_max_fy_loss(torch.zeros(3, 0), target)
    with pytest.raises(ValueError, match="NaN"):
        perturb_max_fy_loss(torch.where(logits > 0, math.nan, logits), target)
    with pytest.raises(ValueError, match=r"\+inf"):
        perturb_max_fy_loss(torch.where(logits > 0, math.inf, logits), target)
    with pytest.raises(TypeError, match=r"integer torch\.Tensor"):
        perturb_max_fy_loss(logits, [0, 1, 3])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"\.long\(\)"):
        perturb_max_fy_loss(logits, target.double())
    with pytest.raises(TypeError, match="integer class indices"):
        perturb_max_fy_loss(logits, target > 0)
    with pytest.raises(ValueError, match=r"must equal logits\.shape"):
        perturb_max_fy_loss(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        perturb_max_fy_loss(logits, torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        perturb_max_fy_loss(logits, torch.tensor([0, -1, 2]))
    masked = logits.clone()
    masked[2, 3] = -math.inf
    with pytest.raises(ValueError, match="target class is masked"):
        perturb_max_fy_loss(masked, target)
    for scale in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="scale"):
            perturb_max_fy_loss(logits, target, scale=scale)
    with pytest.raises(TypeError, match="scale"):
        perturb_max_fy_loss(logits, target, scale="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scale"):
        perturb_max_fy_loss(logits, target, scale=True)
    with pytest.raises(ValueError, match="reduction"):
        perturb_max_fy_loss(logits, target, reduction="average")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown noise"):
        perturb_max_fy_loss(logits, target, "cauchy")
    with pytest.raises(TypeError, match="noise must be"):
        perturb_max_fy_loss(logits, target, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword"):
        perturb_max_fy_loss(logits, target, renormalize=False)
    with pytest.raises(TypeError, match="unexpected keyword"):
        perturb_max_fy_loss(logits, target, dim=0)
    with pytest.raises(ValueError, match="monte-carlo"):
        perturb_max_fy_loss(logits, target, method="monte-carlo")
    with pytest.raises(ValueError, match="num_nodes"):
        perturb_max_fy_loss(logits, target, num_nodes=0)
    assert set(FY_LOSS_OPTIONS) == {"method", "num_nodes", "algorithm", "tolerance"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_mixed_devices_are_rejected() -> None:
    logits = random_logits((3, 4), seed=31).cuda()
    with pytest.raises(ValueError, match="one device"):
        perturb_max_fy_loss(logits, torch.tensor([0, 1, 3]))


def test_mixed_devices_are_rejected_on_the_meta_device() -> None:
    logits = torch.zeros(3, 4, device="meta")
    with pytest.raises(ValueError, match="one device"):
        perturb_max_fy_loss(logits, torch.tensor([0, 1, 3]))


def test_normal_object_and_name_agree() -> None:
    logits = random_logits((3, 4), seed=32)
    target = torch.tensor([0, 1, 3])
    torch.testing.assert_close(
        perturb_max_fy_loss(logits, target, Normal(scale=2.0)),
        perturb_max_fy_loss(logits, target, "normal", scale=2.0),
        rtol=0,
        atol=1e-15,
    )
