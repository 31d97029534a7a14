"""Lipschitz critics for WGAN (post 8757, spec 01): gradient normalisation (GN, GraN, Su's variant)
with the fast generator step, and the classic constraints — weight clipping, spectral normalisation,
gradient penalties — behind one interface (:func:`make_constraint`).
"""

from __future__ import annotations

from ._checks import assert_no_batch_coupling
from ._constraints import (
    CONSTRAINTS,
    ClipConstraint,
    GradientNormalization,
    GradientPenaltyConstraint,
    LipschitzConstraint,
    R1Constraint,
    SpectralNormConstraint,
    make_constraint,
)
from ._diagnostics import LineJumps, critic_gradient_norms, line_jumps, linear_region_ids
from ._generator_step import GeneratorStepMode, gn_generator_backward, has_smooth_activations
from ._layers import apply_spectral_norm, clip_weights_
from ._losses import LOSSES, LossName, critic_loss, generator_loss
from ._normalize import (
    NORMALIZATION_METHODS,
    GradientNormalizedCritic,
    NormalizationMethod,
    NormalizedOutput,
    default_eps,
    normalize_gradient,
    normalized_score_from_gradient,
    per_sample_norm,
    safe_divide,
)
from ._penalties import (
    LazyInterval,
    gradient_penalty,
    input_gradient_norm,
    lazy_optimizer_hyperparameters,
    r1_penalty,
    r2_penalty,
)

__all__ = [
    "CONSTRAINTS",
    "LOSSES",
    "NORMALIZATION_METHODS",
    "ClipConstraint",
    "GeneratorStepMode",
    "GradientNormalization",
    "GradientNormalizedCritic",
    "GradientPenaltyConstraint",
    "LazyInterval",
    "LineJumps",
    "LipschitzConstraint",
    "LossName",
    "NormalizationMethod",
    "NormalizedOutput",
    "R1Constraint",
    "SpectralNormConstraint",
    "apply_spectral_norm",
    "assert_no_batch_coupling",
    "clip_weights_",
    "critic_gradient_norms",
    "critic_loss",
    "default_eps",
    "generator_loss",
    "gn_generator_backward",
    "gradient_penalty",
    "has_smooth_activations",
    "input_gradient_norm",
    "lazy_optimizer_hyperparameters",
    "line_jumps",
    "linear_region_ids",
    "make_constraint",
    "normalize_gradient",
    "normalized_score_from_gradient",
    "per_sample_norm",
    "r1_penalty",
    "r2_penalty",
    "safe_divide",
]
