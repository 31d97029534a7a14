"""Per-sample input-gradient norms and parameter-gradient norms (spec 03 §2, §4.2).

Norms are plain ℓ₂ norms of everything flattened (spec 03 §2 "Norms"): per sample over all
non-batch dimensions of ``x`` (never per pixel, §5 pitfall 6), and over *all* parameters for
``∇θ``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from kexue.lipschitz import assert_no_batch_coupling
from kexue.lipschitz import input_gradient_norm as _lipschitz_input_gradient_norm

from ._checks import (
    check_finite_float,
    check_params,
    check_scalar_output,
    double_backward_error,
    is_double_backward_error,
)

__all__ = ["ScalarFn", "input_gradient_norm", "input_gradients", "parameter_gradient_norm"]

ScalarFn = Callable[[torch.Tensor], torch.Tensor]
"""A function ``[B, ...] -> [B]`` or ``[B, 1]``: one scalar per sample, samples independent."""


def _strict_scalar_fn(f: ScalarFn, batch: int) -> ScalarFn:
    """``f`` with its output checked to be ``[B]`` or ``[B, 1]`` (``[B, 1, 1]`` is refused)."""

    def wrapped(inputs: torch.Tensor) -> torch.Tensor:
        return check_scalar_output(f(inputs), batch)

    return wrapped


def input_gradient_norm(
    f: ScalarFn, x: torch.Tensor, *, create_graph: bool = False
) -> torch.Tensor:
    """Per-sample ‖∇ₓf(x)_b‖ over the whole flattened sample, shape ``[B]`` (spec 03 §2, §4.2).

    ``f`` maps ``[B, ...]`` to ``[B]`` or ``[B, 1]`` and must not couple samples (BatchNorm is
    refused), so one backward of ``Σ_b f_b`` gives every per-sample gradient. Implemented on top of
    :func:`kexue.lipschitz.input_gradient_norm` (same norm, ``torch.linalg.vector_norm`` of the
    flattened gradient). Eps-safety: the norm is exact, and PyTorch's backward of ``vector_norm``
    is where-guarded at a zero vector (derivative 0), so a penalty built from it has no NaN
    gradient at ∇ₓf = 0. ``create_graph=True`` keeps the result differentiable (for penalties).
    """
    check_finite_float(x)
    if isinstance(f, nn.Module):
        assert_no_batch_coupling(f)
    elif not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    try:
        _, norm = _lipschitz_input_gradient_norm(
            _strict_scalar_fn(f, x.shape[0]), x, create_graph=create_graph, check_critic=False
        )
    except RuntimeError as error:
        if create_graph and is_double_backward_error(error):
            raise double_backward_error("the input-gradient norm", error) from error
        raise
    return norm


def input_gradients(
    f: ScalarFn,
    x: torch.Tensor,
    *,
    create_graph: bool = False,
    scale: float | None = None,
    penalty_name: str = "the input-gradient penalty",
) -> torch.Tensor:
    """Per-sample ∇ₓf(x)_b, shape of ``x``, optionally loss-scaled for mixed precision.

    With ``scale`` (a float, e.g. ``GradScaler.get_scale()``), the output is multiplied by
    ``scale`` before ``autograd.grad`` so small float16 gradients do not flush to zero, and the
    gradient is cast to at least float32 and divided by ``scale`` afterwards (spec 03 §4.2).
    """
    check_finite_float(x)
    if isinstance(f, nn.Module):
        assert_no_batch_coupling(f)
    elif not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    inputs = x if x.requires_grad else x.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = check_scalar_output(f(inputs), x.shape[0])
        total = scores.sum() if scale is None else scores.sum() * scale
        try:
            (gradient,) = torch.autograd.grad(
                total, inputs, create_graph=create_graph, retain_graph=create_graph
            )
        except RuntimeError as error:
            if create_graph and is_double_backward_error(error):
                raise double_backward_error(penalty_name, error) from error
            raise
    if scale is not None:
        work = torch.promote_types(gradient.dtype, torch.float32)
        gradient = gradient.to(work) / scale
    return gradient


def _safe_sqrt(square: torch.Tensor) -> torch.Tensor:
    """√s with a where-guard: value 0 and derivative 0 at s = 0 (no ∞·0 = NaN)."""
    positive = square > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, square, 1.0)), 0.0)


def parameter_gradient_norm(
    scalar: torch.Tensor,
    params: Iterable[torch.Tensor],
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> torch.Tensor:
    """‖∇θ scalar‖ over all parameters (Frobenius for matrices; spec 03 §2 "Norms"), a 0-dim tensor.

    Parameters the scalar does not depend on contribute 0. Eps-safe by a where-guard on the square
    root (derivative 0 at a zero gradient), so ``create_graph=True`` gives finite second-order
    gradients.
    """
    if not isinstance(scalar, torch.Tensor):
        raise TypeError(f"scalar must be a torch.Tensor, got {type(scalar).__name__}")
    if scalar.numel() != 1:
        raise ValueError(f"scalar must have exactly one element, got shape {tuple(scalar.shape)}")
    if not scalar.is_floating_point():
        raise TypeError(f"scalar must be floating point, got {scalar.dtype}")
    items = check_params(params)
    try:
        grads = torch.autograd.grad(
            scalar.reshape(()),
            items,
            create_graph=create_graph,
            retain_graph=retain_graph,
            allow_unused=True,
        )
    except RuntimeError as error:
        if create_graph and is_double_backward_error(error):
            raise double_backward_error("the parameter-gradient norm", error) from error
        raise
    square = sum(
        (g.pow(2).sum() for g in grads if g is not None),
        torch.zeros((), dtype=scalar.dtype, device=scalar.device),
    )
    return _safe_sqrt(square)
