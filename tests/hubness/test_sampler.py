"""HubnessPriorSampler and the truncation baselines (spec 10 §7.2-7.3): streaming, conventions,
mapping into W, custom priors, impossible thresholds, shortfalls, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from kexue.hubness import (
    HubnessPriorSampler,
    LatentSample,
    NormTruncationSampler,
    TruncationSampler,
    hub_mask,
    k_occurrence,
    max_hub_value,
    norm_truncate,
    norm_truncation_mask,
    truncate,
)


def test_sampler_streams_until_n_and_reports_rate() -> None:
    sampler = HubnessPriorSampler(32, k=5, threshold=10, pool_size=600)
    result = sampler.sample(40, generator=torch.Generator().manual_seed(0))
    assert isinstance(result, LatentSample)
    assert result.z.shape == (40, 32)
    assert result.w is None
    assert result.complete
    assert result.pools >= 1
    assert result.drawn == result.pools * 600
    assert result.scores is not None
    assert bool((result.scores > 10).all())
    assert 0 < result.acceptance_rate <= 1
    assert result.seconds >= 0
    assert torch.equal(result.latents, result.z)


def test_sampler_selection_is_the_hub_filter_of_each_pool() -> None:
    """Replay the first pool with the same seed: the kept latents are exactly those with N_k > t."""
    sampler = HubnessPriorSampler(
        16, k=4, threshold=8, pool_size=500, max_pools=1, on_shortfall="warn"
    )
    with pytest.warns(RuntimeWarning, match="max_pools"):
        result = sampler.sample(10_000, generator=torch.Generator().manual_seed(3))
    pool = torch.randn(500, 16, generator=torch.Generator().manual_seed(3))
    counts = k_occurrence(pool, 4)
    assert torch.equal(result.z, pool[counts > 8])
    assert result.acceptance_rate == pytest.approx(float((counts > 8).double().mean()))
    assert not result.complete


def test_official_convention_uses_self_and_ge() -> None:
    pool = torch.randn(400, 24, generator=torch.Generator().manual_seed(5))
    post = HubnessPriorSampler(24, k=5, threshold=15, pool_size=400)
    official = HubnessPriorSampler(24, k=5, threshold=15, pool_size=400, convention="official")
    assert torch.equal(official.hub_values(pool), k_occurrence(pool, 5, include_self=True))
    assert torch.equal(official.hub_values(pool), 1 + k_occurrence(pool, 4))
    assert torch.equal(post.hub_values(pool), k_occurrence(pool, 5))
    kept_official = hub_mask(official.hub_values(pool), 15, "official")
    assert torch.equal(kept_official, k_occurrence(pool, 4) >= 14)


def test_mapping_selects_in_w_space() -> None:
    torch.manual_seed(0)
    mapping = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.Tanh(), torch.nn.Linear(12, 6))
    sampler = HubnessPriorSampler(
        8, k=3, threshold=6, pool_size=300, mapping=mapping, max_pools=1, on_shortfall="warn"
    )
    with pytest.warns(RuntimeWarning):
        result = sampler.sample(5000, generator=torch.Generator().manual_seed(1))
    pool = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        w_pool = mapping(pool)
    kept = k_occurrence(w_pool, 3) > 6
    assert result.w is not None
    assert result.w.shape[1] == 6
    assert torch.equal(result.z, pool[kept])
    torch.testing.assert_close(result.w, w_pool[kept])
    assert not result.w.requires_grad
    assert torch.equal(result.latents, result.w)


def test_custom_latent_distribution() -> None:
    def uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(n, 20, generator=generator) * 2 - 1

    result = HubnessPriorSampler(20, threshold=12, pool_size=500, latent_sampler=uniform).sample(
        15, generator=torch.Generator().manual_seed(0)
    )
    assert result.z.shape == (15, 20)
    assert bool((result.z.abs() <= 1).all())


def test_max_hub_value() -> None:
    assert max_hub_value(100, 5, "post") == 99
    assert max_hub_value(100, 5, "official") == 100
    assert max_hub_value(100, 1, "official") == 1


@pytest.mark.parametrize(
    ("threshold", "convention"), [(99, "post"), (150, "post"), (101, "official")]
)
def test_impossible_threshold_rejected(threshold: int, convention: str) -> None:
    with pytest.raises(ValueError, match="can never be passed"):
        HubnessPriorSampler(4, threshold=threshold, pool_size=100, convention=convention)  # type: ignore[arg-type]


def test_largest_possible_threshold_accepted() -> None:
    HubnessPriorSampler(4, threshold=98, pool_size=100)
    HubnessPriorSampler(4, threshold=100, pool_size=100, convention="official")


def test_shortfall_raises_by_default() -> None:
    sampler = HubnessPriorSampler(2, threshold=30, pool_size=200, max_pools=2)  # d = 2: no hubs
    with pytest.raises(RuntimeError, match="acceptance rate"):
        sampler.sample(5, generator=torch.Generator().manual_seed(0))


def test_sampler_bad_input() -> None:
    with pytest.raises(ValueError, match="convention"):
        HubnessPriorSampler(4, convention="sklearn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latent_dim"):
        HubnessPriorSampler(0)
    with pytest.raises(ValueError, match="too large"):
        HubnessPriorSampler(4, k=10, threshold=1, pool_size=10)
    with pytest.raises(ValueError, match="finite"):
        HubnessPriorSampler(4, threshold=float("nan"))
    with pytest.raises(ValueError, match="shape"):
        HubnessPriorSampler(
            4, threshold=1, pool_size=10, latent_sampler=lambda n, g: torch.randn(n, 3)
        ).sample(1)
    with pytest.raises(ValueError, match="NaN"):
        HubnessPriorSampler(
            4,
            threshold=1,
            pool_size=10,
            latent_sampler=lambda n, g: torch.full((n, 4), float("nan")),
        ).sample(1)
    with pytest.raises(ValueError, match="n must be"):
        HubnessPriorSampler(4, threshold=1, pool_size=10).sample(0)


# ---------------------------------------------------------------------------------------------
# Baselines


def test_truncate() -> None:
    w = torch.randn(100, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(truncate(w, 1.0), w)
    collapsed = truncate(w, 0.0)
    torch.testing.assert_close(collapsed, w.mean(0).expand_as(w))
    torch.testing.assert_close(truncate(w, 0.7, torch.zeros(5, dtype=torch.float64)), 0.7 * w)
    half = truncate(w, 0.5)
    torch.testing.assert_close(half.mean(0), w.mean(0))
    with pytest.raises(ValueError, match="center"):
        truncate(w, 0.5, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="psi"):
        truncate(w, float("inf"))


def test_norm_truncation() -> None:
    z = torch.randn(1000, 16, generator=torch.Generator().manual_seed(1))
    mask = norm_truncation_mask(z, 0.05)
    assert int(mask.sum()) == 50
    norms = z.norm(dim=1)
    assert float(norms[mask].max()) <= float(norms[~mask].min())
    kept = norm_truncate(z, 0.05)
    assert torch.equal(kept, z[mask])
    center = torch.full((16,), 3.0)
    shifted = norm_truncation_mask(z + center, 0.05, center)
    assert torch.equal(shifted, mask)
    with pytest.raises(ValueError, match="rate"):
        norm_truncate(z, 0.0)


def test_norm_truncation_sampler_matches_rate() -> None:
    sampler = NormTruncationSampler(16, rate=0.02, pool_size=500)
    result = sampler.sample(25, generator=torch.Generator().manual_seed(2))
    assert result.z.shape == (25, 16)
    assert result.pools == 3
    assert result.acceptance_rate == pytest.approx(0.02)
    assert result.scores is not None
    assert float(result.scores.max()) < math.sqrt(16)


def test_truncation_sampler() -> None:
    result = TruncationSampler(8, psi=0.5, center=torch.zeros(8)).sample(
        30, generator=torch.Generator().manual_seed(4)
    )
    raw = torch.randn(30, 8, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(result.z, 0.5 * raw)
    assert result.acceptance_rate == 1.0
    mapped = TruncationSampler(8, psi=0.0, mapping=lambda z: 2 * z).sample(10)
    assert mapped.w is not None
    torch.testing.assert_close(mapped.w, mapped.w.mean(0).expand_as(mapped.w))
