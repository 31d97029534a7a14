"""Multi-task learning: loss weighting, gradient aggregation, MGDA (posts 8870, 8896; specs 06, 07).

Loss weightings (spec 06), one ``nn.Module`` each with one protocol (:class:`LossWeighting`:
``weighting(losses) -> total loss``, ``weighting.weights`` for logging):

* :class:`EqualWeights`, :class:`FixedWeights` — (w-loss);
* :class:`InitNormalized` (init), :class:`PriorNormalized` (prior), :class:`RealTimeNormalized`
  (sg) — scale-invariant normalisations; reference constants from
  :func:`cross_entropy_init_loss`, :func:`mse_init_loss`, :func:`cross_entropy_prior_loss`,
  :func:`binary_cross_entropy_prior_loss`, :func:`mse_prior_loss`, :func:`l1_prior_loss`,
  :func:`constant_prior_loss`;
* :class:`PowerMean` — the generalised mean (any γ, ±∞), functional core :func:`power_mean`,
  :func:`power_mean_weights`;
* :class:`GradNormalized` — the post's unit-gradient sum (grad), (grad-norm);
* :class:`UncertaintyWeighting` (Kendall et al.) and :class:`GradNormChen` (Chen et al.) —
  comparison baselines, not from the post.

Gradient aggregation (spec 07): :func:`task_gradients` (vmapped VJPs or T backward passes,
chunked), :func:`gram_matrix`, :func:`min_norm_weights` (closed form, Wolfe, Frank–Wolfe,
averaging, Sener-style, softmax, exact QP; Gram or explicit-vector form), :class:`MGDA`
(MGDA and MGDA-UB) and :func:`mtl_backward`, the one-call backward that writes the aggregated
update into ``.grad`` for any optimiser (under ``torch.distributed`` / ``DistributedDataParallel``
it all-reduces the aggregator's inputs first, so every rank writes the union batch's update).

Primary and auxiliary tasks (spec 08): :func:`primary_auxiliary_direction` (the projection of
the main gradient onto the cone where no auxiliary loss rises; closed form for one auxiliary,
exact KKT-rule solver by default, the post's literal rule, cyclic, SciPy NNLS; vector or Gram
form), :func:`project_mixed` (several main tasks on the simplex plus auxiliary tasks),
:class:`PrimaryAuxiliary` (the ``"primary_auxiliary"`` strategy of :func:`mtl_backward`),
:class:`L2AsAuxiliary` (L2 regularisation without a coefficient, coupled or decoupled) and the
baselines :func:`gradient_cosine_gate` / :class:`GradCosine` (GCS) and :func:`gglm_mask` with
:func:`per_sample_gradients` (gradient-guided loss masking).

Optimiser interaction: the no-ascent promises of MGDA and of the primary/auxiliary projection are
about the direction; :class:`NoAscentStep` projects the step an optimiser actually applies (Adam's
preconditioned, momentum-averaged one included) onto the cone where no task loss rises to first
order (specs 07 §2.1, 08 §3).
"""

from __future__ import annotations

from ._auxiliary import (
    L2_MODES,
    PRIMARY_AUX_SOLVERS,
    GradCosine,
    L2AsAuxiliary,
    PrimaryAuxiliary,
    PrimaryAuxInfo,
    PrimaryAuxSolver,
    gglm_mask,
    gradient_cosine_gate,
    l2_parameters,
    per_sample_gradients,
    primary_auxiliary_direction,
    project_mixed,
)
from ._backward import GRADIENT_NORMALIZATIONS, MGDA, GramWeighting, MTLBackwardResult, mtl_backward
from ._checks import LossesLike
from ._gradients import JACOBIAN_METHODS, JacobianMethod, gram_matrix, task_gradients
from ._min_norm import MIN_NORM_METHODS, MinNormInfo, MinNormMethod, min_norm_weights
from ._no_ascent import NoAscentStep
from ._power_mean import GEOMETRIC_GAMMA_TOL, power_mean, power_mean_weights
from ._references import (
    binary_cross_entropy_init_loss,
    binary_cross_entropy_prior_loss,
    constant_prior_loss,
    cross_entropy_init_loss,
    cross_entropy_prior_loss,
    l1_prior_loss,
    mse_init_loss,
    mse_prior_loss,
)
from ._weighting import (
    EqualWeights,
    FixedWeights,
    GradNormalized,
    GradNormChen,
    InitNormalized,
    LossWeighting,
    PowerMean,
    PriorNormalized,
    RealTimeNormalized,
    UncertaintyWeighting,
)

__all__ = [
    "GEOMETRIC_GAMMA_TOL",
    "GRADIENT_NORMALIZATIONS",
    "JACOBIAN_METHODS",
    "L2_MODES",
    "MGDA",
    "MIN_NORM_METHODS",
    "PRIMARY_AUX_SOLVERS",
    "EqualWeights",
    "FixedWeights",
    "GradCosine",
    "GradNormChen",
    "GradNormalized",
    "GramWeighting",
    "InitNormalized",
    "JacobianMethod",
    "L2AsAuxiliary",
    "LossWeighting",
    "LossesLike",
    "MTLBackwardResult",
    "MinNormInfo",
    "MinNormMethod",
    "NoAscentStep",
    "PowerMean",
    "PrimaryAuxInfo",
    "PrimaryAuxSolver",
    "PrimaryAuxiliary",
    "PriorNormalized",
    "RealTimeNormalized",
    "UncertaintyWeighting",
    "binary_cross_entropy_init_loss",
    "binary_cross_entropy_prior_loss",
    "constant_prior_loss",
    "cross_entropy_init_loss",
    "cross_entropy_prior_loss",
    "gglm_mask",
    "gradient_cosine_gate",
    "gram_matrix",
    "l1_prior_loss",
    "l2_parameters",
    "min_norm_weights",
    "mse_init_loss",
    "mse_prior_loss",
    "mtl_backward",
    "per_sample_gradients",
    "power_mean",
    "power_mean_weights",
    "primary_auxiliary_direction",
    "project_mixed",
    "task_gradients",
]
