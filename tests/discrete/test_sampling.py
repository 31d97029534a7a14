"""Noise sampling that reaches the tails (spec 09 §5.2, C9.9; issue 19 item 5; module
:mod:`kexue.discrete._sampling`): the reach of every noise, finiteness at the extreme uniforms,
the law of the samples, and the frequency of far classes that the old clamped sampler never drew."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from kexue.discrete import NOISES, CustomNoise, Gumbel, as_noise, perturb_max_sample
from kexue.discrete._sampling import (
    BULKS,
    NORMAL_CUT,
    TAILS,
    ZONE,
    _outside,
    check_sample_args,
    reach,
)

from .conftest import SCIPY_LAWS

F32, F64 = torch.float32, torch.float64
#: the quantile 1 − 1e-15: a class with p = 1e-12 loses at most 1e-3 of it (module docstring)
NEEDED = {"gumbel": (None, 34.5), "logistic": (-34.5, 34.5), "normal": (-7.94, 7.94),
          "exponential": (None, 34.5), "uniform": (-0.5, 0.5)}  # fmt: skip


def old_sample(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """The sampler before issue 19: float32 uniforms clamped to [eps, 1 − eps] (randn for
    normal noise)."""
    if name == "normal":
        return torch.randn(shape, generator=generator)
    u = torch.rand(shape, generator=generator)
    eps = torch.finfo(F32).eps
    return as_noise(name).icdf(u.clamp(eps, 1 - eps))


def old_reach(name: str) -> tuple[float, float]:
    if name == "normal":  # Box–Muller radius from 24-bit uniforms (CPU randn)
        top = math.sqrt(-2 * math.log(2.0**-24))
        return -top, top
    eps = torch.finfo(F32).eps
    q = torch.tensor([eps, 1 - eps], dtype=F32)
    low, high = as_noise(name).icdf(q).tolist()
    return low, high


@pytest.mark.parametrize("name", sorted(NOISES))
def test_reach_covers_classes_down_to_1e_minus_12(name: str) -> None:
    low, high = reach(name)
    assert math.isfinite(low)
    assert math.isfinite(high)
    need_low, need_high = NEEDED[name]
    if need_low is not None:
        assert low <= need_low
    assert high >= need_high
    old_low, old_high = old_reach(name)
    if name != "uniform":
        assert high > old_high + 1.0
    assert low <= old_low


@pytest.mark.parametrize("name", sorted(BULKS))
def test_extremes_of_the_transforms_are_finite_and_join(name: str) -> None:
    lower, upper = TAILS[name]
    t = torch.tensor([ZONE * 2.0**-54, 1e-300, ZONE], dtype=F64)
    for tail in (lower, upper):
        assert bool(torch.isfinite(tail(t)).all())
    # the zones join the bulk: the bulk transform at the zone edges (float32 work dtype)
    edges = torch.tensor([ZONE, 1 - ZONE], dtype=F32)
    bulk = BULKS[name](edges.clone()).double()
    torch.testing.assert_close(bulk[0], lower(torch.tensor(ZONE, dtype=F64)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bulk[1], upper(torch.tensor(ZONE, dtype=F64)), rtol=1e-5, atol=1e-6)
    # the most extreme uniforms the bulk can see (after the half-step shift) are finite
    smallest = torch.tensor([ZONE + 2.0**-25, 1 - ZONE], dtype=F32)
    assert bool(torch.isfinite(BULKS[name](smallest)).all())


@pytest.mark.parametrize("name", sorted(NOISES))
def test_uniforms_exactly_zero_or_near_one_never_give_inf(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch.rand can return 0 (probability 2⁻²⁴) and 1 − 2⁻²⁴: both are in a tail zone and
    redrawn; the bulk transform alone would give ±inf there."""
    original_rand = torch.rand
    extremes = torch.tensor([0.0, 2.0**-24, ZONE, 0.5, 1 - ZONE, 1 - 2.0**-24] * 50, dtype=F32)

    def fake_rand(*size: object, **kwargs: object) -> torch.Tensor:
        if kwargs.get("dtype") in (None, F32):
            return extremes.clone().view(*size)  # type: ignore[arg-type]
        return original_rand(*size, **kwargs)  # type: ignore[call-overload,no-any-return]

    def fake_randn(*size: object, **kwargs: object) -> torch.Tensor:
        z = torch.tensor([0.0, 4.0, -4.0, 5.0, -6.0, 30.0] * 50, dtype=F32)
        return z.view(*size)  # type: ignore[arg-type]

    monkeypatch.setattr(torch, "rand", fake_rand)
    monkeypatch.setattr(torch, "randn", fake_randn)
    for dtype in (F32, torch.float16, torch.bfloat16):
        value = as_noise(name).sample((300,), dtype=dtype)
        assert value.dtype == dtype
        assert bool(torch.isfinite(value).all())
    value = as_noise(name).sample((300,))
    if name == "normal":  # |z| ≤ 4.5 kept, the rest redrawn beyond 4.5 with its sign
        kept = torch.tensor([0.0, 4.0, -4.0] * 50)
        assert torch.equal(value.view(50, 6)[:, :3].reshape(-1), kept)
        tail = value.view(50, 6)[:, 3:]
        assert bool((tail[:, :2].abs() > NORMAL_CUT).all())
        assert bool((tail[:, 0] > 0).all())
        assert bool((tail[:, 1] < 0).all())
    else:
        assert float(value.min()) >= reach(name)[0] - 1e-6
        assert float(value.max()) <= reach(name)[1] + 1e-4


@pytest.mark.parametrize("name", sorted(NOISES))
def test_samples_follow_the_law_in_float32_and_float64(name: str) -> None:
    noise = as_noise(name)
    for dtype in (F32, F64):
        draws = noise.sample((100_000,), generator=torch.Generator().manual_seed(1), dtype=dtype)
        assert draws.dtype == dtype
        law = SCIPY_LAWS[name]
        assert stats.kstest(draws.double().numpy(), law.cdf).pvalue > 1e-3  # type: ignore[attr-defined]
    scaled = noise.with_scale(2.5).sample((4,), generator=torch.Generator().manual_seed(2))
    base = noise.sample((4,), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(scaled, 2.5 * base)


@pytest.mark.parametrize("name", ["gumbel", "logistic", "exponential", "normal"])
def test_tail_frequencies_beyond_the_old_reach(name: str) -> None:
    """2²⁵ draws: the count beyond a threshold just past the old sampler's reach (which gives
    0 there by construction) is within 4 binomial standard errors of the exact tail mass."""
    threshold = {"gumbel": 16.0, "logistic": 16.0, "exponential": 16.0, "normal": 5.8}[name]
    assert old_reach(name)[1] < threshold
    count = 2**25
    generator = torch.Generator().manual_seed(5)
    hits = 0
    for _ in range(4):
        draws = as_noise(name).sample((count // 4,), generator=generator)
        hits += int((draws > threshold).sum())
    mass = float(SCIPY_LAWS[name].sf(threshold))  # type: ignore[attr-defined]
    expected = count * mass
    assert abs(hits - expected) <= 4 * math.sqrt(expected * (1 - mass)) + 1
    if name != "normal":  # normal: 2²⁵ Φ(−5.8) ≈ 0.1 expected, only the band is checked
        assert hits > 0  # the old sampler: 0 by construction


def test_frequency_of_a_1e_minus_6_class() -> None:
    """Gumbel logits [0, −log 1e6]: the far class's frequency over 2·10⁷ draws within 4 SE."""
    logits = torch.tensor([0.0, -math.log(1e6)])
    p = float(torch.softmax(logits.double(), 0)[1])
    draws = 20_000_000
    generator = torch.Generator().manual_seed(2)
    hits = sum(int(perturb_max_sample(logits, "gumbel", (draws // 4,), generator=generator).sum())
               for _ in range(4))  # fmt: skip
    assert abs(hits - draws * p) <= 4 * math.sqrt(draws * p * (1 - p))


def test_far_classes_the_old_sampler_never_draws() -> None:
    """Exponential noise, one class at 0 and 255 co-equal classes 16 nats behind. The old sampler's
    noise never exceeds 15.94 and the top class's noise is ≥ 0, so it *cannot* draw a far class;
    the exact probability that some far class wins is 1 − (1 − (1 − c)^{m+1})/((m + 1)c),
    c = e⁻¹⁶ (≈ 1.4 · 10⁻⁵ per draw), and the new sampler's count is within 4 binomial SE."""
    gap, far = 16.0, 255
    assert old_reach("exponential")[1] < gap
    logits = torch.cat((torch.zeros(1), torch.full((far,), -gap)))
    c = math.exp(-gap)
    power = -math.expm1((far + 1) * math.log1p(-c))
    p = 1.0 - power / ((far + 1) * c)
    draws = 1_200_000
    generator = torch.Generator().manual_seed(0)
    hits = 0
    for _ in range(6):
        winners = perturb_max_sample(logits, "exponential", (draws // 6,), generator=generator)
        hits += int((winners > 0).sum())
    expected = draws * p
    assert expected - 4 * math.sqrt(expected) > 0  # 0, the old sampler's count, is outside
    assert abs(hits - expected) <= 4 * math.sqrt(expected * (1 - p))


def test_custom_noise_reaches_its_lower_tail_and_upper_to_2_53() -> None:
    gumbel = Gumbel()
    custom = CustomNoise(gumbel.standard_log_cdf, gumbel.standard_icdf, gumbel.standard_log_pdf)
    draws = custom.sample((2_000_000,), generator=torch.Generator().manual_seed(3))
    assert bool(torch.isfinite(draws).all())
    assert stats.kstest(draws[:100_000].double().numpy(), SCIPY_LAWS["gumbel"].cdf).pvalue > 1e-3  # type: ignore[attr-defined]


def test_sample_arguments_are_validated() -> None:
    noise = as_noise("gumbel")
    with pytest.raises(ValueError, match="shape"):
        noise.sample((-1, 2))
    with pytest.raises(ValueError, match="shape"):
        noise.sample("3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype"):
        noise.sample((3,), dtype=torch.int64)
    with pytest.raises(TypeError, match="generator"):
        noise.sample((3,), generator=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        noise.sample((3,), device="nonsense")
    with pytest.raises(ValueError, match="generator"):
        noise.sample((3,), generator=torch.Generator(), device="meta")
    meta = noise.sample((2, 3), device="meta")
    assert meta.shape == (2, 3)
    assert meta.device.type == "meta"
    assert noise.sample(()).shape == ()
    assert noise.sample((0, 4)).shape == (0, 4)
    assert check_sample_args(5, None, F32, None)[0] == (5,)


def test_samples_are_reproducible_with_a_generator() -> None:
    for name in sorted(NOISES):
        first = as_noise(name).sample((64, 1000), generator=torch.Generator().manual_seed(9))
        second = as_noise(name).sample((64, 1000), generator=torch.Generator().manual_seed(9))
        assert torch.equal(first, second)
        assert bool(torch.isfinite(first).all())
    logits = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0))
    a = perturb_max_sample(logits, "gumbel", generator=torch.Generator().manual_seed(4))
    b = perturb_max_sample(logits, "gumbel", generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert np.all(a.numpy() >= 0)


@pytest.mark.parametrize("count", [1, 255, 256, 257, 64_000, 64_123, 300_000])
@pytest.mark.parametrize("tails", [0, 1, 3, 9, 40])
def test_the_tail_search_finds_exactly_the_out_of_range_elements(count: int, tails: int) -> None:
    """``_outside`` (aminmax gate, one-by-one extremes, then the block search) returns exactly the
    indices a brute-force comparison gives, whatever the size (block remainders) and the number
    of tail elements (past the one-by-one steps), and leaves the other elements untouched."""
    generator = torch.Generator().manual_seed(count + tails)
    flat = torch.rand(count, generator=generator) * 2 - 1  # inside (−1, 1)
    tails = min(tails, count)
    where = torch.randperm(count, generator=generator)[:tails]
    signs = torch.where(torch.rand(tails, generator=generator) < 0.5, -1.0, 1.0)
    flat[where] = signs * (1.5 + torch.rand(tails, generator=generator))
    original = flat.clone()
    lower, upper = _outside(flat, -1.0, 1.0, 0.0)
    expected_lower = torch.nonzero(original < -1.0).squeeze(1)
    expected_upper = torch.nonzero(original >= 1.0).squeeze(1)
    assert torch.equal(torch.sort(lower).values, expected_lower)
    assert torch.equal(torch.sort(upper).values, expected_upper)
    untouched = torch.ones(count, dtype=torch.bool)
    untouched[expected_lower] = False
    untouched[expected_upper] = False
    assert torch.equal(flat[untouched], original[untouched])
