"""Mode statistics for toy mixtures (spec 01 E1.1).

A mode is *covered* when at least ``coverage_threshold`` (1 %) of the samples lie within
``radius_in_sigmas`` (3) standard deviations of its centre; the *high-quality fraction* is the
fraction of
samples within that radius of some mode.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ._validation import as_float64_matrix

__all__ = ["ModeStats", "mode_stats"]


@dataclasses.dataclass(frozen=True)
class ModeStats:
    modes_covered: int
    num_modes: int
    high_quality_fraction: float
    counts_per_mode: tuple[int, ...]

    @property
    def all_modes_covered(self) -> bool:
        return self.modes_covered == self.num_modes


def mode_stats(
    samples: np.ndarray | torch.Tensor,
    centers: np.ndarray | torch.Tensor,
    sigma: float,
    *,
    coverage_threshold: float = 0.01,
    radius_in_sigmas: float = 3.0,
) -> ModeStats:
    """Modes covered, high-quality fraction and per-mode counts of ``samples`` ``(n, d)``.

    Each sample is assigned to its nearest centre and counted there if it lies within the radius.
    """
    points = as_float64_matrix(samples, "samples")
    modes = as_float64_matrix(centers, "centers")
    if points.shape[1] != modes.shape[1]:
        raise ValueError(f"samples have dimension {points.shape[1]}, centers {modes.shape[1]}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    if not 0 < coverage_threshold <= 1:
        raise ValueError(f"coverage_threshold must be in (0, 1], got {coverage_threshold}")
    if radius_in_sigmas <= 0:
        raise ValueError(f"radius_in_sigmas must be positive, got {radius_in_sigmas}")
    distances = np.linalg.norm(points[:, None, :] - modes[None, :, :], axis=-1)
    nearest = distances.argmin(axis=1)
    good = distances[np.arange(points.shape[0]), nearest] <= radius_in_sigmas * sigma
    counts = np.bincount(nearest[good], minlength=modes.shape[0])
    covered = int((counts >= coverage_threshold * points.shape[0]).sum())
    return ModeStats(
        modes_covered=covered,
        num_modes=int(modes.shape[0]),
        high_quality_fraction=float(good.mean()),
        counts_per_mode=tuple(int(c) for c in counts),
    )
