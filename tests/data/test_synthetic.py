"""2-D toy mixtures (spec 11 §4, spec 01 E1.1)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.data import (
    TOY_MIXTURES,
    GaussianMixture2D,
    eight_gaussians,
    gaussian_grid,
    gaussian_ring,
    toy_mixture,
    twenty_five_gaussians,
)
from kexue.utils import make_generator

# ---------------------------------------------------------------------------------- centres


def test_eight_gaussians_centres() -> None:
    mixture = eight_gaussians()
    assert mixture.num_modes == 8
    assert mixture.std == 0.02
    assert mixture.name == "8gaussians"
    assert mixture.centers.dtype == np.float64
    k = np.arange(8)
    expected = 2.0 * np.stack([np.cos(2 * np.pi * k / 8), np.sin(2 * np.pi * k / 8)], axis=1)
    np.testing.assert_allclose(mixture.centers, expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(mixture.centers, axis=1), 2.0, rtol=1e-15)
    # Axis points are exact (no 1e-16 round-off residues).
    assert mixture.centers[[0, 2, 4, 6]].tolist() == [
        [2.0, 0.0],
        [0.0, 2.0],
        [-2.0, 0.0],
        [0.0, -2.0],
    ]
    np.testing.assert_allclose(mixture.centers[1], [math.sqrt(2.0)] * 2, rtol=1e-15)


def test_twenty_five_gaussians_centres() -> None:
    mixture = twenty_five_gaussians()
    assert mixture.num_modes == 25
    assert mixture.std == 0.05
    assert mixture.name == "25gaussians"
    grid = {(float(a), float(b)) for a, b in itertools.product([-4, -2, 0, 2, 4], repeat=2)}
    assert {tuple(center) for center in mixture.centers.tolist()} == grid
    assert mixture.centers[0].tolist() == [-4.0, -4.0]
    assert mixture.centers[1].tolist() == [-4.0, -2.0]  # row-major: first coordinate slowest


def test_general_ring_and_grid() -> None:
    ring = gaussian_ring(3, radius=1.5, std=0.1)
    assert ring.num_modes == 3
    assert ring.name == "ring3"
    np.testing.assert_allclose(
        ring.centers[1], [1.5 * math.cos(2 * math.pi / 3), 1.5 * math.sin(2 * math.pi / 3)]
    )
    assert gaussian_ring(1, 3.0, 1.0).centers.tolist() == [[3.0, 0.0]]
    assert gaussian_grid(1, 1.0, 0.1).centers.tolist() == [[0.0, 0.0]]
    grid = gaussian_grid(2, spacing=1.0, std=0.3, name="square")
    assert grid.name == "square"
    assert grid.centers.tolist() == [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]
    assert eight_gaussians(radius=1.0, std=0.5).centers[0].tolist() == [1.0, 0.0]
    assert twenty_five_gaussians(spacing=1.0).centers.max() == 2.0


@pytest.mark.parametrize(("name", "modes"), [("8gaussians", 8), ("25gaussians", 25)])
def test_toy_mixture_by_name(name: str, modes: int) -> None:
    assert toy_mixture(name).num_modes == modes
    assert toy_mixture(name.upper()).num_modes == modes
    assert name in TOY_MIXTURES
    spelled = "8-Gaussians" if modes == 8 else "25_gaussians"
    assert toy_mixture(spelled).name == name


def test_toy_mixture_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="8gaussians, 25gaussians"):
        toy_mixture("swissroll")
    with pytest.raises(TypeError, match="str"):
        toy_mixture(8)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("factory", [eight_gaussians, twenty_five_gaussians])
def test_per_mode_statistics(factory: type[GaussianMixture2D]) -> None:
    mixture = factory()
    n = 100_000
    points, modes = mixture.sample_with_modes(n, 0, dtype=torch.float64)
    points_np, modes_np = points.numpy(), modes.numpy()
    counts = np.bincount(modes_np, minlength=mixture.num_modes)
    p = 1.0 / mixture.num_modes
    assert np.all(np.abs(counts - n * p) < 5 * math.sqrt(n * p * (1 - p)))  # equal weights
    for k in range(mixture.num_modes):
        cluster = points_np[modes_np == k]
        standard_error = mixture.std / math.sqrt(len(cluster))
        np.testing.assert_allclose(
            cluster.mean(axis=0), mixture.centers[k], atol=5 * standard_error
        )
        np.testing.assert_allclose(cluster.std(axis=0), mixture.std, rtol=0.06)
    # The modes are far apart compared with std: every point is nearest its own centre.
    nearest, distance = mixture.nearest_mode(points)
    assert torch.equal(nearest, modes)
    assert float(distance.max()) < 7 * mixture.std


def test_sample_shape_dtype_device() -> None:
    mixture = eight_gaussians()
    sample = mixture.sample(5, 0)
    assert sample.shape == (5, 2)
    assert sample.dtype == torch.float32
    assert sample.device.type == "cpu"
    assert mixture.sample(3, 0, dtype=torch.float64).dtype == torch.float64
    assert mixture.sample(1, 0, device="cpu").shape == (1, 2)
    assert mixture.sample(np.int64(4), 1).shape == (4, 2)  # type: ignore[arg-type]


def test_same_seed_same_samples() -> None:
    mixture = twenty_five_gaussians()
    first = mixture.sample(1000, 123)
    assert torch.equal(first, mixture.sample(1000, 123))
    assert torch.equal(first, mixture.sample(1000, make_generator(123)))
    assert torch.equal(first, twenty_five_gaussians().sample(1000, 123))
    assert not torch.equal(first, mixture.sample(1000, 124))
    generator = make_generator(5)
    assert not torch.equal(mixture.sample(10, generator), mixture.sample(10, generator))
    # float32 samples are the float64 samples rounded.
    exact = mixture.sample(1000, 123, dtype=torch.float64)
    assert torch.equal(first, exact.to(torch.float32))


def test_seeded_sampling_leaves_the_global_stream_alone() -> None:
    torch.manual_seed(0)
    state = torch.get_rng_state()
    eight_gaussians().sample(100, 1)
    eight_gaussians().sample(100, make_generator(2))
    assert torch.equal(torch.get_rng_state(), state)


def test_unseeded_sampling_uses_the_global_stream() -> None:
    torch.manual_seed(11)
    first = eight_gaussians().sample(50)
    torch.manual_seed(11)
    assert torch.equal(first, eight_gaussians().sample(50))


def test_log_prob() -> None:
    single = GaussianMixture2D(centers=np.array([[1.0, -2.0]]), std=0.5)
    x = torch.tensor([[1.0, -2.0], [1.5, -1.0]], dtype=torch.float64)
    expected = -((x - torch.tensor([1.0, -2.0], dtype=torch.float64)) ** 2).sum(1) / (
        2 * 0.25
    ) - math.log(2 * math.pi * 0.25)
    torch.testing.assert_close(single.log_prob(x), expected)
    # A mixture's density integrates to one (Riemann sum on a fine grid).
    mixture = gaussian_ring(3, radius=1.0, std=0.4)
    axis = torch.linspace(-4, 4, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    integral = mixture.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert abs(float(integral) - 1.0) < 1e-6
    assert mixture.log_prob(grid.float()).dtype == torch.float64
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        mixture.log_prob(torch.zeros(3))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        mixture.nearest_mode(torch.zeros(3, 3))


def test_centres_tensor() -> None:
    centers = eight_gaussians().centers_tensor()
    assert centers.shape == (8, 2)
    assert centers.dtype == torch.float32
    assert eight_gaussians().centers_tensor(dtype=torch.float64)[2].tolist() == [0.0, 2.0]


# ----------------------------------------------------------------------------- immutability


def test_mixture_is_frozen_and_owns_its_centres() -> None:
    source = np.array([[0.0, 0.0], [1.0, 1.0]])
    mixture = GaussianMixture2D(source, 0.1, "pair")
    source[0, 0] = 99.0
    assert mixture.centers[0, 0] == 0.0
    with pytest.raises(ValueError, match="read-only"):
        mixture.centers[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        mixture.std = 1.0  # type: ignore[misc]
    assert GaussianMixture2D([[0, 0]], 1).std == 1.0  # type: ignore[arg-type]
    assert isinstance(GaussianMixture2D([[0, 0]], 1).std, float)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("n", [0, -1])
def test_sample_rejects_non_positive_n(n: int) -> None:
    with pytest.raises(ValueError, match="n must be >= 1"):
        eight_gaussians().sample(n, 0)


@pytest.mark.parametrize("n", [1.5, True, "10", None])
def test_sample_rejects_non_integer_n(n: object) -> None:
    with pytest.raises(TypeError, match="n must be an int"):
        eight_gaussians().sample(n, 0)  # type: ignore[arg-type]


def test_sample_rejects_bad_generator_and_dtype() -> None:
    with pytest.raises(TypeError, match="generator"):
        eight_gaussians().sample(3, "seed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        eight_gaussians().sample(3, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        eight_gaussians().sample(3, -1)
    with pytest.raises(TypeError, match="floating"):
        eight_gaussians().sample(3, 0, dtype=torch.int64)


@pytest.mark.parametrize("std", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_std_value(std: float) -> None:
    with pytest.raises(ValueError, match="std"):
        GaussianMixture2D(np.zeros((1, 2)), std)
    with pytest.raises(ValueError, match="std"):
        eight_gaussians(std=std)
    with pytest.raises(ValueError, match="std"):
        gaussian_grid(3, 1.0, std)


@pytest.mark.parametrize("std", ["0.1", None, True])
def test_bad_std_type(std: object) -> None:
    with pytest.raises(TypeError, match="std"):
        GaussianMixture2D(np.zeros((1, 2)), std)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "centers", [np.zeros(2), np.zeros((3, 3)), np.zeros((0, 2)), np.zeros((1, 2, 1))]
)
def test_bad_centres_shape(centers: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(M, 2\)"):
        GaussianMixture2D(centers, 0.1)


def test_bad_centres_values_and_name() -> None:
    with pytest.raises(ValueError, match="finite"):
        GaussianMixture2D(np.array([[0.0, np.nan]]), 0.1)
    with pytest.raises(TypeError, match="name"):
        GaussianMixture2D(np.zeros((1, 2)), 0.1, 3)  # type: ignore[arg-type]


def test_bad_ring_and_grid_arguments() -> None:
    with pytest.raises(ValueError, match="num_modes"):
        gaussian_ring(0)
    with pytest.raises(TypeError, match="num_modes"):
        gaussian_ring(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="radius"):
        gaussian_ring(4, radius=-1.0)
    with pytest.raises(ValueError, match="radius"):
        eight_gaussians(radius=0.0)
    with pytest.raises(ValueError, match="side"):
        gaussian_grid(0)
    with pytest.raises(ValueError, match="spacing"):
        gaussian_grid(3, spacing=0.0)
    with pytest.raises(ValueError, match="spacing"):
        twenty_five_gaussians(spacing=float("inf"))


# -------------------------------------------------------------------------------- properties


@settings(max_examples=40, deadline=None)
@given(
    num_modes=st.integers(1, 40),
    radius=st.floats(0.01, 100.0),
    std=st.floats(1e-3, 10.0),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**63 - 1),
)
def test_ring_samples_stay_near_their_centre(
    num_modes: int, radius: float, std: float, n: int, seed: int
) -> None:
    """Each sample lies within 7 std of the centre it was drawn from (P(miss) ~ 1e-11 per point),
    the centres are equally spaced on the circle, and the same seed gives the same sample."""
    mixture = gaussian_ring(num_modes, radius, std)
    norms = np.linalg.norm(mixture.centers, axis=1)
    np.testing.assert_allclose(norms, radius, rtol=1e-12)
    if num_modes > 1:
        steps = np.linalg.norm(mixture.centers - np.roll(mixture.centers, -1, axis=0), axis=1)
        np.testing.assert_allclose(steps, 2 * radius * math.sin(math.pi / num_modes), rtol=1e-9)
    points, modes = mixture.sample_with_modes(n, seed, dtype=torch.float64)
    assert points.shape == (n, 2)
    assert int(modes.min()) >= 0
    assert int(modes.max()) < num_modes
    distance = torch.linalg.vector_norm(
        points - mixture.centers_tensor(torch.float64)[modes], dim=1
    )
    assert float(distance.max()) < 7 * std
    assert torch.equal(points, mixture.sample_with_modes(n, seed, dtype=torch.float64)[0])


@settings(max_examples=30, deadline=None)
@given(side=st.integers(1, 8), spacing=st.floats(0.01, 50.0), seed=st.integers(0, 2**32))
def test_grid_is_symmetric_and_regular(side: int, spacing: float, seed: int) -> None:
    mixture = gaussian_grid(side, spacing, std=spacing / 10)
    assert mixture.num_modes == side * side
    np.testing.assert_allclose(mixture.centers.mean(axis=0), 0.0, atol=1e-12 * spacing * side)
    coords = np.unique(mixture.centers[:, 0])
    assert coords.size == side
    if side > 1:
        np.testing.assert_allclose(np.diff(coords), spacing, rtol=1e-9)
    # Symmetry under negation: the centre set maps onto itself.
    np.testing.assert_allclose(np.sort(-mixture.centers, axis=0), np.sort(mixture.centers, axis=0))
    sample = mixture.sample(64, seed)
    assert bool(torch.isfinite(sample).all())
