"""Seeded 2-D toy mixtures for the WGAN experiments (spec 11 §4, spec 01 E1.1).

* :func:`eight_gaussians`: 8 equal-weight isotropic Gaussians with centres
  :math:`2(\\cos\\frac{2\\pi k}{8}, \\sin\\frac{2\\pi k}{8})`, std 0.02.
* :func:`twenty_five_gaussians`: 25 Gaussians with centres :math:`\\{-4,-2,0,2,4\\}^2`, std 0.05.
* :func:`gaussian_ring` / :func:`gaussian_grid`: the general versions.

Sampling uses a ``torch.Generator`` (or an integer seed, turned into one), so the same seed gives
bit-identical samples on every machine and does not touch the global random state.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable

import numpy as np
import torch

from ..utils import make_generator

__all__ = [
    "TOY_MIXTURES",
    "GaussianMixture2D",
    "eight_gaussians",
    "gaussian_grid",
    "gaussian_ring",
    "toy_mixture",
    "twenty_five_gaussians",
]

GeneratorLike = torch.Generator | int | None


def _positive_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    result = float(value)
    if not (math.isfinite(result) and result > 0.0):
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")
    return result


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    result = int(value)
    if result < 1:
        raise ValueError(f"{what} must be >= 1, got {result}")
    return result


def _as_generator(generator: GeneratorLike) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, numbers.Integral):
        raise TypeError(
            "generator must be a torch.Generator, an int seed or None, "
            f"got {type(generator).__name__}"
        )
    return make_generator(int(generator))


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixture2D:
    """An equal-weight mixture of isotropic 2-D Gaussians with a shared standard deviation.

    Attributes:
        centers: ``float64`` array ``(M, 2)`` of component means (stored read-only).
        std: the per-coordinate standard deviation of every component (> 0).
        name: a label for logs and result files, e.g. ``"8gaussians"``.
    """

    centers: np.ndarray
    std: float
    name: str = "gaussian_mixture"

    def __post_init__(self) -> None:
        centers = np.array(self.centers, dtype=np.float64, copy=True)
        if centers.ndim != 2 or centers.shape[1] != 2 or centers.shape[0] < 1:
            raise ValueError(f"centers must have shape (M, 2) with M >= 1, got {centers.shape}")
        if not np.all(np.isfinite(centers)):
            raise ValueError("centers must be finite")
        centers.setflags(write=False)
        object.__setattr__(self, "centers", centers)
        object.__setattr__(self, "std", _positive_float(self.std, "std"))
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {type(self.name).__name__}")

    @property
    def num_modes(self) -> int:
        """The number of components ``M``."""
        return int(self.centers.shape[0])

    def centers_tensor(
        self, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None
    ) -> torch.Tensor:
        """The centres as a ``(M, 2)`` tensor."""
        return torch.as_tensor(np.array(self.centers), dtype=dtype, device=device)

    def sample_with_modes(
        self,
        n: int,
        generator: GeneratorLike = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` points ``(n, 2)`` and the index ``(n,)`` (int64) of the component each came from.

        Args:
            n: number of samples (>= 1).
            generator: a ``torch.Generator``, an integer seed, or ``None`` (torch's global RNG).
            dtype: floating dtype of the points (computed in float64, then cast).
            device: where to put the result (sampling itself runs on the CPU).
        """
        n = _positive_int(n, "n")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        rng = _as_generator(generator)
        modes = torch.randint(self.num_modes, (n,), generator=rng, dtype=torch.int64)
        noise = torch.randn((n, 2), generator=rng, dtype=torch.float64)
        centers = torch.from_numpy(np.array(self.centers))  # writable float64 copy
        points = centers[modes] + self.std * noise
        return points.to(device=device, dtype=dtype), modes.to(device=device)

    def sample(
        self,
        n: int,
        generator: GeneratorLike = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """``n`` samples ``(n, 2)`` (float32 by default); see :meth:`sample_with_modes`."""
        return self.sample_with_modes(n, generator, dtype=dtype, device=device)[0]

    def nearest_mode(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For points ``(n, 2)``: the index of the nearest centre and the distance to it."""
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {tuple(points.shape)}")
        centers = self.centers_tensor(dtype=torch.float64, device=points.device)
        distances = torch.cdist(points.to(torch.float64), centers)
        nearest, index = distances.min(dim=1)
        return index, nearest

    def log_prob(self, points: torch.Tensor) -> torch.Tensor:
        """Exact log-density (nats) of the mixture at points ``(n, 2)``, in float64."""
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {tuple(points.shape)}")
        centers = self.centers_tensor(dtype=torch.float64, device=points.device)
        squared = ((points.to(torch.float64)[:, None, :] - centers[None]) ** 2).sum(dim=-1)
        log_components = -squared / (2.0 * self.std**2) - math.log(2.0 * math.pi * self.std**2)
        return torch.logsumexp(log_components, dim=1) - math.log(self.num_modes)


def _clean(values: np.ndarray, scale: float) -> np.ndarray:
    """Snap round-off residues (e.g. cos(pi/2) = 6e-17) to exact zeros."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.abs(values) < 8.0 * np.finfo(np.float64).eps * scale, 0.0, values)


def gaussian_ring(
    num_modes: int = 8, radius: float = 2.0, std: float = 0.02, *, name: str | None = None
) -> GaussianMixture2D:
    """``num_modes`` Gaussians at ``radius * (cos 2πk/M, sin 2πk/M)``, ``k = 0..M-1``."""
    num_modes = _positive_int(num_modes, "num_modes")
    radius = _positive_float(radius, "radius")
    angles = 2.0 * np.pi * np.arange(num_modes, dtype=np.float64) / num_modes
    centers = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture2D(
        centers=_clean(centers, radius), std=std, name=name or f"ring{num_modes}"
    )


def gaussian_grid(
    side: int = 5, spacing: float = 2.0, std: float = 0.05, *, name: str | None = None
) -> GaussianMixture2D:
    """``side²`` Gaussians on a square grid centred at the origin with the given ``spacing``.

    The centres are ``{(i - (side-1)/2) * spacing}²`` in row-major order (first coordinate slowest);
    ``side=5, spacing=2`` gives ``{-4, -2, 0, 2, 4}²``.
    """
    side = _positive_int(side, "side")
    spacing = _positive_float(spacing, "spacing")
    coords = (np.arange(side, dtype=np.float64) - (side - 1) / 2.0) * spacing
    first, second = np.meshgrid(coords, coords, indexing="ij")
    centers = np.stack([first.ravel(), second.ravel()], axis=1)
    return GaussianMixture2D(
        centers=_clean(centers, spacing), std=std, name=name or f"grid{side * side}"
    )


def eight_gaussians(radius: float = 2.0, std: float = 0.02) -> GaussianMixture2D:
    """The 8-Gaussian ring of spec 01 E1.1: centres ``2(cos 2πk/8, sin 2πk/8)``, std 0.02."""
    return gaussian_ring(8, radius, std, name="8gaussians")


def twenty_five_gaussians(spacing: float = 2.0, std: float = 0.05) -> GaussianMixture2D:
    """The 5x5 grid of spec 01 E1.1: centres ``{-4, -2, 0, 2, 4}²``, std 0.05."""
    return gaussian_grid(5, spacing, std, name="25gaussians")


#: The named toy mixtures of spec 01 E1.1.
TOY_MIXTURES: dict[str, Callable[[], GaussianMixture2D]] = {
    "8gaussians": eight_gaussians,
    "25gaussians": twenty_five_gaussians,
}


def toy_mixture(name: str) -> GaussianMixture2D:
    """A named toy mixture with its default parameters: ``"8gaussians"`` or ``"25gaussians"``.

    Case, ``-``, ``_`` and spaces are ignored (``"8-Gaussians"`` works).
    """
    if not isinstance(name, str):
        raise TypeError(f"mixture name must be a str, got {type(name).__name__}")
    key = "".join(name.lower().split()).replace("-", "").replace("_", "")
    if key not in TOY_MIXTURES:
        raise ValueError(f"unknown toy mixture {name!r}; valid names: {', '.join(TOY_MIXTURES)}")
    return TOY_MIXTURES[key]()
