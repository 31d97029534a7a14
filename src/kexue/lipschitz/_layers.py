"""Layer-wise constraints: weight clipping and spectral normalisation (spec 01 §5.5)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations, parametrize

__all__ = ["apply_spectral_norm", "clip_weights_"]

_SPECTRAL_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                    nn.ConvTranspose2d, nn.ConvTranspose3d)  # fmt: skip


@torch.no_grad()
def clip_weights_(module: nn.Module, clip_value: float = 0.01) -> None:
    """Clamp every parameter of ``module`` to [−c, c] in place (WGAN, Arjovsky et al. 2017)."""
    if not clip_value > 0:
        raise ValueError(f"clip_value must be positive, got {clip_value}")
    for parameter in module.parameters():
        parameter.clamp_(-clip_value, clip_value)


def apply_spectral_norm(
    module: nn.Module, *, n_power_iterations: int = 1, eps: float = 1e-12
) -> nn.Module:
    """Register PyTorch's spectral-norm parametrisation on every linear/conv layer of ``module``.

    Uses ``torch.nn.utils.parametrizations.spectral_norm`` (one power iteration per training
    forward;
    15 at registration, so the vectors are initialised even if the first forward is in eval mode).
    Layers that already carry a parametrisation of their weight are left alone. Returns ``module``.
    """
    if n_power_iterations < 1:
        raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
    layers = [m for m in module.modules() if isinstance(m, _SPECTRAL_LAYERS)]
    if not layers:
        raise ValueError("the module has no Linear/Conv layers to spectrally normalise")
    for layer in layers:
        if not parametrize.is_parametrized(layer, "weight"):
            parametrizations.spectral_norm(layer, n_power_iterations=n_power_iterations, eps=eps)
    return module
