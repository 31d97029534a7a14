from __future__ import annotations

import numpy as np
import pytest

from kexue.data import eight_gaussians
from kexue.metrics import mode_stats
from kexue.utils import make_generator


def test_hand_built_samples() -> None:
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = np.array(
        [[0.0, 0.05], [0.1, 0.0], [10.0, 0.2], [5.0, 5.0], [0.0, 10.31], [0.0, 10.29]]
    )
    stats = mode_stats(samples, centres, sigma=0.1, coverage_threshold=0.2)
    # within 0.3: two at mode 0, one at mode 1 ([10, 0.2]), one at mode 2 ([0, 10.29])
    assert stats.counts_per_mode == (2, 1, 1)
    assert stats.high_quality_fraction == pytest.approx(4 / 6)
    assert stats.modes_covered == 1  # only mode 0 has >= 20 % of the samples
    assert not stats.all_modes_covered


def test_real_mixture_samples_cover_every_mode() -> None:
    mixture = eight_gaussians()
    samples = mixture.sample(4000, make_generator(0)).numpy()
    stats = mode_stats(samples, mixture.centers, mixture.std)
    assert stats.all_modes_covered
    assert stats.high_quality_fraction > 0.98  # 3-sigma disc in 2-D holds 98.9 %


def test_collapsed_generator_covers_one_mode() -> None:
    mixture = eight_gaussians()
    samples = np.tile(mixture.centers[:1], (100, 1))
    stats = mode_stats(samples, mixture.centers, mixture.std)
    assert (stats.modes_covered, stats.high_quality_fraction) == (1, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": float("nan")}, "sigma"),
        ({"sigma": 1.0, "coverage_threshold": 0.0}, "coverage_threshold"),
        ({"sigma": 1.0, "radius_in_sigmas": -1.0}, "radius_in_sigmas"),
    ],
)
def test_bad_input(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mode_stats(np.zeros((4, 2)), np.zeros((2, 2)), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dimension"):
        mode_stats(np.zeros((4, 3)), np.zeros((2, 2)), sigma=1.0)
