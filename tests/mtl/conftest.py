"""MTL tests use tiny tensors: one intra-op thread avoids thread-pool contention (on a loaded
2-core machine two threads made tiny ops ~100-1000x slower). Shared builders: random task
gradients and a small float64 multi-task MLP (shared trunk, one linear head per task)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# (n, d) sizes and seeds of spec 07 §5.
SIZES = [(2, 5), (3, 10), (5, 20), (8, 6), (10, 3)]


def random_grads(n: int, d: int, seed: int) -> torch.Tensor:
    """An ``n × d`` float64 matrix of standard normal task gradients."""
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, d)))


class MultiTaskNet(nn.Module):
    """Trunk 5 → 8 → 6 (tanh), one linear head per task; regression tasks with scales."""

    def __init__(
        self, n_tasks: int = 3, seed: int = 0, scales: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(6, 1) for _ in range(n_tasks)])
        self.double()
        gen = torch.Generator().manual_seed(seed + 1)
        self.x = torch.randn(12, 5, generator=gen, dtype=torch.float64)
        if scales is None:
            scales = [1.0, 10.0, 0.1, 3.0, 30.0][:n_tasks] + [1.0] * max(0, n_tasks - 5)
        self.targets = [
            scale * torch.randn(12, 1, generator=gen, dtype=torch.float64) + scale
            for scale in scales
        ]

    def shared(self) -> list[torch.Tensor]:
        return list(self.trunk.parameters())

    def task_params(self) -> list[torch.Tensor]:
        return list(self.heads.parameters())

    def features_and_losses(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.trunk(self.x)
        losses = [
            (head(features) - y).pow(2).mean()
            for head, y in zip(self.heads, self.targets, strict=True)
        ]
        return features, losses

    def losses(self) -> list[torch.Tensor]:
        return self.features_and_losses()[1]


def flat_grad(scalar: torch.Tensor, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """∇ of a scalar w.r.t. ``params``, flattened and concatenated (zeros where unused)."""
    grads = torch.autograd.grad(scalar, list(params), retain_graph=True, allow_unused=True)
    return torch.cat(
        [
            (torch.zeros_like(p) if g is None else g).reshape(-1)
            for p, g in zip(params, grads, strict=True)
        ]
    )


def grads_of(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The ``.grad`` of ``params`` flattened and concatenated (zeros where None)."""
    return torch.cat(
        [(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in params]
    )


def per_task_matrix(losses: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> torch.Tensor:
    """G with rows ∇Lᵢ (explicit per-task autograd, the reference for the library's Jacobian)."""
    return torch.stack([flat_grad(loss, params) for loss in losses])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
