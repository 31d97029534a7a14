"""Kernel distance (KID analogue): unbiased MMD² with the cubic polynomial kernel (spec 11 §6,
step 4).

For subsets :math:`X=\\{x_i\\}_{i=1}^m`, :math:`Y=\\{y_j\\}_{j=1}^m` and
:math:`k(a,b)=(a^\\top b/d+1)^3`,

.. math:: \\widehat{\\mathrm{MMD}}^2_u = \\frac{1}{m(m-1)}\\sum_{i\\ne j}k(x_i,x_j)
          + \\frac{1}{m(m-1)}\\sum_{i\\ne j}k(y_i,y_j) - \\frac{2}{m^2}\\sum_{i,j}k(x_i,y_j),

the unbiased U-statistic; it is averaged over ``num_subsets`` random subsets of ``subset_size``
points (1000 in spec 11 §6) and can be slightly negative when both sets share a distribution.
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import as_float64_matrix, check_int

__all__ = ["kernel_distance"]


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    dim = x.shape[1]
    k_xx = (x @ x.T / dim + 1.0) ** 3
    k_yy = (y @ y.T / dim + 1.0) ** 3
    k_xy = (x @ y.T / dim + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    term_xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    term_yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * k_xy.mean())


def _subset_sampler(
    generator: torch.Generator | np.random.Generator | int | None,
) -> np.random.Generator | torch.Generator:
    if generator is None:
        return np.random.default_rng(0)
    if isinstance(generator, torch.Generator | np.random.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int | np.integer):
        raise TypeError(
            "generator must be a torch.Generator (e.g. kexue.utils.make_generator(seed)), a "
            f"numpy Generator, an int seed or None, got {type(generator).__name__}"
        )
    return np.random.default_rng(int(generator))


def _choose(
    sampler: np.random.Generator | torch.Generator, population: int, size: int
) -> np.ndarray:
    if isinstance(sampler, torch.Generator):
        return (
            torch.randperm(population, generator=sampler, device=sampler.device)[:size]
            .cpu()
            .numpy()
        )
    return sampler.choice(population, size, replace=False)


def kernel_distance(
    features_a: np.ndarray | torch.Tensor,
    features_b: np.ndarray | torch.Tensor,
    *,
    subset_size: int = 1000,
    num_subsets: int = 100,
    generator: torch.Generator | np.random.Generator | int | None = None,
) -> tuple[float, float]:
    """KID-style kernel distance: mean and standard deviation over subsets of the unbiased MMD²
    with the polynomial kernel :math:`k(a,b)=(a^\\top b/d+1)^3` (spec 11 §6, step 4).

    Args:
        features_a: ``(N_a, D)`` features (numpy array or torch tensor), ``N_a >= 2``.
        features_b: ``(N_b, D)`` features, ``N_b >= 2``, same ``D``.
        subset_size: points per subset; clipped to ``min(N_a, N_b)`` (each subset is drawn
            without replacement from each set independently).
        num_subsets: number of subsets averaged.
        generator: source of the subset draws: a ``torch.Generator`` (e.g.
            ``kexue.utils.make_generator(seed)``), a numpy ``Generator``, an int seed, or ``None``
            for the fixed seed 0 (results are reproducible by default).

    Returns:
        ``(mean, std)`` of the per-subset unbiased MMD² estimates, float64 computation. With
        in-domain LeNet features this is "KID (in-domain LeNet features)", not comparable to
        published Inception KIDs. The mean can be slightly negative for equal distributions.

    Raises:
        TypeError: non-array input, non-int sizes, a wrong generator type.
        ValueError: non-2-D input, fewer than 2 rows, different ``D``, NaN/inf values,
            ``subset_size < 2`` or ``num_subsets < 1``.
    """
    a = as_float64_matrix(features_a, "features_a", min_rows=2)
    b = as_float64_matrix(features_b, "features_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}; "
            "extract both sets with the same extractor"
        )
    subset_size = check_int(subset_size, "subset_size", minimum=2)
    num_subsets = check_int(num_subsets, "num_subsets", minimum=1)
    sampler = _subset_sampler(generator)
    size = min(subset_size, a.shape[0], b.shape[0])
    values = np.array(
        [
            _unbiased_mmd2(
                a[_choose(sampler, a.shape[0], size)], b[_choose(sampler, b.shape[0], size)]
            )
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std())
