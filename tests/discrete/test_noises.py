"""Noise families (spec 09 §5.1, §5.2): pdf, cdf, log-cdf, quantile, sampling, scale."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from kexue.discrete import NOISES, CustomNoise, Normal, as_noise

from .conftest import SCIPY_LAWS

F64 = torch.float64
GRID = torch.linspace(-6.0, 8.0, 141, dtype=F64)


@pytest.mark.parametrize("name", sorted(NOISES))
def test_functions_match_scipy(name: str) -> None:
    noise = as_noise(name)
    law = SCIPY_LAWS[name]
    x = GRID.numpy()
    np.testing.assert_allclose(noise.cdf(GRID).numpy(), law.cdf(x), rtol=1e-12, atol=1e-15)  # type: ignore[attr-defined]
    with np.errstate(divide="ignore"):
        expected_log_cdf = law.logcdf(x)  # type: ignore[attr-defined]
        expected_log_pdf = law.logpdf(x)  # type: ignore[attr-defined]
    np.testing.assert_allclose(
        noise.log_cdf(GRID).numpy(), expected_log_cdf, rtol=1e-10, atol=1e-14
    )
    np.testing.assert_allclose(
        noise.log_pdf(GRID).numpy(), expected_log_pdf, rtol=1e-10, atol=1e-14
    )
    q = torch.tensor([1e-6, 0.01, 0.3, 0.5, 0.9, 1 - 1e-6], dtype=F64)
    np.testing.assert_allclose(noise.quantile(q).numpy(), law.ppf(q.numpy()), rtol=1e-9, atol=1e-12)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(NOISES))
def test_scale_is_a_temperature(name: str) -> None:
    noise = as_noise(name).with_scale(2.5)
    base = as_noise(name)
    torch.testing.assert_close(noise.cdf(GRID), base.cdf(GRID / 2.5))
    torch.testing.assert_close(noise.icdf(torch.tensor([0.2, 0.7], dtype=F64)),
                               2.5 * base.icdf(torch.tensor([0.2, 0.7], dtype=F64)))  # fmt: skip
    torch.testing.assert_close(noise.pdf(GRID), base.pdf(GRID / 2.5) / 2.5)
    with pytest.raises(ValueError, match="scale"):
        as_noise(name).with_scale(0.0)


@pytest.mark.parametrize("name", sorted(NOISES))
def test_log_cdf_gradient_has_no_nan_even_outside_the_support(name: str) -> None:
    x = torch.tensor([-1e4, -50.0, -0.5, 0.0, 0.5, 1e4], dtype=torch.float32, requires_grad=True)
    value = as_noise(name).log_cdf(x)
    assert not bool(value.isnan().any())
    value[torch.isfinite(value)].sum().backward()
    assert x.grad is not None
    assert bool(torch.isfinite(x.grad).all())


def test_normal_log_cdf_gradient_is_accurate_far_in_the_tail() -> None:
    x = torch.tensor([-2e4, -300.0, -5.0, 0.0, 6.0], dtype=torch.float32, requires_grad=True)
    Normal().log_cdf(x).sum().backward()
    points = x.detach().double().numpy()
    exact = np.exp(stats.norm.logpdf(points) - stats.norm.logcdf(points))
    assert x.grad is not None
    np.testing.assert_allclose(x.grad.numpy(), exact, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(NOISES))
def test_samples_follow_the_law(name: str) -> None:
    noise = as_noise(name)
    generator = torch.Generator().manual_seed(7)
    draws = noise.sample((50_000,), generator=generator, dtype=F64).numpy()
    assert stats.kstest(draws, SCIPY_LAWS[name].cdf).pvalue > 1e-3  # type: ignore[attr-defined]
    half = noise.sample((1000,), dtype=torch.float16)
    assert half.dtype == torch.float16
    assert bool(torch.isfinite(half).all())


def test_tail_cutoff_bounds_the_log_cdf() -> None:
    for name in ("normal", "logistic", "gumbel", "uniform", "exponential"):
        noise = as_noise(name)
        cutoff = noise.tail_cutoff(1e-18)
        value = float(noise.standard_log_cdf(torch.tensor([cutoff], dtype=F64))[0])
        assert -value <= 1e-18
        below = float(noise.standard_log_cdf(torch.tensor([cutoff - 1e-3], dtype=F64))[0])
        assert -below > 1e-18 or name == "uniform"
    assert abs(Normal().tail_cutoff(1e-18) - 8.76) < 0.05


def test_log_cdf_derivatives_are_consistent() -> None:
    for name in ("normal", "logistic"):
        noise = as_noise(name)
        x = torch.linspace(-30, 12, 200, dtype=F64, requires_grad=True)
        g0, g1, g2 = noise.log_cdf_derivatives(x)
        (d1,) = torch.autograd.grad(noise.standard_log_cdf(x).sum(), x, create_graph=True)
        (d2,) = torch.autograd.grad(d1.sum(), x)
        torch.testing.assert_close(g0, noise.standard_log_cdf(x))
        torch.testing.assert_close(g1, d1, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(g2, d2, rtol=1e-7, atol=1e-9)


def test_custom_noise_protocol() -> None:
    laplace = CustomNoise(
        log_cdf=lambda x: torch.where(
            x < 0, x - math.log(2), torch.log1p(-0.5 * torch.exp(-x.abs()))
        ),
        icdf=lambda q: -torch.sign(q - 0.5) * torch.log1p(-2 * (q - 0.5).abs()),
        name="laplace",
    )
    q = torch.tensor([0.1, 0.5, 0.8], dtype=F64)
    torch.testing.assert_close(laplace.cdf(laplace.icdf(q)), q)
    with pytest.raises(NotImplementedError, match="log_pdf"):
        laplace.pdf(q)
    assert as_noise(laplace) is laplace
