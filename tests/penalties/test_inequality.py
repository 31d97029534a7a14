from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from kexue.penalties import gradient_norm_inequality, initialization_spectral_norms

ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "identity": nn.Identity,
}
OUTPUTS = ("sum", "linear", "mse")
RTOL = 1e-10


def make_mlp(widths: list[int], activation: str, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for t in range(len(widths) - 1):
        layers.append(nn.Linear(widths[t], widths[t + 1]))
        if t < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers).double()


def make_output_fn(kind: str, batch: int, out: int, seed: int):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed + 1)
    if kind == "sum":
        return None
    if kind == "linear":
        c = torch.randn(out, generator=gen, dtype=torch.float64)
        return lambda y: y @ c
    target = torch.randn(batch, out, generator=gen, dtype=torch.float64)
    return lambda y: ((y - target) ** 2).mean(dim=1)


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 6),
    widths=st.lists(st.integers(1, 64), min_size=7, max_size=7),
    out=st.integers(1, 3),
    batch=st.integers(1, 4),
    activation=st.sampled_from(sorted(ACTIVATIONS)),
    output=st.sampled_from(OUTPUTS),
    seed=st.integers(0, 2**16),
)
def test_inequality_property(
    depth: int,
    widths: list[int],
    out: int,
    batch: int,
    activation: str,
    output: str,
    seed: int,
) -> None:
    """C3.1 (both norms), C3.2 (per layer), C3.5 (rank-one identity) on random MLPs."""
    dims = [min(widths[0], 16), *widths[1:depth], out]
    mlp = make_mlp(dims, activation, seed)
    x = torch.randn(
        batch, dims[0], generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    fn = make_output_fn(output, batch, out, seed)
    for norm in ("spectral", "frobenius"):
        r = gradient_norm_inequality(mlp, x, output_fn=fn, norm=norm)
        assert r.lhs.shape == (batch,)
        assert r.per_layer_weight.shape == (batch, depth)
        for value in (r.lhs, r.rhs, r.ratio, r.S, r.per_layer_weight, r.per_layer_bias):
            assert torch.isfinite(value).all()
        assert bool(r.holds(RTOL).all())  # C3.1
        assert bool((r.per_layer_weight <= r.per_layer_weight_rhs * (1 + RTOL)).all())  # C3.2
        assert bool((r.per_layer_bias <= r.per_layer_bias_rhs * (1 + RTOL)).all())
        torch.testing.assert_close(r.lhs, r.S * r.input_gradient_norm**2, rtol=1e-12, atol=0)
    # C3.5: ||∇_W f||_F = ||δ|| ||h|| and Σ ||δ||²(1 + ||h||²) = ||∇θ f||².
    torch.testing.assert_close(
        r.per_layer_weight_rhs.sqrt(), r.delta_norm * r.hidden_norm, rtol=1e-12, atol=1e-300
    )
    torch.testing.assert_close(r.per_layer_bias_rhs.sqrt(), r.delta_norm, rtol=1e-12, atol=1e-300)
    identity = (r.delta_norm**2 * (1 + r.hidden_norm**2)).sum(dim=1)
    torch.testing.assert_close(identity, r.parameter_gradient_norm**2, rtol=1e-12, atol=1e-300)


def test_reference_tanh_network_ratios_are_small() -> None:
    """C3.1 reference regime: 8-32-32-32-1 tanh, ratios well below 1, Frobenius below spectral."""
    mlp = make_mlp([8, 32, 32, 32, 1], "tanh", 0)
    x = torch.randn(50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spectral = gradient_norm_inequality(mlp, x)
    frobenius = gradient_norm_inequality(mlp, x, norm="frobenius")
    assert float(spectral.ratio.max()) < 0.5
    assert bool((frobenius.ratio <= spectral.ratio * (1 + RTOL)).all())


@pytest.mark.parametrize("norm", ["spectral", "frobenius"])
def test_single_linear_layer_is_an_equality(norm: str) -> None:
    """C3.3: f = wᵀx + b gives LHS/RHS = 1 (spectral; Frobenius is equal for a row vector)."""
    mlp = make_mlp([7, 1], "identity", 3)
    x = torch.randn(6, 7, dtype=torch.float64)
    r = gradient_norm_inequality(mlp, x, norm=norm)  # type: ignore[arg-type]
    if norm == "spectral":
        torch.testing.assert_close(r.ratio, torch.ones(6, dtype=torch.float64), rtol=1e-12, atol=0)
        torch.testing.assert_close(r.rhs, 1 + x.pow(2).sum(1), rtol=1e-12, atol=0)
    else:  # J = I has Frobenius norm √d
        torch.testing.assert_close(
            r.jacobian_norm[:, 0], torch.full((6,), math.sqrt(7.0), dtype=torch.float64)
        )
        torch.testing.assert_close(
            r.ratio, torch.full((6,), 1 / 7, dtype=torch.float64), rtol=1e-12, atol=0
        )


def test_matches_naive_per_sample_autograd_loop() -> None:
    mlp = make_mlp([3, 5, 4, 2], "gelu", 11)
    x = torch.randn(4, 3, dtype=torch.float64)
    target = torch.randn(4, 2, dtype=torch.float64)
    r = gradient_norm_inequality(mlp, x, output_fn=lambda y: ((y - target) ** 2).sum(1))
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    for b in range(4):
        xb = x[b : b + 1].clone().requires_grad_(True)
        fb = ((mlp(xb) - target[b]) ** 2).sum()
        grads = torch.autograd.grad(fb, [xb, *mlp.parameters()])
        assert float(grads[0].norm()) == pytest.approx(float(r.input_gradient_norm[b]), rel=1e-12)
        total = sum(float(g.pow(2).sum()) for g in grads[1:])
        assert total == pytest.approx(float(r.rhs[b]), rel=1e-12)
        for t, lin in enumerate(linears):
            (gw, gb) = torch.autograd.grad(
                ((mlp(xb) - target[b]) ** 2).sum(), [lin.weight, lin.bias]
            )
            assert float(gw.pow(2).sum()) == pytest.approx(float(r.per_layer_weight_rhs[b, t]))
            assert float(gb.pow(2).sum()) == pytest.approx(float(r.per_layer_bias_rhs[b, t]))
        # J of the input of layer 2 (after the first activation) by jacrev
        jac = torch.func.jacrev(lambda v: mlp[1](mlp[0](v)))(x[b])
        expected = torch.linalg.matrix_norm(jac, ord=2)
        assert float(expected.detach()) == pytest.approx(float(r.jacobian_norm[b, 1]), rel=1e-12)


def test_dead_relu_layer_is_flagged_and_finite() -> None:
    mlp = make_mlp([3, 4, 1], "relu", 0)
    with torch.no_grad():
        mlp[0].bias.fill_(-100.0)  # every ReLU is off: J of layer 2 is 0
    x = torch.randn(5, 3, dtype=torch.float64)
    r = gradient_norm_inequality(mlp, x)
    assert bool(r.degenerate.all())
    assert bool((r.jacobian_norm[:, 1] == 0).all())
    assert bool((r.per_layer_weight[:, 1] == 0).all())
    assert bool((r.per_layer_bias[:, 1] == 0).all())
    assert bool((r.input_gradient_norm == 0).all())
    for value in (r.lhs, r.rhs, r.ratio, r.S):
        assert torch.isfinite(value).all()
    alive = gradient_norm_inequality(make_mlp([3, 4, 1], "tanh", 0), x)
    assert not bool(alive.degenerate.any())


def test_layer_without_bias_and_eval_dropout_are_supported() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 6, bias=False), nn.Tanh(), nn.Dropout(0.5), nn.Linear(6, 1))
    mlp = mlp.double().eval()
    r = gradient_norm_inequality(mlp, torch.randn(4, 3, dtype=torch.float64))
    assert bool((r.per_layer_bias[:, 0] == 0).all())
    assert bool((r.per_layer_bias_rhs[:, 0] == 0).all())
    assert bool(r.holds().all())


def test_parameters_are_cast_to_input_dtype_without_changing_module() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))  # float32
    r = gradient_norm_inequality(mlp, torch.randn(2, 3, dtype=torch.float64))
    assert r.lhs.dtype == torch.float64
    assert mlp[0].weight.dtype == torch.float32


def test_conv_module_is_refused_naming_supported_layers() -> None:
    """C3.9: convolutions share weights; the probe refuses them."""
    conv_net = nn.Sequential(nn.Conv1d(1, 1, 1), nn.Tanh())
    with pytest.raises(TypeError, match=r"nn\.Linear.*") as info:
        gradient_norm_inequality(conv_net, torch.randn(2, 1, dtype=torch.float64))
    assert "share weights" in str(info.value)
    assert "nn.Tanh" in str(info.value)


def test_tied_weights_are_refused() -> None:
    lin = nn.Linear(3, 3).double()
    with pytest.raises(ValueError, match="tied"):
        gradient_norm_inequality(nn.Sequential(lin, nn.Tanh(), lin), torch.randn(2, 3).double())
    a, b = nn.Linear(3, 3).double(), nn.Linear(3, 3).double()
    b.weight = a.weight
    with pytest.raises(ValueError, match="tied"):
        gradient_norm_inequality(nn.Sequential(a, nn.Tanh(), b), torch.randn(2, 3).double())


def test_shared_scalar_weight_counterexample_breaks_weight_inequality() -> None:
    """C3.9: a 1-D conv with one shared weight w, h = (1, 1), δ = (1, −1): ∇_w f = Σ δ_p h_p = 0,
    while ‖∇ₓf‖²‖h‖²/(‖W‖²‖J‖²) = 2w²·2/w² = 4 > 0."""
    conv = nn.Conv1d(1, 1, kernel_size=1, bias=False).double()
    with torch.no_grad():
        conv.weight.fill_(0.7)
    x = torch.ones(1, 1, 2, dtype=torch.float64, requires_grad=True)
    c = torch.tensor([1.0, -1.0], dtype=torch.float64)
    f = (conv(x).reshape(2) * c).sum()
    grad_x, grad_w = torch.autograd.grad(f, [x, conv.weight])
    weight_matrix = 0.7 * torch.eye(2, dtype=torch.float64)  # the conv as a matrix on h = x
    spectral = torch.linalg.matrix_norm(weight_matrix, ord=2)
    lhs = grad_x.pow(2).sum() * x.detach().pow(2).sum() / spectral**2
    rhs = grad_w.pow(2).sum()
    assert float(rhs) == 0.0
    assert float(lhs) == pytest.approx(4.0, rel=1e-12)
    assert float(lhs) > float(rhs)
    with pytest.raises(TypeError, match="convolutions share weights"):
        gradient_norm_inequality(nn.Sequential(nn.Conv1d(1, 1, 1)), torch.ones(1, 2).double())


@pytest.mark.parametrize(
    "module",
    [nn.BatchNorm1d(3), nn.Sequential(nn.Linear(3, 3)), nn.LayerNorm(3), nn.PReLU()],
)
def test_other_modules_are_refused(module: nn.Module) -> None:
    mlp = nn.Sequential(nn.Linear(3, 3), module, nn.Linear(3, 1)).double()
    with pytest.raises((TypeError, ValueError), match="supported"):
        gradient_norm_inequality(mlp, torch.randn(2, 3).double())


def test_train_mode_dropout_is_refused() -> None:
    mlp = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.1), nn.Linear(3, 1)).double()
    with pytest.raises(ValueError, match="Dropout"):
        gradient_norm_inequality(mlp, torch.randn(2, 3).double())


def test_bad_inputs() -> None:
    mlp = make_mlp([3, 4, 1], "tanh", 0)
    good = torch.randn(2, 3, dtype=torch.float64)
    with pytest.raises(TypeError):
        gradient_norm_inequality(nn.Linear(3, 1), good)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        gradient_norm_inequality(nn.Sequential(nn.Tanh()), good)
    with pytest.raises(TypeError, match="floating"):
        gradient_norm_inequality(mlp, torch.ones(2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="NaN"):
        gradient_norm_inequality(mlp, torch.full((2, 3), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError, match="empty"):
        gradient_norm_inequality(mlp, torch.zeros(0, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[B, d\]"):
        gradient_norm_inequality(mlp, torch.zeros(2, 3, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="features"):
        gradient_norm_inequality(mlp, torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="norm"):
        gradient_norm_inequality(mlp, good, norm="nuclear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one scalar per sample"):
        gradient_norm_inequality(mlp, good, output_fn=lambda y: y.repeat(1, 2))


def test_initialization_spectral_norms() -> None:
    """C3.4: none of the standard initialisations has spectral norm near 0."""
    norms = initialization_spectral_norms(size=256, seeds=5)
    assert norms["orthogonal"] == pytest.approx(1.00, abs=0.1)
    assert norms["lecun"] == pytest.approx(1.97, abs=0.1)
    assert norms["kaiming"] == pytest.approx(2.75, abs=0.1)
    assert norms["pytorch_default"] == pytest.approx(1.13, abs=0.1)
    with pytest.raises(ValueError, match="size"):
        initialization_spectral_norms(size=0)
    with pytest.raises(ValueError, match="seeds"):
        initialization_spectral_norms(seeds=0)
