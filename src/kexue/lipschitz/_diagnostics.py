"""Diagnostics for normalised critics: discontinuity along a line (C1.3), gradient norms of the
normalised critic at given points (C1.10), and linear-region ids for plotting (spec 01 §7.1, E1.3).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ._normalize import Critic, NormalizationMethod, normalize_gradient, per_sample_norm

__all__ = ["LineJumps", "critic_gradient_norms", "line_jumps", "linear_region_ids"]


@dataclasses.dataclass(frozen=True)
class LineJumps:
    """Largest consecutive differences of ``f`` and ``f_hat`` sampled along a line with ``step``."""

    step: float
    largest_jump_f: float
    largest_jump_f_hat: float
    largest_difference_quotient_f_hat: float  # max |Δf̂| / |Δx| over consecutive samples


@torch.no_grad()
def line_jumps(
    critic: Critic,
    start: torch.Tensor,
    direction: torch.Tensor,
    step: float,
    *,
    extent: float = 3.0,
    method: NormalizationMethod = "gn",
    chunk_size: int = 200_000,
) -> LineJumps:
    """Sample ``x(s) = start + s·direction`` for ``s ∈ [−extent, extent]`` every ``step``.

    For a piecewise-linear critic the largest jump of ``f`` shrinks linearly with ``step`` while
    that of a GN critic does not: it jumps across linear-region boundaries (C1.3).
    """
    if start.ndim != 1 or direction.shape != start.shape:
        raise ValueError("start and direction must be 1-D tensors of equal shape (one sample)")
    if not step > 0 or not extent > 0:
        raise ValueError(f"step and extent must be positive, got {step}, {extent}")
    positions = torch.arange(-extent, extent + step / 2, step, dtype=start.dtype)
    length = float(direction.norm())
    largest_f = largest_f_hat = 0.0
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    for chunk in torch.split(positions, chunk_size):
        points = start + chunk[:, None] * direction
        output = normalize_gradient(critic, points, method, create_graph=False)
        f, f_hat = output.f, output.f_hat
        if previous is not None:
            f, f_hat = torch.cat([previous[0], f]), torch.cat([previous[1], f_hat])
        if f.numel() > 1:
            largest_f = max(largest_f, float(f.diff().abs().max()))
            largest_f_hat = max(largest_f_hat, float(f_hat.diff().abs().max()))
        previous = (f[-1:], f_hat[-1:])
    return LineJumps(step, largest_f, largest_f_hat, largest_f_hat / (step * length))


def critic_gradient_norms(
    critic: Critic, x: torch.Tensor, method: NormalizationMethod | None = None
) -> torch.Tensor:
    """Per-sample ‖∇ₓ f̂(x)‖ of the normalised critic (or ‖∇ₓ f(x)‖ when ``method`` is None)."""
    inputs = x.detach().requires_grad_(True)
    with torch.enable_grad():
        if method is None:
            scores = critic(inputs).reshape(inputs.shape[0])
        else:
            scores = normalize_gradient(critic, inputs, method, create_graph=True).f_hat
        (gradient,) = torch.autograd.grad(scores.sum(), inputs)
    return per_sample_norm(gradient).detach()


_PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6, nn.Hardtanh)


@torch.no_grad()
def linear_region_ids(critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An integer id per sample that changes whenever the activation pattern changes.

    Records the sign of the input of every piecewise-linear activation module (ReLU, LeakyReLU,
    ...) and hashes the pattern; equal ids mean the same linear region (up to hash collisions).
    """
    patterns: list[torch.Tensor] = []

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        patterns.append((inputs[0] > 0).flatten(1))

    handles = [m.register_forward_pre_hook(record) for m in critic.modules()
               if isinstance(m, _PIECEWISE_LINEAR)]  # fmt: skip
    if not handles:
        raise ValueError("the critic has no piecewise-linear activation modules")
    try:
        critic(x)
    finally:
        for handle in handles:
            handle.remove()
    bits = torch.cat(patterns, dim=1).to(torch.int64)
    weights = torch.randint(
        1, 2**61, (bits.shape[1],), generator=torch.Generator().manual_seed(0), dtype=torch.int64
    )
    return (bits * weights).sum(dim=1)
