from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kexue.metrics import feature_moments, frechet_distance, frechet_distance_from_moments


def test_identical_sets_have_zero_distance() -> None:
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_diagonal_gaussians_closed_form() -> None:
    mean_a, mean_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mean_a - mean_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    value = frechet_distance_from_moments(mean_a, np.diag(var_a), mean_b, np.diag(var_b))
    assert value == pytest.approx(expected, abs=1e-12)


def test_non_commuting_covariances_match_sqrtm_formula() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov_a, cov_b = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mean_a, mean_b = rng.normal(size=5), rng.normal(size=5)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    expected = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    value = frechet_distance_from_moments(mean_a, cov_a, mean_b, cov_b)
    assert value == pytest.approx(expected, rel=1e-9)


def test_sample_estimate_approaches_population_value() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200_000, 2))
    y = rng.normal(size=(200_000, 2)) * np.array([2.0, 1.0]) + np.array([3.0, 0.0])
    # closed form: 3^2 + (1 - 2)^2 = 10
    assert frechet_distance(x, y) == pytest.approx(10.0, rel=0.01)


def test_symmetry_and_torch_input() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(200, 8)) + 0.5
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)
    assert frechet_distance(torch.from_numpy(x), torch.from_numpy(y).float()) == pytest.approx(
        frechet_distance(x, y), rel=1e-6
    )


def test_singular_covariances_do_not_give_nan() -> None:
    x = np.zeros((100, 4))
    x[:, 0] = np.arange(100)
    y = np.zeros((100, 4))
    assert np.isfinite(frechet_distance(x, y))
    assert frechet_distance(np.zeros((10, 3)), np.zeros((10, 3))) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    arrays=st.integers(2, 30).flatmap(
        lambda n: st.integers(1, 5).flatmap(
            lambda d: st.tuples(
                hnp.arrays(np.float64, (n, d), elements=st.floats(-100, 100)),
                hnp.arrays(np.float64, (n + 3, d), elements=st.floats(-100, 100)),
            )
        )
    )
)
def test_non_negative_and_symmetric_property(arrays: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = arrays
    forward, backward = frechet_distance(x, y), frechet_distance(y, x)
    assert forward >= 0.0
    assert np.isfinite(forward)
    # Near-singular covariances: eigenvalue rounding of ~eps·||S||² becomes ~sqrt(eps)·||S|| after
    # the square root, so the achievable absolute accuracy is about 1e-8 times the data scale.
    scale = 1.0 + float(np.abs(x).max() ** 2 + np.abs(y).max() ** 2) * x.shape[1]
    assert forward == pytest.approx(backward, abs=1e-6 * scale)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6 * scale)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dim=st.integers(1, 6),
    shift=st.floats(-5, 5),
    scale=st.floats(0.1, 5),
)
def test_affine_image_of_a_sample_matches_closed_form(
    seed: int, dim: int, shift: float, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50, dim))
    y = x * scale + shift
    value = frechet_distance(x, y)
    assert value >= 0.0
    # Affine map of the same sample: FD = dim*shift^2-ish term + trace term, computed exactly here.
    mean_x, cov_x = feature_moments(x)
    expected = float(
        ((mean_x - (mean_x * scale + shift)) ** 2).sum() + (1 - scale) ** 2 * np.trace(cov_x)
    )
    assert value == pytest.approx(expected, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(
    ("a", "b", "error", "match"),
    [
        (np.zeros((10, 3)), np.zeros((10, 4)), ValueError, "dimensions differ"),
        (np.zeros((1, 3)), np.zeros((10, 3)), ValueError, "at least 2 rows"),
        (np.zeros((0, 3)), np.zeros((10, 3)), ValueError, "at least 2 rows"),
        (np.zeros(10), np.zeros((10, 3)), ValueError, "2-D"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), ValueError, "NaN"),
        (np.array([["a", "b"], ["c", "d"]]), np.zeros((2, 2)), TypeError, "numeric"),
        ([[1.0, 2.0], [3.0, 4.0]], np.zeros((2, 2)), TypeError, "numpy array or torch tensor"),
    ],
)
def test_bad_input(a: object, b: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        frechet_distance(a, b)  # type: ignore[arg-type]


def test_bad_moments() -> None:
    with pytest.raises(ValueError, match="cov_b must have shape"):
        frechet_distance_from_moments(np.zeros(2), np.eye(2), np.zeros(2), np.eye(3))
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance_from_moments(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance_from_moments(np.zeros(2), np.full((2, 2), np.inf), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance_from_moments(
            np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.eye(2)
        )
    with pytest.raises(ValueError, match="1-D"):
        frechet_distance_from_moments(np.zeros((2, 1)), np.eye(2), np.zeros(2), np.eye(2))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        frechet_distance_from_moments([0.0], np.eye(1), np.zeros(1), np.eye(1))  # type: ignore[arg-type]


def test_moments_accept_torch_and_match_numpy() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(100, 3)), rng.normal(size=(80, 3)) * 2
    mu_a, cov_a = feature_moments(x)
    mu_b, cov_b = feature_moments(torch.from_numpy(y))
    np.testing.assert_allclose(cov_a, np.cov(x, rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(mu_b, y.mean(axis=0), rtol=1e-12)
    from_torch = frechet_distance_from_moments(
        torch.from_numpy(mu_a), torch.from_numpy(cov_a), mu_b, cov_b
    )
    assert from_torch == pytest.approx(frechet_distance(x, y), rel=1e-12)
    assert mu_a.dtype == cov_a.dtype == np.float64


def test_feature_moments_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2 rows"):
        feature_moments(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="no feature columns"):
        feature_moments(np.zeros((5, 0)))
