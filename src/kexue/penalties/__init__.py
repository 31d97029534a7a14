"""Input- and parameter-gradient penalties and the inequality between them (post 8796, spec 03).

* :func:`gradient_norm_inequality` — the per-sample probe of
  ``‖∇ₓf‖²·Σₜ(1+‖h⁽ᵗ⁾‖²)/(‖W⁽ᵗ⁾‖²‖J⁽ᵗ⁾‖²) ≤ ‖∇θf‖²`` for MLPs (§2, §4.1);
* :func:`input_gradient_norm`, :func:`parameter_gradient_norm` — the two sides' norms;
* penalties for training loops (§4.2): :func:`input_gradient_penalty` (AMP-safe option),
  :func:`parameter_gradient_penalty` (exact, double backward) and its finite-difference gradient
  :func:`parameter_gradient_penalty_gradients` / :func:`add_parameter_gradient_penalty_`, lazy
  schedules :class:`LazyPenalty` (reusing :class:`kexue.lipschitz.LazyInterval`);
* :func:`dirichlet_energy`, :func:`arc_length_1d` — complexity measures (§3);
* :func:`initialization_spectral_norms` — the author's correction about initial weights (C3.4).
"""

from __future__ import annotations

from kexue.lipschitz import LazyInterval, lazy_optimizer_hyperparameters

from ._checks import DOUBLE_BACKWARD_HINT
from ._energy import arc_length_1d, dirichlet_energy
from ._gradients import ScalarFn, input_gradient_norm, input_gradients, parameter_gradient_norm
from ._inequality import (
    SUPPORTED_ACTIVATIONS,
    GradientNormInequality,
    InequalityNorm,
    gradient_norm_inequality,
    initialization_spectral_norms,
)
from ._penalties import (
    FiniteDifferencePenalty,
    InputGradientPenalty,
    KinkPatternError,
    LazyPenalty,
    ScaleLike,
    add_parameter_gradient_penalty_,
    finite_difference_parameter_penalty,
    input_gradient_penalty,
    parameter_gradient_penalty,
    parameter_gradient_penalty_gradients,
)

__all__ = [
    "DOUBLE_BACKWARD_HINT",
    "SUPPORTED_ACTIVATIONS",
    "FiniteDifferencePenalty",
    "GradientNormInequality",
    "InequalityNorm",
    "InputGradientPenalty",
    "KinkPatternError",
    "LazyInterval",
    "LazyPenalty",
    "ScalarFn",
    "ScaleLike",
    "add_parameter_gradient_penalty_",
    "arc_length_1d",
    "dirichlet_energy",
    "finite_difference_parameter_penalty",
    "gradient_norm_inequality",
    "initialization_spectral_norms",
    "input_gradient_norm",
    "input_gradient_penalty",
    "input_gradients",
    "lazy_optimizer_hyperparameters",
    "parameter_gradient_norm",
    "parameter_gradient_penalty",
    "parameter_gradient_penalty_gradients",
]
