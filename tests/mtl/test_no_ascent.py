"""kexue.mtl.NoAscentStep: an optimiser's applied step projected onto the no-ascent cone
(specs 07 §2.1, 08 §3; issue 20 item 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from kexue.mtl import MGDA, NoAscentStep, mtl_backward, task_gradients


def _flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _random_problem(
    seed: int, n_tasks: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Two float64 parameters, a random 'optimiser step' already applied, random task gradients."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [(3, 4), (5,)]
    before = [torch.randn(s, generator=generator, dtype=torch.float64) for s in shapes]
    params = [
        (b + 0.1 * torch.randn(b.shape, generator=generator, dtype=torch.float64)).requires_grad_()
        for b in before
    ]
    grads = [torch.randn((n_tasks, *s), generator=generator, dtype=torch.float64) for s in shapes]
    return before, params, grads


@pytest.mark.parametrize("seed", range(20))
def test_projected_step_is_the_projection_onto_the_no_ascent_cone(seed: int) -> None:
    n_tasks = 1 + seed % 6
    before, params, grads = _random_problem(seed, n_tasks)
    delta = _flat([p.detach() - b for p, b in zip(params, before, strict=True)])
    g = torch.cat([gr.reshape(n_tasks, -1) for gr in grads], dim=1)
    guard = NoAscentStep(params)
    lam = guard.project_update(before, grads)
    projected = _flat([p.detach() - b for p, b in zip(params, before, strict=True)])
    # Independent oracle: λ* = argmin_{λ≥0} ‖Gᵀλ − Δ‖ (SciPy NNLS), Δ* = Δ − Gᵀλ*.
    lam_ref, _ = nnls(g.T.numpy(), delta.numpy())
    expected = delta - g.T @ torch.from_numpy(lam_ref)
    torch.testing.assert_close(projected, expected, rtol=1e-9, atol=1e-11)
    inner = g @ projected
    scale = float(g.norm(dim=1).max() * delta.norm())
    assert float(inner.max()) <= 1e-12 * scale
    assert float(projected.norm()) <= float(delta.norm()) * (1 + 1e-12)
    assert float(projected @ delta) == pytest.approx(float(projected @ projected), rel=1e-10)
    assert lam.shape == (n_tasks,)
    assert bool((lam >= 0).all())
    assert guard.inner_after is not None
    torch.testing.assert_close(guard.inner_after, inner, rtol=1e-8, atol=1e-12 * scale)


def test_adam_raises_a_loss_that_the_direction_does_not_and_the_guard_prevents_it() -> None:
    # u = (1, 0.2) is a no-ascent direction for g₁ = (1, 0), g₂ = (0.5, −2): ⟨u, gᵢ⟩ = 1, 0.1.
    # Adam's first step is −lr·sign(u) = −lr·(1, 1): ⟨Δ, g₂⟩ = +1.5·lr, a first-order ascent.
    u = torch.tensor([1.0, 0.2], dtype=torch.float64)
    g = torch.tensor([[1.0, 0.0], [0.5, -2.0]], dtype=torch.float64)
    assert bool((g @ u >= 0).all())
    for guarded in (False, True):
        x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([x], lr=1e-2)
        x.grad = u.clone()
        guard = NoAscentStep([x])
        if guarded:
            guard.step(optimizer, [g])
        else:
            optimizer.step()
        inner = g @ x.detach()  # the step from x = 0
        if guarded:
            assert float(inner.max()) <= 1e-15
            assert float(inner[0]) < 0  # still a descent step for task 1
            assert guard.active_steps == 1
            assert guard.active_fraction == 1.0
        else:
            assert float(inner[1]) == pytest.approx(1.5e-2, rel=1e-6)


def test_no_conflict_leaves_the_step_bit_for_bit() -> None:
    before, params, _ = _random_problem(0, 2)
    delta = [p.detach() - b for p, b in zip(params, before, strict=True)]
    grads = [torch.stack([-d, -2 * d]) for d in delta]  # every ⟨Δ, gᵢ⟩ < 0
    expected = [p.detach().clone() for p in params]
    guard = NoAscentStep(params)
    lam = guard.project_update(before, grads)
    for p, e in zip(params, expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=0)
    assert bool((lam == 0).all())
    assert guard.active_steps == 0
    assert guard.steps == 1
    assert guard.info is None


def test_only_guarded_tasks_are_constrained() -> None:
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    before = [x.detach().clone()]
    with torch.no_grad():
        x.copy_(torch.tensor([-1.0, -1.0]))
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    guard = NoAscentStep([x], tasks=[0, 2])
    lam = guard.project_update(before, [g])
    step = x.detach()
    assert float(step @ g[0]) <= 1e-15
    assert float(step @ g[2]) <= 1e-15
    torch.testing.assert_close(step, torch.tensor([-1.0, 0.0], dtype=torch.float64))
    assert float(step @ g[1]) == 1.0  # task 1 is not guarded: its first-order ascent stays
    assert lam.shape == (2,)


def test_guarded_mgda_with_adam_never_ascends_to_first_order_in_training() -> None:
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh()).double()
    heads = torch.nn.ModuleList([torch.nn.Linear(8, 1).double() for _ in range(3)])
    inputs = torch.randn(32, 5, dtype=torch.float64)
    targets = torch.randn(3, 32, dtype=torch.float64)
    shared = list(trunk.parameters())
    head_params = list(heads.parameters())
    optimizer = torch.optim.Adam(shared + head_params, lr=0.05)
    guard = NoAscentStep(shared)
    worst = -np.inf
    for _ in range(30):
        optimizer.zero_grad()
        features = trunk(inputs)
        losses = [
            ((h(features).squeeze(-1) - t) ** 2).mean() for h, t in zip(heads, targets, strict=True)
        ]
        grads = task_gradients(losses, shared, retain_graph=True)
        before = [p.detach().clone() for p in shared]
        mtl_backward(losses, shared, task_parameters=head_params, aggregator=MGDA())
        guard.step(optimizer, grads)
        delta = _flat([p.detach() - b for p, b in zip(shared, before, strict=True)])
        g = torch.cat([gr.reshape(3, -1) for gr in grads], dim=1)
        worst = max(worst, float((g @ delta).max() / (g.norm(dim=1).max() * delta.norm())))
    assert worst <= 1e-12
    assert guard.steps == 30


def test_bad_inputs_are_refused() -> None:
    x = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="tasks is empty"):
        NoAscentStep([x], tasks=[])
    with pytest.raises(TypeError, match="int task indices"):
        NoAscentStep([x], tasks=[0.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=">= 0"):
        NoAscentStep([x], tasks=[-1])
    with pytest.raises(ValueError, match="repeated"):
        NoAscentStep([x], tasks=[0, 0])
    with pytest.raises(ValueError, match="solver"):
        NoAscentStep([x], solver="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero_tol"):
        NoAscentStep([x], zero_tol=-1.0)
    guard = NoAscentStep([x])
    before = [x.detach().clone()]
    with pytest.raises(ValueError, match="1 parameters"):
        guard.project_update(before, [torch.zeros(2, 3), torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="shape"):
        guard.project_update(before, [torch.zeros(3)])
    with pytest.raises(TypeError, match="sequence"):
        guard.project_update(before, torch.zeros(2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        guard.project_update(before, [torch.full((2, 3), float("nan"))])
    with pytest.raises(ValueError, match="before"):
        guard.project_update([torch.zeros(4)], [torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="out of range"):
        NoAscentStep([x], tasks=[5]).project_update(before, [torch.ones(2, 3)])
    with torch.no_grad():
        x.fill_(float("inf"))
    with pytest.raises(ValueError, match="step is NaN"):
        guard.project_update(before, [torch.ones(2, 3)])
