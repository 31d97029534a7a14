from __future__ import annotations

import numpy as np
import pytest
import torch

from kexue.metrics import kernel_distance
from kexue.metrics._kernel import _unbiased_mmd2
from kexue.utils import make_generator


def _mmd2_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b / a.shape[0] + 1.0) ** 3)

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_estimator_matches_its_definition() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.5
    assert _unbiased_mmd2(x, y) == pytest.approx(_mmd2_by_loops(x, y), rel=1e-12)


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


def test_generators_make_results_reproducible() -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(100, 4)), rng.normal(size=(100, 4))
    default = kernel_distance(x, y, subset_size=50, num_subsets=5)
    assert default == kernel_distance(x, y, subset_size=50, num_subsets=5)  # seed 0 by default
    assert kernel_distance(x, y, subset_size=50, generator=3) == kernel_distance(
        x, y, subset_size=50, generator=np.random.default_rng(3)
    )
    with_torch = kernel_distance(x, y, subset_size=50, generator=make_generator(7))
    assert with_torch == kernel_distance(x, y, subset_size=50, generator=make_generator(7))
    assert with_torch != kernel_distance(x, y, subset_size=50, generator=make_generator(8))


def test_torch_input_and_full_subsets() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(20, 4)) + 0.2
    mean, std = kernel_distance(torch.from_numpy(x), y, subset_size=1000, num_subsets=3)
    # subset_size is clipped to 20: every subset of y is all of y, so only x's subsets vary.
    assert np.isfinite(mean)
    assert std >= 0.0
    full, full_std = kernel_distance(x[:20], y, subset_size=20, num_subsets=4)
    assert full == pytest.approx(_mmd2_by_loops(x[:20], y), rel=1e-10)
    assert full_std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"subset_size": 1}, ValueError, "subset_size"),
        ({"num_subsets": 0}, ValueError, "num_subsets"),
        ({"subset_size": 10.5}, TypeError, "subset_size must be an int"),
        ({"generator": "seed"}, TypeError, "generator"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    x = np.zeros((10, 2))
    with pytest.raises(error, match=match):
        kernel_distance(x, x, **kwargs)  # type: ignore[arg-type]


def test_bad_features() -> None:
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="dimensions differ"):
        kernel_distance(x, x[:, :2])
    with pytest.raises(ValueError, match="at least 2 rows"):
        kernel_distance(x[:1], x)
    with pytest.raises(ValueError, match="NaN"):
        kernel_distance(x, np.full((10, 4), np.inf))
    with pytest.raises(ValueError, match="2-D"):
        kernel_distance(x.ravel(), x)
