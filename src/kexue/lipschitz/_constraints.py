"""Lipschitz constraints as interchangeable strategies, selectable by name.

Each strategy is a thin object over the functional core; a trainer calls, per critic step,
``scores(critic, x)`` → loss (+ ``penalty(...)``) → optimiser step → ``after_critic_step(critic)``,
and per generator step ``generator_backward(critic, fake, loss)``.

==================== ======================================================================
name                 what it does
==================== ======================================================================
``none``             plain critic (no constraint)
``clip``             clamp critic parameters to [−c, c] after each step (c = 0.01)
``sn``               spectral normalisation of every linear/conv layer (PyTorch parametrisation)
``gp``, ``gp0``      WGAN-GP (λ = 10, centre 1) / zero-centred GP on interpolates
``r1``               R1 on real samples (γ = 10), optional lazy interval
``gn``, ``gran``,    gradient normalisation of the critic's output (post 8757), with the
``gran-simple``,     ``fast`` generator step by default
``su``, ``pure``
==================== ======================================================================
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import torch
from torch import nn

from ._checks import as_per_sample_scores, assert_no_batch_coupling
from ._generator_step import GeneratorStepMode, gn_generator_backward
from ._layers import apply_spectral_norm, clip_weights_
from ._losses import LossName, generator_loss
from ._normalize import NORMALIZATION_METHODS, NormalizationMethod, normalize_gradient
from ._penalties import LazyInterval, gradient_penalty, r1_penalty

__all__ = [
    "CONSTRAINTS",
    "ClipConstraint",
    "GradientNormalization",
    "GradientPenaltyConstraint",
    "LipschitzConstraint",
    "R1Constraint",
    "SpectralNormConstraint",
    "make_constraint",
]


@dataclasses.dataclass
class LipschitzConstraint:
    """The unconstrained critic; base class of every strategy."""

    name: str = dataclasses.field(default="none", init=False)

    def prepare_critic(self, critic: nn.Module) -> nn.Module:
        """Called once before training (e.g. registers spectral norm). Returns the critic to use."""
        assert_no_batch_coupling(critic)
        return critic

    def scores(self, critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Per-sample critic scores ``[B]`` used in the losses."""
        return as_per_sample_scores(critic(x), x.shape[0])

    def penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, step: int
    ) -> torch.Tensor | None:
        """A regulariser to add to the critic loss at critic step ``step``, or None."""
        return None

    def after_critic_step(self, critic: nn.Module) -> None:
        """Called after each critic optimiser step."""

    def generator_backward(
        self, critic: nn.Module, fake: torch.Tensor, loss: LossName
    ) -> torch.Tensor:
        """Back-propagate the generator loss into ``fake``'s graph only; return the loss value."""
        value = generator_loss(loss, self.scores(critic, fake))
        (gradient,) = torch.autograd.grad(value, fake)
        torch.autograd.backward(fake, grad_tensors=gradient)
        return value.detach()

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ClipConstraint(LipschitzConstraint):
    clip_value: float = 0.01

    def __post_init__(self) -> None:
        self.name = "clip"
        if not self.clip_value > 0:
            raise ValueError(f"clip_value must be positive, got {self.clip_value}")

    def prepare_critic(self, critic: nn.Module) -> nn.Module:
        critic = super().prepare_critic(critic)
        clip_weights_(critic, self.clip_value)
        return critic

    def after_critic_step(self, critic: nn.Module) -> None:
        clip_weights_(critic, self.clip_value)


@dataclasses.dataclass
class SpectralNormConstraint(LipschitzConstraint):
    n_power_iterations: int = 1

    def __post_init__(self) -> None:
        self.name = "sn"

    def prepare_critic(self, critic: nn.Module) -> nn.Module:
        return apply_spectral_norm(super().prepare_critic(critic),
                                   n_power_iterations=self.n_power_iterations)  # fmt: skip


@dataclasses.dataclass
class GradientPenaltyConstraint(LipschitzConstraint):
    weight: float = 10.0
    center: float = 1.0
    one_sided: bool = False

    def __post_init__(self) -> None:
        self.name = "gp" if self.center != 0 else "gp0"

    def penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, step: int
    ) -> torch.Tensor:
        return gradient_penalty(critic, real, fake, weight=self.weight, center=self.center,
                                one_sided=self.one_sided)  # fmt: skip


@dataclasses.dataclass
class R1Constraint(LipschitzConstraint):
    gamma: float = 10.0
    every: int = 1

    def __post_init__(self) -> None:
        self.name = "r1"
        self._interval = LazyInterval(self.every)

    def penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, step: int
    ) -> torch.Tensor | None:
        if not self._interval.applies(step):
            return None
        return self._interval.scale(r1_penalty(critic, real, gamma=self.gamma))


@dataclasses.dataclass
class GradientNormalization(LipschitzConstraint):
    """GN / GraN / GraN-simple / Su's variant / pure normalisation of the critic output."""

    method: NormalizationMethod = "gn"
    eps: float | None = None
    K: float = 1.0
    detach_norm: bool = False
    generator_mode: GeneratorStepMode = "fast"

    def __post_init__(self) -> None:
        if self.method not in NORMALIZATION_METHODS:
            raise ValueError(f"method must be one of {NORMALIZATION_METHODS}, got {self.method!r}")
        if self.generator_mode not in ("fast", "double"):
            raise ValueError(
                f"generator_mode must be 'fast' or 'double', got {self.generator_mode!r}"
            )
        self.name = self.method

    def scores(self, critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return normalize_gradient(
            critic, x, self.method, eps=self.eps, K=self.K, create_graph=torch.is_grad_enabled(),
            detach_norm=self.detach_norm, check_critic=False,
        ).f_hat  # fmt: skip

    def generator_backward(
        self, critic: nn.Module, fake: torch.Tensor, loss: LossName
    ) -> torch.Tensor:
        return gn_generator_backward(
            critic, fake, loss, self.method, mode=self.generator_mode, eps=self.eps, K=self.K,
            detach_norm=self.detach_norm,
        )  # fmt: skip


def _normalization(method: str) -> Any:
    return lambda **kwargs: GradientNormalization(
        method=cast(NormalizationMethod, method), **kwargs
    )


CONSTRAINTS: dict[str, Any] = {
    "none": LipschitzConstraint,
    "clip": ClipConstraint,
    "sn": SpectralNormConstraint,
    "gp": GradientPenaltyConstraint,
    "gp0": lambda **kwargs: GradientPenaltyConstraint(center=0.0, **kwargs),
    "r1": R1Constraint,
    **{method: _normalization(method) for method in NORMALIZATION_METHODS},
}


def make_constraint(name: str, **options: Any) -> LipschitzConstraint:
    """A constraint strategy by name (see the module table); ``options`` go to its constructor."""
    if name not in CONSTRAINTS:
        raise ValueError(
            f"unknown Lipschitz constraint {name!r}; choose from {sorted(CONSTRAINTS)}"
        )
    try:
        constraint: LipschitzConstraint = CONSTRAINTS[name](**options)
    except TypeError as error:
        raise TypeError(f"bad options for constraint {name!r}: {error}") from error
    return constraint
