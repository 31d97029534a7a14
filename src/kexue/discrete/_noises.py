"""Noise families for Perturb Max (spec 09 §2, §5.1, §5.2; post 9085).

A noise law is an object with the density, the CDF, its logarithm and the quantile of a
*standardised* variable ε (location and scale fixed by the family), plus a ``scale`` σ (the
temperature): the perturbed logits are μ + σε. Because p(μ; σ) = p(μ/σ; 1) (spec 09 §3), the
probability code works with the standardised methods on μ/σ.

Protocol for a user-defined noise (subclass :class:`Noise`): implement

* ``standard_log_cdf(x)`` — log Φ(x), finite or −inf (no NaN), differentiable where finite;
* ``standard_icdf(q)`` — Φ⁻¹(q) for q in (0, 1) (quadrature nodes and sampling);
* ``standard_log_pdf(x)`` — log p(x) (Monte-Carlo checks, ``pdf``);

and optionally ``log_cdf_derivatives(x) -> (g, g', g'')`` with ``log_cdf_derivative_bound(k)``
(sup |g⁽ᵏ⁾| for k = 6) to opt into the interpolated many-classes path (spec 09 §5.1b), and
``log_difference_cdf(d)`` (log P[ε₂ − ε₁ ≤ d]) for the n = 2 closed form. Everything else
(``cdf``, ``log_cdf``, ``pdf``, ``log_pdf``, ``icdf``/``quantile``, ``sample``,
``tail_cutoff``) is derived. :class:`CustomNoise` wraps three callables instead.

Families: :class:`Gumbel` (gives softmax exactly), :class:`Normal` (Thurstone/probit),
:class:`Logistic`, :class:`Uniform` (on [−½, ½]), :class:`Exponential` (rate 1). Bounded or
half-bounded laws have log Φ = −inf outside their support; those branches are computed with
``torch.where`` on safe inputs so that no NaN gradient appears (spec 09 pitfall 2).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

__all__ = [
    "NOISES",
    "CustomNoise",
    "Exponential",
    "Gumbel",
    "Logistic",
    "Noise",
    "Normal",
    "Uniform",
    "as_noise",
]

_SQRT_2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)
_EULER_GAMMA = 0.5772156649015329


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a real number (the noise's temperature), got {scale!r}")
    value = float(scale)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a noise's scale must be finite and > 0, got {value}")
    return value


class Noise:
    """Base class and protocol of a noise law (module docstring). ``scale`` σ > 0."""

    name: str = "custom"
    #: the n = 2 closed form of :meth:`log_difference_cdf` exists
    has_difference_cdf: bool = False
    #: ``log_cdf_derivatives`` is implemented (the interpolated many-classes path, §5.1b)
    has_log_cdf_derivatives: bool = False
    #: the standardised law's support (lo, hi); the density must be smooth (analytic) inside it.
    #: Finite ends are where the exact quadrature places breakpoints (spec 09 §5.1).
    support: tuple[float, float] = (-math.inf, math.inf)

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = _check_scale(scale)

    # -- protocol: standardised law (σ = 1) ---------------------------------------------------

    def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """log Φ(x) of the standardised law."""
        raise NotImplementedError

    def standard_icdf(self, q: torch.Tensor) -> torch.Tensor:
        """Φ⁻¹(q) of the standardised law, q in (0, 1)."""
        raise NotImplementedError

    def standard_log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of the standardised law."""
        raise NotImplementedError

    def log_difference_cdf(self, d: torch.Tensor) -> torch.Tensor:
        """log P[ε₂ − ε₁ ≤ d] (standardised): the n = 2 closed form p₁ = F(μ₁ − μ₂) (§3)."""
        raise NotImplementedError(f"noise {self.name!r} has no closed form for n = 2")

    def log_cdf_derivatives(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(g, g′, g″) with g = log Φ (standardised): the interpolated path of spec 09 §5.1b."""
        raise NotImplementedError(f"noise {self.name!r} does not provide log-CDF derivatives")

    def log_cdf_derivative_bound(self, order: int) -> float:
        """sup over x of |g⁽ᵒʳᵈᵉʳ⁾(x)|, g = log Φ (standardised); used for the error bound."""
        raise NotImplementedError(f"noise {self.name!r} does not provide derivative bounds")

    # -- derived, in the scaled variable σε ----------------------------------------------------

    def log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """log P[σε ≤ x]."""
        return self.standard_log_cdf(x / self.scale)

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """P[σε ≤ x]."""
        return torch.exp(self.log_cdf(x))

    def log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        """log density of σε."""
        return self.standard_log_pdf(x / self.scale) - math.log(self.scale)

    def pdf(self, x: torch.Tensor) -> torch.Tensor:
        """Density of σε."""
        return torch.exp(self.log_pdf(x))

    def icdf(self, q: torch.Tensor) -> torch.Tensor:
        """Quantile of σε, q in (0, 1)."""
        return self.scale * self.standard_icdf(q)

    def quantile(self, q: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`icdf`."""
        return self.icdf(q)

    def sample(
        self,
        shape: Sequence[int] | torch.Size,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw σε of ``shape`` in ``dtype`` (drawn in float32, or float64 for float64;
        fp16/bf16 requests are cast at the end, clamped to the finite range: no ±inf/NaN,
        spec 09 §5.2, C9.9). Inverse-CDF sampling from the *tail-patched* uniform of
        :mod:`._sampling`: float32 speed, and the tails are reached down to a mass of 2⁻⁷⁴ per
        side (Gumbel up to 51.3, logistic ±51.3, normal ±9.68, exponential 51.3), so classes
        with p ≥ 10⁻¹² are sampled (issue 19 item 5). Raises ValueError/TypeError for a bad
        ``shape``, ``dtype``, ``device`` or a ``generator`` on another device."""
        from ._sampling import sample_noise

        return sample_noise(self, shape, generator=generator, dtype=dtype, device=device)

    def tail_cutoff(self, tolerance: float) -> float:
        """The smallest x (standardised, to bisection accuracy, rounded up) with
        |log Φ(x)| ≤ ``tolerance``: above it a CDF factor is 1 to that tolerance."""
        if not 0 < tolerance < 1:
            raise ValueError(f"tolerance must be in (0, 1), got {tolerance}")

        def small(x: float) -> bool:
            value = float(self.standard_log_cdf(torch.tensor([x], dtype=torch.float64))[0])
            return -value <= tolerance

        high = 1.0
        while not small(high):
            high *= 2.0
            if high > 1e12:
                raise ValueError(f"noise {self.name!r}: log Φ(x) does not reach 0")
        low = -1.0
        while small(low):
            low *= 2.0
            if low < -1e12:
                return low
        for _ in range(200):
            middle = 0.5 * (low + high)
            if small(middle):
                high = middle
            else:
                low = middle
        return high

    def expected_value(self) -> float | None:
        """E[ε] of the standardised law when known (used for the exact Gumbel expected max)."""
        return None

    def with_scale(self, scale: float) -> Noise:
        """A copy with another scale."""
        other = copy.copy(self)
        other.scale = _check_scale(scale)
        return other

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scale={self.scale:g})"


# --------------------------------------------------------------------------------------------
# Normal noise: log Φ with a stable gradient (the ratio φ/Φ through erfcx).


def _inverse_mills(x: torch.Tensor) -> torch.Tensor:
    """r(x) = φ(x)/Φ(x) = √(2/π)/erfcx(−x/√2), stable for every x (no exp overflow)."""
    result: torch.Tensor = _SQRT_2_OVER_PI / torch.special.erfcx(-x / _SQRT_2)
    return result


class _NormalLogCdf(torch.autograd.Function):
    """log Φ(x) by ``torch.special.log_ndtr`` with the derivative r(x) = φ/Φ computed through
    erfcx: torch's own gradient of log_ndtr is exp(log φ − log Φ), which loses all accuracy in
    float32 for x ≲ −1e3 (two huge numbers subtracted). Twice differentiable."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = torch.special.log_ndtr(x)
        return result

    @staticmethod
    def setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[torch.Tensor],
                      output: torch.Tensor) -> None:  # fmt: skip
        (x,) = inputs
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * _inverse_mills(x)


def normal_log_cdf(x: torch.Tensor) -> torch.Tensor:
    """log Φ(x) for the standard normal, with a stable (erfcx-based) gradient."""
    result: torch.Tensor = _NormalLogCdf.apply(x)  # type: ignore[no-untyped-call]
    return result


class Normal(Noise):
    """Standard normal noise (Thurstone Case V / probit for n = 2; spec 09 §3)."""

    name = "normal"
    has_difference_cdf = True
    has_log_cdf_derivatives = True
    #: sup |dᵏ/dxᵏ log Φ(x)| for k = 4..7: the maximum on a grid of step 0.069 over [−40, 15]
    #: (60-digit arithmetic; attained near x ≈ 1–2, the derivatives decay like |x|^(2−k)
    #: below and exponentially above) plus the next derivative's bound × half a step, rounded up.
    DERIVATIVE_BOUNDS: ClassVar[dict[int, float]] = {4: 0.2, 5: 0.27, 6: 0.48, 7: 1.0}

    def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        return normal_log_cdf(x)

    def standard_icdf(self, q: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = torch.special.ndtri(q)
        return result

    def standard_log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        return -0.5 * x * x - _LOG_SQRT_2PI

    def log_difference_cdf(self, d: torch.Tensor) -> torch.Tensor:
        """ε₂ − ε₁ ~ N(0, 2): p₁ = Φ((μ₁ − μ₂)/√2) (spec 09 §3)."""
        return normal_log_cdf(d / _SQRT_2)

    def log_cdf_derivatives(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ratio = _inverse_mills(x)
        return normal_log_cdf(x), ratio, -ratio * (x + ratio)

    def log_cdf_derivative_bound(self, order: int) -> float:
        return self.DERIVATIVE_BOUNDS[order]

    def expected_value(self) -> float:
        return 0.0

    def sample(
        self,
        shape: Sequence[int] | torch.Size,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """σz: ``torch.randn`` for |z| ≤ 4.5, the exact tail law beyond (reach ±9.68;
        :mod:`._sampling`); arguments as :meth:`Noise.sample`."""
        from ._sampling import sample_noise

        return sample_noise(self, shape, generator=generator, dtype=dtype, device=device)


class Gumbel(Noise):
    """Standard Gumbel noise, Φ(x) = exp(−e^(−x)): Perturb Max gives softmax exactly (§2)."""

    name = "gumbel"
    has_difference_cdf = True

    def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        # −e^(−x) overflows to −inf below −log(max float): a −inf branch with a zero gradient
        limit = math.log(torch.finfo(x.dtype).max) - 1.0
        safe = x.clamp_min(-limit)
        return torch.where(x < -limit, torch.full_like(x, -math.inf), -torch.exp(-safe))

    def standard_icdf(self, q: torch.Tensor) -> torch.Tensor:
        return -torch.log(-torch.log(q))

    def standard_log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        return -x - torch.exp(-x)

    def log_difference_cdf(self, d: torch.Tensor) -> torch.Tensor:
        """ε₂ − ε₁ is logistic: p₁ = σ(μ₁ − μ₂)."""
        return F.logsigmoid(d)

    def expected_value(self) -> float:
        return _EULER_GAMMA


class Logistic(Noise):
    """Standard logistic noise, Φ = sigmoid. Not softmax for n ≥ 3 (Yellott; C9.8)."""

    name = "logistic"
    has_log_cdf_derivatives = True
    #: sup |dᵏ/dxᵏ log σ(x)| for k = 4..7 (1/8, 0.128, 1/4, 0.408 on a grid of step 0.04 over
    #: [−40, 40] in 40-digit arithmetic), rounded up.
    DERIVATIVE_BOUNDS: ClassVar[dict[int, float]] = {4: 0.13, 5: 0.14, 6: 0.26, 7: 0.45}

    def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(x)

    def standard_icdf(self, q: torch.Tensor) -> torch.Tensor:
        return torch.logit(q)

    def standard_log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        return F.logsigmoid(x) + F.logsigmoid(-x)

    def log_cdf_derivatives(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        upper = torch.sigmoid(-x)
        return F.logsigmoid(x), upper, -upper * torch.sigmoid(x)

    def log_cdf_derivative_bound(self, order: int) -> float:
        return self.DERIVATIVE_BOUNDS[order]

    def expected_value(self) -> float:
        return 0.0


class Uniform(Noise):
    """Uniform noise on [−½, ½] (times σ). n = 2: p₁ = ½ + d − d²/2 for d = μ₁ − μ₂ in [0, 1]
    (spec 09 §3). Gaps larger than σ give exact zeros (log p = −inf)."""

    name = "uniform"
    has_difference_cdf = True
    support = (-0.5, 0.5)

    def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x > -0.5) & (x < 0.5)
        safe = torch.where(inside, x, torch.zeros_like(x))
        value = torch.log1p(safe - 0.5)
        outside = torch.where(x >= 0.5, torch.zeros_like(x), torch.full_like(x, -math.inf))
        return torch.where(inside, value, outside)

    def standard_icdf(self, q: torch.Tensor) -> torch.Tensor:
        return q - 0.5

    def standard_log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x >= -0.5) & (x <= 0.5)
        return torch.where(inside, torch.zeros_like(x), torch.full_like(x, -math.inf))

    def log_difference_cdf(self, d: torch.Tensor) -> torch.Tensor:
        """Triangular law on [−1, 1]: (1 + d)²/2 on [−1, 0], 1 − (1 − d)²/2 on [0, 1]."""
        lower = (d > -1) & (d <= 0)
        upper = (d > 0) & (d < 1)
        d_lower = torch.where(lower, d, torch.zeros_like(d))
        d_upper = torch.where(upper, d, torch.full_like(d, 0.5))
        value_lower = 2.0 * torch.log1p(d_lower) - _LOG_2
        value_upper = torch.log1p(-0.5 * (1.0 - d_upper) ** 2)
        outside = torch.where(d >= 1, torch.zeros_like(d), torch.full_like(d, -math.inf))
        return torch.where(lower, value_lower, torch.where(upper, value_upper, outside))

    def expected_value(self) -> float:
        return 0.0


class Exponential(Noise):
    """Exponential noise with rate 1 (times σ). n = 2: ε₂ − ε₁ is Laplace(0, 1)."""

    name = "exponential"
    has_difference_cdf = True
    support = (0.0, math.inf)

    def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        positive = x > 0
        safe = torch.where(positive, x, torch.ones_like(x))
        value = torch.log(-torch.expm1(-safe))
        return torch.where(positive, value, torch.full_like(x, -math.inf))

    def standard_icdf(self, q: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-q)

    def standard_log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, -x, torch.full_like(x, -math.inf))

    def log_difference_cdf(self, d: torch.Tensor) -> torch.Tensor:
        """Laplace(0, 1): ½eᵈ for d < 0, 1 − ½e⁻ᵈ for d ≥ 0."""
        negative = d < 0
        d_negative = torch.where(negative, d, torch.zeros_like(d))
        d_positive = torch.where(negative, torch.zeros_like(d), d)
        return torch.where(
            negative, d_negative - _LOG_2, torch.log1p(-0.5 * torch.exp(-d_positive))
        )

    def expected_value(self) -> float:
        return 1.0


class CustomNoise(Noise):
    """A noise law from three callables on the standardised variable: ``log_cdf(x)``,
    ``icdf(q)`` and ``log_pdf(x)`` (needed by the exact quadrature and ``pdf``; optional for the
    fixed rules). ``support`` (lo, hi): the density must be smooth inside it."""

    def __init__(
        self,
        log_cdf: Callable[[torch.Tensor], torch.Tensor],
        icdf: Callable[[torch.Tensor], torch.Tensor],
        log_pdf: Callable[[torch.Tensor], torch.Tensor] | None = None,
        *,
        scale: float = 1.0,
        name: str = "custom",
        support: tuple[float, float] = (-math.inf, math.inf),
    ) -> None:
        super().__init__(scale)
        if (
            not isinstance(support, tuple)
            or len(support) != 2
            or not all(isinstance(v, (int, float)) and not math.isnan(v) for v in support)
            or not support[0] < support[1]
        ):
            raise ValueError(
                f"support must be a tuple (lo, hi) with lo < hi (±inf allowed), got {support!r}"
            )
        self.support = (float(support[0]), float(support[1]))
        for label, function in (("log_cdf", log_cdf), ("icdf", icdf)):
            if not callable(function):
                raise TypeError(f"CustomNoise needs a callable {label}, got {function!r}")
        if log_pdf is not None and not callable(log_pdf):
            raise TypeError(f"log_pdf must be callable or None, got {log_pdf!r}")
        self._log_cdf = log_cdf
        self._icdf = icdf
        self._log_pdf = log_pdf
        self.name = name

    def standard_log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        return self._log_cdf(x)

    def standard_icdf(self, q: torch.Tensor) -> torch.Tensor:
        return self._icdf(q)

    def standard_log_pdf(self, x: torch.Tensor) -> torch.Tensor:
        if self._log_pdf is None:
            raise NotImplementedError(f"CustomNoise {self.name!r} was built without log_pdf")
        return self._log_pdf(x)


NOISES: dict[str, type[Noise]] = {
    "gumbel": Gumbel,
    "normal": Normal,
    "logistic": Logistic,
    "uniform": Uniform,
    "exponential": Exponential,
}


def as_noise(noise: str | Noise) -> Noise:
    """A :class:`Noise` from a family name or an instance (validated: a subclass must implement
    ``standard_log_cdf`` and ``standard_icdf``)."""
    if isinstance(noise, str):
        try:
            return NOISES[noise]()
        except KeyError:
            raise ValueError(
                f"unknown noise {noise!r}; use one of {sorted(NOISES)} or a kexue.discrete.Noise "
                "instance (e.g. CustomNoise(log_cdf, icdf))"
            ) from None
    if not isinstance(noise, Noise):
        raise TypeError(
            f"noise must be a family name {sorted(NOISES)} or a kexue.discrete.Noise instance, got "
            f"{type(noise).__name__}; wrap your functions in CustomNoise(log_cdf, icdf, log_pdf)"
        )
    missing = [
        method
        for method in ("standard_log_cdf", "standard_icdf")
        if getattr(type(noise), method) is getattr(Noise, method)
    ]
    if missing:
        raise TypeError(
            f"noise {type(noise).__name__} does not implement {missing}: a Noise subclass must "
            "define standard_log_cdf(x) and standard_icdf(q) (and standard_log_pdf for pdf/"
            "sampling checks)"
        )
    return noise
