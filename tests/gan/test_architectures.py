"""Architectures of kexue.gan (spec 01 §6, E1.1/E1.4/E1.5): shapes, no batch coupling, init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.gan import (
    ACTIVATIONS,
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
from kexue.lipschitz import assert_no_batch_coupling

CRITICS = [
    (lambda: MLPCritic(), (5, 2)),
    (lambda: MLPCritic(activation="leaky_relu"), (5, 2)),
    (lambda: MLPImageCritic(), (5, 1, 28, 28)),
    (lambda: MLPImageCritic(), (5, 784)),
    (lambda: DCGANCritic28(channels=8), (5, 1, 28, 28)),
    (lambda: ResNetCritic32(channels=8, num_blocks=4), (3, 3, 32, 32)),
]


@pytest.mark.parametrize(("factory", "shape"), CRITICS)
def test_critics_score_shape_and_no_batch_coupling(factory, shape):
    critic = factory()
    assert_no_batch_coupling(critic)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    out = critic(torch.randn(shape))
    assert out.shape == (shape[0], 1)
    assert torch.isfinite(out).all()


def test_critics_are_per_sample():
    torch.manual_seed(0)
    critic = DCGANCritic28(channels=4)
    x = torch.randn(4, 1, 28, 28)
    together = critic(x)
    alone = torch.cat([critic(x[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)


def test_generators_output_shapes_and_range():
    assert MLPGenerator()(torch.randn(7, 2)).shape == (7, 2)
    assert MLPGenerator(latent_dim=3, out_features=5)(torch.randn(7, 3)).shape == (7, 5)
    images = MLPImageGenerator()(torch.randn(4, 64))
    assert images.shape == (4, 1, 28, 28)
    assert images.abs().max() <= 1
    dcgan = DCGANGenerator28(latent_dim=16, channels=8)
    out = dcgan(torch.randn(4, 16))
    assert out.shape == (4, 1, 28, 28)
    assert out.abs().max() <= 1
    with pytest.raises(ValueError, match="couples"):
        assert_no_batch_coupling(dcgan)  # BatchNorm is allowed in G only


def test_default_widths_match_spec():
    linear = [m for m in MLPCritic().modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(2, 256), (256, 256), (256, 1)]
    linear = [m for m in MLPGenerator().modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(2, 128), (128, 128), (128, 2)]
    linear = [m for m in MLPImageCritic().modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(784, 512), (512, 256), (256, 1)]
    convs = [m for m in DCGANCritic28().modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(1, 64), (64, 128)]
    blocks = ResNetCritic32().blocks
    assert len(blocks) == 4
    assert all(m.out_channels == 64 for m in ResNetCritic32().modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations(name):
    module = make_activation(name, negative_slope=0.1)
    x = torch.linspace(-2, 2, 11)
    expected = {
        "relu": torch.relu(x),
        "leaky_relu": nn.functional.leaky_relu(x, 0.1),
        "elu": nn.functional.elu(x),
        "softplus": nn.functional.softplus(x),
        "softplus20": nn.functional.softplus(x, beta=20),
    }[name]
    torch.testing.assert_close(module(x), expected)
    critic = MLPCritic(hidden=(4,), activation=name, negative_slope=0.1)
    assert sum(isinstance(m, type(module)) for m in critic.modules()) == 1


def test_unknown_activation_and_bad_sizes_raise():
    with pytest.raises(ValueError, match="unknown activation"):
        MLPCritic(activation="gelu")
    with pytest.raises(ValueError, match="hidden"):
        MLPCritic(hidden=())
    with pytest.raises(ValueError, match="channels"):
        DCGANCritic28(channels=0)
    with pytest.raises(ValueError, match=r"\[B, 2\]"):
        MLPCritic()(torch.randn(3, 3))
    with pytest.raises(ValueError, match="28, 28"):
        DCGANCritic28(channels=4)(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="784"):
        MLPImageCritic()(torch.randn(2, 1, 8, 8))


def test_dcgan_init():
    torch.manual_seed(0)
    critic = DCGANCritic28()
    weight = critic.features[2].weight
    assert abs(weight.std().item() - 0.02) < 0.002
    assert critic.features[0].bias.abs().max() == 0
    generator = init_dcgan_weights_(DCGANGenerator28())
    norm = generator.deconv[1]
    assert abs(norm.weight.mean().item() - 1.0) < 0.01
    with pytest.raises(ValueError, match="std"):
        init_dcgan_weights_(critic, std=0.0)
