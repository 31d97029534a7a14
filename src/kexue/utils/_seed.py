"""Seeding: one call makes Python, NumPy and torch (CPU and CUDA) reproducible."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["make_generator", "seed_everything"]

_MAX_SEED = 2**63 - 1


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= int(seed) <= _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**63 - 1], got {seed}")
    return int(seed)


def seed_everything(seed: int, *, deterministic: bool = False) -> torch.Generator:
    """Seed ``random``, NumPy's global state and torch (all devices); return a seeded CPU generator.

    Args:
        seed: a non-negative integer.
        deterministic: also ask torch for deterministic kernels
        (``torch.use_deterministic_algorithms``
            with ``warn_only=True``) and set ``CUBLAS_WORKSPACE_CONFIG`` so CUDA matmuls are
            repeatable.

    Returns:
        A ``torch.Generator`` seeded with ``seed``: pass it to samplers that take
        ``generator=`` so that
        their randomness does not depend on what else consumed the global stream.
    """
    seed = _check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeding the legacy global state is the point
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return make_generator(seed)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed`` (global state untouched)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(_check_seed(seed))
    return generator
