"""Per-task gradients and Gram matrix (spec 07 §2.5, §3.2 steps 2–3, pitfall 6)."""

from __future__ import annotations

import pytest
import torch

from kexue.mtl import gram_matrix, task_gradients

from .conftest import MultiTaskNet, per_task_matrix


def flatten(jacobian: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([block.reshape(block.shape[0], -1) for block in jacobian], dim=1)


@pytest.mark.parametrize(
    ("method", "chunk_size"),
    [("vmap", None), ("vmap", 1), ("vmap", 2), ("loop", None), ("auto", 3)],
)
def test_task_gradients_match_explicit_autograd(method: str, chunk_size: int | None) -> None:
    net = MultiTaskNet(4)
    params = net.shared() + net.task_params()
    losses = net.losses()
    reference = per_task_matrix(losses, params)
    jacobian = task_gradients(losses, params, method=method, chunk_size=chunk_size)  # type: ignore[arg-type]
    assert len(jacobian) == len(params)
    for block, p in zip(jacobian, params, strict=True):
        assert block.shape == (4, *p.shape)
        assert block.dtype == p.dtype
    torch.testing.assert_close(flatten(jacobian), reference, rtol=1e-12, atol=1e-14)


def test_task_gradients_features_and_one_tensor_of_losses() -> None:
    """Gradients w.r.t. the shared representation (MGDA-UB input); losses as one 1-D tensor."""
    net = MultiTaskNet(3)
    features, losses = net.features_and_losses()
    expected = per_task_matrix(losses, [features])
    (jacobian,) = task_gradients(torch.stack(losses), features)
    assert jacobian.shape == (3, *features.shape)
    torch.testing.assert_close(jacobian.reshape(3, -1), expected, rtol=1e-12, atol=1e-14)


def test_graph_released_after_last_pass_unless_retained() -> None:
    """Pitfall 6: the graph is freed after the last task (no retain for every task)."""
    for method in ("vmap", "loop"):
        net = MultiTaskNet(3)
        losses = net.losses()
        task_gradients(losses, net.shared(), method=method)  # type: ignore[arg-type]
        with pytest.raises(RuntimeError, match="second time"):
            torch.stack(losses).sum().backward()
        net = MultiTaskNet(3)
        losses = net.losses()
        task_gradients(losses, net.shared(), method=method, retain_graph=True)  # type: ignore[arg-type]
        torch.stack(losses).sum().backward()  # still possible
    net = MultiTaskNet(3)
    losses = net.losses()
    task_gradients(losses, net.shared(), method="vmap", chunk_size=1)  # chunks retain until last
    with pytest.raises(RuntimeError, match="second time"):
        losses[0].backward()


def test_unused_inputs_and_constant_losses_give_zero_rows() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    unused = torch.ones(3, dtype=torch.float64, requires_grad=True)
    losses = [(w**2).sum(), torch.tensor(5.0, dtype=torch.float64), (3 * w).sum()]
    for method in ("vmap", "loop"):
        jw, ju = task_gradients(losses, [w, unused], method=method)  # type: ignore[arg-type]
        torch.testing.assert_close(jw, torch.tensor([[2.0, 4.0], [0.0, 0.0], [3.0, 3.0]]).double())
        assert torch.equal(ju, torch.zeros(3, 3, dtype=torch.float64))
        losses = [(w**2).sum(), torch.tensor(5.0, dtype=torch.float64), (3 * w).sum()]


def test_one_task() -> None:
    w = torch.tensor([1.0, -1.0], dtype=torch.float64, requires_grad=True)
    (jacobian,) = task_gradients([(w**3).sum()], [w])
    torch.testing.assert_close(jacobian, torch.tensor([[3.0, 3.0]], dtype=torch.float64))


def test_gram_matrix_blocks_float64() -> None:
    net = MultiTaskNet(4)
    params = net.shared()
    jacobian = task_gradients(net.losses(), params)
    g = flatten(jacobian)
    gram = gram_matrix(jacobian)
    assert gram.dtype == torch.float64
    assert gram.shape == (4, 4)
    torch.testing.assert_close(gram, g @ g.T, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(gram_matrix(g), gram, rtol=1e-13, atol=1e-15)
    g32 = g.float()
    assert gram_matrix(g32).dtype == torch.float64
    torch.testing.assert_close(gram_matrix(g32), g32.double() @ g32.double().T)


def test_gradient_bad_inputs() -> None:
    w = torch.ones(2, requires_grad=True)
    loss = (w**2).sum()
    with pytest.raises(ValueError, match="NaN"):
        task_gradients([loss, loss * float("nan")], [w])
    with pytest.raises(ValueError, match="task\\(s\\) \\[1\\]"):
        task_gradients([loss, loss * float("inf")], [w])
    with pytest.raises(ValueError, match="does not require grad"):
        task_gradients([loss], [torch.ones(2)])
    with pytest.raises(ValueError, match="no task loss requires grad"):
        task_gradients([torch.tensor(1.0)], [w])
    with pytest.raises(ValueError, match="chunk_size"):
        task_gradients([loss], [w], chunk_size=0)
    with pytest.raises(ValueError, match="method"):
        task_gradients([loss], [w], method="jacrev")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        task_gradients([loss], [])
    with pytest.raises(ValueError, match="twice"):
        task_gradients([loss], [w, w])
    with pytest.raises(ValueError, match="disagree"):
        gram_matrix([torch.ones(2, 3), torch.ones(3, 3)])
    with pytest.raises(TypeError, match="floating"):
        gram_matrix(torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="empty"):
        gram_matrix([])


def test_auto_jacobian_method_is_the_loop_on_cpu_and_vmap_on_accelerators() -> None:
    from kexue.mtl._gradients import resolve_jacobian_method

    assert resolve_jacobian_method("auto", 4, torch.device("cpu")) == "loop"
    assert resolve_jacobian_method("auto", 1, torch.device("cuda")) == "loop"
    assert resolve_jacobian_method("auto", 4, torch.device("cuda")) == "vmap"
    assert resolve_jacobian_method("vmap", 4, torch.device("cpu")) == "vmap"
