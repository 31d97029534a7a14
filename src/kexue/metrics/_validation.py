"""Input validation shared by the metrics.

Every public metric converts its inputs with these helpers, so that a wrong shape, dtype, an empty
input or a NaN fails early with a ``ValueError``/``TypeError`` that names the argument, says what
was wrong and what to do, instead of surfacing later as a NaN metric or a LAPACK error.
"""

from __future__ import annotations

import math
from numbers import Real

import numpy as np
import torch

__all__ = ["as_float64_array", "as_float64_matrix", "check_int", "check_real"]


def as_float64_array(values: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """A float64 numpy copy of a numeric numpy array or torch tensor (any shape, not checked)."""
    if isinstance(values, torch.Tensor):
        if values.is_complex():
            raise TypeError(f"{name} must be real-valued, got dtype {values.dtype}")
        return values.detach().to("cpu", torch.float64).numpy()
    if isinstance(values, np.ndarray):
        if values.dtype == np.bool_ or not (
            np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)
        ):
            raise TypeError(
                f"{name} must be a real numeric array (integer or floating), got dtype "
                f"{values.dtype}"
            )
        return values.astype(np.float64)
    raise TypeError(
        f"{name} must be a numpy array or torch tensor, got {type(values).__name__}; "
        "wrap lists with np.asarray(...)"
    )


def as_float64_matrix(
    values: np.ndarray | torch.Tensor, name: str, *, min_rows: int = 1
) -> np.ndarray:
    """A finite float64 ``(N, D)`` numpy copy of ``values`` with ``N >= min_rows`` and ``D >= 1``.

    Raises ``TypeError`` for non-array or non-numeric input and ``ValueError`` for a wrong number
    of dimensions, too few rows (including empty input), zero columns, or NaN/inf entries.
    """
    array = as_float64_array(values, name)
    if array.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (samples, features), got shape {tuple(array.shape)}; "
            "flatten per-sample dimensions first, e.g. x.reshape(len(x), -1)"
        )
    if array.shape[0] < min_rows:
        raise ValueError(
            f"{name} needs at least {min_rows} rows (samples), got {array.shape[0]} "
            f"(shape {tuple(array.shape)})"
        )
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no feature columns (shape {tuple(array.shape)})")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=1).sum())
        raise ValueError(
            f"{name} contains NaN or infinite values (in {bad} of {array.shape[0]} rows); "
            "remove or fix those samples first"
        )
    return array


def check_int(value: object, name: str, *, minimum: int) -> int:
    """``value`` as an ``int`` >= ``minimum``; bools and floats are rejected with ``TypeError``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(
    value: object,
    name: str,
    *,
    positive: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> float:
    """``value`` as a finite ``float`` (optionally > 0 and/or within ``[low, high]``)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} ({value!r})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    if positive and number <= 0:
        raise ValueError(f"{name} must be positive, got {number}")
    if low is not None and number < low:
        raise ValueError(f"{name} must be >= {low}, got {number}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {number}")
    return number
