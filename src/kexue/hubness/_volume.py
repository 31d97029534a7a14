"""The collapsing unit ball: volume of the unit n-ball over its circumscribed cube (spec 10 §2, §5).

    V_n = π^{n/2} / Γ(n/2 + 1),      V_n / 2^n → 0 faster than exponentially     (spec 10 §2)

The ratio underflows float64 from n = 340 on (at n = 512 it is 10^-533.8, far below the smallest
subnormal 4.9·10^-324), so :func:`log_ball_cube_ratio` works in log space with :func:`math.lgamma`
(spec 10 §5, C10.1); :func:`ball_cube_ratio` exponentiates it and returns 0.0 where float64
underflows (documented, not an error).
"""

from __future__ import annotations

import math

__all__ = ["ball_cube_ratio", "log_ball_cube_ratio", "log_unit_ball_volume"]


def _check_dimension(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"the dimension n must be an int, got {type(n).__name__} ({n!r})")
    if n < 1:
        raise ValueError(f"the dimension n must be >= 1, got {n}")
    return n


def log_unit_ball_volume(n: int) -> float:
    """log V_n = (n/2) log π − log Γ(n/2 + 1), the natural log of the unit n-ball's volume."""
    dimension = _check_dimension(n)
    return 0.5 * dimension * math.log(math.pi) - math.lgamma(0.5 * dimension + 1.0)


def log_ball_cube_ratio(n: int) -> float:
    """log(V_n / 2^n) = (n/2) log π − log Γ(n/2 + 1) − n log 2 (spec 10 §5, C10.1).

    Finite for every n ≥ 1 (strictly decreasing); use it instead of :func:`ball_cube_ratio` once
    n exceeds a few hundred.
    """
    dimension = _check_dimension(n)
    return log_unit_ball_volume(dimension) - dimension * math.log(2.0)


def ball_cube_ratio(n: int) -> float:
    """V_n / 2^n, the fraction of the cube [-1, 1]^n inside the unit ball (spec 10 §2).

    Also the acceptance rate of rejection-sampling the ball from the cube. Returns 0.0 where the
    value is below float64's smallest subnormal (n ≥ 340; at n = 512 the ratio is 10^-533.8): use
    :func:`log_ball_cube_ratio` there.
    """
    return math.exp(log_ball_cube_ratio(n))
