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

Under ``torch.distributed`` (e.g. ``DistributedDataParallel``) the aggregator's inputs are
all-reduced before the direction is solved, so every rank writes the union batch's update
(issue 20; :mod:`kexue.mtl._distributed`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.distributed as dist
from torch import nn

from ._auxiliary import PrimaryAuxiliary, PrimaryAuxInfo
from ._checks import (
    LossesLike,
    check_choice,
    check_loss_values,
    check_losses,
    check_tensor_list,
)
from ._distributed import resolve_sync
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
    backward; under ``torch.distributed`` the weights are solved from the ranks' averaged
    per-task gradients, so with ``DistributedDataParallel`` the update is the union batch's).
    After each call: ``weights`` (effective, float64), ``alpha`` (the solver's simplex weights)
    and ``info`` (:class:`kexue.mtl.MinNormInfo`: ‖u*‖², minᵢ⟨gᵢ,u*⟩, FW gap, the
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
    to 0, ``communicated_bytes`` — bytes this rank all-reduced (0 without ``sync``; with it,
    ``losses`` and ``gram`` are the union batch's)."""

    weights: torch.Tensor | None
    losses: torch.Tensor
    gram: torch.Tensor | None = None
    info: MinNormInfo | PrimaryAuxInfo | None = None
    pareto_stationary: bool = False
    communicated_bytes: int = 0


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


def _unreached(roots: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> list[int]:
    """Indices of ``targets`` that no root depends on: a walk over the autograd graph's edges
    (node, output index) — a multi-output node such as DDP's output sink can pass some of its
    outputs to the losses and not others."""
    edges = {(id(t.grad_fn), t.output_nr): k for k, t in enumerate(targets) if t.grad_fn}
    leaves = {id(t): k for k, t in enumerate(targets) if t.grad_fn is None}
    missing = set(range(len(targets)))
    seen: set[int] = set()
    for root in roots:
        if root.grad_fn is not None:
            missing.discard(edges.get((id(root.grad_fn), root.output_nr), -1))
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack and missing:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if isinstance(variable, torch.Tensor):
            missing.discard(leaves.get(id(variable), -1))
            continue
        for child, output_nr in node.next_functions:
            if child is not None:
                missing.discard(edges.get((id(child), output_nr), -1))
                stack.append(child)
    return sorted(missing)


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


def _head_gradients(
    scalars: Sequence[torch.Tensor],
    task: Sequence[torch.Tensor],
    weights: torch.Tensor,
    retain_graph: bool,
) -> list[torch.Tensor]:
    """Task-specific Σᵢ wᵢ∇Lᵢ from one backward of ``Σᵢ sg(wᵢ)·Lᵢ`` (spec 07 §3.2 step 5;
    issue 20): the heads' per-task gradients are never formed; zeros where unused. A non-finite
    result names the task when the graph is kept (``retain_graph``), else the tensor."""
    pairs = [(loss, w) for loss, w in zip(scalars, weights, strict=True) if loss.requires_grad]
    if not pairs:
        return [torch.zeros_like(p) for p in task]
    grads = torch.autograd.grad(
        [loss for loss, _ in pairs],
        list(task),
        grad_outputs=[w.to(device=loss.device, dtype=loss.dtype) for loss, w in pairs],
        retain_graph=retain_graph,
        allow_unused=True,
    )
    result = [torch.zeros_like(p) if g is None else g for p, g in zip(task, grads, strict=True)]
    if retain_graph and not all(bool(torch.isfinite(g).all()) for g in result):
        for index, loss in enumerate(scalars):  # the error path only: per-task gradients
            if not loss.requires_grad:
                continue
            rows = torch.autograd.grad(loss, list(task), retain_graph=True, allow_unused=True)
            blocks = [(torch.zeros_like(p) if g is None else g).unsqueeze(0)
                      for p, g in zip(task, rows, strict=True)]  # fmt: skip
            message = _nonfinite_message(0, blocks, "task_parameters", "")
            if message is not None:
                message = message.replace("losses[0]", f"losses[{index}]", 1)
                raise ValueError(
                    f"{message}; fix the model or the loss before the multi-task backward"
                )
    return result


def _combine(weights: torch.Tensor, jacobian: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Σᵢ wᵢ J[i] for every block (weights cast to each block's dtype/device)."""
    return [
        torch.tensordot(weights.to(device=block.device, dtype=block.dtype), block, dims=1)
        for block in jacobian
    ]


def _check_devices(tensors: Sequence[torch.Tensor], name: str, device: torch.device) -> None:
    for index, tensor in enumerate(tensors):
        if tensor.device != device:
            raise ValueError(
                f"{name}[{index}] is on {tensor.device} but the losses are on {device}: the "
                "losses, features and parameters must be on one device"
            )


def _nonfinite_message(
    task_index: int, blocks: Sequence[torch.Tensor], name: str, note: str
) -> str | None:
    """ "task gradient of losses[i] w.r.t. name[j] contains NaN/inf" for the first bad block of
    task i's rows, or None if all are finite here."""
    for j, block in enumerate(blocks):
        row = block[task_index]
        if not bool(torch.isfinite(row).all()):
            kind = "NaN" if bool(torch.isnan(row).any()) else "inf"
            return f"task gradient of losses[{task_index}] w.r.t. {name}[{j}] contains {kind}{note}"
    return None


def _check_gram(
    gram: torch.Tensor, blocks: Sequence[torch.Tensor], name: str, synced: bool
) -> None:
    """ValueError naming the task and the tensor if a task gradient is not finite (seen on the
    Gram matrix: ``M_ii`` is NaN/inf iff gᵢ has a NaN/inf, barring float64 overflow)."""
    diagonal = torch.diagonal(gram)
    bad = ~torch.isfinite(diagonal)
    if not bool(bad.any()):
        return
    task_index = int(torch.nonzero(bad).flatten()[0])
    message = _nonfinite_message(task_index, blocks, name, "")
    if message is None:
        where = "on another rank" if synced else "its squared norm overflows float64"
        message = f"task gradient of losses[{task_index}] w.r.t. the {name} is not finite ({where})"
    raise ValueError(
        f"{message}; fix the model or the loss (exploding activations, log/sqrt/division at 0) "
        "before the multi-task backward"
    )


def _check_update(
    update: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    name: str,
    jacobian: Sequence[torch.Tensor],
    note: str | None = None,
) -> None:
    """ValueError if the update of ``params`` is not finite, naming the task (from the per-task
    ``jacobian`` rows when given) and the tensor."""
    if not update or bool(torch.stack([torch.isfinite(u).all() for u in update]).all()):
        return
    j = next(k for k, u in enumerate(update) if not bool(torch.isfinite(u).all()))
    message = None
    if jacobian:
        for task_index in range(int(jacobian[0].shape[0])):
            message = _nonfinite_message(task_index, jacobian, name, "")
            if message is not None:
                break
    if message is None:
        message = f"the gradient w.r.t. {name}[{j}] is not finite"
        if note is None:
            note = " (on another rank)" if jacobian else " (backward from the features)"
        message += note
    raise ValueError(f"{message}; fix the model or the loss before the multi-task backward")


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
    sync: bool | None = None,
    process_group: dist.ProcessGroup | None = None,
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
    main, spec 08 §5.2; :class:`kexue.mtl.PrimaryAuxiliary` for options), an :class:`MGDA`, a
    :class:`kexue.mtl.GradNormalized`, a :class:`kexue.mtl.GradCosine` or any loss weighting.
    ``head_scaling`` (default: the aggregator's, ``"alpha"`` for MGDA): heads receive αᵢ∇Lᵢ
    (``"alpha"``, as the backward of Σαᵢ Lᵢ does) or ∇Lᵢ (``"none"``).

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
    or times maxᵢ‖wᵢgᵢ‖ for other gradient aggregators, or when MGDA's solver reports
    ``info.pareto_stationary`` (u below the Gram form's resolution, or a task that would ascend
    beyond rounding: :class:`kexue.mtl.MinNormInfo`), u is set to exactly 0 and
    ``pareto_stationary`` is reported.

    **Data parallel** (``torch.distributed``, e.g. under ``DistributedDataParallel``): with
    ``sync`` on, every rank all-reduces what the aggregator consumes *before* the direction is
    solved — the loss values (mean), the per-task gradients of the shared parameters (mean; for
    ``"mgda_ub"`` instead the Gram matrix of the feature gradients: the sum of the rank Grams
    over N², since the union batch's features are the ranks' features side by side and
    ∂L/∂H_r = ∂L_r/∂H_r / N), then the head update (and for ``"mgda_ub"`` the shared update) —
    so all ranks solve the same problem and write the same ``.grad``: the update of one process
    on the union batch. A loss weighting sees the union loss values (Lᵢ − sg(Lᵢ) + mean over
    ranks) and its gradients are averaged. ``sync=None`` (default) switches this on when
    ``torch.distributed`` is initialised and ``process_group`` (default: the world) has more than
    one rank; ``True``/``False`` force it. It costs T times a plain DDP step's all-reduce volume
    for the shared parameters (``communicated_bytes`` in the result; README, benchmarks/mtl_ddp).
    Exact equivalence needs equal per-rank batch sizes and losses that are means over the batch
    (a sum loss, per-batch statistics such as BatchNorm without SyncBatchNorm, or the per-rank
    gradient norms of :class:`kexue.mtl.GradNormChen` are not the union batch's). A model wrapped
    in ``DistributedDataParallel`` needs nothing more: ``mtl_backward`` never accumulates through
    autograd hooks, so DDP's reducer stays idle (checked over several steps with
    ``find_unused_parameters`` True and False); ``with ddp_model.no_sync():`` around the forward
    and ``mtl_backward`` is optional (``static_graph=True`` checked for ``"mgda"``). With
    ``find_unused_parameters=True`` (or ``static_graph=True``, first step) DDP returns *copies*
    of the module's outputs, so features taken from a wrapped model's output are not the tensor
    the heads consumed: that is refused (ValueError); wrap only the shared trunk in DDP and apply
    the heads to its output. With ``sync=False`` on a DDP model the ranks' gradients silently
    diverge.

    Bad input (issue 20 item 5): ValueError naming the task — ``losses[i]`` NaN/inf (checked
    after the all-reduce under ``sync``, so every rank raises), a task gradient with NaN/inf
    (``"task gradient of losses[i] w.r.t. shared_parameters[j] contains NaN"``), no losses,
    a loss with more than one element, losses/features/parameters on different devices,
    ``features`` that no loss depends on, ranks that disagree on the tasks or parameter sizes;
    TypeError for non-floating losses. Nothing is written to ``.grad`` when it raises. Losses of
    different floating dtypes are promoted to a common one, parameters keep their own. One task
    (T = 1) is allowed: the update is that task's gradient times the aggregator's weight
    (1 for MGDA with ``normalize="none"``, PrimaryAuxiliary and GradCosine: a plain backward;
    1/‖g‖ for GradNormalized).
    """
    synchronizer = resolve_sync(sync, process_group)
    scalars, stacked = check_losses(losses, finite=synchronizer is None)
    device = stacked.device
    values = stacked.detach()
    agg = _resolve(aggregator)
    check_choice(jacobian_method, "jacobian_method", JACOBIAN_METHODS)
    feats: list[torch.Tensor] | None = None
    if features is not None:
        feats = check_tensor_list(features, "features")
        _check_devices(feats, "features", device)
        unused = _unreached(scalars, feats)
        if unused:
            raise ValueError(
                f"no loss depends on features[{unused[0]}]: pass the tensor the task heads "
                "consume (a DistributedDataParallel module with find_unused_parameters=True, or "
                "static_graph=True in its first step, returns copies of its outputs: wrap only "
                "the shared trunk in DDP and apply the heads to its output)"
            )
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
    _check_devices(shared, "shared_parameters", device)
    if task_parameters is not None:
        task = [
            p
            for p in check_tensor_list(task_parameters, "task_parameters", requires_grad=False)
            if p.requires_grad
        ]
    else:
        shared_ids = {id(p) for p in shared}
        task = [p for p in _reachable_leaves(scalars, feats or ()) if id(p) not in shared_ids]
    _check_devices(task, "task_parameters", device)
    shared_ids = {id(p) for p in shared}
    overlap = [i for i, p in enumerate(task) if id(p) in shared_ids]
    if overlap:
        raise ValueError(f"task_parameters{overlap} are also in shared_parameters")
    if synchronizer is not None:
        synchronizer.check_agree(
            device,
            n_tasks=len(scalars),
            shared_numel=sum(p.numel() for p in shared),
            task_numel=sum(p.numel() for p in task),
            n_features=-1 if feats is None else sum(f.numel() for f in feats),
        )
        (values,) = synchronizer.mean([values])
        check_loss_values(values, note=f" (mean over {synchronizer.world_size} ranks)")

    def communicated() -> int:
        return 0 if synchronizer is None else synchronizer.bytes

    source = getattr(agg, "jacobian_source", None)
    if source is None:
        if not callable(agg):
            raise TypeError(f"{type(agg).__name__} is neither a loss weighting nor aggregator")
        weighted: LossesLike = stacked if isinstance(losses, torch.Tensor) else scalars
        if synchronizer is not None:  # the union loss values, the local gradients
            union = stacked - stacked.detach() + values.to(stacked.dtype)
            weighted = union if isinstance(losses, torch.Tensor) else list(union.unbind(0))
        total = agg(weighted)
        if not isinstance(total, torch.Tensor) or total.numel() != 1:
            raise TypeError("the loss weighting must return a scalar tensor")
        own = [p for p in agg.parameters() if p.requires_grad] if isinstance(agg, nn.Module) else []
        inputs = shared + task + [p for p in own if id(p) not in shared_ids]
        if synchronizer is None:
            torch.autograd.backward(total.reshape(()), inputs=inputs, retain_graph=retain_graph)
        else:
            grads = torch.autograd.grad(
                total.reshape(()), inputs, retain_graph=retain_graph, allow_unused=True
            )
            _accumulate(
                inputs,
                synchronizer.mean(
                    [
                        torch.zeros_like(p) if g is None else g
                        for p, g in zip(inputs, grads, strict=True)
                    ]
                ),
            )
        weights = getattr(agg, "weights", None)
        return MTLBackwardResult(
            weights if isinstance(weights, torch.Tensor) else None,
            values,
            communicated_bytes=communicated(),
        )

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
    jacobian = list(
        task_gradients(
            loss_arg,
            shared if feats is None else feats,
            method=method,  # type: ignore[arg-type]
            chunk_size=chunk_size,
            retain_graph=keep_graph if feats is None else True,  # the trunk's VJPs follow
        )
    )
    shared_jac, feature_jac = (jacobian, []) if feats is None else ([], jacobian)
    if feats is not None and source == "shared":  # gᵢ = (∂Lᵢ/∂H)·∂H/∂θ: T VJPs, trunk only
        shared_jac = batched_vjp(
            feats,
            shared,
            feature_jac,
            method=resolve_jacobian_method(method, len(scalars), feature_jac[0].device),
            chunk_size=chunk_size,
            retain_graph=retain_graph,
        )
    world = 1 if synchronizer is None else synchronizer.world_size
    if source == "shared":
        if synchronizer is not None:  # union-batch per-task gradients
            shared_jac = synchronizer.mean(shared_jac)
        gram = gram_matrix(shared_jac)
        _check_gram(gram, shared_jac, "shared_parameters", synced=False)
    else:
        gram = gram_matrix(feature_jac)
        if synchronizer is not None:  # union-batch feature Gram: Σ_r M_r / N²
            (gram,) = synchronizer.sum([gram])
            gram = gram / world**2
        _check_gram(gram, feature_jac, "features", synced=synchronizer is not None)
    weights = agg.weights_from_gram(gram, values)
    if not isinstance(weights, torch.Tensor) or weights.shape != (len(scalars),):
        raise TypeError(f"weights_from_gram must return a [{len(scalars)}] tensor")
    weights = weights.detach()
    head_weights = weights if scaling == "alpha" else torch.ones_like(weights)
    # issue 20: the heads' Σᵢhᵢ∇Lᵢ from one weighted backward, never T per-task gradients
    head_update = _head_gradients(scalars, task, head_weights, retain_graph) if task else []

    # Shared update u = Σ wᵢ gᵢ, exactly 0 at a Pareto-stationary point.
    if source == "shared":
        update = _combine(weights, shared_jac)
        norm_sq = sum(float(u.detach().to(torch.float64).pow(2).sum()) for u in update)
        if synchronizer is not None:
            head_update = synchronizer.mean(head_update) if head_update else []
    else:
        assert feats is not None
        feature_update = _combine(weights, feature_jac)
        local_sq = sum(u.detach().to(torch.float64).pow(2).sum() for u in feature_update)
        shared_grads = torch.autograd.grad(
            feats, shared, grad_outputs=feature_update, retain_graph=retain_graph, allow_unused=True
        )
        update = [
            torch.zeros_like(p) if g is None else g
            for p, g in zip(shared, shared_grads, strict=True)
        ]
        if synchronizer is None:
            norm_sq = float(local_sq)
        else:  # ‖u‖² of the union batch: Σ_r ‖u_r‖² / N²; shared and head updates averaged
            reduced = synchronizer.sum([torch.as_tensor(local_sq), *update, *head_update])
            norm_sq = float(reduced[0]) / world**2
            update = [u / world for u in reduced[1 : 1 + len(update)]]
            head_update = [h / world for h in reduced[1 + len(update) :]]
    diagonal = torch.diagonal(gram).to(torch.float64)
    if isinstance(agg, MGDA):  # spec 07 §3.2: relative to maxᵢ‖ĝᵢ‖ (gradients the solver saw)
        reference_sq = agg.reference_norm_sq(gram)
    else:  # relative to the largest weighted term: u vanishes only by cancellation
        reference_sq = float((weights.to(diagonal) ** 2 * diagonal).max())
    stationary = reference_sq == 0.0 or norm_sq <= stationary_tol**2 * reference_sq
    solver_info = getattr(agg, "info", None)
    if isinstance(agg, MGDA) and isinstance(solver_info, MinNormInfo):
        # the min-norm solver's own verdict: u below float64's resolution (in Gram form ‖u‖² ≤
        # 16Tε·max‖ĝᵢ‖²) or a task that would ascend beyond rounding (issue 20: MGDA + SGD
        # raised a loss in 6 of 1,500 digits steps where only the solver saw it)
        stationary = stationary or solver_info.pareto_stationary
    if stationary:
        update = [torch.zeros_like(u) for u in update]
    _check_update(update, shared, "shared_parameters", shared_jac)
    del shared_jac, feature_jac  # the Jacobian is not needed any more (issue 20)
    _check_update(head_update, task, "task_parameters", [],
                  " (on another rank, or pass retain_graph=True to name the task)")  # fmt: skip
    _accumulate(shared, update)
    if task:
        _accumulate(task, head_update)
    info = getattr(agg, "info", None)
    return MTLBackwardResult(
        weights=weights,
        losses=values,
        gram=gram,
        info=info if isinstance(info, (MinNormInfo, PrimaryAuxInfo)) else None,
        pareto_stationary=stationary,
        communicated_bytes=communicated(),
    )
