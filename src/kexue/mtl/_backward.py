"""MGDA / MGDA-UB and the one-call multi-task backward (spec 07 §3.2; torchjd's ``mtl_backward``).

:func:`mtl_backward` replaces ``loss.backward()`` in a multi-task training step: it combines the
task losses with an *aggregator* and writes the result to ``.grad`` of the shared and the
task-specific parameters, so any optimiser then steps as usual. Aggregators:

* ``"mgda"`` / :class:`MGDA` — per-task gradients of the shared parameters, their Gram matrix,
  the min-norm weights α (:func:`kexue.mtl.min_norm_weights`), shared ``.grad += Gᵀα``;
* ``"mgda_ub"`` / ``MGDA(upper_bound=True)`` — MGDA-UB: the same on the gradients w.r.t. the
  shared *features* H (one backward per task through the heads, one through the encoder);
* :class:`kexue.mtl.GradNormalized` — the post's unit-gradient sum on per-task gradients;
* ``"primary_auxiliary"`` / :class:`kexue.mtl.PrimaryAuxiliary` — task 0 (or ``main=``) is the
  main task, the others auxiliary: the shared update is the projection of the main gradient onto
  the cone where no auxiliary loss rises (spec 08 §5.2); :class:`kexue.mtl.GradCosine` likewise;
* any :class:`kexue.mtl.LossWeighting` — ``total = aggregator(losses)``, one backward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from ._auxiliary import PrimaryAuxiliary, PrimaryAuxInfo
from ._checks import LossesLike, check_choice, check_losses, check_tensor_list
from ._gradients import (
    JACOBIAN_METHODS,
    JacobianMethod,
    batched_vjp,
    gram_matrix,
    gram_weighted_loss,
    resolve_jacobian_method,
    task_gradients,
)
from ._min_norm import MinNormInfo, MinNormMethod, min_norm_weights

__all__ = [
    "GRADIENT_NORMALIZATIONS",
    "MGDA",
    "GramWeighting",
    "MTLBackwardResult",
    "mtl_backward",
]

GRADIENT_NORMALIZATIONS: tuple[str, ...] = ("none", "l2", "loss", "loss+")
HeadScaling = Literal["alpha", "none"]


@runtime_checkable
class GramWeighting(Protocol):
    """An aggregator that turns the Gram matrix of task gradients into per-task weights.

    ``jacobian_source``: ``"shared"`` (gradients of the shared parameters) or ``"features"``
    (gradients of the shared features, the MGDA-UB bound) or None (use it as a loss weighting);
    ``head_scaling``: what task-specific parameters receive (``"alpha"``: αᵢ∇Lᵢ, ``"none"``:
    ∇Lᵢ); ``weights_from_gram(gram, losses)``: the weights αᵢ of the shared update Σαᵢgᵢ.
    """

    @property
    def jacobian_source(self) -> Literal["shared", "features"] | None: ...

    @property
    def head_scaling(self) -> HeadScaling: ...

    def weights_from_gram(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor: ...


class MGDA(nn.Module):
    """The multiple-gradient descent algorithm of Sener & Koltun (spec 07 §2.4, §3.2).

    α = argmin over the simplex of ‖Σᵢαᵢĝᵢ‖² with ĝᵢ = gᵢ/cᵢ pre-normalised (``normalize``:
    ``"none"`` (default, the post), ``"l2"`` cᵢ = ‖gᵢ‖, ``"loss"`` cᵢ = Lᵢ, ``"loss+"``
    cᵢ = Lᵢ‖gᵢ‖; pitfall 5: the choice changes α). Effective loss weights (``weights``) are αᵢ/cᵢ,
    so the shared update is u* = Σᵢαᵢĝᵢ. ``upper_bound=True`` is MGDA-UB (gradients w.r.t. the
    shared features; no Pareto-stationarity guarantee, spec 07 §2.5, pitfall 1).

    Use it through :func:`mtl_backward`, or as a loss: with ``shared_params``, ``mgda(losses)``
    computes the per-task gradients and returns Σᵢ sg(wᵢ)Lᵢ (spec 07 §3.2 step 5; one extra
    backward). After each call: ``weights`` (effective, float64), ``alpha`` (the solver's simplex
    weights) and ``info`` (:class:`kexue.mtl.MinNormInfo`: ‖u*‖², minᵢ⟨gᵢ,u*⟩, FW gap, the
    Pareto-stationary flag).
    """

    def __init__(
        self,
        shared_params: Iterable[torch.Tensor] | None = None,
        *,
        method: MinNormMethod = "auto",
        normalize: Literal["none", "l2", "loss", "loss+"] = "none",
        upper_bound: bool = False,
        head_scaling: HeadScaling = "alpha",
        max_iter: int | None = None,
        tol: float | None = None,
        jacobian_method: JacobianMethod = "auto",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self._shared = (
            None if shared_params is None else check_tensor_list(shared_params, "shared_params")
        )
        self.method = method
        self.normalize = check_choice(normalize, "normalize", GRADIENT_NORMALIZATIONS)
        if not isinstance(upper_bound, bool):
            raise TypeError("upper_bound must be a bool")
        self.upper_bound = upper_bound
        self._head_scaling: HeadScaling = check_choice(  # type: ignore[assignment]
            head_scaling, "head_scaling", ("alpha", "none")
        )
        self.max_iter = max_iter
        self.tol = tol
        self.jacobian_method = check_choice(jacobian_method, "jacobian_method", JACOBIAN_METHODS)
        self.chunk_size = chunk_size
        self._weights: torch.Tensor | None = None
        self._scale: torch.Tensor | None = None
        self._alpha: torch.Tensor | None = None
        self._info: MinNormInfo | None = None

    @property
    def jacobian_source(self) -> Literal["shared", "features"]:
        return "features" if self.upper_bound else "shared"

    @property
    def head_scaling(self) -> HeadScaling:
        return self._head_scaling

    @property
    def weights(self) -> torch.Tensor | None:
        """Effective weights αᵢ/cᵢ on the raw losses of the last call (None before)."""
        return self._weights

    @property
    def alpha(self) -> torch.Tensor | None:
        """The solver's simplex weights of the last call (on pre-normalised gradients)."""
        return self._alpha

    @property
    def info(self) -> MinNormInfo | None:
        return self._info

    def weights_from_gram(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Effective weights from the Gram matrix of the (raw) task gradients and loss values."""
        gram = gram.detach().to(torch.float64)
        values = losses.detach().to(device=gram.device, dtype=torch.float64)
        norms = torch.sqrt(torch.diagonal(gram).clamp_min(0.0))
        if self.normalize == "none":
            scale = torch.ones_like(values)
        elif self.normalize == "l2":
            scale = torch.where(norms > 0, norms, torch.ones_like(norms))
        else:
            if bool((values <= 0).any()):
                raise ValueError(
                    f"normalize={self.normalize!r} divides by the losses, which must be > 0; got "
                    f"{values.tolist()}"
                )
            scale = (
                values
                if self.normalize == "loss"
                else values * torch.where(norms > 0, norms, torch.ones_like(norms))
            )
        self._scale = scale
        normalized = gram / (scale[:, None] * scale[None, :])
        alpha, info = min_norm_weights(
            normalized, self.method, max_iter=self.max_iter, tol=self.tol
        )
        alpha = alpha.to(gram.device)
        self._alpha, self._info = alpha, info
        self._weights = alpha / scale
        return self._weights

    def reference_norm_sq(self, gram: torch.Tensor) -> float:
        """maxᵢ‖ĝᵢ‖² of the last call's pre-normalised gradients (the Pareto-stationarity scale)."""
        diagonal = torch.diagonal(gram.detach()).to(torch.float64)
        if self._scale is not None:
            diagonal = diagonal / self._scale.to(diagonal) ** 2
        return float(diagonal.max())

    def forward(self, losses: LossesLike) -> torch.Tensor:
        if self._shared is None or self.upper_bound:
            raise TypeError(
                "MGDA as a loss needs shared_params (and upper_bound=False); for MGDA-UB or "
                "without shared_params use kexue.mtl.mtl_backward(losses, ..., aggregator=this)"
            )
        return gram_weighted_loss(
            losses,
            self._shared,
            self.weights_from_gram,
            method=self.jacobian_method,  # type: ignore[arg-type]
            chunk_size=self.chunk_size,
        )


@dataclasses.dataclass(frozen=True)
class MTLBackwardResult:
    """What :func:`mtl_backward` did: ``weights`` — the effective weights of the shared update
    (Σᵢ weightsᵢ·gᵢ; None for a loss weighting without ``weights``), ``losses`` — raw loss
    values, ``gram`` — the Gram matrix (gradient aggregators only), ``info`` — MGDA's
    :class:`~kexue.mtl.MinNormInfo` (:class:`~kexue.mtl.PrimaryAuxInfo` for
    :class:`~kexue.mtl.PrimaryAuxiliary`), ``pareto_stationary`` — the shared update was set
    to 0."""

    weights: torch.Tensor | None
    losses: torch.Tensor
    gram: torch.Tensor | None = None
    info: MinNormInfo | PrimaryAuxInfo | None = None
    pareto_stationary: bool = False


def _resolve(aggregator: object) -> Any:
    if isinstance(aggregator, str):
        if aggregator == "mgda":
            return MGDA()
        if aggregator == "mgda_ub":
            return MGDA(upper_bound=True)
        if aggregator == "primary_auxiliary":
            return PrimaryAuxiliary()
        raise ValueError(
            f"aggregator must be 'mgda', 'mgda_ub', 'primary_auxiliary', an MGDA/GradNormalized/"
            f"PrimaryAuxiliary object or a loss weighting (callable on the losses), got "
            f"{aggregator!r}"
        )
    if not callable(aggregator) and not hasattr(aggregator, "weights_from_gram"):
        raise TypeError(
            f"aggregator must be 'mgda', 'mgda_ub', 'primary_auxiliary' or a weighting object, "
            f"got {type(aggregator).__name__}"
        )
    return aggregator


def _reachable_leaves(
    roots: Sequence[torch.Tensor], stop: Sequence[torch.Tensor] = ()
) -> list[torch.Tensor]:
    """Leaf tensors that require grad reachable from ``roots`` in the autograd graph, not
    descending below the nodes of ``stop`` (the shared features)."""
    stop_nodes = {id(t.grad_fn) for t in stop if t.grad_fn is not None}
    stop_leaves = {id(t) for t in stop if t.grad_fn is None}
    found: list[torch.Tensor] = []
    seen_leaves: set[int] = set()
    seen: set[int] = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen or id(node) in stop_nodes:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            if id(variable) not in seen_leaves and id(variable) not in stop_leaves:
                seen_leaves.add(id(variable))
                found.append(variable)
            continue
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return found


def _trainable(params: Sequence[torch.Tensor], name: str) -> list[torch.Tensor]:
    """``params`` without the frozen ones (``requires_grad=False``: no ``.grad`` is written, as
    ``loss.backward()`` leaves them); ValueError when none is left."""
    kept = [p for p in params if p.requires_grad]
    if not kept:
        raise ValueError(f"every tensor of {name} is frozen (requires_grad=False)")
    return kept


def _accumulate(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
    """``p.grad += g`` (``p.grad = g`` when unset), like ``backward`` does."""
    for p, g in zip(params, grads, strict=True):
        g = g.to(p.dtype)
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.add_(g)


def _weighted_head_backward(
    scalars: Sequence[torch.Tensor],
    task: Sequence[torch.Tensor],
    weights: torch.Tensor,
    retain_graph: bool,
) -> None:
    """Task-specific ``.grad += Σᵢ wᵢ∇Lᵢ`` by one backward of ``Σᵢ sg(wᵢ)·Lᵢ`` (spec 07 §3.2
    step 5; issue 20): the heads' per-task gradients are never formed; zeros where unused."""
    pairs = [(loss, w) for loss, w in zip(scalars, weights, strict=True) if loss.requires_grad]
    if not pairs:
        _accumulate(task, [torch.zeros_like(p) for p in task])
        return
    grads = torch.autograd.grad(
        [loss for loss, _ in pairs],
        list(task),
        grad_outputs=[w.to(device=loss.device, dtype=loss.dtype) for loss, w in pairs],
        retain_graph=retain_graph,
        allow_unused=True,
    )
    _accumulate(
        task, [torch.zeros_like(p) if g is None else g for p, g in zip(task, grads, strict=True)]
    )


def _combine(weights: torch.Tensor, jacobian: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Σᵢ wᵢ J[i] for every block (weights cast to each block's dtype/device)."""
    return [
        torch.tensordot(weights.to(device=block.device, dtype=block.dtype), block, dims=1)
        for block in jacobian
    ]


def mtl_backward(
    losses: LossesLike,
    shared_parameters: Iterable[torch.Tensor] | None = None,
    *,
    features: torch.Tensor | Sequence[torch.Tensor] | None = None,
    task_parameters: Iterable[torch.Tensor] | None = None,
    aggregator: object = "mgda",
    head_scaling: HeadScaling | None = None,
    jacobian_method: JacobianMethod = "auto",
    chunk_size: int | None = None,
    retain_graph: bool = False,
    stationary_tol: float = 1e-8,
) -> MTLBackwardResult:
    """Backpropagate task losses through an aggregator into ``.grad`` (spec 07 §3.2).

    ``shared_parameters`` — the shared trunk (default: every leaf that ``features`` depends on;
    frozen tensors, ``requires_grad=False``, in it or in ``task_parameters`` are skipped and get
    no ``.grad``);
    ``features`` — the shared representation(s) H (needed for ``"mgda_ub"``; for exact
    gradient aggregators it is optional and, when given, the per-task gradients are computed as
    ``J_H·∂H/∂θ``: one vmapped VJP through the encoder, so losses must depend on the shared
    parameters only through H); ``task_parameters`` — the heads (default: every other leaf the
    losses depend on). ``aggregator``: ``"mgda"``, ``"mgda_ub"``, ``"primary_auxiliary"`` (task 0
    main; :class:`kexue.mtl.PrimaryAuxiliary` for options), an :class:`MGDA`, a
    :class:`kexue.mtl.GradNormalized` or any loss weighting. ``head_scaling`` (default: the
    aggregator's, ``"alpha"`` for MGDA): heads receive αᵢ∇Lᵢ (``"alpha"``, as the backward of
    Σαᵢ Lᵢ does) or ∇Lᵢ (``"none"``).

    Gradients are *accumulated* into ``.grad`` like ``loss.backward()``; the graph is freed
    after the last pass unless ``retain_graph``. Per-task gradients: ``jacobian_method``
    (``"auto"``/``"vmap"``/``"loop"``; ``"auto"`` takes the loop while ``torch.compile`` traces)
    and ``chunk_size`` as in :func:`kexue.mtl.task_gradients`.

    Memory (issue 20): only the Jacobian the weights need is formed — ``[T, *p.shape]`` for the
    shared parameters (or ``[T, *H.shape]`` for MGDA-UB), rows written in place, its Gram matrix
    up-cast to float64 a column chunk at a time — and freed once u is formed; task-specific
    parameters never get per-task gradients: they receive Σᵢ hᵢ∇Lᵢ (hᵢ = wᵢ, or 1 with
    ``head_scaling="none"``) from one backward of Σᵢ sg(hᵢ)Lᵢ after the weights are known (spec 07
    §3.2 step 5). Cost: T backward passes (or one vmapped) plus that one.
    When the shared update u = Σwᵢgᵢ (computed explicitly) has ‖u‖ < ``stationary_tol`` times
    maxᵢ‖ĝᵢ‖ for MGDA (Pareto stationary, spec 07 §3.2 step 6; ĝ the pre-normalised gradients)
    or times maxᵢ‖wᵢgᵢ‖ for other gradient aggregators, u is set to exactly 0 and
    ``pareto_stationary`` is reported. Raises ValueError for NaN losses (naming the task).
    """
    scalars, stacked = check_losses(losses)
    values = stacked.detach()
    agg = _resolve(aggregator)
    check_choice(jacobian_method, "jacobian_method", JACOBIAN_METHODS)
    feats: list[torch.Tensor] | None = None
    if features is not None:
        feats = check_tensor_list(features, "features")
    if shared_parameters is not None:  # frozen parameters are skipped (issue 20)
        shared = _trainable(
            check_tensor_list(shared_parameters, "shared_parameters", requires_grad=False),
            "shared_parameters",
        )
    elif feats is not None:
        shared = _reachable_leaves(feats)
        if not shared:
            raise ValueError("the features depend on no parameter that requires grad")
    else:
        raise TypeError("give shared_parameters, or features to infer them from")
    if task_parameters is not None:
        task = [
            p
            for p in check_tensor_list(task_parameters, "task_parameters", requires_grad=False)
            if p.requires_grad
        ]
    else:
        shared_ids = {id(p) for p in shared}
        task = [p for p in _reachable_leaves(scalars, feats or ()) if id(p) not in shared_ids]
    shared_ids = {id(p) for p in shared}
    overlap = [i for i, p in enumerate(task) if id(p) in shared_ids]
    if overlap:
        raise ValueError(f"task_parameters{overlap} are also in shared_parameters")

    source = getattr(agg, "jacobian_source", None)
    if source is None:
        if not callable(agg):
            raise TypeError(f"{type(agg).__name__} is neither a loss weighting nor aggregator")
        total = agg(stacked if isinstance(losses, torch.Tensor) else scalars)
        if not isinstance(total, torch.Tensor) or total.numel() != 1:
            raise TypeError("the loss weighting must return a scalar tensor")
        own = [p for p in agg.parameters() if p.requires_grad] if isinstance(agg, nn.Module) else []
        inputs = shared + task + [p for p in own if id(p) not in shared_ids]
        torch.autograd.backward(total.reshape(()), inputs=inputs, retain_graph=retain_graph)
        weights = getattr(agg, "weights", None)
        return MTLBackwardResult(weights if isinstance(weights, torch.Tensor) else None, values)

    scaling = check_choice(
        head_scaling if head_scaling is not None else getattr(agg, "head_scaling", "alpha"),
        "head_scaling",
        ("alpha", "none"),
    )
    if source == "features" and feats is None:
        raise ValueError(
            "MGDA-UB differentiates w.r.t. the shared features: pass features=H (the shared "
            "representation the task heads consume)"
        )
    method: str = jacobian_method
    loss_arg: LossesLike = stacked if isinstance(losses, torch.Tensor) else scalars
    # Issue 20: only the shared (or feature) Jacobian is formed; the heads get Σᵢwᵢ∇Lᵢ from ONE
    # weighted backward once the weights are known, so the graph stays until that pass.
    keep_graph = retain_graph or bool(task)
    feature_jac: list[torch.Tensor] = []
    shared_jac: list[torch.Tensor] = []
    if feats is None:
        shared_jac = list(
            task_gradients(
                loss_arg,
                shared,
                method=method,  # type: ignore[arg-type]
                chunk_size=chunk_size,
                retain_graph=keep_graph,
            )
        )
    else:
        feature_jac = list(
            task_gradients(
                loss_arg,
                feats,
                method=method,  # type: ignore[arg-type]
                chunk_size=chunk_size,
                retain_graph=True,
            )
        )
        if source == "shared":  # gᵢ = (∂Lᵢ/∂H)·∂H/∂θ: T VJPs through the trunk only
            shared_jac = batched_vjp(
                feats,
                shared,
                feature_jac,
                method=resolve_jacobian_method(method, len(scalars), feature_jac[0].device),
                chunk_size=chunk_size,
                retain_graph=retain_graph,
            )
            feature_jac = []
    reference = shared_jac if source == "shared" else feature_jac
    gram = gram_matrix(reference)
    weights = agg.weights_from_gram(gram, values)
    if not isinstance(weights, torch.Tensor) or weights.shape != (len(scalars),):
        raise TypeError(f"weights_from_gram must return a [{len(scalars)}] tensor")
    weights = weights.detach()

    # Shared update u = Σ wᵢ gᵢ, exactly 0 at a Pareto-stationary point.
    update = _combine(weights, reference)
    del reference, shared_jac, feature_jac  # the Jacobian is not needed any more
    norm_sq = sum(float(u.detach().to(torch.float64).pow(2).sum()) for u in update)
    diagonal = torch.diagonal(gram).to(torch.float64)
    if isinstance(agg, MGDA):  # spec 07 §3.2: relative to maxᵢ‖ĝᵢ‖ (gradients the solver saw)
        reference_sq = agg.reference_norm_sq(gram)
    else:  # relative to the largest weighted term: u vanishes only by cancellation
        reference_sq = float((weights.to(diagonal) ** 2 * diagonal).max())
    stationary = reference_sq == 0.0 or norm_sq <= stationary_tol**2 * reference_sq
    if stationary:
        update = [torch.zeros_like(u) for u in update]
    if source == "shared":
        _accumulate(shared, update)
    else:
        assert feats is not None
        if stationary:
            _accumulate(shared, [torch.zeros_like(p) for p in shared])
        else:
            torch.autograd.backward(
                feats, grad_tensors=update, inputs=shared, retain_graph=retain_graph
            )
    del update
    if task:
        head_weights = weights if scaling == "alpha" else torch.ones_like(weights)
        _weighted_head_backward(scalars, task, head_weights, retain_graph)
    info = getattr(agg, "info", None)
    return MTLBackwardResult(
        weights=weights,
        losses=values,
        gram=gram,
        info=info if isinstance(info, (MinNormInfo, PrimaryAuxInfo)) else None,
        pareto_stationary=stationary,
    )
