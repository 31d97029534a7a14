from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from kexue.metrics import PrecisionRecall, precision_recall


def _reference(real: np.ndarray, fake: np.ndarray, k: int) -> tuple[float, float]:
    """Brute force in numpy: full distance matrices, radii = (k+1)-th smallest incl. self."""

    def radii(points: np.ndarray) -> np.ndarray:
        return np.sort(cdist(points, points), axis=1)[:, k]

    real_radii, fake_radii = radii(real), radii(fake)
    precision = np.mean([(cdist(f[None], real)[0] <= real_radii).any() for f in fake])
    recall = np.mean([(cdist(r[None], fake)[0] <= fake_radii).any() for r in real])
    return float(precision), float(recall)


def test_identical_sets_are_perfect() -> None:
    x = np.random.default_rng(0).normal(size=(200, 5))
    assert precision_recall(x, x) == PrecisionRecall(1.0, 1.0)
    assert precision_recall(x, x, batch_size=13) == PrecisionRecall(1.0, 1.0)


def test_far_apart_sets_score_zero() -> None:
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) + 100.0
    assert precision_recall(real, fake) == PrecisionRecall(0.0, 0.0)


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("batch_size", [7, 2048])
def test_matches_brute_force(k: int, batch_size: int) -> None:
    rng = np.random.default_rng(k)
    real = rng.normal(size=(150, 4))
    fake = rng.normal(size=(120, 4)) * 1.5 + 0.3
    result = precision_recall(real, fake, k=k, batch_size=batch_size)
    assert (result.precision, result.recall) == _reference(real, fake, k)


def test_matches_brute_force_with_duplicates_and_torch_input() -> None:
    rng = np.random.default_rng(9)
    real = rng.integers(0, 3, size=(60, 2)).astype(np.float64)  # many exact duplicates
    fake = rng.integers(0, 4, size=(50, 2)).astype(np.float64)
    result = precision_recall(torch.from_numpy(real), torch.from_numpy(fake).float(), batch_size=9)
    assert (result.precision, result.recall) == _reference(real, fake, 3)


def test_mode_dropping_lowers_recall_not_precision() -> None:
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    real = np.concatenate([c + rng.normal(size=(300, 2)) for c in centres])
    fake = centres[0] + rng.normal(size=(600, 2))  # one mode only
    result = precision_recall(real, fake)
    assert result.precision > 0.95
    assert result.recall < 0.6


def test_result_is_frozen() -> None:
    result = PrecisionRecall(0.5, 0.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.precision = 1.0  # type: ignore[misc]


def test_bad_input() -> None:
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="k must be"):
        precision_recall(x, x, k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        precision_recall(x, x, k=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        precision_recall(x, x, batch_size=0)
    with pytest.raises(ValueError, match="at least 4 rows"):
        precision_recall(x[:3], x)
    with pytest.raises(ValueError, match="dimensions differ"):
        precision_recall(x, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        precision_recall(x, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        precision_recall(np.zeros((10, 2, 2)), x)
