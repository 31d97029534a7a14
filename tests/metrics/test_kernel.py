from __future__ import annotations

import numpy as np
import pytest

from kexue.metrics import kernel_distance


def test_same_distribution_is_near_zero_and_shift_is_positive() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(1500, 8)), rng.normal(size=(1500, 8))
    same, same_std = kernel_distance(x, y, subset_size=500, num_subsets=20)
    shifted, _ = kernel_distance(x, y + 1.0, subset_size=500, num_subsets=20)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 50 * max(same_std, 1e-4)


def test_unbiased_estimator_averages_to_zero() -> None:
    rng = np.random.default_rng(1)
    values = [
        kernel_distance(rng.normal(size=(40, 3)), rng.normal(size=(40, 3)), num_subsets=1)[0]
        for _ in range(400)
    ]
    mean, error = float(np.mean(values)), float(np.std(values) / np.sqrt(len(values)))
    assert abs(mean) < 4 * error  # a biased (V-statistic) estimator would be clearly positive


def test_seeded_and_bad_input() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(100, 4)), rng.normal(size=(100, 4))
    assert kernel_distance(x, y, subset_size=50, seed=3) == kernel_distance(
        x, y, subset_size=50, seed=3
    )
    with pytest.raises(ValueError, match="dimensions differ"):
        kernel_distance(x, y[:, :2])
    with pytest.raises(ValueError, match="subset_size"):
        kernel_distance(x, y, subset_size=1)
