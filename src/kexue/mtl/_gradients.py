"""Per-task gradients (the Jacobian of the task losses) and their Gram matrix (spec 07 §2.5, §3.2).

Two ways to compute ``J[i] = ∇ L_i`` w.r.t. a list of tensors (parameters or features):

* ``method="vmap"`` — one vector-Jacobian product vmapped over the rows of the identity
  (``torch.autograd.grad(..., is_grads_batched=True)``), in chunks of ``chunk_size`` rows to bound
  memory (torchjd's ``parallel_chunk_size`` idea, SimplexLab/TorchJD PR #420);
* ``method="loop"`` — one ``autograd.grad`` per task, retaining the graph only until the last
  task (retaining it for every task roughly doubles peak memory: nash-mtl#16, CAGrad#2).

``"auto"`` uses vmap for several tasks on an accelerator and the loop otherwise: on CPU the loop
was faster in every case measured (MLP 784-256-256, batch 256, 1 thread: 6.6 vs 7.8 ms for 2
tasks, 28.6 vs 32.9 ms for 10; benchmarks/mtl.py). The Gram matrix ``M = JJᵀ`` is formed
in float64 one input tensor at a time, a chunk of columns at a time (the Jacobian is never up-cast
as a whole; issue 20).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import torch

from ._checks import (
    LossesLike,
    check_choice,
    check_loss_values,
    check_losses,
    check_tensor_list,
)
from ._distributed import resolve_sync

__all__ = ["JACOBIAN_METHODS", "JacobianMethod", "gram_matrix", "task_gradients"]

JacobianMethod = Literal["auto", "vmap", "loop"]
JACOBIAN_METHODS: tuple[str, ...] = ("auto", "vmap", "loop")

_VMAP_HINT = (
    "an operation in the graph does not support batched gradients (is_grads_batched/vmap); "
    "use method='loop' (one backward pass per task)"
)


def _check_chunk_size(chunk_size: int | None) -> None:
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")


def _materialize(
    grads: Sequence[torch.Tensor | None], inputs: Sequence[torch.Tensor], rows: int | None
) -> list[torch.Tensor]:
    """Replace the ``None`` of unused inputs by zeros (with a leading ``rows`` dim if batched)."""
    out = []
    for grad, item in zip(grads, inputs, strict=True):
        if grad is None:
            shape = item.shape if rows is None else (rows, *item.shape)
            grad = torch.zeros(shape, dtype=item.dtype, device=item.device)
        out.append(grad)
    return out


def batched_vjp(
    outputs: Sequence[torch.Tensor],
    inputs: Sequence[torch.Tensor],
    cotangents: Sequence[torch.Tensor],
    *,
    method: str,
    chunk_size: int | None,
    retain_graph: bool,
) -> list[torch.Tensor]:
    """``[Σ_k cotangents[k][r] · ∂outputs[k]/∂inputs]_r`` for every row r, stacked on dim 0.

    ``cotangents[k]`` has shape ``[R, *outputs[k].shape]``. ``"vmap"``: batched ``autograd.grad``
    per chunk of rows; ``"loop"``: one ``autograd.grad`` per row. The graph is released after the
    last row unless ``retain_graph``.
    """
    rows = int(cotangents[0].shape[0])
    if method == "loop":
        # One row at a time into preallocated [R, *x.shape] blocks (no list to concatenate).
        blocks = [item.new_zeros((rows, *item.shape)) for item in inputs]
        for r in range(rows):
            grads = torch.autograd.grad(
                list(outputs),
                list(inputs),
                grad_outputs=[c[r] for c in cotangents],
                retain_graph=retain_graph or r < rows - 1,
                allow_unused=True,
            )
            for block, grad in zip(blocks, grads, strict=True):
                if grad is not None:
                    block[r].copy_(grad)
            del grads
        return blocks
    pieces: list[list[torch.Tensor]] = [[] for _ in inputs]
    step = rows if chunk_size is None else chunk_size
    for start in range(0, rows, step):
        stop = min(start + step, rows)
        try:
            batched = torch.autograd.grad(
                list(outputs),
                list(inputs),
                grad_outputs=[c[start:stop] for c in cotangents],
                retain_graph=retain_graph or stop < rows,
                allow_unused=True,
                is_grads_batched=True,
            )
        except RuntimeError as error:
            if "batch" in str(error).lower() or "vmap" in str(error).lower():
                raise RuntimeError(f"{_VMAP_HINT} ({error})") from error
            raise
        for piece, grad in zip(pieces, _materialize(batched, inputs, stop - start), strict=True):
            piece.append(grad)
    return [torch.cat(piece, dim=0) if len(piece) > 1 else piece[0] for piece in pieces]


def resolve_jacobian_method(method: str, n_tasks: int, device: torch.device) -> str:
    """The concrete method ``"auto"`` stands for: ``"vmap"`` for several tasks on an accelerator,
    ``"loop"`` otherwise (one task, or CPU, where T backward passes beat the batched VJP, or while
    ``torch.compile`` traces: ``torch.compiler.is_compiling()``, issue 20)."""
    if method != "auto":
        return method
    if torch.compiler.is_compiling():  # batched autograd.grad does not trace under torch.compile
        return "loop"
    return "vmap" if n_tasks > 1 and device.type != "cpu" else "loop"


def task_gradients(
    losses: LossesLike,
    inputs: Iterable[torch.Tensor] | torch.Tensor,
    *,
    method: JacobianMethod = "auto",
    chunk_size: int | None = None,
    retain_graph: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Per-task gradients ``∇_x L_i`` for every tensor ``x`` of ``inputs`` (spec 07 §3.2 step 2).

    Returns one tensor per input, shape ``[T, *x.shape]`` (row i is task i's gradient; zeros where
    a loss does not depend on ``x``). ``inputs`` are shared parameters (exact MGDA) or shared
    features (MGDA-UB, representation gradients). ``method``: ``"vmap"`` (one batched
    vector-Jacobian product over the identity, ``chunk_size`` rows at a time), ``"loop"`` (T
    backward passes) or ``"auto"`` (vmap for several tasks on an accelerator, else the loop;
    :func:`resolve_jacobian_method`). The graph is freed after the
    last pass unless ``retain_graph=True`` (needed when another backward follows).

    Raises ValueError for NaN/inf losses (naming the task), and a RuntimeError pointing to
    ``method="loop"`` when an operation does not support batched gradients.
    """
    scalars, stacked = check_losses(losses)
    items = check_tensor_list(inputs, "inputs")
    check_choice(method, "method", JACOBIAN_METHODS)
    _check_chunk_size(chunk_size)
    n_tasks = len(scalars)
    if not stacked.requires_grad:
        raise ValueError(
            "no task loss requires grad: compute the losses with autograd enabled from tensors "
            "that require grad"
        )
    if resolve_jacobian_method(method, n_tasks, stacked.device) == "loop":
        # Rows are written into preallocated [T, *x.shape] blocks as they come (stacking a list
        # of T gradients would hold the Jacobian twice at the end).
        blocks = [item.new_zeros((n_tasks, *item.shape)) for item in items]
        last = max(i for i, loss in enumerate(scalars) if loss.requires_grad)
        for i, loss in enumerate(scalars):
            if not loss.requires_grad:
                continue
            grads: Sequence[torch.Tensor | None] = torch.autograd.grad(
                loss, items, retain_graph=retain_graph or i < last, allow_unused=True
            )
            for block, grad in zip(blocks, grads, strict=True):
                if grad is not None:
                    block[i].copy_(grad)
            del grads
        return tuple(blocks)
    eye = torch.eye(n_tasks, dtype=stacked.dtype, device=stacked.device)
    return tuple(
        batched_vjp(
            [stacked],
            items,
            [eye],
            method="vmap",
            chunk_size=chunk_size,
            retain_graph=retain_graph,
        )
    )


def gram_matrix(jacobian: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The Gram matrix ``M = JJᵀ``, ``M_ij = ⟨g_i, g_j⟩`` in float64 (spec 07 §2.5, §3.2 step 3).

    ``jacobian`` is a tensor ``[T, ...]`` (row i flattened is g_i) or a sequence of such tensors
    with the same T (the blocks of one Jacobian, e.g. :func:`task_gradients`'s output); the blocks'
    Gram matrices are summed, each computed after casting only that block to float64.
    """
    blocks = [jacobian] if isinstance(jacobian, torch.Tensor) else list(jacobian)
    if not blocks:
        raise ValueError("jacobian is empty: give a [T, ...] tensor or a sequence of them")
    n_tasks: int | None = None
    total: torch.Tensor | None = None
    for index, block in enumerate(blocks):
        if not isinstance(block, torch.Tensor):
            raise TypeError(f"jacobian[{index}] must be a torch.Tensor, got {type(block).__name__}")
        if block.ndim < 1:
            raise ValueError(f"jacobian[{index}] must have a leading task dimension")
        if not block.is_floating_point():
            raise TypeError(f"jacobian[{index}] must be floating point, got {block.dtype}")
        if n_tasks is None:
            n_tasks = int(block.shape[0])
        elif block.shape[0] != n_tasks:
            raise ValueError(
                f"jacobian blocks disagree on the number of tasks: {n_tasks} and "
                f"{block.shape[0]} (block {index})"
            )
        part = _block_gram(block.detach().reshape(n_tasks, -1))
        total = part if total is None else total + part
    assert total is not None
    return total


_GRAM_CHUNK = 1 << 18  # elements of a float64 column chunk (2 MiB): bounds the up-cast copy


def _block_gram(flat: torch.Tensor) -> torch.Tensor:
    """``flat @ flat.T`` in float64 for a ``[T, n]`` block; a lower-precision block is up-cast
    a chunk of columns at a time (at most ``_GRAM_CHUNK`` elements), never as a whole copy."""
    if flat.dtype == torch.float64:
        return flat @ flat.T
    n_tasks, width = flat.shape
    step = max(1, _GRAM_CHUNK // max(1, n_tasks))
    if width <= step:
        part = flat.to(torch.float64)
        return part @ part.T
    total = flat.new_zeros((n_tasks, n_tasks), dtype=torch.float64)
    for start in range(0, width, step):
        part = flat[:, start : start + step].to(torch.float64)
        total.addmm_(part, part.T)
    return total


def gram_weighted_loss(
    losses: LossesLike,
    shared: Sequence[torch.Tensor],
    weights_from_gram: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    method: JacobianMethod,
    chunk_size: int | None,
) -> torch.Tensor:
    """``Σᵢ sg(wᵢ)·Lᵢ`` with w from the Gram matrix of the per-task gradients of ``shared``
    (spec 07 §3.2 step 5): the as-a-loss form of the Gram-based aggregators (MGDA,
    PrimaryAuxiliary). The graph is kept for the backward of the returned loss.

    Under ``torch.distributed`` (initialised, more than one rank) the loss values and per-task
    gradients are averaged over the ranks before the weights are solved (issue 20), so every rank
    gets the union batch's weights and ``DistributedDataParallel``'s gradient averaging of the
    returned loss's backward gives the union batch's update."""
    synchronizer = resolve_sync(None, None)
    scalars, stacked = check_losses(losses, finite=synchronizer is None)
    values = stacked.detach()
    if synchronizer is not None:
        synchronizer.check_agree(
            values.device, n_tasks=len(scalars), shared_numel=sum(p.numel() for p in shared)
        )
        (values,) = synchronizer.mean([values])
        check_loss_values(values, note=f" (mean over {synchronizer.world_size} ranks)")
    jacobian = list(
        task_gradients(
            losses if isinstance(losses, torch.Tensor) else scalars,
            shared,
            method=method,
            chunk_size=chunk_size,
            retain_graph=True,
        )
    )
    if synchronizer is not None:
        jacobian = synchronizer.mean(jacobian)
    weights = weights_from_gram(gram_matrix(jacobian), values)
    return (weights.to(device=stacked.device, dtype=stacked.dtype) * stacked).sum()
