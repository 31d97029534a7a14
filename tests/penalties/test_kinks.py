"""The finite-difference parameter-gradient penalty on every activation family (issue 21 item 6;
spec 03 §4.2, C3.8): at the default settings within 1e-2 relative of the exact double-backward
value on ReLU, LeakyReLU, ReLU6, hard-tanh, tanh and GELU MLPs and on a CNN with max-pooling
(float64 and float32), with dropout in training mode, and the frozen-kink replay itself."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kexue.penalties import (
    KinkPatternError,
    add_parameter_gradient_penalty_,
    finite_difference_parameter_penalty,
    parameter_gradient_penalty,
)
from kexue.penalties._kinks import KinkRecorder, KinkReplayer

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu_inplace": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "relu6": nn.ReLU6,
    "hardtanh": nn.Hardtanh,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def exact_penalty_gradients(
    loss_fn: Callable[[], torch.Tensor], params: list[torch.Tensor]
) -> list[torch.Tensor]:
    penalty = parameter_gradient_penalty(loss_fn(), params, 1.0)
    return list(torch.autograd.grad(penalty, params))


def relative(approx: tuple[torch.Tensor, ...], exact: list[torch.Tensor]) -> float:
    a = torch.cat([g.double().flatten() for g in approx])
    b = torch.cat([g.double().flatten() for g in exact])
    return float((a - b).norm() / b.norm())


def classification(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(256, 64, generator=gen, dtype=torch.float64), torch.randint(
        0, 10, (256,), generator=gen
    )


def mlp(activation: Callable[[], nn.Module], seed: int = 1) -> nn.Sequential:
    """The issue's 64-128-128-10 MLP."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 128), activation(), nn.Linear(128, 128), activation(), nn.Linear(128, 10)
    ).double()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_default_penalty_matches_double_backward_on_every_activation(
    name: str, dtype: torch.dtype
) -> None:
    x, y = classification()
    model = mlp(ACTIVATIONS[name])
    params = list(model.parameters())
    exact = exact_penalty_gradients(lambda: F.cross_entropy(model(x), y), params)  # float64
    model.to(dtype)
    params = list(model.parameters())
    result = finite_difference_parameter_penalty(lambda: F.cross_entropy(model(x.to(dtype)), y),
                                                 params)  # fmt: skip
    assert relative(result.penalty_gradients, exact) <= 1e-2


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "hardtanh"])
def test_without_frozen_kinks_piecewise_linear_networks_are_wrong(name: str) -> None:
    """The defect the freezing removes: every radius crosses kinks (relative error O(1))."""
    x, y = classification()
    model = mlp(ACTIVATIONS[name])
    params = list(model.parameters())

    def loss_fn() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    exact = exact_penalty_gradients(loss_fn, params)
    for radius in (1e-1, 1e-2, 1e-3):
        plain = finite_difference_parameter_penalty(loss_fn, params, radius=radius,
                                                    freeze_kinks=False)  # fmt: skip
        assert relative(plain.penalty_gradients, exact) > 0.1


@pytest.mark.parametrize("pool", ["2x2", "3x3 stride 2 padding 1", "functional"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cnn_with_max_pooling(pool: str, dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    first: nn.Module = nn.MaxPool2d(2) if pool == "2x2" else nn.MaxPool2d(3, stride=2, padding=1)
    conv1, conv2 = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
    head = nn.Linear(16 * 7 * 7, 10)
    modules = nn.ModuleList([conv1, conv2, head]).double()

    def forward(images: torch.Tensor) -> torch.Tensor:
        if pool == "functional":  # torch.relu and F.max_pool2d(return_indices=True)
            hidden, _ = F.max_pool2d(torch.relu(conv1(images)), 2, return_indices=True)
        else:
            hidden = first(F.relu(conv1(images)))
        hidden = F.max_pool2d(conv2(hidden).relu(), 2)
        return head(hidden.flatten(1))

    gen = torch.Generator().manual_seed(3)
    images = torch.randn(64, 1, 28, 28, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 10, (64,), generator=gen)
    params = list(modules.parameters())
    exact = exact_penalty_gradients(lambda: F.cross_entropy(forward(images), labels), params)
    modules.to(dtype)
    result = finite_difference_parameter_penalty(
        lambda: F.cross_entropy(forward(images.to(dtype)), labels), list(modules.parameters())
    )
    assert relative(result.penalty_gradients, exact) <= 1e-2
    unfrozen = finite_difference_parameter_penalty(
        lambda: F.cross_entropy(forward(images.to(dtype)), labels),
        list(modules.parameters()),
        freeze_kinks=False,
    )
    assert relative(unfrozen.penalty_gradients, exact) > 0.1


def test_dropout_in_training_mode_shares_its_mask() -> None:
    """Both evaluations draw the same dropout mask (the generator is reset), so the quotient is
    the penalty of one network; afterwards the generator continues as after one evaluation.
    Without sharing the quotient mixes two masks (off by orders of magnitude)."""
    x, y = classification()
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    model.double().train()
    params = list(model.parameters())

    def loss_fn() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    torch.manual_seed(5)
    exact = exact_penalty_gradients(loss_fn, params)
    torch.manual_seed(5)
    shared = finite_difference_parameter_penalty(loss_fn, params)
    after = torch.rand(3)
    torch.manual_seed(5)
    loss_fn()
    assert torch.equal(after, torch.rand(3))
    assert relative(shared.penalty_gradients, exact) <= 1e-2
    torch.manual_seed(5)
    unshared = finite_difference_parameter_penalty(loss_fn, params, share_rng=False)
    assert relative(unshared.penalty_gradients, exact) > 1.0


def test_frozen_pieces_are_the_recorded_linear_pieces() -> None:
    """Replaying at a point where every kink has flipped evaluates the recorded piece: ReLU as
    x·mask, LeakyReLU with its slope, hard-tanh/clamp at the recorded bound, abs with the recorded
    sign, maximum on the recorded side, max-pooling at the recorded argmax."""
    x = torch.tensor([-2.0, -0.5, 0.5, 2.0], dtype=torch.float64)
    other = torch.zeros(4, dtype=torch.float64)

    def calls(v: torch.Tensor) -> list[torch.Tensor]:
        pooled = F.max_pool1d(v.view(1, 1, 4), 2).flatten()
        return [F.relu(v), F.leaky_relu(v, 0.2), F.hardtanh(v), torch.clamp(v, -1.0, 1.0),
                v.abs(), torch.maximum(v, other), pooled]  # fmt: skip

    recorder = KinkRecorder()
    with recorder:
        calls(x)
    flipped = -x
    with KinkReplayer(recorder.patterns):
        replayed = calls(flipped)
    expected = [
        flipped * (x > 0),
        flipped * torch.where(x > 0, 1.0, 0.2),
        torch.tensor([-1.0, 0.5, -0.5, 1.0], dtype=torch.float64),
        torch.tensor([-1.0, 0.5, -0.5, 1.0], dtype=torch.float64),
        flipped * torch.sign(x),
        torch.where(x >= 0, flipped, other),
        torch.tensor([flipped[1], flipped[3]]),
    ]
    for got, want in zip(replayed, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_loss_that_changes_its_graph_is_refused() -> None:
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    calls = {"n": 0}

    def loss_fn() -> torch.Tensor:
        calls["n"] += 1
        out = F.relu(w).sum()
        return out + F.relu(w).sum() if calls["n"] == 2 else out + (w**2).sum()

    with pytest.raises(KinkPatternError, match="more piecewise-linear"):
        finite_difference_parameter_penalty(loss_fn, [w])
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0], dtype=torch.float64))

    calls["n"] = 0

    def fewer() -> torch.Tensor:
        calls["n"] += 1
        return (F.relu(w).sum() if calls["n"] == 1 else w.sum()) + (w**2).sum()

    with pytest.raises(KinkPatternError, match="called 0 piecewise-linear"):
        finite_difference_parameter_penalty(fewer, [w])


def test_new_arguments_refuse_bad_input() -> None:
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)
    for name in ("freeze_kinks", "share_rng"):
        with pytest.raises(TypeError, match=name):
            finite_difference_parameter_penalty(lambda: (w**2).sum(), [w], **{name: 1})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=name):
            add_parameter_gradient_penalty_(lambda: (w**2).sum(), [w], **{name: "yes"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not finite"):
        finite_difference_parameter_penalty(lambda: (w * math.inf).sum(), [w])
