from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from kexue.data import eight_gaussians
from kexue.metrics import ModeStats, mode_stats
from kexue.utils import make_generator


def test_hand_built_samples() -> None:
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.array(
        [[0.0, 0.05], [0.1, 0.0], [10.0, 0.2], [5.0, 5.0], [0.0, 10.31], [0.0, 10.29]]
    )
    stats = mode_stats(samples, centres, sigma=0.1, coverage_threshold=0.2)
    # within 0.3: two at mode 0, one at mode 1 ([10, 0.2]), one at mode 2 ([0, 10.29])
    assert stats == ModeStats(
        modes_covered=1,  # only mode 0 has >= 20 % of the samples
        num_modes=3,
        high_quality_fraction=4 / 6,
        counts_per_mode=(2, 1, 1),
    )
    assert not stats.all_modes_covered


def test_default_threshold_is_one_percent_and_inclusive() -> None:
    centres = np.array([[0.0, 0.0], [100.0, 0.0]])
    samples = np.zeros((200, 2))
    samples[:2] = [100.0, 0.0]  # exactly 1 % of the samples at mode 1
    stats = mode_stats(samples, centres, sigma=1.0)
    assert stats.counts_per_mode == (198, 2)
    assert stats.modes_covered == 2
    one_short = mode_stats(samples[1:], centres, sigma=1.0)  # 1 of 199 < 1 %
    assert one_short.modes_covered == 1
    on_the_sphere = mode_stats(np.array([[3.0, 0.0]]), centres[:1], sigma=1.0)
    assert on_the_sphere.high_quality_fraction == 1.0  # "within 3 sigma" includes the boundary


def test_overlapping_balls_count_for_every_mode_but_once_for_quality() -> None:
    centres = np.array([[0.0], [1.0]])
    samples = np.array([[0.5], [0.5], [10.0], [-0.2]])
    stats = mode_stats(samples, centres, sigma=0.25)  # radius 0.75: balls overlap on [0.25, 0.75]
    assert stats.counts_per_mode == (3, 2)
    assert stats.high_quality_fraction == pytest.approx(3 / 4)


def test_real_mixture_samples_cover_every_mode() -> None:
    mixture = eight_gaussians()
    samples = mixture.sample(4000, make_generator(0))
    stats = mode_stats(samples, torch.tensor(mixture.centers), mixture.std)
    assert stats.all_modes_covered
    assert stats.high_quality_fraction > 0.98  # 3-sigma disc in 2-D holds 98.9 %
    assert sum(stats.counts_per_mode) == round(stats.high_quality_fraction * 4000)


def test_collapsed_generator_covers_one_mode() -> None:
    mixture = eight_gaussians()
    samples = np.tile(mixture.centers[:1], (100, 1))
    stats = mode_stats(samples, mixture.centers, mixture.std)
    assert (stats.modes_covered, stats.high_quality_fraction) == (1, 1.0)


def test_result_is_frozen() -> None:
    stats = mode_stats(np.zeros((3, 2)), np.zeros((1, 2)), sigma=1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.modes_covered = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": float("nan")}, ValueError, "sigma"),
        ({"sigma": "1"}, TypeError, "sigma"),
        ({"sigma": 1.0, "coverage_threshold": 0.0}, ValueError, "coverage_threshold"),
        ({"sigma": 1.0, "coverage_threshold": 1.5}, ValueError, "coverage_threshold"),
        ({"sigma": 1.0, "radius_in_sigmas": -1.0}, ValueError, "radius_in_sigmas"),
    ],
)
def test_bad_parameters(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        mode_stats(np.zeros((4, 2)), np.zeros((2, 2)), **kwargs)  # type: ignore[arg-type]


def test_bad_arrays() -> None:
    with pytest.raises(ValueError, match="dimension"):
        mode_stats(np.zeros((4, 3)), np.zeros((2, 2)), sigma=1.0)
    with pytest.raises(ValueError, match="at least 1 rows"):
        mode_stats(np.zeros((0, 2)), np.zeros((2, 2)), sigma=1.0)
    with pytest.raises(ValueError, match="NaN"):
        mode_stats(np.full((4, 2), np.nan), np.zeros((2, 2)), sigma=1.0)
    with pytest.raises(ValueError, match="2-D"):
        mode_stats(np.zeros(4), np.zeros((2, 2)), sigma=1.0)
