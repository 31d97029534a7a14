"""WGAN training on top of :mod:`kexue.lipschitz` (spec 01 §5.2–5.5, §6, §10 E1.1/E1.4/E1.5).

Architectures for the toy, image and cost experiments (critics without batch-coupled layers), a
seeded, resumable, DDP-ready :class:`WGANTrainer` driven by a JSON-round-tripping
:class:`WGANConfig`, and the command ``python -m kexue.gan.train`` (also under ``torchrun``).
"""

from __future__ import annotations

from ._architectures import (
    ACTIVATIONS,
    ActivationName,
    DCGANCritic28,
    DCGANGenerator28,
    MLPCritic,
    MLPGenerator,
    MLPImageCritic,
    MLPImageGenerator,
    ResNetCritic32,
    init_dcgan_weights_,
    make_activation,
)
from ._trainer import (
    DataSampler,
    WGANConfig,
    WGANTrainer,
    critic_step_backward,
    derive_seed,
    tensor_sampler,
)

__all__ = [
    "ACTIVATIONS",
    "ActivationName",
    "DCGANCritic28",
    "DCGANGenerator28",
    "DataSampler",
    "MLPCritic",
    "MLPGenerator",
    "MLPImageCritic",
    "MLPImageGenerator",
    "ResNetCritic32",
    "WGANConfig",
    "WGANTrainer",
    "critic_step_backward",
    "derive_seed",
    "init_dcgan_weights_",
    "make_activation",
    "tensor_sampler",
]
