"""Critic and generator architectures for the WGAN experiments (spec 01 §6, §10 E1.1/E1.4/E1.5).

Critics never contain batch-coupled layers (BatchNorm): gradient normalisation and the input
gradient penalties need per-sample input gradients (spec 01 §7 pitfall 5). Generators may use
BatchNorm. Every critic returns scores of shape ``[B, 1]``.

=================== ========================================================================
class               use
=================== ========================================================================
MLPCritic           2-D toy critic 2→256→256→1 (E1.1); activation choice for the ablation E1.2
MLPGenerator        2-D toy generator z∈R²→128→128→2, ReLU (E1.1)
MLPImageCritic      784→512→256→1 LeakyReLU(0.2) (E1.4)
MLPImageGenerator   z∈R⁶⁴→256→512→784, tanh output (E1.4)
DCGANCritic28       conv 1→64 (14×14) → conv 64→128 (7×7) → linear → 1, LeakyReLU (E1.4)
DCGANGenerator28    linear → (128, 7, 7) → convT → 14 → convT → 28, tanh (E1.4)
ResNetCritic32      4 residual blocks, 64 channels, 3×32×32, sum pooling (E1.5 / C1.9)
=================== ========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "ActivationName",
    "DCGANCritic28",
    "DCGANGenerator28",
    "MLPCritic",
    "MLPGenerator",
    "MLPImageCritic",
    "MLPImageGenerator",
    "ResNetCritic32",
    "init_dcgan_weights_",
    "make_activation",
]

ActivationName = Literal["relu", "leaky_relu", "elu", "softplus", "softplus20"]
ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "elu", "softplus", "softplus20")


def make_activation(name: str, negative_slope: float = 0.2) -> nn.Module:
    """An activation module by name (spec 01 §9 activation ablation, E1.2).

    ``softplus20`` is ``Softplus(beta=20)``, the near-ReLU smooth activation of the official
    ablation. ``negative_slope`` is used by ``leaky_relu`` only.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name == "elu":
        return nn.ELU()
    if name == "softplus":
        return nn.Softplus()
    if name == "softplus20":
        return nn.Softplus(beta=20.0)
    raise ValueError(f"unknown activation {name!r}; choose from {ACTIVATIONS}")


def _positive(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def _hidden(hidden: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(hidden)
    if not widths:
        raise ValueError("hidden must list at least one layer width")
    for width in widths:
        _positive(width, "every hidden width")
    return widths


def _mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: Callable[[], nn.Module],
) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_features
    for size in hidden:
        layers += [nn.Linear(width, size), activation()]
        width = size
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


def _activation_factory(name: str, negative_slope: float) -> Callable[[], nn.Module]:
    make_activation(name, negative_slope)  # validate the name now
    return lambda: make_activation(name, negative_slope)


class MLPCritic(nn.Module):
    """Fully connected critic ``in_features → hidden… → 1`` without normalisation (E1.1, E1.2).

    Args:
        in_features: input dimension (2 for the toy mixtures).
        hidden: hidden widths, default ``(256, 256)``.
        activation: ``relu``, ``leaky_relu``, ``elu``, ``softplus`` or ``softplus20``.
        negative_slope: LeakyReLU slope (0.2).
    """

    def __init__(
        self,
        in_features: int = 2,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.in_features = _positive(in_features, "in_features")
        self.net = _mlp(
            in_features, _hidden(hidden), 1, _activation_factory(activation, negative_slope)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"MLPCritic expects inputs [B, {self.in_features}], got {tuple(x.shape)}"
            )
        out: torch.Tensor = self.net(x)
        return out


class MLPGenerator(nn.Module):
    """Toy generator ``z ∈ R^latent_dim → hidden… → out_features`` with ReLU (E1.1)."""

    def __init__(
        self, latent_dim: int = 2, hidden: Sequence[int] = (128, 128), out_features: int = 2
    ) -> None:
        super().__init__()
        self.latent_dim = _positive(latent_dim, "latent_dim")
        self.net = _mlp(
            latent_dim, _hidden(hidden), _positive(out_features, "out_features"), nn.ReLU
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(z)
        return out


class MLPImageCritic(MLPCritic):
    """Image critic on flattened pixels: ``784 → 512 → 256 → 1``, LeakyReLU(0.2) (spec 01 E1.4).

    An :class:`MLPCritic` with image defaults that accepts ``[B, C, H, W]`` or
    ``[B, in_features]`` inputs.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (512, 256),
        activation: str = "leaky_relu",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__(in_features, hidden, activation, negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        if flat.shape[1] != self.in_features:
            raise ValueError(
                f"MLPImageCritic expects {self.in_features} features per sample, got "
                f"{tuple(x.shape)}"
            )
        out: torch.Tensor = self.net(flat)
        return out


class MLPImageGenerator(nn.Module):
    """Image generator ``z ∈ R^64 → 256 → 512 → 784`` (ReLU, tanh output), reshaped to
    ``out_shape`` (default ``(1, 28, 28)``) (spec 01 E1.4)."""

    def __init__(
        self,
        latent_dim: int = 64,
        hidden: Sequence[int] = (256, 512),
        out_shape: Sequence[int] = (1, 28, 28),
    ) -> None:
        super().__init__()
        self.latent_dim = _positive(latent_dim, "latent_dim")
        self.out_shape = tuple(_positive(size, "out_shape entries") for size in out_shape)
        features = 1
        for size in self.out_shape:
            features *= size
        self.net = _mlp(latent_dim, _hidden(hidden), features, nn.ReLU)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z)).reshape(z.shape[0], *self.out_shape)


class DCGANCritic28(nn.Module):
    """DCGAN-style critic for ``[B, 1, 28, 28]`` images without normalisation layers (E1.4).

    conv4×4/2 ``1→channels`` (14×14), conv4×4/2 ``channels→2·channels`` (7×7), flatten, linear → 1.
    Initialised with :func:`init_dcgan_weights_` (N(0, 0.02), the official CNN recipe, §6).
    """

    def __init__(
        self,
        channels: int = 64,
        activation: str = "leaky_relu",
        negative_slope: float = 0.2,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        channels = _positive(channels, "channels")
        self.in_channels = _positive(in_channels, "in_channels")
        act = _activation_factory(activation, negative_slope)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, channels, 4, stride=2, padding=1),
            act(),
            nn.Conv2d(channels, 2 * channels, 4, stride=2, padding=1),
            act(),
        )
        self.head = nn.Linear(2 * channels * 7 * 7, 1)
        init_dcgan_weights_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, 28, 28):
            raise ValueError(
                f"DCGANCritic28 expects [B, {self.in_channels}, 28, 28], got {tuple(x.shape)}"
            )
        out: torch.Tensor = self.head(self.features(x).flatten(1))
        return out


class DCGANGenerator28(nn.Module):
    """DCGAN-style generator ``z → [B, 1, 28, 28]`` in [−1, 1] (E1.4); BatchNorm is allowed in G.

    linear ``latent_dim → 2·channels·7·7`` + BN + ReLU, convT4×4/2 → 14×14 + BN + ReLU,
    convT4×4/2 → 28×28, tanh.
    """

    def __init__(self, latent_dim: int = 64, channels: int = 64, out_channels: int = 1) -> None:
        super().__init__()
        self.latent_dim = _positive(latent_dim, "latent_dim")
        self.channels = _positive(channels, "channels")
        _positive(out_channels, "out_channels")
        self.project = nn.Sequential(
            nn.Linear(latent_dim, 2 * channels * 7 * 7),
            nn.BatchNorm1d(2 * channels * 7 * 7),
            nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, out_channels, 4, stride=2, padding=1),
            nn.Tanh(),
        )
        init_dcgan_weights_(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        hidden = self.project(z).view(z.shape[0], 2 * self.channels, 7, 7)
        out: torch.Tensor = self.deconv(hidden)
        return out


class _ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, downsample: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.downsample = downsample
        self.shortcut = (
            nn.Conv2d(in_channels, channels, 1) if downsample or in_channels != channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h: torch.Tensor = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip: torch.Tensor = x if self.shortcut is None else self.shortcut(x)
        if self.downsample:
            h = F.avg_pool2d(h, 2)
            skip = F.avg_pool2d(skip, 2)
        return h + skip


class ResNetCritic32(nn.Module):
    """SN-GAN-style residual critic for ``[B, 3, 32, 32]`` without normalisation (E1.5, C1.9).

    ``num_blocks`` residual blocks of ``channels`` channels (the first two halve the resolution,
    32 → 16 → 8), ReLU, global sum pooling, linear → 1.
    """

    def __init__(self, channels: int = 64, num_blocks: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        channels = _positive(channels, "channels")
        _positive(num_blocks, "num_blocks")
        self.in_channels = _positive(in_channels, "in_channels")
        blocks = [
            _ResidualBlock(in_channels if i == 0 else channels, channels, downsample=i < 2)
            for i in range(num_blocks)
        ]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ResNetCritic32 expects [B, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))
        out: torch.Tensor = self.head(h)
        return out


@torch.no_grad()
def init_dcgan_weights_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """DCGAN initialisation in place: conv/linear weights ~ N(0, std), biases 0; BatchNorm
    weights ~ N(1, std), biases 0 (the official CNN recipe, spec 01 §6). Returns ``module``."""
    if not std > 0:
        raise ValueError(f"std must be positive, got {std}")
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(layer.weight, 0.0, std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, std)
            nn.init.zeros_(layer.bias)
    return module
