"""The latent-variable model protocol that :mod:`kexue.density` accepts (spec 02 §3.1).

Role names, never letters: the post writes the decoder as q(x|z) and the encoder as p(z|x), the
reverse of Kingma–Welling (spec 02 §0), so kexue only says ``encode``/``decode``/``prior``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch.distributions import Distribution

__all__ = ["LatentVariableModel", "check_model"]


@runtime_checkable
class LatentVariableModel(Protocol):
    """Anything with these three methods, each returning a ``torch.distributions.Distribution``.

    * ``encode(x)``: the proposal (encoder) over ``z`` given a batch ``x`` ``[B, ...]``; its
      ``batch_shape`` is ``(B,)`` and ``log_prob(z)`` of a ``[S, B, ...]`` sample is ``[S, B]``.
    * ``decode(z)``: the likelihood (decoder) over ``x`` for latents ``[..., B, ...]``; its
      ``log_prob(x)`` sums over the dimensions of one data point.
    * ``prior()``: the prior over ``z`` (batch shape ``()``; ``log_prob`` sums over ``z``'s
      dimensions).

    Use ``torch.distributions.Independent(..., 1)`` so that ``log_prob`` sums over dimensions.
    """

    def encode(self, x: torch.Tensor) -> Distribution: ...

    def decode(self, z: torch.Tensor) -> Distribution: ...

    def prior(self) -> Distribution: ...


def check_model(model: object) -> LatentVariableModel:
    """``model`` if it follows :class:`LatentVariableModel`, else a ``TypeError`` naming what is
    missing."""
    names = ("encode", "decode", "prior")
    missing = [name for name in names if not callable(getattr(model, name, None))]
    if missing:
        raise TypeError(
            f"{type(model).__name__} does not follow the LatentVariableModel protocol: missing "
            f"{', '.join(missing)}; it needs encode(x) -> Distribution over z, decode(z) -> "
            "Distribution over x and prior() -> Distribution over z (torch.distributions)"
        )
    return model  # type: ignore[return-value]
