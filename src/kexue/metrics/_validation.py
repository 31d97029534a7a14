"""Input validation shared by the metrics."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_float64_matrix"]


def as_float64_matrix(
    values: np.ndarray | torch.Tensor, name: str, *, min_rows: int = 1
) -> np.ndarray:
    """A finite float64 ``(N, D)`` numpy copy of ``values``, or a clear
    ``ValueError``/``TypeError``."""
    if isinstance(values, torch.Tensor):
        array = values.detach().to("cpu", torch.float64).numpy()
    elif isinstance(values, np.ndarray):
        if not (np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric, got dtype {values.dtype}")
        array = values.astype(np.float64)
    else:
        raise TypeError(
            f"{name} must be a numpy array or torch tensor, got {type(values).__name__}"
        )
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {array.shape}")
    if array.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {array.shape[0]}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns (shape {array.shape})")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array
