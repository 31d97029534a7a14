"""Benchmark of the Lipschitz-critic strategies (spec 01 §5.2–5.3, targets from spec 12 §1.4).

``python benchmarks/lipschitz.py [--quick] [--device cuda] [--rounds R] [--min-run-time S]``

Per workload (DCGAN 28×28 critic and generator, batch 64; ResNet 32×32 critic, batch 32, with a
one-layer generator so that the critic part dominates the generator step), on fixed batches:

* critic steps (WGAN loss, fake precomputed): none, clip, sn, gp (λ=10), gn, gran, and where
  torch-mimicry can be imported, its spectral-norm layers and its WGAN-GP penalty;
* generator steps: plain WGAN, GN fast (kexue default), GN double backprop and
  ``gn-official-hook``, a re-implementation from the spec's description of the official Faster-GN
  tensor-hook step. G's gradients from the three GN variants must agree (1e-3 relative) first.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import itertools
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _harness when run as a script

from _harness import (
    Row,
    Settings,
    Step,
    add_common_args,
    measure,
    settings_from_args,
    write_results,
)
from kexue.gan import DCGANCritic28, DCGANGenerator28, ResNetCritic32, critic_step_backward
from kexue.lipschitz import LipschitzConstraint, make_constraint

NAME = "lipschitz"
CRITIC_METHODS = ("none", "clip", "sn", "gp", "gn", "gran")
AGREEMENT_TOL = 1e-3
Backward = Callable[[nn.Module, torch.Tensor], object]


def build(workload: str, quick: bool) -> tuple[nn.Module, nn.Module, int, int]:
    """``(critic, generator, latent_dim, batch)`` of a workload; tiny widths with ``quick``."""
    width = 8 if quick else 64
    generator: nn.Module
    if workload == "dcgan28":
        generator = DCGANGenerator28(latent_dim=64, channels=width)
        return DCGANCritic28(channels=width), generator, 64, 8 if quick else 64
    critic = ResNetCritic32(channels=width, num_blocks=2 if quick else 4)
    # z → 3×32×32 in one layer, so that the critic part dominates the generator step
    generator = nn.Sequential(nn.Linear(128, 3 * 32 * 32), nn.Tanh(), nn.Unflatten(1, (3, 32, 32)))
    return critic, generator, 128, 4 if quick else 32


def hook_generator_backward(
    critic: nn.Module, fake: torch.Tensor, inputs: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Faster-GN generator step in the official tensor-hook style (spec 01 §5.3), WGAN loss.

    Written from the spec's description: ``mean(f).backward()`` delivers ``g_b/B`` at ``x``; a hook
    on ``x`` recovers ``g_b``, replaces the gradient by ``∂(−mean f̂)/∂x_b = −coef_b g_b / B`` with
    ``coef = ‖g‖/(‖g‖+|f|)²`` and is removed afterwards. Gradients go to ``inputs`` only (G's
    parameters), as a G step that freezes D would. Returns the loss ``−mean(f̂)``.
    """
    f: torch.Tensor = critic(fake).reshape(-1)
    batch, scores, norms = f.shape[0], f.detach(), list[torch.Tensor]()

    def rescale(incoming: torch.Tensor) -> torch.Tensor:
        gradient = incoming * batch
        norm = torch.linalg.vector_norm(gradient.flatten(1), dim=1)
        norms.append(norm)
        coef = norm / (norm + scores.abs()).pow(2).clamp_min(torch.finfo(norm.dtype).tiny)
        rescaled: torch.Tensor = (-coef / batch).view(-1, *[1] * (gradient.ndim - 1)) * gradient
        return rescaled

    handle = fake.register_hook(rescale)  # type: ignore[no-untyped-call]
    try:
        torch.autograd.backward(f.mean(), inputs=list(inputs))
    finally:
        handle.remove()
    f_hat = scores / (norms[0] + scores.abs()).clamp_min(torch.finfo(f.dtype).tiny)
    return -f_hat.mean()


def _wgan_generator_backward(constraint: LipschitzConstraint) -> Backward:
    return lambda critic, fake: constraint.generator_backward(critic, fake, "wgan")


def generator_backwards(generator: nn.Module) -> dict[str, Backward]:
    """The generator-step variants, each ``(critic, fake) -> loss`` back-propagating into G."""
    kexue = {
        "plain": make_constraint("none"),
        "gn-fast": make_constraint("gn"),
        "gn-double": make_constraint("gn", generator_mode="double"),
    }
    params = list(generator.parameters())
    backwards = {name: _wgan_generator_backward(constraint) for name, constraint in kexue.items()}
    backwards["gn-official-hook"] = lambda critic, fake: hook_generator_backward(
        critic, fake, params
    )
    return backwards


def check_generator_agreement(
    generator: nn.Module, critic: nn.Module, z: torch.Tensor
) -> dict[str, float]:
    """Relative errors of G's gradient (vs ``gn-double``) of the GN variants; raise beyond 1e-3."""
    grads = {}
    for name, backward in generator_backwards(generator).items():
        if name == "plain":
            continue
        generator.zero_grad(set_to_none=True)
        backward(critic, generator(z))
        grads[name] = torch.cat(
            [p.grad.flatten() for p in generator.parameters() if p.grad is not None]
        )
    generator.zero_grad(set_to_none=True)
    reference = grads["gn-double"]
    errors = {name: float((g - reference).norm() / reference.norm()) for name, g in grads.items()}
    if not all(error <= AGREEMENT_TOL for error in errors.values()):
        raise AssertionError(f"GN generator gradients disagree (relative to gn-double): {errors}")
    return errors


def _optimizer(module: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.Adam(module.parameters(), lr=1e-4, betas=(0.0, 0.9))


def critic_step(
    constraint: LipschitzConstraint, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor
) -> Step:
    """One full WGAN critic step: zero_grad, scores + penalty, backward, Adam step, constraint."""
    optimizer, counter = _optimizer(critic), itertools.count()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        critic_step_backward(constraint, critic, real, fake, "wgan", next(counter))
        optimizer.step()
        constraint.after_critic_step(critic)

    return step


def generator_step(
    backward: Backward, generator: nn.Module, critic: nn.Module, z: torch.Tensor
) -> Step:
    """One full generator step: zero_grad, fake = G(z), loss backward into G, Adam step."""
    optimizer = _optimizer(generator)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        backward(critic, generator(z))
        optimizer.step()

    return step


def load_mimicry() -> tuple[dict[str, Any], str]:
    """torch-mimicry's SN layer classes and GP function, or ``({}, reason)``.

    Its package ``__init__`` imports tensorboard/torchvision/tensorflow; the torch-only submodules
    are loaded under stand-in parent packages when that import fails.
    """
    spec = importlib.util.find_spec("torch_mimicry")
    if spec is None or not spec.submodule_search_locations:
        return {}, (
            "anchor not installable: torch-mimicry 0.1.16 requires torch 2.14.1 + tensorflow "
            "(pip would replace torch 2.13.0+cpu) and is not installed; StudioGAN is not on "
            "PyPI; the hook row is a reference re-implementation from the spec"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    status = f"torch-mimicry {importlib.metadata.version('torch-mimicry')} at {root}"
    try:
        importlib.import_module("torch_mimicry")
    except ImportError as error:
        status += f"; package import fails ({error}), torch-only submodules loaded directly"
        for name in [n for n in list(sys.modules) if n.startswith("torch_mimicry")]:
            del sys.modules[name]
        for name, path in (("torch_mimicry", root), ("torch_mimicry.nets", root / "nets")):
            package = types.ModuleType(name)
            package.__path__ = [str(path)]
            sys.modules[name] = package
    sn = importlib.import_module("torch_mimicry.modules.spectral_norm")
    gp = importlib.import_module("torch_mimicry.nets.wgan_gp.wgan_gp_base")
    return {
        "SNConv2d": sn.SNConv2d,
        "SNLinear": sn.SNLinear,
        "gp": gp.WGANGPBaseDiscriminator.compute_gradient_penalty_loss,
    }, status


def mimicry_sn_critic(critic: nn.Module, mimicry: dict[str, Any]) -> nn.Module:
    """A copy of ``critic`` with mimicry's SN layers in place of Conv2d/Linear (same weights)."""
    critic = copy.deepcopy(critic)
    for parent in list(critic.modules()):
        for name, layer in parent.named_children():
            if isinstance(layer, nn.Conv2d):
                sizes = (layer.in_channels, layer.out_channels, layer.kernel_size)
                new = mimicry["SNConv2d"](*sizes, layer.stride, layer.padding)
            elif isinstance(layer, nn.Linear):
                new = mimicry["SNLinear"](layer.in_features, layer.out_features)
            else:
                continue
            new.load_state_dict(layer.state_dict(), strict=False)  # sn_u / sn_sigma stay fresh
            setattr(parent, name, new)
    return critic


@dataclasses.dataclass
class MimicryGP(LipschitzConstraint):
    """Anchor row: kexue's WGAN critic loss plus torch-mimicry's WGAN-GP penalty (λ=10)."""

    compute: Callable[..., torch.Tensor] | None = None

    def penalty(
        self, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, step: int
    ) -> torch.Tensor:
        assert self.compute is not None
        return self.compute(critic, real, fake, gp_scale=10.0)


def run_workload(
    workload: str, settings: Settings, mimicry: dict[str, Any], seed: int = 0
) -> tuple[list[Row], dict[str, float]]:
    """Critic-step and generator-step groups of one workload; returns rows and agreement errors."""
    torch.manual_seed(seed)
    critic, generator, latent_dim, batch = build(workload, settings.quick)
    critic, generator = critic.to(settings.device), generator.to(settings.device)
    z = torch.randn(batch, latent_dim, device=settings.device)
    with torch.no_grad():
        fake = generator(z)
    real = torch.rand_like(fake) * 2 - 1
    errors = check_generator_agreement(generator, critic, z)
    critic_steps: dict[str, Step] = {}
    for name in CRITIC_METHODS:
        constraint = make_constraint(name)
        copy_d = constraint.prepare_critic(copy.deepcopy(critic))
        critic_steps[name] = critic_step(constraint, copy_d, real, fake)
    if mimicry:
        sn_critic = mimicry_sn_critic(critic, mimicry).to(settings.device)
        critic_steps["mimicry-sn"] = critic_step(make_constraint("none"), sn_critic, real, fake)
        if real.shape[1] == 3:  # mimicry's GP hard-codes 3 channels (alpha.view(N, 3, H, W))
            gp = MimicryGP(compute=mimicry["gp"])
            critic_steps["mimicry-gp"] = critic_step(gp, copy.deepcopy(critic), real, fake)
    rows = measure(f"{workload} critic step", critic_steps, "none", settings)
    generator_steps = {}
    for name in generator_backwards(generator):
        copy_g = copy.deepcopy(generator)
        generator_steps[name] = generator_step(generator_backwards(copy_g)[name], copy_g, critic, z)
    rows += measure(f"{workload} generator step", generator_steps, "plain", settings)
    return rows, errors


TARGETS = [  # (label, step kind, method, baseline, limit); limit None = informative only
    ("GN generator step (fast) <= 1.05x plain G step", "generator", "gn-fast", "plain", 1.05),
    ("GN critic step <= 1.0x GP critic step", "critic", "gn", "gp", 1.0),
    ("SN critic step <= 1.1x plain critic step", "critic", "sn", "none", 1.1),
    ("GN critic step <= 2.5x plain (spec 12 §1.4, CPU)", "critic", "gn", "none", 2.5),
    ("GN double / GN fast (informative)", "generator", "gn-double", "gn-fast", None),
]


def targets(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Pass/fail of the performance targets, per workload (no tuning: what was measured)."""
    time = {(row.group, row.method): row.median_ms for row in rows}
    results = []
    for workload in sorted({row.group.split()[0] for row in rows}):
        for label, kind, method, base, limit in TARGETS:
            ratio = time[f"{workload} {kind} step", method] / time[f"{workload} {kind} step", base]
            passed = None if limit is None else ratio <= limit
            results.append(
                dict(workload=workload, target=label, ratio=ratio, limit=limit, passed=passed)
            )
    return results


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write ``<out>/lipschitz.{json,md}``, print the table; return the JSON."""
    defaults = Settings(rounds=8, min_run_time=0.75)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser, defaults)
    parser.add_argument("--no-resnet", action="store_true", help="skip the ResNet 32×32 workload")
    args = parser.parse_args(argv)
    settings = settings_from_args(args, defaults)
    mimicry, anchor = load_mimicry()
    rows: list[Row] = []
    agreement = {}
    names = ["dcgan28"] if args.no_resnet else ["dcgan28", "resnet32"]
    for workload in names:
        work_rows, agreement[workload] = run_workload(workload, settings, mimicry)
        rows += work_rows
    checks = targets(rows)
    notes = ["## Targets", "", "| workload | target | ratio | pass |", "|---|---|---:|---|"]
    notes += [
        f"| {c['workload']} | {c['target']} | {c['ratio']:.2f} | {c['passed']} |" for c in checks
    ]
    notes += [
        "",
        f"GN generator-gradient agreement (relative to gn-double): {agreement}",
        "",
        f"Anchor: {anchor}.",
        "",
        "Every step uses Adam (lr 1e-4, betas (0, 0.9)); "
        "`gn-official-hook` re-implements the official hook step from spec 01 §5.3.",
    ]
    extra = {
        "workloads": names,
        "targets": checks,
        "anchor": anchor,
        "agreement": {"tolerance": AGREEMENT_TOL, "errors": agreement},
    }
    json_path, md_path = write_results(NAME, rows, settings, extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return {"rows": [dataclasses.asdict(row) for row in rows], **extra}


if __name__ == "__main__":
    main()
