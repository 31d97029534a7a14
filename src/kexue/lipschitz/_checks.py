"""Critic validation shared by every input-gradient method (spec 01 §7 pitfall 5)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["as_per_sample_scores", "assert_no_batch_coupling", "check_input_batch"]

_BATCH_COUPLED = (nn.modules.batchnorm._BatchNorm,)


def assert_no_batch_coupling(critic: nn.Module) -> None:
    """Refuse critics whose output for one sample depends on the other samples of the batch.

    ``torch.autograd.grad(f.sum(), x)`` equals the per-sample input gradients only when samples
    do not
    interact inside the critic. BatchNorm (and SyncBatchNorm) couple them in training mode and,
    through
    running statistics, make train and eval critics differ; they are rejected. Per-sample
    normalisations (LayerNorm, GroupNorm, InstanceNorm without running statistics) are allowed,
    though
    they break piecewise linearity.
    """
    if not isinstance(critic, nn.Module):
        return  # plain callables cannot be inspected; the caller is responsible
    for name, module in critic.named_modules():
        coupled = isinstance(module, _BATCH_COUPLED)
        if coupled:
            raise ValueError(
                f"critic layer {name or type(critic).__name__!r} ({type(module).__name__}) couples "
                "the samples of a batch, so per-sample input gradients would be wrong; replace it "
                "with LayerNorm/GroupNorm or remove it (spec 01 §7.5)"
            )


def check_input_batch(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have a batch dimension and at least one feature dimension, "
                         f"got shape {tuple(x.shape)}")  # fmt: skip
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be floating point to be differentiated, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def as_per_sample_scores(output: torch.Tensor, batch: int) -> torch.Tensor:
    """Critic output ``[B]``, ``[B, 1]`` or ``[B, 1, ..., 1]`` as ``[B]``; anything else raises."""
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"the critic must return a tensor, got {type(output).__name__}")
    if output.shape[:1] != (batch,) or output.numel() != batch:
        raise ValueError(
            f"the critic must return one scalar per sample (shape [{batch}] or [{batch}, 1]), got "
            f"{tuple(output.shape)}"
        )
    return output.reshape(batch)
