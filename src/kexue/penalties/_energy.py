"""Complexity measures of spec 03 §3 (3) and §4.2: Dirichlet energy and 1-D arc length."""

from __future__ import annotations

from typing import Literal

import torch

from ._checks import check_finite_float, check_scalar_output
from ._gradients import ScalarFn, input_gradient_norm

__all__ = ["arc_length_1d", "dirichlet_energy"]


def dirichlet_energy(f: ScalarFn, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """``mean_b ‖∇ₓf(x_b)‖²`` over the points ``x`` ``[N, ...]`` (spec 03 §3 (3), §4.2), 0-dim.

    A Monte-Carlo (or grid) estimate of ``E_x ‖∇ₓf‖²``; ``create_graph=True`` keeps it
    differentiable.
    """
    norms = input_gradient_norm(f, x, create_graph=create_graph)
    return norms.pow(2).mean()


def arc_length_1d(
    f: ScalarFn,
    grid: torch.Tensor,
    *,
    method: Literal["trapezoid", "polyline"] = "trapezoid",
) -> torch.Tensor:
    """Arc length ``∫ √(1 + f′(x)²) dx`` of 1-D ``f`` over a sorted grid ``[N]`` (spec 03 §4.2).

    ``f`` maps ``[N, 1]`` to ``[N]`` or ``[N, 1]``. ``method="trapezoid"`` (default): ``f′`` by
    autograd at the grid points and the trapezoid rule on ``√(1 + f′²)``; ``method="polyline"``:
    the length ``Σ √(Δx² + Δf²)`` of the polyline through ``(x_i, f(x_i))`` (no derivative, a
    lower bound of the true length). Both are exact for affine ``f``.
    """
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"grid must be a torch.Tensor, got {type(grid).__name__}")
    if grid.ndim != 1:
        raise ValueError(f"grid must be 1-D [N], got shape {tuple(grid.shape)}")
    check_finite_float(grid, "grid", min_ndim=1)
    if grid.shape[0] < 2:
        raise ValueError("grid needs at least 2 points")
    if not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError("grid must be strictly increasing")
    points = grid.detach().unsqueeze(1)
    if method == "trapezoid":
        slope = input_gradient_norm(f, points)  # |f'(x)| in 1-D
        integrand = torch.sqrt(1 + slope.pow(2))
        return torch.trapezoid(integrand, grid.detach())
    if method == "polyline":
        with torch.no_grad():
            values = check_scalar_output(f(points), grid.shape[0])
            steps = torch.sqrt(torch.diff(grid.detach()).pow(2) + torch.diff(values).pow(2))
        return steps.sum()
    raise ValueError(f"method must be 'trapezoid' or 'polyline', got {method!r}")
