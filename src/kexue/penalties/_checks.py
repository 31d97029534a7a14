"""Input validation and double-backward detection shared by :mod:`kexue.penalties`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

__all__ = [
    "DOUBLE_BACKWARD_HINT",
    "check_finite_float",
    "check_params",
    "check_positive",
    "check_scalar_output",
    "check_weight",
    "double_backward_error",
    "is_double_backward_error",
    "raise_if_double_backward_unsupported",
]

DOUBLE_BACKWARD_HINT = (
    "use the finite-difference parameter penalty "
    "(kexue.penalties.parameter_gradient_penalty_gradients, spec 03 §4.2), which needs no second-"
    "order graph, or run attention on the math SDPA backend "
    "(torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH)), whose backward is "
    "differentiable (pytorch/pytorch#116350)"
)

# Names of autograd nodes that raise when backward reaches them: ``DelayedError`` (a function
# marked ``@once_differentiable``) and ``NotImplemented`` (a derivative formula that is missing).
_ERROR_NODE_SUFFIXES = ("::Error", "::DelayedError", "NotImplemented")
_DOUBLE_BACKWARD_MESSAGES = (
    "double backward",
    "differentiate twice",
    "not implemented",
    "derivative for",
    "once_differentiable",
)


def check_weight(weight: float, name: str = "weight") -> None:
    """A penalty coefficient: a finite real number ``>= 0``."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(weight).__name__}")
    if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {weight}")


def check_positive(value: float, name: str) -> None:
    """A strictly positive finite real number (radius, scale)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value}")


def check_finite_float(x: torch.Tensor, name: str = "x", *, min_ndim: int = 2) -> None:
    """A floating-point, finite, non-empty batch tensor with at least ``min_ndim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point to be differentiated, got {x.dtype}")
    if x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s) (batch first), got shape "
            f"{tuple(x.shape)}"
        )
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_scalar_output(output: object, batch: int, what: str = "f") -> torch.Tensor:
    """One scalar per sample: shape ``[B]`` or ``[B, 1]``, returned as ``[B]``; else ValueError."""
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"{what} must return a tensor, got {type(output).__name__}")
    if tuple(output.shape) not in ((batch,), (batch, 1)):
        raise ValueError(
            f"{what} must return one scalar per sample, shape [{batch}] or [{batch}, 1], got "
            f"{tuple(output.shape)}"
        )
    return output.reshape(batch)


def check_params(params: Iterable[torch.Tensor], name: str = "params") -> list[torch.Tensor]:
    """A non-empty list of floating-point tensors that require grad."""
    if isinstance(params, torch.Tensor):
        items: list[torch.Tensor] = [params]
    else:
        items = list(params)
    if not items:
        raise ValueError(f"{name} is empty")
    for index, p in enumerate(items):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{name}[{index}] must be a torch.Tensor, got {type(p).__name__}")
        if not p.is_floating_point():
            raise TypeError(f"{name}[{index}] must be floating point, got {p.dtype}")
        if not p.requires_grad:
            raise ValueError(f"{name}[{index}] does not require grad")
    return items


def _error_node_name(roots: Sequence[torch.Tensor]) -> str | None:
    """Name of the first autograd node that would raise on backward, walking from ``roots``."""
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        name = node.name()
        if name.endswith(_ERROR_NODE_SUFFIXES):
            return name
        stack.extend(next_node for next_node, _ in node.next_functions if next_node is not None)
    return None


def raise_if_double_backward_unsupported(penalty_name: str, roots: Sequence[torch.Tensor]) -> None:
    """Raise a clear RuntimeError when the graph of ``roots`` contains a node whose backward is
    unsupported (spec 03 §4.2): a double-backward graph that would only fail later, inside
    ``loss.backward()``."""
    node = _error_node_name(roots)
    if node is not None:
        raise RuntimeError(
            f"{penalty_name} needs double backward, but the graph contains {node}: an operation "
            f"of the model cannot be differentiated twice; {DOUBLE_BACKWARD_HINT}"
        )


def is_double_backward_error(error: RuntimeError) -> bool:
    """Whether an autograd RuntimeError says that a second derivative is unavailable."""
    message = str(error).lower()
    return any(fragment in message for fragment in _DOUBLE_BACKWARD_MESSAGES)


def double_backward_error(penalty_name: str, error: RuntimeError) -> RuntimeError:
    """The clear error re-raised in place of autograd's double-backward RuntimeError."""
    return RuntimeError(
        f"{penalty_name} needs double backward, which an operation of the model does not support "
        f"({error}); {DOUBLE_BACKWARD_HINT}"
    )
