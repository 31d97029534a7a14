"""Random piecewise-linear critics (spec 01 §8: MLP 2-64-64-1 or a small CNN, default init)."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def relu_mlp(
    seed: int,
    *,
    widths: tuple[int, ...] = (2, 64, 64, 1),
    bias: bool = True,
    activation: type[nn.Module] = nn.ReLU,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(a, b, bias=bias))
        if index < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers).to(dtype)


def small_cnn(seed: int, *, dtype: torch.dtype = torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 1),
    ).to(dtype)  # fmt: skip


def activation_pattern(network: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Signs of every pre-activation (the linear region a point lies in), shape [B, units]."""
    signs = []
    with torch.no_grad():
        for layer in network:
            x = layer(x)
            if isinstance(layer, nn.Linear) and layer is not network[-1]:
                signs.append(x > 0)
    return torch.cat(signs, dim=1)
