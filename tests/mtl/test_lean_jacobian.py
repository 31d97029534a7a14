"""The lean Jacobian of mtl_backward (issue 20 item 3; spec 07 §3.2): only the shared (or
feature) Jacobian is formed, the heads get Σᵢwᵢ∇Lᵢ from one weighted backward; checked against
an explicit full per-task Jacobian of shared and task parameters in float64. Frozen parameters
are skipped; ``"auto"`` avoids the vmapped Jacobian while torch.compile traces."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kexue.mtl import MGDA, GradNormalized, PrimaryAuxiliary, gram_matrix, mtl_backward
from kexue.mtl._gradients import resolve_jacobian_method

from .conftest import MultiTaskNet, grads_of, per_task_matrix, relative


class HeavyHeadNet(MultiTaskNet):
    """MultiTaskNet with two-layer (tanh) heads: the heads' graph is non-linear."""

    def __init__(self, n_tasks: int = 4, seed: int = 0) -> None:
        super().__init__(n_tasks, seed)
        torch.manual_seed(seed + 7)
        self.heads = nn.ModuleList(
            [nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 1)) for _ in range(n_tasks)]
        ).double()


def _full_jacobian_expectation(
    net: MultiTaskNet, weights: torch.Tensor, head_scaling: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Gram of the shared rows, shared Gᵀw, heads Σ hᵢ∇Lᵢ) from the full explicit Jacobian."""
    params = net.shared() + net.task_params()
    full = per_task_matrix(net.losses(), params)  # [T, shared + heads]
    n_shared = sum(p.numel() for p in net.shared())
    shared, heads = full[:, :n_shared], full[:, n_shared:]
    head_weights = weights if head_scaling == "alpha" else torch.ones_like(weights)
    return shared @ shared.T, weights @ shared, head_weights @ heads


@pytest.mark.parametrize("net_class", [MultiTaskNet, HeavyHeadNet])
@pytest.mark.parametrize(
    ("aggregator", "jacobian_method", "use_features", "head_scaling"),
    [
        ("mgda", "loop", False, "alpha"),
        ("mgda", "vmap", False, "alpha"),
        ("mgda", "loop", True, "alpha"),
        ("mgda", "vmap", True, "none"),
        ("grad_normalized", "loop", False, "none"),
        ("primary_auxiliary", "vmap", False, "alpha"),
    ],
)
def test_lean_path_matches_the_full_jacobian(
    net_class: type[MultiTaskNet],
    aggregator: str,
    jacobian_method: str,
    use_features: bool,
    head_scaling: str,
) -> None:
    net = net_class(4)
    agg: object = {
        "mgda": lambda: MGDA(),
        "grad_normalized": lambda: GradNormalized(),
        "primary_auxiliary": lambda: PrimaryAuxiliary(),
    }[aggregator]()
    features, losses = net.features_and_losses()
    result = mtl_backward(
        losses,
        net.shared(),
        features=features if use_features else None,
        task_parameters=net.task_params(),
        aggregator=agg,
        head_scaling=head_scaling,  # type: ignore[arg-type]
        jacobian_method=jacobian_method,  # type: ignore[arg-type]
    )
    assert result.weights is not None
    assert result.gram is not None
    gram, shared_expected, head_expected = _full_jacobian_expectation(
        net, result.weights, head_scaling
    )
    torch.testing.assert_close(result.gram, gram, rtol=1e-12, atol=1e-12 * float(gram.max()))
    assert relative(grads_of(net.shared()), shared_expected) <= 1e-12
    assert relative(grads_of(net.task_params()), head_expected) <= 1e-12


def test_gram_matrix_chunks_low_precision_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A float32 block is up-cast a chunk of columns at a time: same Gram as the whole up-cast."""
    import kexue.mtl._gradients as gradients

    block = torch.randn(3, 50, 7, generator=torch.Generator().manual_seed(0))
    flat = block.reshape(3, -1).double()
    monkeypatch.setattr(gradients, "_GRAM_CHUNK", 16)  # 5 columns a chunk for T = 3
    torch.testing.assert_close(gram_matrix(block), flat @ flat.T, rtol=1e-13, atol=1e-12)


def test_frozen_parameters_are_skipped() -> None:
    """requires_grad=False inside shared_parameters / task_parameters: no .grad, no error; the
    others get what they get with the frozen ones left out."""
    reference = MultiTaskNet(3)
    net = MultiTaskNet(3)
    for model in (reference, net):
        model.trunk[0].weight.requires_grad_(False)
        model.heads[1].bias.requires_grad_(False)
    trainable = [p for p in reference.parameters() if p.requires_grad]
    mtl_backward(
        reference.losses(),
        [p for p in reference.shared() if p.requires_grad],
        task_parameters=[p for p in reference.task_params() if p.requires_grad],
    )
    features, losses = net.features_and_losses()
    for use_features in (False, True):
        net.zero_grad(set_to_none=True)
        mtl_backward(
            losses,
            net.shared(),
            features=features if use_features else None,
            task_parameters=net.task_params(),
            retain_graph=not use_features,
        )
        assert net.trunk[0].weight.grad is None
        assert net.heads[1].bias.grad is None
        got = [p for p in net.parameters() if p.requires_grad]
        assert relative(grads_of(got), grads_of(trainable)) <= 1e-12
    with pytest.raises(ValueError, match="every tensor of shared_parameters is frozen"):
        mtl_backward(net.losses(), [net.trunk[0].weight])


def test_auto_avoids_vmap_while_compiling() -> None:
    """torch.compile traces with is_compiling() True: "auto" resolves to the loop even on an
    accelerator (the meta device stands in for one)."""

    def probe(x: torch.Tensor) -> torch.Tensor:
        method = resolve_jacobian_method("auto", 3, torch.device("meta"))
        return x + (1.0 if method == "loop" else 2.0)

    assert resolve_jacobian_method("auto", 3, torch.device("meta")) == "vmap"
    out = torch.compile(probe, backend="eager", fullgraph=True)(torch.zeros(1))
    assert float(out) == 1.0


def test_vmap_jacobian_through_a_compiled_model() -> None:
    """A trunk compiled with torch.compile (aot_eager: compiled autograd nodes in the graph):
    the vmapped Jacobian writes the same gradients as the eager loop."""
    net = MultiTaskNet(3)
    eager_net = MultiTaskNet(3)
    mtl_backward(eager_net.losses(), eager_net.shared(), jacobian_method="loop")
    compiled = torch.compile(net.trunk, backend="aot_eager")
    features = compiled(net.x)
    losses = [
        (head(features) - y).pow(2).mean() for head, y in zip(net.heads, net.targets, strict=True)
    ]
    mtl_backward(losses, net.shared(), jacobian_method="vmap")
    assert relative(grads_of(net.shared()), grads_of(eager_net.shared())) <= 1e-12
    assert relative(grads_of(net.task_params()), grads_of(eager_net.task_params())) <= 1e-12
