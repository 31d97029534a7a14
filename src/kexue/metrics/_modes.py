"""Mode statistics for toy mixtures (spec 01 §10, experiment E1.1).

For mixture centres :math:`c_1..c_M` with common component standard deviation :math:`\\sigma` and
radius :math:`r=3\\sigma`:

* ``counts_per_mode[m]`` is the number of samples with :math:`\\Vert x-c_m\\Vert\\le r`;
* mode :math:`m` is *covered* when ``counts_per_mode[m] >= coverage_threshold * n`` (1 % of the
  samples by default);
* the *high-quality fraction* is the fraction of samples within :math:`r` of at least one mode.

When the balls of two modes overlap, a sample in both counts for both modes (the definition is per
mode) but only once in the high-quality fraction. For the spec's 8-Gaussian ring (radius 2,
:math:`\\sigma=0.02`) and 5×5 grid (spacing 2, :math:`\\sigma=0.05`) the balls are disjoint.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ._validation import as_float64_matrix, check_real

__all__ = ["ModeStats", "mode_stats"]


@dataclasses.dataclass(frozen=True)
class ModeStats:
    """Result of :func:`mode_stats`.

    Attributes:
        modes_covered: number of modes holding at least ``coverage_threshold`` of the samples
            within the radius.
        num_modes: number of mixture centres ``M``.
        high_quality_fraction: fraction of samples within the radius of some mode, in [0, 1].
        counts_per_mode: per mode, the number of samples within the radius of that mode.
    """

    modes_covered: int
    num_modes: int
    high_quality_fraction: float
    counts_per_mode: tuple[int, ...]

    @property
    def all_modes_covered(self) -> bool:
        """Whether every mode is covered."""
        return self.modes_covered == self.num_modes


def mode_stats(
    samples: np.ndarray | torch.Tensor,
    centers: np.ndarray | torch.Tensor,
    sigma: float,
    *,
    coverage_threshold: float = 0.01,
    radius_in_sigmas: float = 3.0,
) -> ModeStats:
    """Modes covered, high-quality fraction and per-mode counts (spec 01 §10, E1.1).

    Args:
        samples: ``(n, d)`` generated points (numpy array or torch tensor), ``n >= 1``.
        centers: ``(M, d)`` mixture means, ``M >= 1``.
        sigma: the mixture components' standard deviation (> 0).
        coverage_threshold: fraction of all samples a mode needs within the radius to count as
            covered, in (0, 1]; the spec uses 0.01.
        radius_in_sigmas: radius in units of ``sigma`` (> 0); the spec uses 3.

    Returns:
        A frozen :class:`ModeStats`.

    Raises:
        TypeError: non-array input or non-numeric parameters.
        ValueError: bad shapes, empty input, NaN/inf values, different dimensions, or parameters
            out of range.
    """
    points = as_float64_matrix(samples, "samples")
    modes = as_float64_matrix(centers, "centers")
    if points.shape[1] != modes.shape[1]:
        raise ValueError(
            f"samples have dimension {points.shape[1]} but centers have dimension "
            f"{modes.shape[1]}; pass points and centres of the same space"
        )
    sigma = check_real(sigma, "sigma", positive=True)
    coverage_threshold = check_real(coverage_threshold, "coverage_threshold", positive=True, high=1)
    radius_in_sigmas = check_real(radius_in_sigmas, "radius_in_sigmas", positive=True)
    radius = radius_in_sigmas * sigma
    within = np.zeros((points.shape[0], modes.shape[0]), dtype=bool)
    block = max(1, 2**22 // max(1, modes.shape[0] * points.shape[1]))  # bounded memory
    for start in range(0, points.shape[0], block):
        chunk = points[start : start + block]
        distances = np.linalg.norm(chunk[:, None, :] - modes[None, :, :], axis=-1)
        within[start : start + block] = distances <= radius
    counts = within.sum(axis=0)
    covered = int((counts >= coverage_threshold * points.shape[0]).sum())
    return ModeStats(
        modes_covered=covered,
        num_modes=int(modes.shape[0]),
        high_quality_fraction=float(within.any(axis=1).mean()),
        counts_per_mode=tuple(int(c) for c in counts),
    )
