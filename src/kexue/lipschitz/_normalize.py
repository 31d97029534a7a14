"""Gradient-normalised critics (post 8757, spec 01 §3, §5.1): GN, GraN, GraN-simple, Su's variant.

With :math:`f=D(x)` and :math:`g=\\nabla_x f` per sample (the norm is over the whole flattened
sample):

=============== ==================================================== =========================
method          :math:`\\hat f`                                       source
=============== ==================================================== =========================
``gn``          :math:`f/(\\Vert g\\Vert+|f|)`  (bounded in [-1, 1])   GN-GAN (ICCV 2021)
``gran``        :math:`K f\\Vert g\\Vert/(\\Vert g\\Vert^2+\\epsilon)`     GraN-GAN (WACV 2022)
``gran-simple`` :math:`K f/(\\Vert g\\Vert+\\epsilon)`                    post
``su``          :math:`\\langle g/\\Vert g\\Vert, x\\rangle`                post ("extremely bad")
``pure``        :math:`f/\\Vert g\\Vert`                                 post
=============== ==================================================== =========================

Numerics: norms are exact (``torch.linalg.vector_norm``, whose derivative at 0 is 0, so no NaN
reaches a double backward) and every division is guarded with ``torch.where`` *only* where its
denominator is exactly 0 (GN's 0/0 at f = 0, g = 0 gives 0), so the value is the formula everywhere
else — including the scale invariance of GN to 1e-12 (C1.4). This departs from spec 01 §3's
``sqrt(Σg² + 1e-12)`` and ``+ε₀`` guards, which shift values by up to ~1e-6 relative when
gradients are
small. ``eps`` for ``gn`` is an optional extra denominator term (default 0); for GraN it is the
formula's ε (default 1e-8). Half-precision inputs are normalised in float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import nn

from ._checks import as_per_sample_scores, assert_no_batch_coupling, check_input_batch

__all__ = [
    "NORMALIZATION_METHODS",
    "GradientNormalizedCritic",
    "NormalizationMethod",
    "NormalizedOutput",
    "default_eps",
    "normalize_gradient",
    "normalized_score_from_gradient",
    "per_sample_norm",
    "safe_divide",
]

NormalizationMethod = Literal["gn", "gran", "gran-simple", "su", "pure"]
NORMALIZATION_METHODS: tuple[str, ...] = ("gn", "gran", "gran-simple", "su", "pure")

Critic = Callable[[torch.Tensor], torch.Tensor]


class NormalizedOutput(NamedTuple):
    """``f_hat`` (normalised score), ``f`` (raw score) and ``grad_norm`` (per-sample ‖∇ₓf‖), all
    [B]."""

    f_hat: torch.Tensor
    f: torch.Tensor
    grad_norm: torch.Tensor


def _check_method(method: str) -> str:
    if method not in NORMALIZATION_METHODS:
        raise ValueError(
            f"unknown normalization method {method!r}; use one of {NORMALIZATION_METHODS}"
        )
    return method


def default_eps(method: str, dtype: torch.dtype) -> float:
    """The default epsilon: 0 for ``gn`` (a pure 0/0 guard is used instead), 1e-8 for GraN."""
    return 0.0 if _check_method(method) in ("gn", "su", "pure") else 1e-8


def per_sample_norm(gradient: torch.Tensor) -> torch.Tensor:
    """Exact ‖g_b‖ over every non-batch dimension (flattened), shape ``[B]``.

    Never ``norm(dim=1)`` of an image tensor: that would give per-pixel norms (spec 01 §5.1 step 4).
    The derivative at g_b = 0 is 0 (no NaN under double backward).
    """
    norm: torch.Tensor = torch.linalg.vector_norm(gradient.flatten(1), dim=1)
    return norm


def safe_divide(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``numerator / denominator`` where the denominator is non-zero, else 0; NaN-free gradients."""
    nonzero = denominator != 0
    return torch.where(nonzero, numerator / torch.where(nonzero, denominator, 1.0), 0.0)


def _working_dtype(tensor: torch.Tensor) -> torch.dtype:
    return tensor.dtype if tensor.dtype in (torch.float32, torch.float64) else torch.float32


def normalized_score_from_gradient(
    method: str,
    f: torch.Tensor,
    gradient: torch.Tensor,
    x: torch.Tensor,
    *,
    eps: float | None = None,
    K: float = 1.0,
    detach_norm: bool = False,
) -> NormalizedOutput:
    """The formulas of spec 01 §3 given ``f`` ``[B]``, its input gradient and the input."""
    _check_method(method)
    dtype = _working_dtype(f)
    f, gradient = f.to(dtype), gradient.to(dtype)
    norm = per_sample_norm(gradient)
    if detach_norm:
        norm = norm.detach()
    eps = default_eps(method, dtype) if eps is None else float(eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    if method == "gn":
        f_hat = safe_divide(f, norm + f.abs() + eps)
    elif method == "gran":
        f_hat = K * safe_divide(f * norm, norm.pow(2) + eps)
    elif method == "gran-simple":
        f_hat = K * safe_divide(f, norm + eps)
    elif method == "pure":
        f_hat = safe_divide(f, norm)
    else:  # su
        direction = safe_divide(gradient.flatten(1), norm[:, None])
        f_hat = (direction * x.to(dtype).flatten(1)).sum(dim=1)
    return NormalizedOutput(f_hat, f, norm)


def normalize_gradient(
    critic: Critic,
    x: torch.Tensor,
    method: NormalizationMethod = "gn",
    *,
    eps: float | None = None,
    K: float = 1.0,
    create_graph: bool = True,
    detach_norm: bool = False,
    check_critic: bool = True,
) -> NormalizedOutput:
    """Normalise ``critic`` by its per-sample input-gradient norm (spec 01 §5.1).

    Args:
        critic: maps ``[B, ...]`` to ``[B]`` or ``[B, 1]`` with no interaction between samples.
        x: the batch; need not require grad (a leaf copy is made if it does not).
        method: ``"gn"``, ``"gran"``, ``"gran-simple"``, ``"su"`` or ``"pure"`` (see module docs).
        eps: GN's 0/0 guard or GraN's epsilon; default :func:`default_eps`.
        K: GraN's piecewise Lipschitz constant (``gran``, ``gran-simple``).
        create_graph: keep the graph of the input gradient so that ``f_hat`` can be differentiated
            w.r.t. the critic's parameters (needed for a critic step; double backprop).
        detach_norm: treat ‖∇ₓf‖ as a constant (ablation; the official code does not detach).
        check_critic: refuse critics with batch-coupled layers (BatchNorm).

    Returns:
        :class:`NormalizedOutput` ``(f_hat, f, grad_norm)``, each of shape ``[B]``.
    """
    _check_method(method)
    check_input_batch(x)
    if check_critic and isinstance(critic, nn.Module):
        assert_no_batch_coupling(critic)
    outer_grad = torch.is_grad_enabled()
    inputs = x if x.requires_grad else x.detach().requires_grad_(True)
    with torch.enable_grad():
        f = as_per_sample_scores(critic(inputs), inputs.shape[0])
        (gradient,) = torch.autograd.grad(
            f.sum(), inputs, create_graph=create_graph, retain_graph=create_graph or outer_grad
        )
        output = normalized_score_from_gradient(
            method, f, gradient, inputs, eps=eps, K=K, detach_norm=detach_norm
        )
    if not outer_grad:
        return NormalizedOutput(*(t.detach() for t in output))
    return output


class GradientNormalizedCritic(nn.Module):
    """Drop-in critic whose ``forward`` returns the normalised score ``f_hat`` ``[B]``.

    The wrapped critic is checked for batch-coupled layers at construction. Double backprop is used
    whenever gradients are enabled, so ``loss(f_hat).backward()`` trains the wrapped critic.
    """

    def __init__(
        self,
        critic: nn.Module,
        method: NormalizationMethod = "gn",
        *,
        eps: float | None = None,
        K: float = 1.0,
        detach_norm: bool = False,
    ) -> None:
        super().__init__()
        _check_method(method)
        assert_no_batch_coupling(critic)
        self.critic = critic
        self.method: NormalizationMethod = method
        self.eps = eps
        self.K = K
        self.detach_norm = detach_norm

    def normalized(self, x: torch.Tensor) -> NormalizedOutput:
        """``(f_hat, f, grad_norm)`` for ``x``."""
        return normalize_gradient(
            self.critic, x, self.method, eps=self.eps, K=self.K,
            create_graph=torch.is_grad_enabled(), detach_norm=self.detach_norm,
            check_critic=False,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalized(x).f_hat

    def extra_repr(self) -> str:
        return f"method={self.method!r}, eps={self.eps}, K={self.K}, detach_norm={self.detach_norm}"
