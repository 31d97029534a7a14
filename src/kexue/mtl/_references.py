"""Reference loss constants for initial-state and prior-state normalisation (spec 06 §2, §3).

Initial state (zero pre-activation output): K-class cross-entropy ``log K``, binary
cross-entropy ``log 2``, L2 regression ``E‖y‖²``. Prior state (the best input-independent
constant prediction, ``min_c E ℓ(c, y)``): cross-entropy → entropy of the label marginal;
per-label binary cross-entropy → binary entropies; MSE → variance (the best constant is the
mean); L1 → mean absolute deviation from the median. :func:`constant_prior_loss` fits the
constant numerically for any other loss.

``reduction`` follows PyTorch's loss functions: ``"mean"`` averages over every element (the
default of ``F.mse_loss``/``F.l1_loss``/``F.binary_cross_entropy``), ``"sum"`` sums over the
non-batch dimensions and averages over the batch (E‖y − c‖² of the spec for vector targets).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch

from ._checks import check_choice

__all__ = [
    "Reduction",
    "binary_cross_entropy_init_loss",
    "binary_cross_entropy_prior_loss",
    "constant_prior_loss",
    "cross_entropy_init_loss",
    "cross_entropy_prior_loss",
    "l1_prior_loss",
    "mse_init_loss",
    "mse_prior_loss",
]

Reduction = Literal["mean", "sum"]


def _targets(targets: torch.Tensor, name: str = "targets") -> torch.Tensor:
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(targets).__name__}")
    if targets.ndim < 1 or targets.shape[0] == 0:
        raise ValueError(
            f"{name} must have a non-empty batch dimension, got {tuple(targets.shape)}"
        )
    if not targets.is_floating_point():
        targets = targets.to(torch.float64)
    values = targets.detach().to(torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return values.reshape(values.shape[0], -1)


def _reduce(per_dim: torch.Tensor, reduction: str) -> float:
    check_choice(reduction, "reduction", ("mean", "sum"))
    return float(per_dim.mean() if reduction == "mean" else per_dim.sum())


def cross_entropy_init_loss(num_classes: int) -> float:
    """``log K``: K-class cross-entropy of zero logits (uniform softmax), spec 06 (init), C6.6."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return math.log(num_classes)


def binary_cross_entropy_init_loss() -> float:
    """``log 2``: binary cross-entropy of a zero logit (probability ½)."""
    return math.log(2.0)


def mse_init_loss(targets: torch.Tensor, reduction: Reduction = "mean") -> float:
    """``E‖y − 0‖²``: the squared error of a zero prediction (spec 06 (init), L2 regression)."""
    y = _targets(targets)
    return _reduce((y**2).mean(dim=0), reduction)


def cross_entropy_prior_loss(
    labels: torch.Tensor | None = None,
    *,
    num_classes: int | None = None,
    frequencies: torch.Tensor | Sequence[float] | None = None,
) -> float:
    """``H = −Σₖ pₖ log pₖ``: cross-entropy of predicting the label marginal (spec 06 (prior)).

    Give integer class ``labels`` (``[N]``; ``num_classes`` optional) or class ``frequencies``
    (counts or probabilities, normalised here). The minimum cross-entropy over constant logits
    equals this entropy (C6.6).
    """
    if (labels is None) == (frequencies is None):
        raise TypeError("give exactly one of labels= or frequencies=")
    if labels is not None:
        if not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.ndim != 1:
            raise TypeError("labels must be a 1-D integer tensor of class indices")
        if labels.numel() == 0:
            raise ValueError("labels is empty")
        if int(labels.min()) < 0:
            raise ValueError("labels must be >= 0")
        minlength = 0 if num_classes is None else num_classes
        if num_classes is not None and int(labels.max()) >= num_classes:
            raise ValueError(f"a label is >= num_classes ({num_classes})")
        counts = torch.bincount(labels.cpu(), minlength=minlength).to(torch.float64)
    else:
        counts = torch.as_tensor(frequencies, dtype=torch.float64).flatten()
        if (
            counts.numel() == 0
            or not bool(torch.isfinite(counts).all())
            or bool((counts < 0).any())
        ):
            raise ValueError("frequencies must be a non-empty vector of finite values >= 0")
        if float(counts.sum()) <= 0:
            raise ValueError("frequencies sum to 0")
    p = counts / counts.sum()
    return float(-torch.special.xlogy(p, p).sum())


def binary_cross_entropy_prior_loss(targets: torch.Tensor, reduction: Reduction = "mean") -> float:
    """Binary entropies ``H(p_j)``, ``p_j = E[y_j]``, of per-label BCE (spec 06 §3).

    ``targets`` in [0, 1] (hard or soft labels), shape ``[N]`` or ``[N, labels...]``; the best
    constant probability is the label mean.
    """
    y = _targets(targets)
    if bool((y < 0).any()) or bool((y > 1).any()):
        raise ValueError("binary targets must lie in [0, 1]")
    p = y.mean(dim=0)
    entropy = -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p))
    return _reduce(entropy, reduction)


def mse_prior_loss(targets: torch.Tensor, reduction: Reduction = "mean") -> float:
    """``E‖y − μ‖²`` (population variance): MSE of the best constant, the mean (spec 06 (prior))."""
    y = _targets(targets)
    return _reduce(((y - y.mean(dim=0)) ** 2).mean(dim=0), reduction)


def l1_prior_loss(targets: torch.Tensor, reduction: Reduction = "mean") -> float:
    """``E|y − median(y)|``: L1 loss of the best constant, a median (spec 06 §3)."""
    y = _targets(targets)
    median = y.median(dim=0).values
    return _reduce((y - median).abs().mean(dim=0), reduction)


def constant_prior_loss(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    prediction_shape: Sequence[int],
    *,
    steps: int = 200,
    init: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> float:
    """``min_c loss_fn(c broadcast to the batch, targets)`` by L-BFGS (spec 06 §3, any loss).

    ``loss_fn(predictions [N, *prediction_shape], targets) -> scalar`` (e.g. ``F.cross_entropy``
    with ``prediction_shape=(K,)``). The constant starts at ``init`` (zeros by default, i.e. the
    initial-state value) and is optimised in ``dtype`` for at most ``steps`` L-BFGS iterations
    with a strong-Wolfe line search; floating targets are cast to ``dtype``.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if not isinstance(targets, torch.Tensor) or targets.ndim < 1 or targets.shape[0] == 0:
        raise ValueError("targets must be a tensor with a non-empty batch dimension")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    shape = tuple(int(s) for s in prediction_shape)
    y = targets.detach().to(dtype) if targets.is_floating_point() else targets.detach()
    start = torch.zeros(shape, dtype=dtype) if init is None else init.detach().to(dtype)
    if tuple(start.shape) != shape:
        raise ValueError(f"init has shape {tuple(start.shape)}, expected {shape}")
    constant = start.clone().to(y.device).requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [constant],
        lr=1.0,
        max_iter=steps,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(constant.expand(y.shape[0], *shape), y)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    with torch.enable_grad():
        optimizer.step(closure)  # type: ignore[no-untyped-call]
        with torch.no_grad():
            value = loss_fn(constant.expand(y.shape[0], *shape), y)
    return float(value)
