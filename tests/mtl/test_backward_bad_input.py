"""mtl_backward on bad input (issue 20 item 5): NaN/inf losses and task gradients, no task or one
task, losses of the wrong shape, tensors on different devices (the ``meta`` device), dtypes,
features the losses do not depend on. Every error names the argument and the task index, and
nothing is written to ``.grad``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from kexue.mtl import GradCosine, GradNormalized, PrimaryAuxiliary, mtl_backward

from .conftest import MultiTaskNet, grads_of, relative

NAN = float("nan")
INF = float("inf")


def poisoned(tensor: torch.Tensor, value: float) -> torch.Tensor:
    """A copy of ``tensor`` whose incoming gradient is multiplied by ``value`` (NaN/inf)."""
    copy = tensor.clone()
    copy.register_hook(lambda grad: grad * value)
    return copy


def theta() -> torch.Tensor:
    return torch.tensor([0.5, -1.5], dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize(("value", "shown"), [(NAN, "nan"), (INF, "inf"), (-INF, "-inf")])
def test_non_finite_loss_names_the_task(value: float, shown: str) -> None:
    p = theta()
    losses = [(p**2).sum(), p.sum(), (p**2).sum() * value]
    with pytest.raises(ValueError, match=rf"losses\[2\] = {shown}"):
        mtl_backward(losses, [p])
    assert p.grad is None


@pytest.mark.parametrize(("value", "kind"), [(NAN, "NaN"), (INF, "inf")])
@pytest.mark.parametrize("aggregator", ["mgda", "primary_auxiliary"])
def test_non_finite_shared_gradient_names_task_and_parameter(
    value: float, kind: str, aggregator: str
) -> None:
    p, q = theta(), theta()
    losses = [(p**2).sum() + q.sum(), (poisoned(q, value) ** 2).sum()]
    with pytest.raises(
        ValueError,
        match=rf"task gradient of losses\[1\] w.r.t. shared_parameters\[1\] contains {kind}",
    ):
        mtl_backward(losses, [p, q], aggregator=aggregator)
    assert p.grad is None
    assert q.grad is None


def test_non_finite_head_and_feature_gradients() -> None:
    p = theta()
    head = torch.tensor([2.0, 1.0], dtype=torch.float64, requires_grad=True)
    features = p * 3.0
    losses = [(features**2).sum(), (features * poisoned(head, NAN)).sum()]
    with pytest.raises(
        ValueError, match=r"task gradient of losses\[1\] w.r.t. task_parameters\[0\] contains NaN"
    ):
        mtl_backward(losses, [p], task_parameters=[head], retain_graph=True)
    with pytest.raises(
        ValueError, match=r"task gradient of losses\[1\] w.r.t. features\[0\] contains inf"
    ):
        mtl_backward(
            [(features**2).sum(), (poisoned(features, INF) ** 2).sum()],
            features=features,
            aggregator="mgda_ub",
            retain_graph=True,
        )
    # Finite feature gradients, a NaN in the encoder's backward: named by the shared tensor.
    encoded = poisoned(p, NAN) * 3.0
    with pytest.raises(
        ValueError, match=r"gradient w.r.t. shared_parameters\[0\] is not finite \(backward"
    ):
        mtl_backward(
            [(encoded**2).sum(), encoded.sum()], [p], features=encoded, aggregator="mgda_ub"
        )
    assert p.grad is None
    assert head.grad is None


def test_task_count_and_loss_shapes() -> None:
    p = theta()
    with pytest.raises(ValueError, match="losses is empty"):
        mtl_backward([], [p])
    with pytest.raises(ValueError, match=r"losses\[1\] must have exactly one element"):
        mtl_backward([(p**2).sum(), p * 2.0], [p])
    with pytest.raises(ValueError, match="must be 1-D"):
        mtl_backward(torch.stack([p, p]), [p])
    with pytest.raises(TypeError, match=r"losses\[0\] must be a torch.Tensor"):
        mtl_backward([1.0, p.sum()], [p])  # type: ignore[list-item]


def test_devices_must_agree() -> None:
    """The ``meta`` device stands for a second device: every mix is refused by name."""
    p = theta()
    on_meta = torch.zeros(2, dtype=torch.float64, device="meta", requires_grad=True)
    with pytest.raises(ValueError, match=r"losses\[1\] is on meta but losses\[0\] on cpu"):
        mtl_backward([(p**2).sum(), on_meta.sum()], [p])
    with pytest.raises(ValueError, match=r"shared_parameters\[1\] is on meta"):
        mtl_backward([(p**2).sum(), p.sum()], [p, on_meta])
    with pytest.raises(ValueError, match=r"task_parameters\[0\] is on meta"):
        mtl_backward([(p**2).sum(), p.sum()], [p], task_parameters=[on_meta])
    with pytest.raises(ValueError, match=r"features\[0\] is on meta"):
        mtl_backward([(p**2).sum(), p.sum()], [p], features=on_meta * 2.0)
    assert p.grad is None


def test_dtypes() -> None:
    """Integer/complex losses or parameters: TypeError naming them. Mixed floating dtypes are
    allowed: losses are promoted to a common dtype, parameters keep their own."""
    p = theta()
    with pytest.raises(TypeError, match=r"losses\[1\] must be floating point"):
        mtl_backward([(p**2).sum(), torch.tensor(1)], [p])
    with pytest.raises(TypeError, match=r"losses\[0\] must be floating point"):
        mtl_backward([torch.tensor(1j), (p**2).sum()], [p])
    with pytest.raises(TypeError, match=r"shared_parameters\[1\] must be floating point"):
        mtl_backward([(p**2).sum(), p.sum()], [p, torch.tensor([1, 2])])

    # float32 and float64 losses and parameters: the float64 result to float32 rounding.
    def losses(p: torch.Tensor, q: torch.Tensor) -> list[torch.Tensor]:
        q64 = q.double()
        return [(p**2).sum() + q64.sum(), (p * q64).sum(), (p - 3 * q64).pow(2).sum()]

    p64, q64 = theta(), theta()
    mtl_backward(losses(p64, q64), [p64, q64])
    p, q32 = theta(), theta().detach().float().requires_grad_()
    mixed = losses(p, q32)
    mtl_backward([mixed[0].float(), mixed[1], mixed[2].float()], [p, q32])
    assert q32.grad is not None
    assert q32.grad.dtype == torch.float32
    assert p.grad is not None
    assert p.grad.dtype == torch.float64
    assert relative(p.grad, p64.grad) < 1e-6  # type: ignore[arg-type]
    assert relative(q32.grad.double(), q64.grad) < 1e-6  # type: ignore[arg-type]


def test_features_the_losses_do_not_depend_on() -> None:
    p = theta()
    features = p * 2.0
    unrelated = p * 3.0
    with pytest.raises(ValueError, match=r"no loss depends on features\[1\]"):
        mtl_backward(
            [(features**2).sum(), features.sum()],
            [p],
            features=[features, unrelated],
            aggregator="mgda_ub",
        )
    assert p.grad is None


PLAIN: dict[str, Callable[[], object]] = {
    "mgda": lambda: "mgda",
    "mgda_ub": lambda: "mgda_ub",
    "primary_auxiliary": lambda: PrimaryAuxiliary(),
    "grad_cosine": lambda: GradCosine(),
}


@pytest.mark.parametrize("name", list(PLAIN))
def test_one_task_is_a_plain_backward(name: str) -> None:
    """T = 1 is allowed: MGDA, MGDA-UB, PrimaryAuxiliary and GradCosine give the plain backward
    (shared and head); GradNormalized the unit gradient."""
    net = MultiTaskNet(1)
    (loss,) = net.losses()
    loss.backward()
    expected_shared, expected_heads = grads_of(net.shared()), grads_of(net.task_params())
    net.zero_grad(set_to_none=True)
    features, losses = net.features_and_losses()
    result = mtl_backward(
        losses,
        net.shared(),
        features=features if name == "mgda_ub" else None,
        task_parameters=net.task_params(),
        aggregator=PLAIN[name](),
    )
    assert result.weights is not None
    assert result.weights.tolist() == [1.0]
    assert relative(grads_of(net.shared()), expected_shared) <= 1e-12
    assert relative(grads_of(net.task_params()), expected_heads) <= 1e-12
    net.zero_grad(set_to_none=True)
    mtl_backward(net.losses(), net.shared(), aggregator=GradNormalized())
    unit = expected_shared / expected_shared.norm()
    assert relative(grads_of(net.shared()), unit) <= 1e-10
