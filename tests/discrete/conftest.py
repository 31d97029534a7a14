"""Shared fixtures of the Perturb-Max tests (spec 09): the reference logits of §3 and an
adaptive-quadrature oracle (scipy.integrate.quad in float64)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import integrate, stats

#: spec 09 §3: μ = [1, 0.3, −0.5, 2, 0]
MU = (1.0, 0.3, -0.5, 2.0, 0.0)
#: spec 09 §3: normal noise, adaptive quadrature
NORMAL_REFERENCE = (0.200403, 0.067400, 0.014429, 0.678418, 0.039349)
#: spec 09 §3 / C9.8: logistic noise
LOGISTIC_REFERENCE = (0.229, 0.127, 0.062, 0.485, 0.097)

SCIPY_LAWS: dict[str, object] = {
    "normal": stats.norm(),
    "gumbel": stats.gumbel_r(),
    "logistic": stats.logistic(),
    "uniform": stats.uniform(loc=-0.5, scale=1.0),
    "exponential": stats.expon(),
}


def adaptive_probs(
    mu: np.ndarray | tuple[float, ...], noise: str, scale: float = 1.0
) -> np.ndarray:
    """p_i = ∫ p(ε) ∏_{j≠i} Φ(μ_i − μ_j + ε) dε by scipy.integrate.quad (the oracle)."""
    law = SCIPY_LAWS[noise]
    z = np.asarray(mu, dtype=np.float64) / scale
    low, high = law.support()  # type: ignore[attr-defined]
    low, high = max(low, -40.0), min(high, 40.0)
    out = np.empty(len(z))
    for i in range(len(z)):
        others = np.delete(z, i)

        def integrand(e: float, i: int = i, others: np.ndarray = others) -> float:
            return float(law.pdf(e) * np.prod(law.cdf(z[i] - others + e)))  # type: ignore[attr-defined]

        breaks = (
            sorted(
                {float(b) for b in (others - z[i] - 0.5) if low < b < high}
                | {float(b) for b in (others - z[i] + 0.5) if low < b < high}
            )
            if noise == "uniform"
            else None
        )
        out[i] = integrate.quad(integrand, low, high, epsabs=1e-14, epsrel=1e-13, limit=400,
                                points=breaks)[0]  # fmt: skip
    return out


@pytest.fixture(scope="session")
def oracle() -> Callable[..., np.ndarray]:
    return adaptive_probs
