"""Frozen kinks: replay a piecewise-linear function's pattern in a second evaluation.

The finite-difference parameter-gradient penalty (spec 03 §4.2) compares ∇θL at θ and at
θ + ρg. On a network with kinks (ReLU, LeakyReLU, hard-tanh, max-pooling, ``abs``, ``clamp``) the
probe flips some units' pattern, and each flip changes the gradient by O(1) over a distance
O(ρ): the difference quotient then carries an O(1) error whatever ρ (issue 21: relative error
4.3 on a 64-128-128-10 ReLU MLP at ρ‖g‖ = 10⁻²). Double backward differentiates within the
pattern of θ (the kinks' second derivative is 0 almost everywhere); the same quantity by finite
differences needs the second evaluation to keep the first one's pattern.

:class:`KinkRecorder` (a :class:`torch.overrides.TorchFunctionMode`) records, in call order, the
pattern of every piecewise-linear call during the first evaluation (ReLU masks, max-pooling
argmax indices, the sign for ``abs``, which side a ``clamp``/``hardtanh``/``maximum`` chose);
:class:`KinkReplayer` replays them in the second, as the same linear piece (``x · mask``, a
gather at the recorded indices, ...), so autograd differentiates the piece of θ at θ + ρg. Both
intercept the functional and tensor-method forms that ``torch.nn`` modules call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__ = ["KinkPatternError", "KinkRecorder", "KinkReplayer"]


class KinkPatternError(RuntimeError):
    """The second evaluation did not call the same piecewise-linear functions in the same order
    (a loss function that is not deterministic given the parameters)."""


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


_RELU = {F.relu, torch.relu, torch.Tensor.relu}
_RELU_INPLACE = {torch.relu_, torch.Tensor.relu_, F.relu_}
_LEAKY = {F.leaky_relu}
_LEAKY_INPLACE = {F.leaky_relu_}
_HARDTANH = {F.hardtanh, F.relu6}
_HARDTANH_INPLACE = {F.hardtanh_}
_ABS = {torch.abs, torch.Tensor.abs, torch.absolute, torch.Tensor.absolute}
_CLAMP = {torch.clamp, torch.Tensor.clamp, torch.clip, torch.Tensor.clip}
_MINMAX = {torch.maximum, torch.Tensor.maximum, torch.minimum, torch.Tensor.minimum}
_POOL = {
    F.max_pool1d: F.max_pool1d_with_indices,
    F.max_pool2d: F.max_pool2d_with_indices,
    F.max_pool3d: F.max_pool3d_with_indices,
    F.max_pool1d_with_indices: F.max_pool1d_with_indices,
    F.max_pool2d_with_indices: F.max_pool2d_with_indices,
    F.max_pool3d_with_indices: F.max_pool3d_with_indices,
}
_SPATIAL = {
    F.max_pool1d: 1, F.max_pool1d_with_indices: 1,
    F.max_pool2d: 2, F.max_pool2d_with_indices: 2,
    F.max_pool3d: 3, F.max_pool3d_with_indices: 3,
}  # fmt: skip
_RETURNS_INDICES = {
    F.max_pool1d_with_indices,
    F.max_pool2d_with_indices,
    F.max_pool3d_with_indices,
}


def _kind(func: Callable[..., Any]) -> str | None:
    for kind, family in (
        ("relu", _RELU),
        ("relu_", _RELU_INPLACE),
        ("leaky", _LEAKY),
        ("leaky_", _LEAKY_INPLACE),
        ("hardtanh", _HARDTANH),
        ("hardtanh_", _HARDTANH_INPLACE),
        ("abs", _ABS),
        ("clamp", _CLAMP),
        ("minmax", _MINMAX),
    ):
        if func in family:
            return kind
    return "pool" if func in _POOL else None


def _hardtanh_bounds(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[float, float]:
    if func is F.relu6:
        return 0.0, 6.0
    return (
        float(_arg(args, kwargs, 1, "min_val", -1.0)),
        float(_arg(args, kwargs, 2, "max_val", 1.0)),
    )


def _clamp_bounds(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    return _arg(args, kwargs, 1, "min", None), _arg(args, kwargs, 2, "max", None)


def _side(x: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    """−1 where x is at or below ``low`` (the constant piece), +1 at or above ``high``, 0 inside
    (``None`` bounds are absent)."""
    side = torch.zeros_like(x, dtype=torch.int8)
    if low is not None:
        side = torch.where(x <= low, -1, side).to(torch.int8)
    if high is not None:
        side = torch.where(x >= high, 1, side).to(torch.int8)
    return side


def _piece(x: torch.Tensor, side: torch.Tensor, low: Any, high: Any) -> torch.Tensor:
    """The recorded piece of a clamp: x inside, the bound (with its own gradient) outside."""
    out = torch.where(side == 0, x, x.detach() * 0)
    if low is not None:
        out = torch.where(side < 0, torch.as_tensor(low, dtype=x.dtype, device=x.device), out)
    if high is not None:
        out = torch.where(side > 0, torch.as_tensor(high, dtype=x.dtype, device=x.device), out)
    return out


def _wants_indices(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return func in _RETURNS_INDICES or bool(_arg(args, kwargs, 6, "return_indices", False))


class _KinkMode(TorchFunctionMode):
    """Passes every call through except the piecewise-linear ones on a tensor, which go to
    ``_kink(kind, func, x, args, kwargs)``."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        kind = _kind(func)
        if kind is None or not args or not isinstance(args[0], torch.Tensor):
            return func(*args, **kwargs)
        return self._kink(kind, func, args[0], args, kwargs)

    def _kink(
        self,
        kind: str,
        func: Callable[..., Any],
        x: torch.Tensor,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        raise NotImplementedError


class KinkRecorder(_KinkMode):
    """Record the pattern of every piecewise-linear call (module docstring) into ``patterns``."""

    def __init__(self) -> None:
        super().__init__()
        self.patterns: list[tuple[str, Any]] = []

    def _kink(
        self,
        kind: str,
        func: Callable[..., Any],
        x: torch.Tensor,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if kind == "pool":
            options = {k: v for k, v in kwargs.items() if k != "return_indices"}
            positional = args[:6]  # input, kernel, stride, padding, dilation, ceil_mode
            out, indices = _POOL[func](*positional, **options)
            self.patterns.append((kind, indices))
            return (out, indices) if _wants_indices(func, args, kwargs) else out
        if kind == "minmax":
            other = _arg(args, kwargs, 1, "other", None)
            result = func(*args, **kwargs)
            self.patterns.append((kind, (x == result).detach() if other is not None else None))
            return result
        if kind == "clamp":
            low, high = _clamp_bounds(args, kwargs)
            with torch.no_grad():
                self.patterns.append((kind, _side(x, low, high)))
            return func(*args, **kwargs)
        with torch.no_grad():
            if kind in ("relu", "relu_", "leaky", "leaky_"):
                pattern = x > 0
            elif kind in ("hardtanh", "hardtanh_"):
                pattern = _side(x, *_hardtanh_bounds(func, args, kwargs))
            else:  # abs
                pattern = torch.where(x < 0, -1.0, 1.0).to(x.dtype)
        self.patterns.append((kind, pattern))
        return func(*args, **kwargs)


class KinkReplayer(_KinkMode):
    """Evaluate every piecewise-linear call on the piece recorded by a :class:`KinkRecorder`."""

    def __init__(self, patterns: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.patterns = patterns
        self.position = 0

    def _next(self, kind: str, reference: torch.Tensor | None) -> Any:
        if self.position >= len(self.patterns):
            raise KinkPatternError(
                "the second evaluation of loss_fn called more piecewise-linear functions "
                f"({kind} at call {self.position}) than the first: loss_fn must compute the same "
                "graph given the parameters (or pass freeze_kinks=False)"
            )
        recorded_kind, pattern = self.patterns[self.position]
        self.position += 1
        if recorded_kind != kind or (
            isinstance(pattern, torch.Tensor)
            and reference is not None
            and kind != "pool"
            and pattern.shape != reference.shape
        ):
            raise KinkPatternError(
                f"piecewise-linear call {self.position - 1} of the second evaluation of loss_fn "
                f"({kind}) differs from the first ({recorded_kind}): loss_fn must compute the same "
                "graph given the parameters (or pass freeze_kinks=False)"
            )
        return pattern

    def _kink(
        self,
        kind: str,
        func: Callable[..., Any],
        x: torch.Tensor,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        pattern = self._next(kind, x)
        if kind == "pool":
            spatial = _SPATIAL[func]
            out = x.flatten(-spatial).gather(-1, pattern.flatten(-spatial)).view(pattern.shape)
            return (out, pattern) if _wants_indices(func, args, kwargs) else out
        if kind in ("relu", "relu_"):
            return x.mul_(pattern) if kind == "relu_" or kwargs.get("inplace") else x * pattern
        if kind in ("leaky", "leaky_"):
            slope = float(_arg(args, kwargs, 1, "negative_slope", 0.01))
            factor = torch.where(pattern, 1.0, slope).to(x.dtype)
            inplace = kind == "leaky_" or bool(_arg(args, kwargs, 2, "inplace", False))
            return x.mul_(factor) if inplace else x * factor
        if kind in ("hardtanh", "hardtanh_"):
            return _piece(x, pattern, *_hardtanh_bounds(func, args, kwargs))
        if kind == "abs":
            return x * pattern
        if kind == "clamp":
            return _piece(x, pattern, *_clamp_bounds(args, kwargs))
        # maximum/minimum: the side the first evaluation chose
        other = _arg(args, kwargs, 1, "other", None)
        if pattern is None or not isinstance(other, torch.Tensor):
            return func(*args, **kwargs)
        return torch.where(pattern, x, other)
