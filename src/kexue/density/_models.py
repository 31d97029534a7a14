"""Encoders, decoders and latent-variable models that follow :class:`LatentVariableModel`
(spec 02 §3.1), including the IWAE paper's two architectures (§6).

Every network returns a ``torch.distributions`` object; densities come from their ``log_prob`` (no
hand-written constants: the normalising constant of a Gaussian decoder is always included).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints

__all__ = [
    "BernoulliDecoder",
    "ChainDistribution",
    "GaussianDecoder",
    "GaussianEncoder",
    "LatentModel",
    "TwoLayerModel",
    "iwae_architecture",
    "standard_normal",
]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def _mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"layer sizes must be positive ints, got {list(sizes)}")
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if index < len(sizes) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def standard_normal(latent_dim: int, like: torch.Tensor | None = None) -> Distribution:
    """``N(0, I)`` over ``R^latent_dim`` as an ``Independent`` distribution (log_prob sums dims)."""
    options: dict[str, Any] = {}
    if like is not None:
        options = {"dtype": like.dtype, "device": like.device}
    loc = torch.zeros(latent_dim, **options)
    return Independent(Normal(loc, torch.ones_like(loc)), 1)


class GaussianEncoder(nn.Module):
    """``x -> N(mu(x), diag sigma(x)^2)``; ``sigma = softplus(.) + min_scale`` (spec 02 §3.1).

    Args:
        in_features: data dimension (flattened).
        hidden: hidden widths, e.g. ``(200, 200)`` (IWAE paper).
        latent_dim: dimension of ``z``.
        activation: ``tanh`` (IWAE paper), ``relu`` or ``elu``.
        min_scale: floor of the standard deviation (1e-4).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        latent_dim: int,
        activation: str = "tanh",
        min_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        self.net = _mlp([in_features, *hidden, 2 * latent_dim], activation)
        self.latent_dim = latent_dim
        self.min_scale = float(min_scale)

    def forward(self, x: torch.Tensor) -> Distribution:
        loc, raw_scale = self.net(x).chunk(2, dim=-1)
        return Independent(Normal(loc, F.softplus(raw_scale) + self.min_scale), 1)


class BernoulliDecoder(nn.Module):
    """``z -> Bernoulli(logits(z))`` over binary data (log_prob = minus summed BCE with logits)."""

    def __init__(
        self, latent_dim: int, hidden: Sequence[int], out_features: int, activation: str = "tanh"
    ) -> None:
        super().__init__()
        self.net = _mlp([latent_dim, *hidden, out_features], activation)

    def forward(self, z: torch.Tensor) -> Distribution:
        return Independent(Bernoulli(logits=self.net(z), validate_args=False), 1)


class GaussianDecoder(nn.Module):
    """``z -> N(mu(z), sigma_x^2 I)`` with a fixed or learned scale (spec 02 §3.1, pitfall 5).

    Args:
        scale: ``"learned"`` (one scalar, or one per dimension with ``per_dimension=True``) or a
            fixed positive float.
        scale_floor: lower bound of a learned scale (1e-3 on [0, 1] data): without it the
            likelihood of repeated exact values is unbounded as the scale goes to 0.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden: Sequence[int],
        out_features: int,
        activation: str = "tanh",
        scale: float | Literal["learned"] = "learned",
        scale_floor: float = 1e-3,
        per_dimension: bool = False,
    ) -> None:
        super().__init__()
        self.net = _mlp([latent_dim, *hidden, out_features], activation)
        self.scale_floor = float(scale_floor)
        if scale == "learned":
            self.raw_scale: nn.Parameter | None = nn.Parameter(
                torch.zeros(out_features if per_dimension else 1)
            )
            self.register_buffer("fixed_scale", None)
        elif isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0:
            self.raw_scale = None
            self.register_buffer("fixed_scale", torch.tensor(float(scale)))
        else:
            raise ValueError(f"scale must be 'learned' or a positive float, got {scale!r}")

    @property
    def scale(self) -> torch.Tensor:
        """The decoder's standard deviation (learned: ``softplus(raw) + floor``)."""
        if self.raw_scale is not None:
            return F.softplus(self.raw_scale) + self.scale_floor
        assert isinstance(self.fixed_scale, torch.Tensor)
        return self.fixed_scale

    def forward(self, z: torch.Tensor) -> Distribution:
        loc = self.net(z)
        return Independent(Normal(loc, self.scale.to(loc.dtype).expand_as(loc)), 1)


class LatentModel(nn.Module):
    """An encoder, a decoder and a prior (standard normal by default) as a
    :class:`~kexue.density.LatentVariableModel`."""

    _reference: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        prior: Callable[[torch.Tensor], Distribution] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.latent_dim = latent_dim
        self._prior = prior
        self.register_buffer("_reference", torch.zeros(()))  # follows .to(device, dtype)

    def encode(self, x: torch.Tensor) -> Distribution:
        distribution: Distribution = self.encoder(x)
        return distribution

    def decode(self, z: torch.Tensor) -> Distribution:
        distribution: Distribution = self.decoder(z)
        return distribution

    def prior(self) -> Distribution:
        if self._prior is not None:
            return self._prior(self._reference)
        return standard_normal(self.latent_dim, like=self._reference)


class ChainDistribution(Distribution):
    """``p(a) p(b | a)`` over the concatenation of two blocks, reparameterised if both are.

    ``a_first`` says whether ``a`` comes first in the concatenated vector. Used for the IWAE
    paper's two-stochastic-layer encoder ``q(z1|x) q(z2|z1)`` and prior ``p(z2) p(z1|z2)``, both
    over ``z = [z1, z2]``.
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {}
    has_rsample = True

    def __init__(
        self,
        first: Distribution,
        conditional: Callable[[torch.Tensor], Distribution],
        first_dim: int,
        second_dim: int,
        a_first: bool = True,
    ) -> None:
        self.first = first
        self.conditional = conditional
        self.first_dim = first_dim
        self.second_dim = second_dim
        self.a_first = a_first
        super().__init__(
            first.batch_shape, torch.Size([first_dim + second_dim]), validate_args=False
        )

    def _split(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.a_first:
            a, b = torch.split(value, [self.first_dim, self.second_dim], dim=-1)
        else:
            b, a = torch.split(value, [self.second_dim, self.first_dim], dim=-1)
        return a, b

    def _join(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, b] if self.a_first else [b, a], dim=-1)

    def rsample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        a = self.first.rsample(torch.Size(sample_shape))
        b = self.conditional(a).rsample()
        return self._join(a, b)

    def sample(self, sample_shape: Sequence[int] = ()) -> torch.Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        a, b = self._split(value)
        result: torch.Tensor = self.first.log_prob(a) + self.conditional(a).log_prob(b)
        return result


class TwoLayerModel(nn.Module):
    """The IWAE paper's model with two stochastic layers (§6):
    ``x -> 200 -> 200 -> z1 (100) -> 100 -> 100 -> z2 (50)`` and back, tanh, Bernoulli output.

    ``z = [z1, z2]``; ``encode`` is ``q(z1|x) q(z2|z1)``, ``prior`` is ``p(z2) p(z1|z2)`` with
    ``p(z2) = N(0, I)``, ``decode(z)`` is ``p(x|z1)``.
    """

    _reference: torch.Tensor

    def __init__(
        self,
        data_dim: int = 784,
        hidden: tuple[int, int] = (200, 100),
        latent_dims: tuple[int, int] = (100, 50),
        activation: str = "tanh",
    ) -> None:
        super().__init__()
        (h1, h2), (d1, d2) = hidden, latent_dims
        self.latent_dims = (d1, d2)
        self.latent_dim = d1 + d2
        self.encoder1 = GaussianEncoder(data_dim, (h1, h1), d1, activation)
        self.encoder2 = GaussianEncoder(d1, (h2, h2), d2, activation)
        self.prior1 = GaussianEncoder(d2, (h2, h2), d1, activation)  # p(z1 | z2)
        self.decoder = BernoulliDecoder(d1, (h1, h1), data_dim, activation)
        self.register_buffer("_reference", torch.zeros(()))

    def encode(self, x: torch.Tensor) -> Distribution:
        d1, d2 = self.latent_dims
        return ChainDistribution(self.encoder1(x), self.encoder2, d1, d2, a_first=True)

    def decode(self, z: torch.Tensor) -> Distribution:
        distribution: Distribution = self.decoder(z[..., : self.latent_dims[0]])
        return distribution

    def prior(self) -> Distribution:
        d1, d2 = self.latent_dims
        top = standard_normal(d2, like=self._reference)
        return ChainDistribution(top, self.prior1, d2, d1, a_first=False)


def iwae_architecture(
    stochastic_layers: int = 1, data_dim: int = 784, activation: str = "tanh"
) -> nn.Module:
    """The IWAE paper's architectures (spec 02 §6) with a Bernoulli decoder.

    * 1 stochastic layer: encoder ``data_dim-200-200-50``, decoder ``50-200-200-data_dim``;
    * 2 stochastic layers: :class:`TwoLayerModel` (``200-200-100`` and ``100-100-50``).
    """
    if stochastic_layers == 1:
        return LatentModel(
            GaussianEncoder(data_dim, (200, 200), 50, activation),
            BernoulliDecoder(50, (200, 200), data_dim, activation),
            latent_dim=50,
        )
    if stochastic_layers == 2:
        return TwoLayerModel(data_dim, activation=activation)
    raise ValueError(f"stochastic_layers must be 1 or 2, got {stochastic_layers!r}")
