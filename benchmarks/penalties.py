"""Benchmark of the gradient penalties and the inequality probe (spec 03 §4, E3.4).

``python benchmarks/penalties.py [--quick] [--device cuda] [--threads N (default 1)] [--rounds R]``

1. Training-step cost (float32, SGD): an MLP 784-512-512-10 (ReLU) on a fixed batch of 128 random
   MNIST-shaped inputs, cross-entropy. Each timed call runs 16 training steps, so lazy schedules
   are amortised exactly: plain; input-gradient penalty ``λ·mean‖∇ₓℓ_b‖²`` eager (every step),
   lazy every 4 and every 16 (StyleGAN2 convention: ×k on the steps where it applies); exact
   parameter-gradient penalty ``λ/2·‖∇θL‖²`` (double backward); its finite-difference gradient
   (two gradient evaluations, no second-order graph; kinks frozen, the default, and not frozen:
   the cost of recording and replaying the ReLU patterns, issue 21 item 6).
2. Inequality probe: :func:`kexue.penalties.gradient_norm_inequality` (batched, vmap) on 256
   samples of an MLP 64-128-128-10 (tanh, float64) against a naive per-sample Python loop with
   autograd (``torch.autograd.functional.jacobian`` per layer, ``autograd.grad`` per sample). Both
   must agree to 1e-10 relative before timing.

Anchors (spec 12 §3): stylegan2-ada-pytorch's lazy R1 and jacobian_regularizer are repositories,
not pip packages (``pip download`` finds neither); lazy R1 is re-implemented per the spec.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
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
from kexue.penalties import (
    LazyPenalty,
    add_parameter_gradient_penalty_,
    gradient_norm_inequality,
    input_gradient_penalty,
    parameter_gradient_penalty,
)

NAME = "penalties"
STEPS_PER_CALL = 16
AGREEMENT_TOL = 1e-10
WEIGHT = 0.01
ANCHOR = (
    "anchor not installable: stylegan2-ada-pytorch (lazy R1) and jacobian_regularizer are not "
    "on the package index (`pip index versions jacobian-regularizer`, `pip download --no-deps` "
    "find no distribution); lazy R1 re-implemented per spec (kexue.penalties.LazyPenalty)"
)
TRAINING_METHODS = (
    "plain",
    "input-grad eager",
    "input-grad lazy k=4",
    "input-grad lazy k=16",
    "param-grad exact",
    "param-grad finite-difference",
    "param-grad finite-difference, kinks not frozen",
)


def mlp(sizes: Sequence[int], activation: Callable[[], nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if index < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def training_steps(quick: bool, device: str) -> dict[str, Step]:
    """Zero-argument callables, each running ``STEPS_PER_CALL`` SGD steps of one method."""
    sizes, batch = ((64, 32, 32, 10), 16) if quick else ((784, 512, 512, 10), 128)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, sizes[0], generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)

    def method(name: str) -> Step:
        torch.manual_seed(0)
        model = mlp(sizes, nn.ReLU).to(device)
        params = list(model.parameters())
        optimizer = torch.optim.SGD(params, lr=0.01)
        every = {"input-grad lazy k=4": 4, "input-grad lazy k=16": 16}.get(name, 1)
        schedule = LazyPenalty(every)

        def per_example_loss(inputs: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(inputs), y, reduction="none")

        def loss_fn() -> torch.Tensor:
            return F.cross_entropy(model(x), y)

        def one(step: int) -> None:
            optimizer.zero_grad(set_to_none=True)
            if name.startswith("param-grad finite-difference"):
                add_parameter_gradient_penalty_(
                    loss_fn, params, WEIGHT, freeze_kinks=not name.endswith("not frozen")
                )
            else:
                loss = loss_fn()
                if name.startswith("input-grad"):
                    penalty = schedule(
                        step, lambda: input_gradient_penalty(per_example_loss, x, WEIGHT)
                    )
                    if penalty is not None:
                        loss = loss + penalty
                elif name == "param-grad exact":
                    loss = loss + parameter_gradient_penalty(loss, params, WEIGHT)
                loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()

        def run() -> None:
            for step in range(STEPS_PER_CALL):
                one(step)

        return run

    return {name: method(name) for name in TRAINING_METHODS}


def naive_inequality(
    model: nn.Sequential, x: torch.Tensor, output_fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample Python loop (spectral norms): ``(lhs, rhs)`` of spec 03 §2, ``[B]`` each."""
    linears = [(i, layer) for i, layer in enumerate(model) if isinstance(layer, nn.Linear)]
    params = list(model.parameters())
    lhs: list[torch.Tensor] = []
    rhs: list[torch.Tensor] = []
    for row in x:
        point = row.detach().unsqueeze(0).requires_grad_(True)
        score = output_fn(model(point)).sum()
        grad_x = torch.autograd.grad(score, point, retain_graph=True)[0]
        grad_theta = torch.autograd.grad(score, params)
        total = torch.zeros((), dtype=x.dtype)
        for index, layer in linears:
            prefix = model[:index]

            def hidden(inp: torch.Tensor, prefix: nn.Module = prefix) -> torch.Tensor:
                out: torch.Tensor = prefix(inp.unsqueeze(0))
                return out.squeeze(0)

            h = hidden(row)
            jac = torch.autograd.functional.jacobian(hidden, row)  # type: ignore[no-untyped-call]
            jac_norm = torch.linalg.matrix_norm(jac.reshape(h.numel(), -1), ord=2)
            denominator = torch.linalg.matrix_norm(layer.weight, ord=2) ** 2 * jac_norm**2
            total = total + grad_x.pow(2).sum() * (1 + h.pow(2).sum()) / denominator
        lhs.append(total)
        rhs.append(torch.stack([g.pow(2).sum() for g in grad_theta]).sum())
    return torch.stack(lhs).detach(), torch.stack(rhs).detach()


def probe_setup(quick: bool) -> tuple[nn.Sequential, torch.Tensor]:
    sizes, samples = ((16, 24, 24, 10), 16) if quick else ((64, 128, 128, 10), 256)
    torch.manual_seed(0)
    model = mlp(sizes, nn.Tanh).double()
    x = torch.randn(samples, sizes[0], generator=torch.Generator().manual_seed(1)).double()
    return model, x


def _output(y: torch.Tensor) -> torch.Tensor:
    return y.sum(dim=1)


def probe_agreement(model: nn.Sequential, x: torch.Tensor) -> dict[str, Any]:
    """Relative agreement of the batched probe and the naive loop (float64)."""
    fast = gradient_norm_inequality(model, x, _output)
    lhs, rhs = naive_inequality(model, x, _output)
    errors = {
        "lhs": float(((fast.lhs - lhs).abs() / lhs.abs()).max()),
        "rhs": float(((fast.rhs - rhs).abs() / rhs.abs()).max()),
    }
    worst = max(errors.values())
    return {"samples": x.shape[0], "max_relative_error": errors, "tolerance": AGREEMENT_TOL,
            "passed": worst <= AGREEMENT_TOL}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write ``<out>/penalties.{json,md}``, print the table; return the JSON."""
    defaults = Settings(rounds=5, min_run_time=0.5)
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    add_common_args(parser, defaults)
    parser.set_defaults(threads=1)  # two threads on a busy 2-core machine run far slower
    settings = settings_from_args(parser.parse_args(argv), defaults)
    quick, device = settings.quick, settings.device

    model, x = probe_setup(quick)
    agreement = probe_agreement(model, x)
    if not agreement["passed"]:
        raise RuntimeError(f"probe and naive loop disagree: {agreement}")

    shape = "MLP 64-32-32-10, batch 16" if quick else "MLP 784-512-512-10, batch 128"
    group = f"{shape}: {STEPS_PER_CALL} SGD steps per call (float32)"
    rows: list[Row] = measure(group, training_steps(quick, device), "plain", settings)

    probe_group = f"inequality probe, {x.shape[0]} samples, MLP " + "-".join(
        str(layer.in_features) for layer in model if isinstance(layer, nn.Linear)
    ) + "-10 tanh (float64, CPU)"  # fmt: skip
    probe_steps: dict[str, Step] = {
        "kexue gradient_norm_inequality": lambda: gradient_norm_inequality(model, x, _output),
        "naive per-sample loop": lambda: naive_inequality(model, x, _output),
    }
    # torch.func refuses the memory proxy's saved-tensor hooks: time only, memory reported as 0.
    rows += measure(probe_group, probe_steps, "kexue gradient_norm_inequality", settings,
                    warmup=1, measure_memory=False)  # fmt: skip

    errors = agreement["max_relative_error"]
    notes = [
        f"Anchor: {ANCHOR}.",
        "",
        f"Penalty weight λ = {WEIGHT}; input-gradient penalty on the per-example cross-entropy "
        "(flattened per-sample ℓ2 norm); lazy rows apply k·λ·penalty on every k-th step, so the "
        f"time per call is the amortised cost of {STEPS_PER_CALL} steps. Finite difference: "
        "radius 1e-3 (kexue default), the second evaluation on the first one's ReLU pattern "
        "(freeze_kinks=True, default) or not.",
        "",
        f"Probe agreement (float64, {agreement['samples']} samples, spectral norms, f = sum of "
        f"outputs): max relative error lhs {errors['lhs']:.2e}, rhs {errors['rhs']:.2e} "
        f"(tolerance {AGREEMENT_TOL:g}): {'passed' if agreement['passed'] else 'FAILED'}. "
        "Probe memory is not measured (0): the harness's saved-tensor hooks do not work under "
        "torch.func.",
    ]
    extra: dict[str, Any] = {"anchor": ANCHOR, "agreement": agreement, "weight": WEIGHT,
                             "steps_per_call": STEPS_PER_CALL}  # fmt: skip
    json_path, md_path = write_results(NAME, rows, settings, extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return {"rows": [dataclasses.asdict(row) for row in rows], **extra}


if __name__ == "__main__":
    main()
