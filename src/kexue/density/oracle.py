"""Exact-likelihood models for testing estimators of ``log p(x)`` (spec 02 §3.4).

* :class:`LinearGaussian` (probabilistic PCA): ``z ~ N(0, I_k)``, ``x | z ~ N(A z + b,
  sigma_x² I_D)``; marginal ``N(b, A Aᵀ + sigma_x² I)``; posterior ``N(Σ Aᵀ (x - b) / sigma_x²,
  Σ)`` with ``Σ = (I + Aᵀ A / sigma_x²)⁻¹``.
* :class:`LinearGaussianMixture`: the same decoder under a Gaussian-mixture prior
  ``Σ_c π_c N(μ_c, S_c)``; marginal ``Σ_c π_c N(A μ_c + b, A S_c Aᵀ + sigma_x² I)`` and posterior
  ``Σ_c π'_c N(m_c, Σ_c)`` with ``Σ_c = (S_c⁻¹ + Aᵀ A / sigma_x²)⁻¹``,
  ``m_c = Σ_c (S_c⁻¹ μ_c + Aᵀ (x - b) / sigma_x²)`` and ``π'_c ∝ π_c N(x; A μ_c + b,
  A S_c Aᵀ + sigma_x² I)`` (Bayes' rule per component), all in closed form.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    MixtureSameFamily,
    MultivariateNormal,
    Normal,
)

from ._protocol import LatentVariableModel

__all__ = ["LinearGaussian", "LinearGaussianMixture", "WithProposal"]


class _LinearDecoder:
    """The shared part of the oracles: ``x | z ~ N(A z + b, sigma_x² I)`` as ``decode`` and the
    exact posterior as ``encode`` (the LatentVariableModel protocol; ``prior`` per oracle)."""

    A: torch.Tensor
    b: torch.Tensor
    sigma_x: float

    def posterior(self, x: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.posterior(x)

    def decode(self, z: torch.Tensor) -> Distribution:
        loc = z @ self.A.T + self.b
        return Independent(Normal(loc, torch.full_like(loc, self.sigma_x)), 1)


class LinearGaussian(_LinearDecoder):
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

    # LatentVariableModel protocol (encode, decode: _LinearDecoder)
    def prior(self) -> Distribution:
        k = self.A.shape[1]
        loc = torch.zeros(k, dtype=self.A.dtype, device=self.A.device)
        return Independent(Normal(loc, torch.ones_like(loc)), 1)


class LinearGaussianMixture(_LinearDecoder):
    """A :class:`~kexue.density.LatentVariableModel` with a Gaussian-mixture prior, a linear
    Gaussian decoder and the exact (mixture) posterior as encoder; ``log p(x)`` in closed form.

    Args:
        A: ``[D, k]``; b: ``[D]``; sigma_x: decoder standard deviation; means: ``[C, k]``;
        covariances: ``[C, k, k]``; logits: ``[C]`` mixture logits.
    """

    def __init__(
        self,
        A: torch.Tensor,
        b: torch.Tensor,
        sigma_x: float,
        means: torch.Tensor,
        covariances: torch.Tensor,
        logits: torch.Tensor,
    ) -> None:
        if A.ndim != 2 or b.shape != (A.shape[0],):
            raise ValueError(f"need A [D, k] and b [D], got {tuple(A.shape)} and {tuple(b.shape)}")
        components, k = means.shape
        if covariances.shape != (components, k, k) or logits.shape != (components,):
            raise ValueError("need means [C, k], covariances [C, k, k] and logits [C]")
        if not sigma_x > 0:
            raise ValueError(f"sigma_x must be positive, got {sigma_x!r}")
        self.A, self.b, self.sigma_x = A, b, float(sigma_x)
        self.means, self.covariances, self.logits = means, covariances, logits
        precision = torch.linalg.inv(covariances)
        self._prior_precision_mean = (precision @ means[:, :, None])[..., 0]  # [C, k]
        self.posterior_covariances = torch.linalg.inv(precision + A.T @ A / self.sigma_x**2)

    @classmethod
    def random(
        cls,
        data_dim: int = 10,
        latent_dim: int = 2,
        sigma_x: float = 0.1,
        components: int = 3,
        seed: int = 0,
    ) -> LinearGaussianMixture:
        """A random instance (float64): component means ``N(0, 4 I)``, isotropic covariances with
        standard deviations in ``[0.3, 1]``, random weights."""
        g, f64 = torch.Generator().manual_seed(seed), torch.float64
        A = torch.randn(data_dim, latent_dim, generator=g, dtype=f64)
        b = torch.randn(data_dim, generator=g, dtype=f64)
        means = 2 * torch.randn(components, latent_dim, generator=g, dtype=f64)
        scales = 0.3 + 0.7 * torch.rand(components, generator=g, dtype=f64)
        eye = torch.eye(latent_dim, dtype=f64)
        logits = torch.randn(components, generator=g, dtype=f64)
        return cls(A, b, sigma_x, means, scales[:, None, None] ** 2 * eye, logits)

    def marginal(self) -> MixtureSameFamily:
        """The exact ``p(x)``, a Gaussian mixture."""
        eye = torch.eye(self.A.shape[0], dtype=self.A.dtype, device=self.A.device)
        loc = self.means @ self.A.T + self.b
        covariance = self.A @ self.covariances @ self.A.T + self.sigma_x**2 * eye
        return MixtureSameFamily(
            Categorical(logits=self.logits), MultivariateNormal(loc, covariance)
        )

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x)`` per point."""
        log_density: torch.Tensor = self.marginal().log_prob(x)  # type: ignore[no-untyped-call]
        return log_density

    def posterior(self, x: torch.Tensor) -> MixtureSameFamily:
        """The exact posterior ``p(z | x)`` for a batch ``[B, D]`` (a mixture per point)."""
        eye = torch.eye(self.A.shape[0], dtype=self.A.dtype, device=self.A.device)
        component_marginals = MultivariateNormal(
            self.means @ self.A.T + self.b,
            self.A @ self.covariances @ self.A.T + self.sigma_x**2 * eye,
        )
        log_evidence: torch.Tensor = component_marginals.log_prob(  # type: ignore[no-untyped-call]
            x[:, None, :]
        )  # [B, C]
        logits = torch.log_softmax(self.logits, 0) + log_evidence
        data_term = (x - self.b) @ self.A / self.sigma_x**2  # [B, k]
        natural = self._prior_precision_mean[None] + data_term[:, None, :]  # [B, C, k]
        loc = (self.posterior_covariances[None] @ natural[..., None])[..., 0]
        covariance = self.posterior_covariances.expand(x.shape[0], -1, -1, -1)
        return MixtureSameFamily(Categorical(logits=logits), MultivariateNormal(loc, covariance))

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` exact samples of ``x``."""
        generator = torch.Generator().manual_seed(seed)
        component = torch.multinomial(
            torch.softmax(self.logits, 0), n, replacement=True, generator=generator
        )
        chol = torch.linalg.cholesky(self.covariances)[component]
        eps = torch.randn(n, self.A.shape[1], generator=generator, dtype=self.A.dtype)
        z: torch.Tensor = self.means[component] + (chol @ eps[..., None])[..., 0]
        noise = torch.randn(n, self.A.shape[0], generator=generator, dtype=self.A.dtype)
        return z @ self.A.T + self.b + self.sigma_x * noise

    # LatentVariableModel protocol (encode, decode: _LinearDecoder)
    def prior(self) -> Distribution:
        return MixtureSameFamily(
            Categorical(logits=self.logits), MultivariateNormal(self.means, self.covariances)
        )


class WithProposal:
    """``model`` with its encoder replaced by ``proposal(x) -> Distribution`` (e.g. the prior or a
    deliberately mismatched posterior, C2.4)."""

    def __init__(
        self, model: LatentVariableModel, proposal: Callable[[torch.Tensor], Distribution]
    ) -> None:
        self.model = model
        self.proposal = proposal

    def encode(self, x: torch.Tensor) -> Distribution:
        return self.proposal(x)

    def decode(self, z: torch.Tensor) -> Distribution:
        return self.model.decode(z)

    def prior(self) -> Distribution:
        return self.model.prior()
