"""Loss weightings (spec 06): C6.1 (sg identity), C6.2 (scale invariance), C6.3 (translation),
C6.7 (unit-gradient structure, loss form), C6.9 (UW fixed point), GradNorm, state, protocol."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import nn

from kexue.mtl import (
    EqualWeights,
    FixedWeights,
    GradNormalized,
    GradNormChen,
    InitNormalized,
    LossWeighting,
    PowerMean,
    PriorNormalized,
    RealTimeNormalized,
    UncertaintyWeighting,
    power_mean_weights,
)

from .conftest import MultiTaskNet, cosine, flat_grad, per_task_matrix, relative

Losses = list[torch.Tensor]
Transform = Callable[[Losses], Losses]


def identity(losses: Losses) -> Losses:
    return losses


def scale_task(j: int, c: float) -> Transform:
    return lambda losses: [c * loss if i == j else loss for i, loss in enumerate(losses)]


def shift_task(j: int, c: float) -> Transform:
    return lambda losses: [loss + c if i == j else loss for i, loss in enumerate(losses)]


def perturb(net: nn.Module, seed: int = 5) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def scheme_gradient(
    name: str, transform: Transform, *, gamma: float = 0.0, balanced: bool = False
) -> torch.Tensor:
    """Total gradient (shared + heads) of a scheme with its reference constants recomputed on
    the transformed losses (C6.2: "recomputing the reference constants on the scaled loss").
    ``balanced``: all tasks on the same scale (else scales 1, 10, 0.1)."""
    net = MultiTaskNet(3, scales=[1.0, 1.0, 1.0] if balanced else None)
    params = net.shared() + net.task_params()
    prior_net = MultiTaskNet(3, seed=9)
    prior_losses = transform([loss.detach() for loss in prior_net.losses()])
    weighting: nn.Module
    if name == "init":
        weighting = InitNormalized(3)
        weighting.observe(transform([loss.detach() for loss in net.losses()]))  # at θ₀
        perturb(net)  # evaluate elsewhere so the ratio is not trivially 1
    elif name == "prior":
        weighting = PriorNormalized([float(v) for v in prior_losses])
    elif name == "sg":
        weighting = RealTimeNormalized()
    elif name == "grad":
        weighting = GradNormalized(net.shared(), eps=0.0)
    elif name == "power":
        weighting = PowerMean(gamma)
    elif name == "power_prior":
        weighting = PowerMean(gamma, normalize="prior", reference_values=prior_losses)
    elif name == "power_init":
        weighting = PowerMean(gamma, normalize="init", n_tasks=3)
        weighting.reference.observe(transform([loss.detach() for loss in net.losses()]))  # type: ignore[union-attr]
        perturb(net)
    else:
        raise AssertionError(name)
    return flat_grad(weighting(transform(net.losses())), params)


@pytest.mark.parametrize("name", ["init", "prior", "sg", "grad", "power_prior", "power_init"])
@pytest.mark.parametrize("c", [1e-3, 7.0, 1e4])
def test_scale_invariance(name: str, c: float) -> None:
    """C6.2: Lⱼ → cLⱼ (references recomputed) leaves the total gradient unchanged (1e-10)."""
    gamma = 2.0 if name.startswith("power") else 0.0
    base = scheme_gradient(name, identity, gamma=gamma)
    for j in range(3):
        scaled = scheme_gradient(name, scale_task(j, c), gamma=gamma)
        assert relative(scaled, base) <= 1e-10, (name, c, j)


@pytest.mark.parametrize("c", [1e-3, 7.0, 1e4])
def test_power_mean_scale_invariance_only_at_gamma_zero(c: float) -> None:
    """C6.2, spec 06 §3: the raw power mean is per-task scale-invariant in direction at γ = 0
    only (its value scales by c^(1/n)); γ ∈ {−1, 1, 2} changes the direction (tasks of equal
    scale, so that no task's weight is negligible before or after the scaling)."""
    base = scheme_gradient("power", identity, gamma=0.0)
    scaled = scheme_gradient("power", scale_task(1, c), gamma=0.0)
    assert cosine(scaled, base) >= 1 - 1e-12
    assert relative(scaled / scaled.norm(), base / base.norm()) <= 1e-10
    for gamma in (-1.0, 1.0, 2.0):
        base = scheme_gradient("power", identity, gamma=gamma, balanced=True)
        scaled = scheme_gradient("power", scale_task(1, c), gamma=gamma, balanced=True)
        change = relative(scaled / scaled.norm(), base / base.norm())
        assert change > 1e-3, gamma  # vs ≤ 1e-10 for the invariant schemes


def test_translation_changes_sg_not_grad() -> None:
    """C6.3: Lⱼ → Lⱼ + 100 changes the (sg) direction (cosine < 0.999) and (init)'s, and leaves
    the (grad) gradient unchanged (1e-10). Tasks of equal scale, so the shifted task is not
    already negligible under (sg)."""
    for name in ("sg", "init"):
        base = scheme_gradient(name, identity, balanced=True)
        shifted = scheme_gradient(name, shift_task(1, 100.0), balanced=True)
        assert cosine(shifted, base) < 0.999, name
    base = scheme_gradient("grad", identity)
    for j in range(3):
        shifted = scheme_gradient("grad", shift_task(j, 100.0))
        assert relative(shifted, base) <= 1e-10


def test_real_time_autograd_identity() -> None:
    """C6.1: ∇(Lᵢ/sg(Lᵢ)) = ∇Lᵢ/Lᵢ = ∇log Lᵢ to 1e-12 relative; the total is n in value."""
    net = MultiTaskNet(3)
    params = net.shared() + net.task_params()
    losses = net.losses()
    for form in ("clamp", "add"):
        weighting = RealTimeNormalized(eps=0.0 if form == "add" else 1e-8, form=form)  # type: ignore[arg-type]
        for loss in losses:
            via_sg = flat_grad(weighting([loss]), params)
            direct = flat_grad(loss, params) / loss.detach()
            via_log = flat_grad(torch.log(loss), params)
            assert relative(via_sg, direct) <= 1e-12
            assert relative(via_sg, via_log) <= 1e-12
        total = weighting(losses)
        assert float(total.detach()) == pytest.approx(3.0, rel=1e-15)
        summed = sum(flat_grad(loss, params) / loss.detach() for loss in losses)
        assert relative(flat_grad(total, params), summed) <= 1e-12  # type: ignore[arg-type]
        assert weighting.last_losses is not None
        torch.testing.assert_close(weighting.last_losses, torch.stack(losses).detach())
        torch.testing.assert_close(weighting.weights, 1 / torch.stack(losses).detach())


def test_real_time_eps_forms() -> None:
    losses = [torch.tensor(0.0, dtype=torch.float64, requires_grad=True)]
    clamp = RealTimeNormalized(eps=1e-8)
    clamp(losses)
    assert clamp.weights is not None
    assert float(clamp.weights[0]) == pytest.approx(1e8)
    add = RealTimeNormalized(eps=1e-8, form="add")
    add([torch.tensor(2.0, dtype=torch.float64)])
    assert add.weights is not None
    assert float(add.weights[0]) == pytest.approx(1 / (2 + 1e-8), rel=1e-15)
    with pytest.raises(ValueError, match="eps > 0"):
        RealTimeNormalized(eps=0.0)(losses)


def test_grad_normalized_loss_form_structure() -> None:
    """C6.7 (loss form): shared gradient = Σᵢ gᵢ/‖gᵢ‖ (each term norm 1 ± 1e-8), heads receive
    ∇Lᵢ/‖gᵢ‖; the norm_params subset (last shared layer) variant uses that layer's norms."""
    net = MultiTaskNet(3)
    shared, heads = net.shared(), net.task_params()
    losses = net.losses()
    g = per_task_matrix(losses, shared)
    norms = g.norm(dim=1)
    weighting = GradNormalized(shared)
    total = weighting(losses)
    shared_grad = flat_grad(total, shared)
    expected = (g / (norms[:, None] + 1e-12)).sum(0)  # default eps 1e-12 in float64
    assert relative(shared_grad, expected) <= 1e-12
    assert relative(shared_grad, (g / norms[:, None]).sum(0)) <= 1e-10
    assert weighting.weights is not None
    contributions = (weighting.weights[:, None] * g).norm(dim=1)
    assert float((contributions - 1).abs().max()) <= 1e-8
    head_grad = flat_grad(total, heads)
    head_expected = sum(
        flat_grad(loss, heads) / (n + 1e-12) for loss, n in zip(losses, norms, strict=True)
    )
    assert relative(head_grad, head_expected) <= 1e-12  # type: ignore[arg-type]
    last = list(net.trunk[2].parameters())
    subset = GradNormalized(shared, norm_params=last)
    subset(net.losses())
    last_norms = per_task_matrix(net.losses(), last).norm(dim=1)
    assert subset.weights is not None
    torch.testing.assert_close(subset.weights, 1 / (last_norms + 1e-12), rtol=1e-12, atol=0)
    assert subset.jacobian_source is None
    assert weighting.jacobian_source == "shared"


def test_grad_normalized_zero_gradient_task() -> None:
    w = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    losses = [(w**2).sum(), (w * 0).sum() + 3.0]
    total = GradNormalized([w])(losses)
    (grad,) = torch.autograd.grad(total, w)
    torch.testing.assert_close(grad, (2 * w / (2 * w).norm()).detach())  # task 2 contributes 0


def test_uncertainty_weighting_fixed_point() -> None:
    """C6.9: θ frozen, optimising s gives e^(sᵢ) = Lᵢ (1e-6); the θ-gradient there is parallel
    to (sg)'s (cosine 1 − 1e-10)."""
    net = MultiTaskNet(3)
    params = net.shared() + net.task_params()
    losses = net.losses()
    values = torch.stack(losses).detach()
    uw = UncertaintyWeighting(3).double()
    torch.testing.assert_close(uw.log_vars.detach(), torch.full((3,), -0.5, dtype=torch.float64))
    optimizer = torch.optim.LBFGS(
        uw.parameters(),
        max_iter=200,
        tolerance_grad=1e-14,
        tolerance_change=1e-16,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total = uw(values)
        total.backward()
        return total

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    torch.testing.assert_close(uw.log_vars.detach().exp(), values, rtol=1e-6, atol=0)
    theta_grad = flat_grad(uw(losses), params)
    sg_grad = flat_grad(RealTimeNormalized()(losses), params)
    assert cosine(theta_grad, sg_grad) >= 1 - 1e-10
    assert uw.weights is not None
    torch.testing.assert_close(uw.weights, 0.5 / values, rtol=1e-6, atol=0)


def test_gradnorm_chen_update_rule() -> None:
    """GradNorm: θ gets Σwᵢ∇Lᵢ only; w gets sign(wᵢnᵢ − Ḡrᵢ^α)·nᵢ; weights renormalised to T."""
    net = MultiTaskNet(3)
    last = list(net.trunk[2].parameters())
    params = net.shared() + net.task_params()
    gradnorm = GradNormChen(3, last, asymmetry=1.5).double()
    losses0 = net.losses()
    l0 = torch.stack(losses0).detach()
    gradnorm(losses0)  # records Lᵢ(0)
    torch.testing.assert_close(gradnorm.initial_losses, l0)
    perturb(net)
    with torch.no_grad():
        gradnorm.loss_weights.copy_(torch.tensor([3.0, 1.0, 2.0]))
    losses = net.losses()
    total = gradnorm(losses)
    w = gradnorm.loss_weights.detach()
    assert float(w.sum()) == pytest.approx(3.0)  # renormalised at the start of the call
    torch.testing.assert_close(w, torch.tensor([1.5, 0.5, 1.0], dtype=torch.float64))
    g_theta = flat_grad(total, params)
    expected = sum(wi * flat_grad(loss, params) for wi, loss in zip(w, losses, strict=True))
    assert relative(g_theta, expected) <= 1e-12  # type: ignore[arg-type]
    (g_w,) = torch.autograd.grad(total, gradnorm.loss_weights)
    n = per_task_matrix(losses, last).norm(dim=1)
    values = torch.stack(losses).detach()
    ratio = values / l0
    target = (w * n).mean() * (ratio / ratio.mean()) ** 1.5
    torch.testing.assert_close(g_w, torch.sign(w * n - target) * n, rtol=1e-12, atol=0)
    assert gradnorm.weights is not None
    torch.testing.assert_close(gradnorm.weights, w)


def test_state_dict_round_trips() -> None:
    """Stateful weightings resume: references, learnable weights and GradNorm's Lᵢ(0)."""
    losses = [torch.tensor(v, dtype=torch.float64) for v in (2.0, 8.0, 0.5)]
    init = InitNormalized(3, n_batches=2)
    init(losses)
    init([2 * loss for loss in losses])
    init([10 * loss for loss in losses])  # no longer observed
    assert init.reference is not None
    torch.testing.assert_close(init.reference, 1.5 * torch.stack(losses))
    restored = InitNormalized(3, n_batches=2)
    restored.load_state_dict(init.state_dict())
    torch.testing.assert_close(restored.reference, init.reference)  # type: ignore[arg-type]
    restored(losses)
    torch.testing.assert_close(restored.reference, init.reference)  # type: ignore[arg-type]
    uw = UncertaintyWeighting(3)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.1, 0.2, 0.3]))
    uw2 = UncertaintyWeighting(3)
    uw2.load_state_dict(uw.state_dict())
    torch.testing.assert_close(uw2.log_vars, uw.log_vars)
    power = PowerMean(2.0, normalize="init", n_tasks=3)
    power(losses)
    power2 = PowerMean(2.0, normalize="init", n_tasks=3)
    power2.load_state_dict(power.state_dict())
    torch.testing.assert_close(power2(losses), power(losses))
    w = torch.ones(2, dtype=torch.float64, requires_grad=True)
    gn = GradNormChen(3, [w])
    gn([(w * v).sum() for v in (1.0, 2.0, 3.0)])
    gn2 = GradNormChen(3, [w])
    gn2.load_state_dict(gn.state_dict())
    torch.testing.assert_close(gn2.initial_losses, gn.initial_losses)
    fixed = FixedWeights([1.0, 0.0, 2.0])
    fixed2 = FixedWeights([0.0, 0.0, 0.0])
    fixed2.load_state_dict(fixed.state_dict())
    torch.testing.assert_close(fixed2.alphas, fixed.alphas)


def test_simple_weightings_and_protocol() -> None:
    losses = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (2.0, 8.0, 0.5)]
    weightings: Sequence[nn.Module] = [
        EqualWeights(),
        FixedWeights([0.2, 0.3, 0.5]),
        InitNormalized(init_values=[1.0, 2.0, 4.0]),
        PriorNormalized([1.0, 2.0, 4.0]),
        RealTimeNormalized(),
        PowerMean(1.0),
        PowerMean(-1.0, normalize="prior", reference_values=[1.0, 2.0, 4.0]),
        UncertaintyWeighting(3),
        GradNormalized([losses[0]]),
    ]
    for weighting in weightings:
        assert isinstance(weighting, LossWeighting)
        assert weighting.weights is None  # type: ignore[attr-defined]
        total = weighting(losses)
        assert total.shape == ()
        grads = torch.autograd.grad(total, losses, allow_unused=True)
        autograd = torch.stack([torch.zeros(()) if g is None else g for g in grads]).double()
        if not isinstance(weighting, GradNormalized):  # its weights multiply the losses too
            torch.testing.assert_close(weighting.weights, autograd, rtol=1e-12, atol=0)
    assert float(EqualWeights()(losses).detach()) == pytest.approx(3.5)
    power = PowerMean(-1.0, normalize="prior", reference_values=[1.0, 2.0, 4.0])
    power(losses)
    ratios = torch.tensor([2.0, 4.0, 0.125], dtype=torch.float64)
    expected = power_mean_weights(ratios, -1.0) / torch.tensor([1.0, 2.0, 4.0]).double()
    torch.testing.assert_close(power.weights, expected)


def test_weighting_bad_inputs() -> None:
    nan_losses = [torch.tensor(1.0), torch.tensor(float("nan"))]
    for weighting in (
        EqualWeights(),
        RealTimeNormalized(),
        PowerMean(0.0),
        InitNormalized(2),
        UncertaintyWeighting(2),
    ):
        with pytest.raises(ValueError, match=r"task\(s\) \[1\] is NaN"):
            weighting(nan_losses)
    with pytest.raises(ValueError, match="expected 3 task losses"):
        FixedWeights([1.0, 1.0, 1.0])([torch.tensor(1.0)])
    with pytest.raises(ValueError, match=">= 0"):
        FixedWeights([1.0, -1.0])
    with pytest.raises(ValueError, match="> 0"):
        PriorNormalized([1.0, 0.0])
    with pytest.raises(ValueError, match="negative"):
        RealTimeNormalized()([torch.tensor(-1.0)])
    with pytest.raises(ValueError, match="form"):
        RealTimeNormalized(form="log")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n_tasks"):
        InitNormalized()
    with pytest.raises(ValueError, match="initial loss of task"):
        InitNormalized(2)([torch.tensor(0.0), torch.tensor(1.0)])
    with pytest.raises(TypeError, match="reference_values"):
        PowerMean(1.0, normalize="prior")
    with pytest.raises(ValueError, match="normalize"):
        PowerMean(1.0, normalize="max")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shared_params"):
        GradNormalized()([torch.tensor(1.0, requires_grad=True)])
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="scale_heads=False"):
        GradNormalized([w], scale_heads=False)([(w**2).sum()])
    with pytest.raises(ValueError, match="n_tasks"):
        UncertaintyWeighting(0)
    with pytest.raises(ValueError, match="GradNorm needs positive"):
        GradNormChen(1, [w])([(w * 0).sum()])
    assert math.isfinite(float(UncertaintyWeighting(1)([torch.tensor(2.0)]).detach()))
