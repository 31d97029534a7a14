"""Input validation shared by :mod:`kexue.mtl` (task losses, parameter lists, options)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

__all__ = [
    "LossesLike",
    "check_choice",
    "check_loss_values",
    "check_losses",
    "check_n_tasks",
    "check_positive_float",
    "check_tensor_list",
    "loss_values",
]

LossesLike = Sequence[torch.Tensor] | torch.Tensor
"""Task losses: a sequence of one-element tensors, or one 1-D tensor with one loss per task."""


def check_losses(
    losses: LossesLike,
    *,
    n_tasks: int | None = None,
    nonnegative: bool = False,
    finite: bool = True,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Validate task losses; return ``(scalars, stacked)``.

    ``scalars`` are the losses as 0-dim tensors (graph kept), ``stacked`` the 1-D tensor of all of
    them (graph kept, dtype promoted across tasks). Raises TypeError for non-tensors or integer
    losses and ValueError for an empty list, a loss with more than one element, losses on
    different devices, a task-count mismatch, a NaN/inf loss (naming the task) or, with
    ``nonnegative``, a negative loss. The finiteness check (:func:`check_loss_values`; skipped
    with ``finite=False``, for callers that check the values later, e.g. after an all-reduce)
    costs one host synchronisation.
    """
    if isinstance(losses, torch.Tensor):
        if losses.ndim > 1:
            raise ValueError(
                f"losses given as one tensor must be 1-D (one loss per task), got shape "
                f"{tuple(losses.shape)}; pass a list of scalar losses instead"
            )
        stacked = losses.reshape(-1)
        if not stacked.is_floating_point():
            raise TypeError(f"losses must be floating point, got {stacked.dtype}")
        scalars = list(stacked.unbind(0))
    else:
        if isinstance(losses, (str, bytes)) or not isinstance(losses, Sequence):
            raise TypeError(
                f"losses must be a sequence of scalar tensors or a 1-D tensor, got "
                f"{type(losses).__name__}"
            )
        scalars = []
        for index, loss in enumerate(losses):
            if not isinstance(loss, torch.Tensor):
                raise TypeError(
                    f"losses[{index}] must be a torch.Tensor, got {type(loss).__name__}"
                )
            if loss.numel() != 1:
                raise ValueError(
                    f"losses[{index}] must have exactly one element (reduce it to a scalar, e.g. "
                    f".mean()), got shape {tuple(loss.shape)}"
                )
            if not loss.is_floating_point():
                raise TypeError(f"losses[{index}] must be floating point, got {loss.dtype}")
            if scalars and loss.device != scalars[0].device:
                raise ValueError(
                    f"losses[{index}] is on {loss.device} but losses[0] on {scalars[0].device}: "
                    "all task losses must be on one device (move them with .to(device))"
                )
            scalars.append(loss.reshape(()))
        if scalars:
            dtype = scalars[0].dtype
            for loss in scalars[1:]:
                dtype = torch.promote_types(dtype, loss.dtype)
            scalars = [loss.to(dtype) for loss in scalars]
            stacked = torch.stack(scalars)
    if not scalars:
        raise ValueError("losses is empty: give one loss per task (at least one task)")
    if n_tasks is not None and len(scalars) != n_tasks:
        raise ValueError(
            f"expected {n_tasks} task losses (the number this weighting was built for), got "
            f"{len(scalars)}"
        )
    if finite:
        check_loss_values(stacked.detach(), nonnegative=nonnegative)
    return scalars, stacked


def check_loss_values(values: torch.Tensor, *, nonnegative: bool = False, note: str = "") -> None:
    """Raise ValueError naming the task (``losses[i]``) if a loss value is NaN/inf or, with
    ``nonnegative``, negative; ``note`` is appended to the message (e.g. where the values come
    from). One host synchronisation."""
    bad = ~torch.isfinite(values)
    if nonnegative:
        bad = bad | (values < 0)
    if bool(bad.any()):
        tasks = [int(i) for i in torch.nonzero(bad).flatten().tolist()]
        shown = [float(values[i]) for i in tasks]
        named = ", ".join(f"losses[{i}] = {v}" for i, v in zip(tasks, shown, strict=True))
        if all(math.isfinite(v) for v in shown):
            raise ValueError(
                f"loss of task(s) {tasks} is negative ({named}){note}; this weighting needs "
                "losses >= 0 (shift the loss, or use EqualWeights/FixedWeights/GradNormalized)"
            )
        raise ValueError(
            f"loss of task(s) {tasks} is NaN or infinite ({named}){note}; fix the model or the "
            "loss (exploding logits, log of 0, a division by zero) before combining task losses"
        )


def loss_values(losses: LossesLike) -> torch.Tensor:
    """The detached 1-D tensor of loss values (validated like :func:`check_losses`)."""
    return check_losses(losses)[1].detach()


def check_tensor_list(
    tensors: Iterable[torch.Tensor] | torch.Tensor, name: str, *, requires_grad: bool = True
) -> list[torch.Tensor]:
    """A non-empty list of distinct floating-point tensors (that require grad, by default)."""
    items: list[torch.Tensor] = [tensors] if isinstance(tensors, torch.Tensor) else list(tensors)
    if not items:
        raise ValueError(f"{name} is empty")
    seen: set[int] = set()
    for index, item in enumerate(items):
        if not isinstance(item, torch.Tensor):
            raise TypeError(f"{name}[{index}] must be a torch.Tensor, got {type(item).__name__}")
        if not item.is_floating_point():
            raise TypeError(f"{name}[{index}] must be floating point, got {item.dtype}")
        if requires_grad and not item.requires_grad:
            raise ValueError(
                f"{name}[{index}] does not require grad (freeze it by leaving it out instead)"
            )
        if id(item) in seen:
            raise ValueError(f"{name}[{index}] appears twice")
        seen.add(id(item))
    return items


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    """One of the allowed option strings."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_positive_float(value: float, name: str, *, allow_zero: bool = False) -> float:
    """A finite real number ``> 0`` (``>= 0`` with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def check_n_tasks(n_tasks: object, name: str = "n_tasks") -> int:
    """A task count: an int ``>= 1``."""
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int):
        raise TypeError(f"{name} must be an int, got {type(n_tasks).__name__}")
    if n_tasks < 1:
        raise ValueError(f"{name} must be >= 1, got {n_tasks}")
    return n_tasks
