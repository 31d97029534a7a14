"""mtl_backward and MGDA (spec 07 §3.2): C7.10 (training step), MGDA-UB and its proof error
(C7.6 in a network), C6.7 (unit-gradient sum), C6.8 / C7.1 (two-task non-ascent, three-task
counterexample), C7.9 (the 2-D Pareto toy), degenerate inputs (pitfall 4, NaN, one task)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from kexue.mtl import (
    MGDA,
    GradNormalized,
    GradNormChen,
    RealTimeNormalized,
    UncertaintyWeighting,
    min_norm_weights,
    mtl_backward,
)

from .conftest import MultiTaskNet, flat_grad, grads_of, per_task_matrix, relative


def zero_grads(*modules: nn.Module) -> None:
    for module in modules:
        module.zero_grad(set_to_none=True)


def mgda_reference(net: MultiTaskNet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(α, expected shared grad Gᵀα, expected head grad Σαᵢ∇Lᵢ) by explicit per-task autograd."""
    losses = net.losses()
    g = per_task_matrix(losses, net.shared())
    alpha, _ = min_norm_weights(grads=g, method="qp")
    heads = per_task_matrix(losses, net.task_params())
    return alpha, alpha @ g, alpha @ heads


@pytest.mark.parametrize(
    ("jacobian_method", "chunk_size", "use_features"),
    [
        ("auto", None, False),
        ("loop", None, False),
        ("vmap", 2, False),
        ("auto", None, True),
        ("loop", None, True),
        ("vmap", 1, True),
    ],
)
def test_mgda_training_step(
    jacobian_method: str, chunk_size: int | None, use_features: bool
) -> None:
    """C7.10: shared .grad = Gᵀα (1e-10), heads αᵢ∇Lᵢ (head_scaling="alpha"), and the shared
    parameters actually change after an optimiser step (LibMTL#83 class of bugs)."""
    net = MultiTaskNet(4)
    alpha, shared_expected, head_expected = mgda_reference(net)
    features, losses = net.features_and_losses()
    result = mtl_backward(
        losses,
        net.shared(),
        features=features if use_features else None,
        task_parameters=net.task_params(),
        aggregator="mgda",
        jacobian_method=jacobian_method,  # type: ignore[arg-type]
        chunk_size=chunk_size,
    )
    assert relative(grads_of(net.shared()), shared_expected) <= 1e-10
    assert relative(grads_of(net.task_params()), head_expected) <= 1e-10
    assert result.weights is not None
    torch.testing.assert_close(result.weights, alpha, atol=1e-10, rtol=0)
    assert result.info is not None
    assert result.info.norm_sq == pytest.approx(float(shared_expected @ shared_expected), rel=1e-9)
    assert result.gram is not None
    assert result.gram.shape == (4, 4)
    assert not result.pareto_stationary
    before = [p.detach().clone() for p in net.shared()]
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.shared(), strict=True))


def test_head_scaling_none_and_mgda_object_options() -> None:
    net = MultiTaskNet(3)
    losses = net.losses()
    raw_heads = per_task_matrix(losses, net.task_params()).sum(0)
    g = per_task_matrix(losses, net.shared())
    mtl_backward(losses, net.shared(), task_parameters=net.task_params(), head_scaling="none")
    assert relative(grads_of(net.task_params()), raw_heads) <= 1e-12
    # normalize="l2": α on unit gradients; effective weights αᵢ/‖gᵢ‖.
    for normalize, scale in [
        ("l2", g.norm(dim=1)),
        ("loss", torch.stack(losses).detach()),
        ("loss+", torch.stack(losses).detach() * g.norm(dim=1)),
    ]:
        zero_grads(net)
        mgda = MGDA(normalize=normalize)  # type: ignore[arg-type]
        result = mtl_backward(net.losses(), net.shared(), aggregator=mgda)
        alpha, _ = min_norm_weights(grads=g / scale[:, None])
        torch.testing.assert_close(mgda.alpha, alpha, atol=1e-10, rtol=0)
        torch.testing.assert_close(result.weights, alpha / scale, atol=1e-10, rtol=1e-10)
        assert relative(grads_of(net.shared()), (alpha / scale) @ g) <= 1e-10
    # MGDA as a loss (spec 07 §3.2 step 5): same shared gradient as mtl_backward.
    zero_grads(net)
    mgda = MGDA(net.shared(), method="wolfe")
    total = mgda(net.losses())
    total.backward()
    alpha, _ = min_norm_weights(grads=g)
    assert relative(grads_of(net.shared()), alpha @ g) <= 1e-10
    assert mgda.info is not None
    assert mgda.info.method == "wolfe"


def test_mgda_ub_uses_feature_gradients() -> None:
    """MGDA-UB: α from the Gram of ∇_H Lᵢ; shared .grad = (Σαᵢ∇_H Lᵢ)·∂H/∂θ."""
    net = MultiTaskNet(3)
    features, losses = net.features_and_losses()
    jh = per_task_matrix(losses, [features])
    alpha, _ = min_norm_weights(grads=jh, method="qp")
    direction = (alpha @ jh).reshape(features.shape)
    expected = flat_grad((features * direction).sum(), net.shared())
    heads = alpha @ per_task_matrix(losses, net.task_params())
    zero_grads(net)
    features, losses = net.features_and_losses()
    result = mtl_backward(losses, features=features, aggregator="mgda_ub")  # params inferred
    assert relative(grads_of(net.shared()), expected) <= 1e-10
    assert relative(grads_of(net.task_params()), heads) <= 1e-10
    torch.testing.assert_close(result.weights, alpha, atol=1e-10, rtol=0)


def test_mgda_ub_can_ascend_a_task_despite_full_rank() -> None:
    """C7.6 / pitfall 1 in a network: H = Jθ with J = diag(1, √10) of full rank, Lᵢ = ⟨hᵢ, H⟩,
    h₁ = (3,−1), h₂ = (0,2). MGDA-UB picks y = (1,1) (the min-norm point of the hᵢ), but
    ⟨g₁, Jᵀy⟩ = h₁ᵀ(JJᵀ)y = 3 − 10 = −7 < 0: the update increases L₁ to first order. Exact MGDA
    keeps ⟨gᵢ, u⟩ ≥ ‖u‖² > 0."""
    j = torch.tensor([1.0, math.sqrt(10.0)], dtype=torch.float64)
    h = torch.tensor([[3.0, -1.0], [0.0, 2.0]], dtype=torch.float64)
    theta = torch.tensor([0.3, -0.2], dtype=torch.float64, requires_grad=True)
    g = h * j  # gᵢ = Jᵀhᵢ

    def step(aggregator: str) -> torch.Tensor:
        theta.grad = None
        features = j * theta
        losses = [h[0] @ features, h[1] @ features]
        mtl_backward(losses, [theta], features=features, aggregator=aggregator)
        assert theta.grad is not None
        return theta.grad.clone()

    u_ub = step("mgda_ub")
    torch.testing.assert_close(u_ub, torch.tensor([1.0, math.sqrt(10.0)], dtype=torch.float64))
    assert float(g[0] @ u_ub) == pytest.approx(-7.0, rel=1e-12)
    u = step("mgda")
    inner = g @ u
    assert float(inner.min()) >= float(u @ u) * (1 - 1e-12) > 0


def test_mgda_ub_disjoint_batches_degenerate() -> None:
    """Spec 07 §2.5, pitfall 2 (E7.5 in miniature): with disjoint per-task minibatches the
    ∇_H Lᵢ are orthogonal, so MGDA-UB's α ∝ 1/‖∇_H Lᵢ‖² (C7.7) whatever the task interaction."""
    net = MultiTaskNet(2)
    features = net.trunk(net.x)
    losses = [
        (net.heads[0](features[:6]) - net.targets[0][:6]).pow(2).mean(),
        (net.heads[1](features[6:]) - net.targets[1][6:]).pow(2).mean(),
    ]
    result = mtl_backward(losses, features=features, aggregator="mgda_ub")
    assert result.gram is not None
    assert float(result.gram[0, 1]) == 0.0
    inverse = 1 / result.gram.diagonal()
    torch.testing.assert_close(result.weights, inverse / inverse.sum(), rtol=1e-12, atol=0)


def test_grad_normalized_in_mtl_backward() -> None:
    """C6.7: each task's contribution has norm 1 ± 1e-8 and the update is Σᵢ ĝᵢ; heads scaled
    (scale_heads) or raw; identical to the loss form."""
    net = MultiTaskNet(4)
    losses = net.losses()
    g = per_task_matrix(losses, net.shared())
    heads = per_task_matrix(losses, net.task_params())
    norms = g.norm(dim=1)
    result = mtl_backward(losses, net.shared(), aggregator=GradNormalized())
    assert result.weights is not None
    contributions = (result.weights[:, None] * g).norm(dim=1)
    assert float((contributions - 1).abs().max()) <= 1e-8
    assert relative(grads_of(net.shared()), (g / norms[:, None]).sum(0)) <= 1e-10
    assert relative(grads_of(net.task_params()), (heads / norms[:, None]).sum(0)) <= 1e-10
    loss_form = flat_grad(GradNormalized(net.shared())(net.losses()), net.shared())
    assert relative(grads_of(net.shared()), loss_form) <= 1e-12
    zero_grads(net)
    mtl_backward(net.losses(), net.shared(), aggregator=GradNormalized(scale_heads=False))
    assert relative(grads_of(net.task_params()), heads.sum(0)) <= 1e-12
    # The subset variant (norm_params) runs through the loss form.
    zero_grads(net)
    last = list(net.trunk[2].parameters())
    weighting = GradNormalized(net.shared(), norm_params=last)
    mtl_backward(net.losses(), net.shared(), aggregator=weighting)
    subset_norms = per_task_matrix(net.losses(), last).norm(dim=1)
    expected = (g / (subset_norms[:, None] + 1e-12)).sum(0)
    assert relative(grads_of(net.shared()), expected) <= 1e-10


def test_two_task_unit_gradient_sum_never_ascends() -> None:
    """C6.8 / C7.1: for 10⁵ random pairs ⟨g_k, g₁/‖g₁‖ + g₂/‖g₂‖⟩ > 0, and equals
    ‖g₁‖(1 + cos∠(g₁,g₂)) (1e-12 relative)."""
    gen = torch.Generator().manual_seed(0)
    dims = torch.randint(2, 11, (1,), generator=gen)
    for d in (2, 3, int(dims)):
        g1 = torch.randn(100_000, d, generator=gen, dtype=torch.float64)
        g2 = torch.randn(100_000, d, generator=gen, dtype=torch.float64) * 10 ** torch.empty(
            100_000, 1, dtype=torch.float64
        ).uniform_(-3, 3, generator=gen)
        n1, n2 = g1.norm(dim=1, keepdim=True), g2.norm(dim=1, keepdim=True)
        u = g1 / n1 + g2 / n2
        inner1, inner2 = (g1 * u).sum(1), (g2 * u).sum(1)
        assert float(inner1.min()) > 0
        assert float(inner2.min()) > 0
        cos = (g1 * g2).sum(1) / (n1 * n2).squeeze(1)
        torch.testing.assert_close(inner1, n1.squeeze(1) * (1 + cos), rtol=1e-12, atol=1e-15)


def test_three_task_unit_gradient_sum_can_ascend() -> None:
    """C6.8 / pitfall 4: unit gradients at 0°, 100°, −100° sum to u = (0.653, 0) and
    ⟨u, g₂⟩ = −0.113 < 0 — through mtl_backward with GradNormalized on linear losses."""
    angles = [0.0, 100.0, -100.0]
    scales = [1.0, 5.0, 0.2]  # normalisation removes the scales
    radians = [math.radians(a) for a in angles]
    g = torch.tensor(
        [[s * math.cos(r), s * math.sin(r)] for r, s in zip(radians, scales, strict=True)],
        dtype=torch.float64,
    )
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    mtl_backward([row @ theta for row in g], [theta], aggregator=GradNormalized())
    assert theta.grad is not None
    u = theta.grad
    assert float(u[0]) == pytest.approx(1 + 2 * math.cos(math.radians(100)), rel=1e-12)
    assert float(u[0]) == pytest.approx(0.653, abs=5e-4)
    assert abs(float(u[1])) < 1e-10  # eps = 1e-12 in ‖gᵢ‖ + eps: tiny asymmetry
    unit2 = g[1] / g[1].norm()
    assert float(unit2 @ u) == pytest.approx(-0.113, abs=5e-4)
    assert float(g[1] @ u) < 0
    # MGDA never ascends: the min-norm direction has ⟨gᵢ, u⟩ ≥ ‖u‖² for every task.
    alpha, info = min_norm_weights(grads=g)
    assert float((g @ (alpha @ g)).min()) >= info.norm_sq - 1e-14


def test_pareto_toy_mgda_trajectories() -> None:
    """C7.9: f₁ = ‖x−a‖², f₂ = ‖x−b‖², a = (−1,0), b = (1,0), η = 1e-3, starts on a grid in
    [−2,2]²: along MGDA every fᵢ changes by at most η²‖u‖² per step (never increases to first
    order) and the end point lies on [a, b] (distance < 1e-3)."""
    a, b = np.array([-1.0, 0.0]), np.array([1.0, 0.0])
    eta = 1e-3

    def distance_to_segment(x: np.ndarray) -> float:
        t = min(1.0, max(0.0, (x[0] + 1.0) / 2.0))
        return float(np.linalg.norm(x - (a + t * (b - a))))

    for x0 in [(-2.0, -2.0), (-2.0, 2.0), (0.0, 2.0), (2.0, 0.5), (2.0, -2.0), (0.3, -1.0)]:
        x = np.array(x0)
        for _ in range(10_000):
            grads = np.stack([2 * (x - a), 2 * (x - b)])
            alpha, info = min_norm_weights(grads=grads)
            if info.pareto_stationary or distance_to_segment(x) < 1e-4:
                break
            u = alpha.numpy() @ grads
            new = x - eta * u
            for c in (a, b):
                change = float(np.sum((new - c) ** 2) - np.sum((x - c) ** 2))
                assert change <= eta**2 * float(u @ u) * (1 + 1e-9) + 1e-15
            x = new
        assert distance_to_segment(x) < 1e-3, x0


def test_pareto_toy_gradient_descent_counterexample() -> None:
    """C7.9: at x = (−0.8, 0) (on the segment) g₁ = (0.4,0), g₂ = (−3.6,0), ⟨g₁, g₁+g₂⟩ = −1.28:
    GD on f₁+f₂ increases f₁ to first order, MGDA returns u = 0 (Pareto stationary); from x = a
    GD increases f₁ (second order) while MGDA returns u = 0."""
    a = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for start in ([-0.8, 0.0], [-1.0, 0.0]):
        x = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        losses = [(x - a).pow(2).sum(), (x - b).pow(2).sum()]
        g1, g2 = 2 * (x.detach() - a), 2 * (x.detach() - b)
        if start[0] == -0.8:
            torch.testing.assert_close(g1, torch.tensor([0.4, 0.0], dtype=torch.float64))
            assert float(g1 @ (g1 + g2)) == pytest.approx(-1.28, rel=1e-12)
        result = mtl_backward(losses, [x], aggregator="mgda")
        assert result.pareto_stationary
        assert x.grad is not None
        assert torch.equal(x.grad, torch.zeros(2, dtype=torch.float64))  # exactly u = 0
        stepped = x.detach() - 1e-3 * (g1 + g2)  # one GD step on f₁ + f₂
        assert float((stepped - a).pow(2).sum()) > float((x.detach() - a).pow(2).sum())


def test_degenerate_cases_in_mtl_backward() -> None:
    theta = torch.tensor([0.5, -0.5], dtype=torch.float64, requires_grad=True)
    # Zero in the hull of (1,0), (−1,1), (−1,−1): Pareto stationary, shared grad exactly 0.
    rows = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    result = mtl_backward([row @ theta for row in rows], [theta])
    assert result.pareto_stationary
    assert torch.equal(theta.grad, torch.zeros(2, dtype=torch.float64))  # type: ignore[arg-type]
    # A task whose loss does not depend on the shared parameters: u = 0.
    theta.grad = None
    result = mtl_backward([(theta**2).sum(), theta.sum() * 0 + 1.0], [theta])
    assert result.pareto_stationary
    assert result.info is not None
    assert result.info.degenerate == "zero_gradient"
    # One task: u = g.
    theta.grad = None
    result = mtl_backward([(theta**2).sum()], [theta])
    torch.testing.assert_close(theta.grad, 2 * theta.detach())
    assert result.weights is not None
    assert result.weights.tolist() == [1.0]
    # Identical gradients: α = (½, ½), u = g.
    theta.grad = None
    result = mtl_backward([(theta**2).sum(), (theta**2).sum() + 3.0], [theta])
    assert result.weights is not None
    assert result.weights.tolist() == [0.5, 0.5]
    torch.testing.assert_close(theta.grad, 2 * theta.detach())
    # GradNormalized at any gradient scale: not stationary unless the unit vectors cancel.
    for scale in (1e-3, 1e12):  # (‖g‖ ≈ eps = 1e-12 would halve ĝ: the eps guard)
        theta.grad = None
        result = mtl_backward(
            [scale * theta[0], scale * theta[1]], [theta], aggregator=GradNormalized()
        )
        assert not result.pareto_stationary
        torch.testing.assert_close(theta.grad, torch.ones(2).double(), rtol=1e-8, atol=0)
    theta.grad = None
    result = mtl_backward([theta[0], -3 * theta[0]], [theta], aggregator=GradNormalized())
    assert result.pareto_stationary  # the unit gradients cancel
    assert torch.equal(theta.grad, torch.zeros(2, dtype=torch.float64))  # type: ignore[arg-type]
    # NaN loss: clear error, nothing written.
    theta.grad = None
    with pytest.raises(ValueError, match=r"task\(s\) \[1\] is NaN"):
        mtl_backward([(theta**2).sum(), theta.sum() * float("nan")], [theta])
    assert theta.grad is None


def test_loss_weightings_through_mtl_backward() -> None:
    """Any loss weighting plugs in; its own parameters (UW, GradNorm) receive gradients; a
    parameter left out of shared/task parameters is not touched."""
    net = MultiTaskNet(3)
    losses = net.losses()
    expected = sum(flat_grad(loss, net.shared()) / loss.detach() for loss in losses)
    result = mtl_backward(losses, net.shared(), aggregator=RealTimeNormalized())
    assert relative(grads_of(net.shared()), expected) <= 1e-12  # type: ignore[arg-type]
    assert result.weights is not None
    zero_grads(net)
    uw = UncertaintyWeighting(3).double()
    mtl_backward(net.losses(), net.shared(), task_parameters=net.task_params(), aggregator=uw)
    assert uw.log_vars.grad is not None
    assert all(p.grad is not None for p in net.task_params())
    zero_grads(net)
    frozen = net.trunk[0].weight
    shared = [p for p in net.shared() if p is not frozen]
    gradnorm = GradNormChen(3, list(net.trunk[2].parameters())).double()
    mtl_backward(net.losses(), shared, task_parameters=net.task_params(), aggregator=gradnorm)
    assert gradnorm.loss_weights.grad is not None
    assert frozen.grad is None


def test_parameter_inference_accumulation_and_retain_graph() -> None:
    net = MultiTaskNet(3)
    alpha, shared_expected, head_expected = mgda_reference(net)
    features, losses = net.features_and_losses()
    mtl_backward(losses, features=features)  # shared and heads inferred from the graph
    assert relative(grads_of(net.shared()), shared_expected) <= 1e-10
    assert relative(grads_of(net.task_params()), head_expected) <= 1e-10
    zero_grads(net)
    losses = net.losses()
    mtl_backward(losses, net.shared(), retain_graph=True)  # heads inferred
    mtl_backward(losses, net.shared())  # graph retained: a second call works and accumulates
    assert relative(grads_of(net.shared()), 2 * shared_expected) <= 1e-10
    assert relative(grads_of(net.task_params()), 2 * head_expected) <= 1e-10
    with pytest.raises(RuntimeError, match="second time"):
        mtl_backward(losses, net.shared())
    zero_grads(net)
    mtl_backward(torch.stack(net.losses()), net.shared())  # one 1-D tensor of losses
    assert relative(grads_of(net.shared()), shared_expected) <= 1e-10
    del alpha


def test_mtl_backward_bad_inputs() -> None:
    net = MultiTaskNet(2)
    with pytest.raises(ValueError, match="features"):
        mtl_backward(net.losses(), net.shared(), aggregator="mgda_ub")
    with pytest.raises(ValueError, match="aggregator must be"):
        mtl_backward(net.losses(), net.shared(), aggregator="pcgrad")
    with pytest.raises(TypeError, match="aggregator must be"):
        mtl_backward(net.losses(), net.shared(), aggregator=3)
    with pytest.raises(TypeError, match="shared_parameters"):
        mtl_backward(net.losses())
    with pytest.raises(ValueError, match="also in shared_parameters"):
        mtl_backward(net.losses(), net.shared(), task_parameters=net.shared()[:1])
    with pytest.raises(ValueError, match="head_scaling"):
        mtl_backward(net.losses(), net.shared(), head_scaling="beta")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="MGDA as a loss"):
        MGDA()(net.losses())
    with pytest.raises(ValueError, match="normalize"):
        MGDA(normalize="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be > 0"):
        MGDA(normalize="loss").weights_from_gram(torch.eye(2), torch.tensor([1.0, 0.0]))
