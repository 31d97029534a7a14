"""Small table-cell formatters shared by experiments."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def format_mean_std(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    """``mean ± std`` (sample std) of ``values`` × ``scale`` with ``digits`` decimals; a single
    value alone."""
    array = np.asarray(values, dtype=np.float64) * scale
    if array.size == 1:
        return f"{array[0]:.{digits}f}"
    return f"{array.mean():.{digits}f} ± {array.std(ddof=1):.{digits}f}"
