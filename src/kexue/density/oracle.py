"""The linear-Gaussian oracle (probabilistic PCA; spec 02 §3.4) with exact ``log p(x)``.

``z ~ N(0, I_k)``, ``x | z ~ N(A z + b, sigma_x² I_D)``; marginal ``N(b, A Aᵀ + sigma_x² I)``;
posterior ``N(Σ Aᵀ (x - b) / sigma_x², Σ)`` with ``Σ = (I + Aᵀ A / sigma_x²)⁻¹``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

__all__ = ["LinearGaussian", "WithProposal"]


class LinearGaussian:
    """A :class:`~kexue.density.LatentVariableModel` whose encoder is the exact posterior.

    Args:
        A: ``[D, k]`` loading matrix; b: ``[D]`` offset; sigma_x: decoder standard deviation.
    """

    def __init__(self, A: torch.Tensor, b: torch.Tensor, sigma_x: float) -> None:
        if A.ndim != 2 or b.shape != (A.shape[0],):
            raise ValueError(f"need A [D, k] and b [D], got {tuple(A.shape)} and {tuple(b.shape)}")
        if not sigma_x > 0:
            raise ValueError(f"sigma_x must be positive, got {sigma_x!r}")
        self.A, self.b, self.sigma_x = A, b, float(sigma_x)
        k = A.shape[1]
        eye = torch.eye(k, dtype=A.dtype, device=A.device)
        self.posterior_covariance = torch.linalg.inv(eye + A.T @ A / self.sigma_x**2)

    @classmethod
    def random(
        cls, data_dim: int = 10, latent_dim: int = 2, sigma_x: float = 0.1, seed: int = 0
    ) -> LinearGaussian:
        """A random instance (float64), e.g. the spec's ``D = 10, k = 2, sigma_x = 0.1``."""
        generator = torch.Generator().manual_seed(seed)
        A = torch.randn(data_dim, latent_dim, generator=generator, dtype=torch.float64)
        b = torch.randn(data_dim, generator=generator, dtype=torch.float64)
        return cls(A, b, sigma_x)

    def marginal(self) -> MultivariateNormal:
        """The exact ``p(x) = N(b, A Aᵀ + sigma_x² I)``."""
        eye = torch.eye(self.A.shape[0], dtype=self.A.dtype, device=self.A.device)
        return MultivariateNormal(self.b, self.A @ self.A.T + self.sigma_x**2 * eye)

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` per point."""
        log_density: torch.Tensor = self.marginal().log_prob(x)  # type: ignore[no-untyped-call]
        return log_density

    def posterior(self, x: torch.Tensor) -> MultivariateNormal:
        """The exact posterior ``p(z | x)`` for a batch ``[B, D]``."""
        mean = (x - self.b) @ self.A @ self.posterior_covariance.T / self.sigma_x**2
        return MultivariateNormal(mean, self.posterior_covariance.expand(x.shape[0], -1, -1))

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` exact samples of ``x``."""
        generator = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.A.shape[1], generator=generator, dtype=self.A.dtype)
        noise = torch.randn(n, self.A.shape[0], generator=generator, dtype=self.A.dtype)
        return z @ self.A.T + self.b + self.sigma_x * noise

    # LatentVariableModel protocol
    def encode(self, x: torch.Tensor) -> Distribution:
        return self.posterior(x)

    def decode(self, z: torch.Tensor) -> Distribution:
        loc = z @ self.A.T + self.b
        return Independent(Normal(loc, torch.full_like(loc, self.sigma_x)), 1)

    def prior(self) -> Distribution:
        k = self.A.shape[1]
        loc = torch.zeros(k, dtype=self.A.dtype, device=self.A.device)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)


class WithProposal:
    """``model`` with its encoder replaced by ``proposal(x) -> Distribution`` (e.g. the prior or a
    deliberately mismatched posterior, C2.4)."""

    def __init__(self, model: LinearGaussian, proposal: Callable[[torch.Tensor], Distribution]):
        self.model = model
        self.proposal = proposal

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.proposal(x)

    def decode(self, z: torch.Tensor) -> Distribution:
        return self.model.decode(z)

    def prior(self) -> Distribution:
        return self.model.prior()
