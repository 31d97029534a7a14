"""The input-/parameter-gradient inequality probe for MLPs (spec 03 §2, §2.2, §4.1).

For an MLP ``h⁽ᵗ⁺¹⁾ = g⁽ᵗ⁾(W⁽ᵗ⁾h⁽ᵗ⁾ + b⁽ᵗ⁾)`` and a per-sample scalar ``f`` of the output,

    ‖∇ₓf‖² · Σₜ (1 + ‖h⁽ᵗ⁾‖²) / (‖W⁽ᵗ⁾‖² ‖J⁽ᵗ⁾‖²)  ≤  ‖∇θf‖²,     J⁽ᵗ⁾ = ∂h⁽ᵗ⁾/∂x,

with per-layer weight and bias parts (spec 03 §2). The proof (§2.2) uses the rank-one form
``∇_W f = δ hᵀ``, which fails under weight sharing, so only ``nn.Linear`` layers with their own
weights and elementwise activations are accepted (§4.1, C3.9).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from kexue.lipschitz import safe_divide

from ._checks import check_finite_float, check_scalar_output

__all__ = [
    "SUPPORTED_ACTIVATIONS",
    "GradientNormInequality",
    "InequalityNorm",
    "gradient_norm_inequality",
    "initialization_spectral_norms",
]

InequalityNorm = Literal["spectral", "frobenius"]

SUPPORTED_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Tanh,
    nn.ReLU,
    nn.LeakyReLU,
    nn.GELU,
    nn.Identity,
    nn.Sigmoid,
    nn.ELU,
    nn.Softplus,
    nn.SiLU,
)

_SUPPORTED_TEXT = (
    "supported: an nn.Sequential of nn.Linear layers (each with its own weights) and elementwise "
    "activations (" + ", ".join(f"nn.{a.__name__}" for a in SUPPORTED_ACTIVATIONS) + "; "
    "nn.Dropout in eval mode)"
)


@dataclasses.dataclass(frozen=True)
class GradientNormInequality:
    """Per-sample terms of the inequality (spec 03 §2, §2.2, §4.1 step 5); ``B`` samples, ``L``
    ``nn.Linear`` layers.

    * ``lhs`` ``[B]``: ``S(x)·‖∇ₓf‖²`` (= ``Σₜ per_layer_weight + per_layer_bias``);
    * ``rhs`` ``[B]``: ``‖∇θf‖²`` from per-sample autograd gradients;
    * ``ratio`` ``[B]``: ``lhs/rhs`` (0 where ``rhs = 0``);
    * ``S`` ``[B]``: ``Σₜ (1 + ‖h⁽ᵗ⁾‖²)/(‖W⁽ᵗ⁾‖²‖J⁽ᵗ⁾‖²)`` (the ``1`` only for layers with a bias);
    * ``per_layer_weight`` ``[B, L]``: ``‖∇ₓf‖²‖h⁽ᵗ⁾‖²/(‖W⁽ᵗ⁾‖²‖J⁽ᵗ⁾‖²)`` ≤ ``per_layer_weight_rhs``
      = ``‖∇_{W⁽ᵗ⁾}f‖²``;
    * ``per_layer_bias`` ``[B, L]``: ``‖∇ₓf‖²/(‖W⁽ᵗ⁾‖²‖J⁽ᵗ⁾‖²)`` ≤ ``per_layer_bias_rhs``
      = ``‖∇_{b⁽ᵗ⁾}f‖²`` (both 0 for a layer without bias);
    * ``input_gradient_norm``, ``parameter_gradient_norm`` ``[B]``: ‖∇ₓf‖, ‖∇θf‖;
    * ``hidden_norm`` ``[B, L]`` ‖h⁽ᵗ⁾‖, ``weight_norm`` ``[L]`` ‖W⁽ᵗ⁾‖,
      ``jacobian_norm`` ``[B, L]`` ‖J⁽ᵗ⁾‖ (both in the chosen ``norm``),
      ``delta_norm`` ``[B, L]`` ‖δ⁽ᵗ⁾‖ = ‖∂f/∂z⁽ᵗ⁺¹⁾‖;
    * ``degenerate`` ``[B]``: a layer with ``‖W⁽ᵗ⁾‖‖J⁽ᵗ⁾‖ = 0`` (dead ReLU layer, §4.1 step 6) or
      ``rhs = 0``; its 0/0 terms (and its ``S`` term) are defined as 0;
    * ``output`` ``[B]``: the scalar ``f`` per sample.
    """

    lhs: torch.Tensor
    rhs: torch.Tensor
    ratio: torch.Tensor
    S: torch.Tensor
    per_layer_weight: torch.Tensor
    per_layer_bias: torch.Tensor
    per_layer_weight_rhs: torch.Tensor
    per_layer_bias_rhs: torch.Tensor
    input_gradient_norm: torch.Tensor
    parameter_gradient_norm: torch.Tensor
    hidden_norm: torch.Tensor
    weight_norm: torch.Tensor
    jacobian_norm: torch.Tensor
    delta_norm: torch.Tensor
    degenerate: torch.Tensor
    output: torch.Tensor
    norm: InequalityNorm

    def holds(self, rtol: float = 1e-10) -> torch.Tensor:
        """``[B]`` bool: ``lhs ≤ rhs·(1 + rtol)`` (C3.1)."""
        return self.lhs <= self.rhs * (1 + rtol)


def _validate_mlp(mlp: nn.Module) -> list[tuple[str, nn.Module]]:
    if not isinstance(mlp, nn.Sequential):
        raise TypeError(
            f"mlp must be an nn.Sequential, got {type(mlp).__name__}; {_SUPPORTED_TEXT}"
        )
    # Sequential._modules keeps a module listed twice under two keys; named_children() would not.
    layers = list(mlp._modules.items())
    seen_params: dict[int, str] = {}
    n_linear = 0
    for key, layer in layers:
        if layer is None:
            continue
        if isinstance(layer, nn.Linear):
            n_linear += 1
            for pname, p in layer.named_parameters(recurse=False):
                if id(p) in seen_params:
                    raise ValueError(
                        f"layer {key!r} shares {pname} with layer {seen_params[id(p)]!r}: tied "
                        "weights break the rank-one form ∇_W f = δhᵀ of the proof (spec 03 §4.1, "
                        f"C3.9); {_SUPPORTED_TEXT}"
                    )
                seen_params[id(p)] = key
        elif isinstance(layer, SUPPORTED_ACTIVATIONS):
            if any(True for _ in layer.parameters()):
                raise ValueError(f"activation {key!r} has parameters; {_SUPPORTED_TEXT}")
        elif isinstance(layer, nn.Dropout):
            if layer.training:
                raise ValueError(
                    f"layer {key!r} is nn.Dropout in train mode (random, not a fixed elementwise "
                    f"map); call mlp.eval() first; {_SUPPORTED_TEXT}"
                )
        else:
            reason = ""
            if isinstance(layer, nn.modules.conv._ConvNd):
                reason = (
                    " (convolutions share weights across positions, so ∇_W f is a sum over "
                    "positions that can cancel and the per-layer inequality can fail, C3.9)"
                )
            raise TypeError(
                f"layer {key!r} ({type(layer).__name__}) is not supported{reason}; "
                f"{_SUPPORTED_TEXT}"
            )
    if n_linear == 0:
        raise ValueError(f"mlp contains no nn.Linear layer; {_SUPPORTED_TEXT}")
    return [(key, layer) for key, layer in layers if layer is not None]


def _default_output_fn(output: torch.Tensor) -> torch.Tensor:
    return output.sum(dim=1)


def _matrix_norm(matrix: torch.Tensor, norm: InequalityNorm) -> torch.Tensor:
    result: torch.Tensor = torch.linalg.matrix_norm(matrix, ord=2 if norm == "spectral" else "fro")
    return result


def gradient_norm_inequality(
    mlp: nn.Sequential,
    x: torch.Tensor,
    output_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    norm: InequalityNorm = "spectral",
) -> GradientNormInequality:
    """Evaluate both sides of the inequality of spec 03 §2 for every sample of ``x`` ``[B, d]``.

    ``output_fn`` maps the network output ``[B, out]`` to one scalar per sample ``[B]`` (default:
    the sum of the outputs); row ``b`` of its result must depend on row ``b`` only (e.g.
    ``lambda y: ((y - target) ** 2).mean(1)`` with a per-sample ``target`` ``[B, out]``). It is
    also called under ``torch.func.vmap``.

    Computation (no Python loop over samples, spec 03 §4.1), in the dtype of ``x`` (the
    parameters are cast, the module is not changed):

    1. a batched forward pass recording ``h⁽ᵗ⁾``; ``δ⁽ᵗ⁾ = ∂f/∂z⁽ᵗ⁺¹⁾`` by one ``autograd.grad``;
    2. Jacobians by forward accumulation ``J⁽¹⁾ = I``, ``J⁽ᵗ⁺¹⁾ = diag(g′(z⁽ᵗ⁺¹⁾)) W⁽ᵗ⁾ J⁽ᵗ⁾``, the
       elementwise derivative ``g′`` from one backward of ``Σᵢ g(zᵢ)``;
    3. ``‖W‖``, ``‖J‖`` with ``torch.linalg.matrix_norm`` (``ord=2`` or ``"fro"``); layer 1 has
       ``‖I‖ = 1`` (spectral) or ``√d`` (Frobenius) exactly (§5 pitfall 3);
    4. ``∇ₓf`` and the per-sample parameter gradients by ``vmap(grad(...))`` over
       ``functional_call`` of ``mlp`` (an independent path from step 1);
    5. per-layer terms, ``S``, lhs, rhs and ratio; 0/0 terms of dead layers are 0 and flagged.
    """
    layers = _validate_mlp(mlp)
    check_finite_float(x)
    if x.ndim != 2:
        raise ValueError(f"x must have shape [B, d] for an MLP, got {tuple(x.shape)}")
    if norm not in ("spectral", "frobenius"):
        raise ValueError(f"norm must be 'spectral' or 'frobenius', got {norm!r}")
    first = next(layer for _, layer in layers if isinstance(layer, nn.Linear))
    assert isinstance(first, nn.Linear)
    if x.shape[1] != first.in_features:
        raise ValueError(
            f"x has {x.shape[1]} features but the first nn.Linear expects {first.in_features}"
        )
    fn = _default_output_fn if output_fn is None else output_fn
    if not callable(fn):
        raise TypeError(f"output_fn must be callable, got {type(fn).__name__}")

    dtype, batch, dim = x.dtype, x.shape[0], x.shape[1]
    params = {name: p.detach().to(dtype) for name, p in mlp.named_parameters()}
    inputs = x.detach().clone().requires_grad_(True)

    # Steps 1-2: batched forward with recorded h, z and forward-accumulated Jacobians.
    hidden: list[torch.Tensor] = []
    jac_norms: list[torch.Tensor] = []
    weight_norms: list[torch.Tensor] = []
    pre_activations: list[torch.Tensor] = []
    linear_keys: list[str] = []
    has_bias: list[bool] = []
    jac: torch.Tensor | None = None  # None stands for the identity
    with torch.enable_grad():
        h = inputs
        for key, layer in layers:
            if isinstance(layer, nn.Linear):
                weight = params[f"{key}.weight"]
                bias = params.get(f"{key}.bias")
                hidden.append(h.detach())
                if jac is None:
                    identity = 1.0 if norm == "spectral" else math.sqrt(dim)
                    jac_norms.append(torch.full((batch,), identity, dtype=dtype, device=x.device))
                    jac = weight.expand(batch, *weight.shape)
                else:
                    jac_norms.append(_matrix_norm(jac, norm))
                    jac = torch.matmul(weight, jac)
                weight_norms.append(_matrix_norm(weight, norm))
                linear_keys.append(key)
                has_bias.append(bias is not None)
                h = F.linear(h, weight, bias)
                pre_activations.append(h)
            elif isinstance(layer, nn.Dropout):
                continue  # eval mode: the identity
            else:
                # g is elementwise, so ∂(Σᵢ g(zᵢ))/∂zᵢ = g'(zᵢ): one backward gives every slope.
                # (torch.func.jvp would do the same but emits torch.jit deprecation warnings for
                # some activations, e.g. GELU, in recent PyTorch.)
                point = h.detach().requires_grad_(True)
                (slope,) = torch.autograd.grad(layer(point.clone()).sum(), point)
                jac = torch.diag_embed(slope) if jac is None else slope.unsqueeze(-1) * jac
                h = layer(h.clone())
        output = h
        scores = check_scalar_output(fn(output), batch, "output_fn")
        deltas = torch.autograd.grad(scores.sum(), pre_activations)

    # Step 4: per-sample ∇ₓf and ∇θf by vmap(grad) over functional_call.
    frozen_output = output.detach()
    index = torch.arange(batch, device=x.device)

    def single(p: dict[str, torch.Tensor], xb: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        row = functional_call(mlp, p, (xb.unsqueeze(0),))
        mask = index == b
        rows = torch.where(mask.unsqueeze(1), row, frozen_output)
        values = fn(rows).reshape(batch)
        return torch.where(mask, values, torch.zeros_like(values)).sum()

    param_grads, input_grads = vmap(grad(single, argnums=(0, 1)), in_dims=(None, 0, 0))(
        params, inputs.detach(), index
    )

    # Step 5: per-layer terms.
    grad_x_sq = input_grads.flatten(1).pow(2).sum(dim=1)
    zeros = torch.zeros(batch, dtype=dtype, device=x.device)
    degenerate = torch.zeros(batch, dtype=torch.bool, device=x.device)
    cols: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("pw", "pb", "wr", "br", "s", "h", "j", "d", "w")
    }
    for t, key in enumerate(linear_keys):
        h_sq = hidden[t].pow(2).sum(dim=1)
        denominator = weight_norms[t].pow(2) * jac_norms[t].pow(2)
        degenerate = degenerate | (denominator == 0)
        bias_one = 1.0 if has_bias[t] else 0.0
        cols["pw"].append(safe_divide(grad_x_sq * h_sq, denominator))
        cols["pb"].append(safe_divide(grad_x_sq, denominator) if has_bias[t] else zeros)
        cols["s"].append(safe_divide(bias_one + h_sq, denominator))
        cols["wr"].append(param_grads[f"{key}.weight"].flatten(1).pow(2).sum(dim=1))
        bias_grad = param_grads.get(f"{key}.bias")
        cols["br"].append(zeros if bias_grad is None else bias_grad.flatten(1).pow(2).sum(dim=1))
        cols["h"].append(h_sq.sqrt())
        cols["j"].append(jac_norms[t])
        cols["d"].append(torch.linalg.vector_norm(deltas[t].flatten(1), dim=1))
        cols["w"].append(weight_norms[t])
    stacked = {k: torch.stack(v, dim=-1) for k, v in cols.items()}
    lhs = (stacked["pw"] + stacked["pb"]).sum(dim=1)
    rhs = (stacked["wr"] + stacked["br"]).sum(dim=1)
    degenerate = degenerate | (rhs == 0)
    return GradientNormInequality(
        lhs=lhs,
        rhs=rhs,
        ratio=safe_divide(lhs, rhs),
        S=stacked["s"].sum(dim=1),
        per_layer_weight=stacked["pw"],
        per_layer_bias=stacked["pb"],
        per_layer_weight_rhs=stacked["wr"],
        per_layer_bias_rhs=stacked["br"],
        input_gradient_norm=grad_x_sq.sqrt(),
        parameter_gradient_norm=rhs.sqrt(),
        hidden_norm=stacked["h"],
        weight_norm=stacked["w"],
        jacobian_norm=stacked["j"],
        delta_norm=stacked["d"],
        degenerate=degenerate,
        output=scores.detach(),
        norm=norm,
    )


def initialization_spectral_norms(
    size: int = 256, seeds: int = 5, *, dtype: torch.dtype = torch.float64
) -> dict[str, float]:
    """Mean spectral norm of ``size × size`` initial weights over ``seeds`` seeds (spec 03 C3.4).

    Keys: ``orthogonal`` (QR of a Gaussian, 1 exactly), ``lecun`` (N(0, 1/n), asymptotically 2),
    ``kaiming`` (N(0, 2/n), asymptotically 2√2) and ``pytorch_default`` (``nn.Linear``'s
    U(−1/√n, 1/√n), asymptotically 2/√3) — none near 0, the author's correction (§3).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an int >= 1, got {seeds!r}")
    totals = {"orthogonal": 0.0, "lecun": 0.0, "kaiming": 0.0, "pytorch_default": 0.0}
    for seed in range(seeds):
        gen = torch.Generator().manual_seed(seed)
        gaussian = torch.randn(size, size, generator=gen, dtype=dtype)
        q, r = torch.linalg.qr(torch.randn(size, size, generator=gen, dtype=dtype))
        matrices = {
            "orthogonal": q * torch.sign(torch.diagonal(r)).unsqueeze(0),
            "lecun": gaussian / math.sqrt(size),
            "kaiming": gaussian * math.sqrt(2.0 / size),
            "pytorch_default": (torch.rand(size, size, generator=gen, dtype=dtype) * 2 - 1)
            / math.sqrt(size),
        }
        for name, matrix in matrices.items():
            totals[name] += float(torch.linalg.matrix_norm(matrix, ord=2))
    return {name: total / seeds for name, total in totals.items()}
