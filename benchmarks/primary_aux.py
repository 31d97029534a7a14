"""Benchmark of ``kexue.mtl``'s primary/auxiliary projection (spec 08; issue 9).

``python benchmarks/primary_aux.py [--quick] [--device cuda] [--threads N (default 1)]
[--rounds R] [--aux 1,2,5,10,20,50] [--tasks 2,4,10] [--seeds S]``

1. **Projection solvers on the same instances.** The dual of the projection is non-negative least
   squares, min over λ ≥ 0 of ‖g₀ + Gᵀλ‖², so ``scipy.optimize.nnls(Gᵀ, −g₀)`` (Lawson–Hanson) is
   the reference. ``n`` auxiliary gradients (``n`` in 1, 2, 3, 5, 10, 20, 50) of dimension
   ``d = 2n + 16``, float64, from four families: ``gaussian`` (g₀ and G standard normal);
   ``conflicting`` (every gᵢ has a component −0.5·g₀ plus noise: most constraints are active);
   ``scaled`` (rows × 10^U(−2,2)); ``low_rank`` (rank ``max(1, n // 3)``: λ is not unique, only
   the projection u is). Every solver sees the same vectors: kexue
   :func:`kexue.mtl.primary_auxiliary_direction` with ``solver="kkt"`` (the exact default for
   n ≥ 2), ``"cyclic"``, ``"post"`` (the post's literal rule, which can stall, spec 08 §4),
   ``"closed1"`` (n = 1), and ``"kkt"`` in the Gram form (M = GGᵀ, b = Gg₀, ‖g₀‖²: what
   :class:`kexue.mtl.PrimaryAuxiliary` calls inside a training step); SciPy's ``nnls``. Per solver:
   the objective gap (‖u‖² − ‖u_nnls‖²)/‖g₀‖² (signed: negative = better than NNLS), the
   largest difference of a weighted coefficient maxᵢ|λᵢ − λᵢ^nnls|·‖gᵢ‖/‖g₀‖ (families where λ is
   unique), the scale-free KKT violation maxᵢ vᵢ/(‖gᵢ‖‖g₀‖) with vᵢ = |⟨gᵢ,u⟩| if λᵢ > 0 else
   relu(−⟨gᵢ,u⟩), stalled calls, and the median wall time of one call (``time.perf_counter``
   after one untimed warm-up per solver and n; repeated within a small budget per instance;
   median over repeats, then over instances).
2. **Time per training step** (float32, SGD; ``zero_grad`` + forward + backward-with-method +
   ``optimizer.step``): a shared trunk MLP 784-256-256 (ReLU) on a fixed batch of 256 random
   inputs with ``T`` linear heads (10 classes, cross-entropy each; task 0 is the main task with
   random labels y₀, auxiliary task i has labels (y₀ + i) mod 10, so it conflicts with the main
   task and its constraint is active), T in 2, 4, 10, every method from the same
   initialisation, timed by the harness's interleaved ``blocked_autorange`` against plain
   training on the sum of the losses (one backward). Methods: :func:`kexue.mtl.mtl_backward`
   with :class:`kexue.mtl.PrimaryAuxiliary` on the shared parameters (``jacobian_method="vmap"``
   and ``"loop"``), with ``mode="rep"`` (gradients of the shared features: the cheap
   approximation, spec 08 pitfall 6), with ``solver="post"``; the GCS gate
   (:class:`kexue.mtl.GradCosine`); MGDA (the parallel counterpart, spec 07) for reference; and
   the sum of the losses followed by :class:`kexue.mtl.L2AsAuxiliary` (coupled). A first step
   from the same initialisation checks that the vmap and loop paths write the same shared
   gradient and that it satisfies the constraints ⟨u, gᵢ⟩ ≥ 0 (float32).

Targets (spec 12 §5.4, §9): per step ≤ (T+1)× the sum of losses for gradient methods, ≤ 1.2× for
the L2 hook; solvers: the exact rules equal to NNLS (objective gap ≤ 1e-10, KKT violation ≤ 1e-9).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

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
from _mtl_common import (
    StepConfig,
    build_model,
    check_targets,
    fmt,
    parse_ints,
    step_pivot,
    time_call,
)
from kexue.mtl import (
    GradCosine,
    L2AsAuxiliary,
    PrimaryAuxiliary,
    mtl_backward,
    primary_auxiliary_direction,
    task_gradients,
)

NAME = "primary_aux"
AUX_COUNTS = (1, 2, 3, 5, 10, 20, 50)
QUICK_AUX_COUNTS = (1, 2, 5, 10)
STEP_TASKS = (2, 4, 10)
FAMILIES = ("gaussian", "conflicting", "scaled", "low_rank")
UNIQUE_FAMILIES = ("gaussian", "conflicting", "scaled")
SOLVERS = (
    "kexue kkt",
    "kexue cyclic",
    "kexue post",
    "kexue closed1",
    "kexue kkt (Gram form)",
    "scipy nnls",
)
GAP_TARGET = 1e-10
KKT_TARGET = 1e-9
BASELINE = "sum of losses"
GRADIENT_METHODS = (
    "PrimaryAuxiliary (params, vmap)",
    "PrimaryAuxiliary (params, loop)",
    "PrimaryAuxiliary (rep, features)",
    "PrimaryAuxiliary (post's rule)",
    "GradCosine (GCS)",
    "MGDA (reference)",
)
HOOKS = ("sum + L2AsAuxiliary (coupled)",)
STEP_TITLE = (
    "## Time per step relative to the sum of losses (target: ≤ (T+1)× gradient methods, "
    "≤ 1.2× the L2 hook)"
)


# ----------------------------------------------------------------------------------------------
# Part 1: solvers


def make_instance(family: str, n_aux: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(g₀ [d], G [n, d])`` in float64, d = 2n + 16 (module docstring)."""
    rng = np.random.default_rng(1_000_003 * n_aux + 7919 * FAMILIES.index(family) + seed)
    dim = 2 * n_aux + 16
    g0 = rng.standard_normal(dim)
    if family == "gaussian":
        grads = rng.standard_normal((n_aux, dim))
    elif family == "conflicting":
        grads = -0.5 * g0 + rng.standard_normal((n_aux, dim))
    elif family == "scaled":
        grads = rng.standard_normal((n_aux, dim)) * 10.0 ** rng.uniform(-2, 2, (n_aux, 1))
    elif family == "low_rank":
        rank = max(1, n_aux // 3)
        grads = rng.standard_normal((n_aux, rank)) @ rng.standard_normal((rank, dim))
        grads /= math.sqrt(rank)
    else:
        raise ValueError(f"unknown family {family!r}")
    return g0, grads


def kkt_violation(g0: np.ndarray, grads: np.ndarray, lam: np.ndarray) -> float:
    """maxᵢ vᵢ/(‖gᵢ‖‖g₀‖), vᵢ = |sᵢ| if λᵢ > 0 else relu(−sᵢ), s = G(g₀ + Gᵀλ)."""
    s = grads @ (g0 + lam @ grads)
    v = np.where(lam > 0, np.abs(s), np.maximum(-s, 0.0))
    scale = np.linalg.norm(grads, axis=1) * np.linalg.norm(g0)
    return float((v / np.where(scale > 0, scale, 1.0)).max())


Solver = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, bool]]


def solvers() -> dict[str, Solver]:
    """Every solver, taking (g₀, G) as float64 arrays and returning ``(λ, stalled)``."""
    from scipy.optimize import nnls

    def kexue(solver: str) -> Solver:
        def call(g0: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, bool]:
            _, lam, info = primary_auxiliary_direction(g0, grads, solver=solver)  # type: ignore[arg-type]
            return lam.numpy(), info.stalled

        return call

    def gram_form(g0: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, bool]:
        _, lam, info = primary_auxiliary_direction(
            gram=grads @ grads.T, b=grads @ g0, main_sq=float(g0 @ g0), solver="kkt"
        )
        return lam.numpy(), info.stalled

    def scipy_nnls(g0: np.ndarray, grads: np.ndarray) -> tuple[np.ndarray, bool]:
        return nnls(grads.T, -g0)[0], False

    return {
        "kexue kkt": kexue("kkt"),
        "kexue cyclic": kexue("cyclic"),
        "kexue post": kexue("post"),
        "kexue closed1": kexue("closed1"),
        "kexue kkt (Gram form)": gram_form,
        "scipy nnls": scipy_nnls,
    }


def solver_benchmark(counts: Sequence[int], seeds: int, budget: float) -> dict[str, Any]:
    table = solvers()
    records: list[dict[str, Any]] = []
    for n_aux in counts:
        warmed: set[str] = set()
        for family in FAMILIES:
            for seed in range(seeds):
                g0, grads = make_instance(family, n_aux, seed)
                lam_ref = table["scipy nnls"](g0, grads)[0]
                u_ref = g0 + lam_ref @ grads
                ref, scale = float(u_ref @ u_ref), float(g0 @ g0)
                weights = np.linalg.norm(grads, axis=1) / math.sqrt(scale)
                for name, solve in table.items():
                    if name == "kexue closed1" and n_aux != 1:
                        continue
                    if name not in warmed:
                        solve(g0, grads)
                        warmed.add(name)
                    seconds, (lam, stalled) = time_call(partial_call(solve, g0, grads), budget)
                    u = g0 + lam @ grads
                    records.append(
                        {
                            "solver": name,
                            "n_aux": n_aux,
                            "family": family,
                            "seed": seed,
                            "gap": (float(u @ u) - ref) / scale,
                            "lambda_diff": float((np.abs(lam - lam_ref) * weights).max())
                            if family in UNIQUE_FAMILIES
                            else None,
                            "kkt": kkt_violation(g0, grads, lam),
                            "stalled": bool(stalled),
                            "time_us": 1e6 * seconds,
                        }
                    )
    return {"records": records, "summary": summarize(records)}


def partial_call(solve: Solver, g0: np.ndarray, grads: np.ndarray) -> Callable[[], Any]:
    return lambda: solve(g0, grads)


def _max(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (n, solver), pooled over families and seeds."""
    keys = sorted({(r["n_aux"], r["solver"]) for r in records},
                  key=lambda k: (k[0], SOLVERS.index(k[1])))  # fmt: skip
    out = []
    for n_aux, solver in keys:
        group = [r for r in records if (r["n_aux"], r["solver"]) == (n_aux, solver)]
        gaps = [r["gap"] for r in group]
        out.append(
            {
                "n_aux": n_aux,
                "solver": solver,
                "instances": len(group),
                "max_gap": max(gaps),
                "min_gap": min(gaps),
                "suboptimal": sum(g > GAP_TARGET for g in gaps),
                "max_lambda_diff_unique": _max([r["lambda_diff"] for r in group]),
                "max_kkt": max(r["kkt"] for r in group),
                "stalled": sum(r["stalled"] for r in group),
                "median_us": statistics.median(r["time_us"] for r in group),
                "max_us": max(r["time_us"] for r in group),
                "per_family_max_gap": {
                    f: _max([r["gap"] for r in group if r["family"] == f]) for f in FAMILIES
                },
            }
        )
    return out


def solver_markdown(summary: Sequence[dict[str, Any]], seeds: int) -> list[str]:
    lines = [
        f"## Projection solvers ({len(FAMILIES)} families × {seeds} seed(s) per n; d = 2n + 16, "
        "float64)",
        "",
        "gap: (‖u‖² − ‖u_nnls‖²)/‖g₀‖² (max over instances; negative = below NNLS); suboptimal: "
        f"instances with gap > {GAP_TARGET:g}; max |Δλ|: maxᵢ|λᵢ − λᵢ^nnls|·‖gᵢ‖/‖g₀‖ on the "
        "families where λ is unique; KKT: maxᵢ vᵢ/(‖gᵢ‖‖g₀‖); time: median µs of one call "
        "(kexue's includes input validation and diagnostics).",
        "",
        "| n | solver | max gap | suboptimal | stalled | max \\|Δλ\\| | max KKT | median µs |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['n_aux']} | {s['solver']} | {s['max_gap']:.1e} | "
            f"{s['suboptimal']}/{s['instances']} | {s['stalled']} | "
            f"{fmt(s['max_lambda_diff_unique'])} | {s['max_kkt']:.1e} | {s['median_us']:.0f} |"
        )
    return lines


# ----------------------------------------------------------------------------------------------
# Part 2: time per training step


def make_batch(config: StepConfig, n_tasks: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs; random main labels y₀ and auxiliary labels yᵢ = (y₀ + i) mod classes, so
    that the auxiliary tasks conflict with the main one and the constraints are active."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(config.batch, config.sizes[0], generator=gen)
    main = torch.randint(0, config.classes, (config.batch,), generator=gen)
    y = torch.stack([(main + i) % config.classes for i in range(n_tasks)])
    return x.to(device), y.to(device)


def training_step(
    name: str,
    n_tasks: int,
    config: StepConfig,
    device: str,
    record: dict[str, Any] | None = None,
) -> Step:
    """One SGD step of method ``name`` on its own copy of the model (same initialisation).
    ``record``, when given, receives the shared gradient and the per-task shared gradients of the
    last step (for the agreement check)."""
    trunk, heads = build_model(config, n_tasks, device)
    x, y = make_batch(config, n_tasks, device)
    shared = list(trunk.parameters())
    task_params = [p for head in heads for p in head.parameters()]
    optimizer = torch.optim.SGD(shared + task_params, lr=config.lr)
    options: dict[str, dict[str, Any]] = {
        "PrimaryAuxiliary (params, vmap)": {
            "aggregator": PrimaryAuxiliary(), "jacobian_method": "vmap"},
        "PrimaryAuxiliary (params, loop)": {
            "aggregator": PrimaryAuxiliary(), "jacobian_method": "loop"},
        "PrimaryAuxiliary (rep, features)": {
            "aggregator": PrimaryAuxiliary(mode="rep"), "features": True},
        "PrimaryAuxiliary (post's rule)": {"aggregator": PrimaryAuxiliary(solver="post")},
        "GradCosine (GCS)": {"aggregator": GradCosine()},
        "MGDA (reference)": {"aggregator": "mgda"},
    }  # fmt: skip
    fix = L2AsAuxiliary(trunk) if name in HOOKS else None
    if name not in options and name != BASELINE and fix is None:
        raise ValueError(f"unknown method {name!r}")

    def step() -> None:
        optimizer.zero_grad()
        features = trunk(x)
        losses = [F.cross_entropy(head(features), y[i]) for i, head in enumerate(heads)]
        if record is not None:
            grads = task_gradients(losses, shared, retain_graph=True)
            record["task_grads"] = torch.cat([g.flatten(1) for g in grads], dim=1).double()
        if name in options:
            kwargs = dict(options[name])
            if kwargs.pop("features", False):
                kwargs["features"] = features
            result = mtl_backward(losses, shared, task_parameters=task_params, **kwargs)
            if record is not None:
                record["weights"] = result.weights
        else:
            torch.stack(losses).sum().backward()  # type: ignore[no-untyped-call]
        if record is not None:
            record["shared_grad"] = torch.cat([p.grad.detach().flatten() for p in shared])
        if fix is not None:
            fix.step(optimizer)
        else:
            optimizer.step()

    return step


def step_methods() -> tuple[str, ...]:
    return (BASELINE, *GRADIENT_METHODS, *HOOKS)


def step_agreement(config: StepConfig, n_tasks: int, device: str) -> dict[str, Any]:
    """First step from the same initialisation: the shared gradient of the loop path and the
    post's rule against the vmap path, and min over auxiliary tasks of cos(u, gᵢ) (≥ 0 up to
    float32 rounding) for the exact (params) paths."""
    names = ("PrimaryAuxiliary (params, vmap)", "PrimaryAuxiliary (params, loop)",
             "PrimaryAuxiliary (post's rule)", "PrimaryAuxiliary (rep, features)")  # fmt: skip
    grads: dict[str, torch.Tensor] = {}
    out: dict[str, Any] = {"n_tasks": n_tasks, "methods": {}}
    for name in names:
        record: dict[str, Any] = {}
        training_step(name, n_tasks, config, device, record)()
        u = record["shared_grad"].double().cpu()
        task = record["task_grads"].cpu()
        grads[name] = u
        cosines = (task[1:] @ u) / (task[1:].norm(dim=1) * u.norm()).clamp_min(1e-300)
        out["methods"][name] = {
            "weights": record["weights"].tolist(),
            "active": int((record["weights"][1:] > 0).sum()),
            "min_cos_aux": float(cosines.min()),
            "cos_main": float((task[0] @ u) / (task[0].norm() * u.norm()).clamp_min(1e-300)),
        }
    reference = grads[names[0]]
    for name in names:
        out["methods"][name]["shared_grad_rel_diff"] = float(
            (grads[name] - reference).norm() / reference.norm()
        )
    return out


def agreement_notes(agreement: dict[str, Any]) -> list[str]:
    methods = agreement["methods"]
    return [
        f"Step agreement (first step, T = {agreement['n_tasks']}, task 0 main): "
        + "; ".join(
            f"{name}: {m['active']}/{agreement['n_tasks'] - 1} constraints active, shared grad "
            f"rel. diff vs vmap {m['shared_grad_rel_diff']:.1e}, min cos(u, g_aux) "
            f"{m['min_cos_aux']:+.1e}, cos(u, g_main) {m['cos_main']:.3f}"
            for name, m in methods.items()
        )
        + ". The exact paths satisfy every constraint ⟨u, gᵢ⟩ ≥ 0 up to float32 rounding; the "
        "rep path constrains the feature gradients instead, so its update can violate the "
        "parameter-space constraints (the approximation of spec 08 pitfall 6).",
    ]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write ``<out>/primary_aux.{json,md}``, print the Markdown; return the
    JSON payload plus the per-instance solver records."""
    defaults = Settings(rounds=8, min_run_time=0.2)
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    add_common_args(parser, defaults)
    parser.add_argument("--aux", default=None, help="comma-separated n (auxiliary tasks)")
    parser.add_argument("--tasks", default=None, help="comma-separated T of the step part")
    parser.add_argument("--seeds", type=int, default=None, help="instances per family (5; quick 1)")
    parser.set_defaults(threads=1)  # two threads on a busy 2-core machine run far slower
    args = parser.parse_args(argv)
    settings = settings_from_args(args, defaults)
    quick, device = settings.quick, settings.device

    seeds = args.seeds if args.seeds is not None else (1 if quick else 5)
    counts = parse_ints(args.aux, QUICK_AUX_COUNTS if quick else AUX_COUNTS)
    started = time.perf_counter()
    part1 = solver_benchmark(counts, seeds, 0.002 if quick else 0.01)
    elapsed = {"solvers_s": time.perf_counter() - started}

    started = time.perf_counter()
    config = StepConfig((64, 32, 32), 32) if quick else StepConfig((784, 256, 256), 256)
    step_tasks = parse_ints(args.tasks, (2,) if quick else STEP_TASKS)
    rows: list[Row] = []
    n_tasks_of: dict[str, int] = {}
    shape = "-".join(map(str, config.sizes))
    for n_tasks in step_tasks:
        group = (
            f"T={n_tasks} (1 main + {n_tasks - 1} auxiliary): trunk MLP {shape} + {n_tasks} linear "
            f"heads ({config.classes} classes, CE), batch {config.batch}, float32, one SGD step"
        )
        n_tasks_of[group] = n_tasks
        steps = {name: training_step(name, n_tasks, config, device) for name in step_methods()}
        rows += measure(group, steps, BASELINE, settings)
    agreement = step_agreement(config, max(step_tasks), device)
    targets = check_targets(rows, n_tasks_of, HOOKS, "gradient hook")
    elapsed["steps_s"] = time.perf_counter() - started

    summary = part1["summary"]
    exact_names = ("kexue kkt", "kexue cyclic", "kexue kkt (Gram form)", "kexue closed1")
    exact = [s for s in summary if s["solver"] in exact_names]
    solver_targets = {
        "max_gap_exact": max(s["max_gap"] for s in exact),
        "max_kkt_exact": max(s["max_kkt"] for s in exact),
        "gap_target": GAP_TARGET,
        "kkt_target": KKT_TARGET,
        "post_suboptimal": sum(s["suboptimal"] for s in summary if s["solver"] == "kexue post"),
        "post_instances": sum(s["instances"] for s in summary if s["solver"] == "kexue post"),
    }
    notes = [
        *solver_markdown(summary, seeds),
        "",
        f"Exact rules (kkt, cyclic, Gram-form kkt, closed1): max gap "
        f"{solver_targets['max_gap_exact']:.1e} (target ≤ {GAP_TARGET:g}), max KKT violation "
        f"{solver_targets['max_kkt_exact']:.1e} (target ≤ {KKT_TARGET:g}). The post's literal rule "
        f"ended suboptimal on {solver_targets['post_suboptimal']}/"
        f"{solver_targets['post_instances']} instances.",
        "",
        *agreement_notes(agreement),
        "",
        *step_pivot(targets, n_tasks_of, STEP_TITLE),
    ]
    if quick:
        notes += [
            "",
            "`--quick` (smoke test): a tiny model whose baseline step takes well under a "
            "millisecond, so the ratios above measure fixed per-call overhead and are not "
            "comparable to the targets; run without `--quick` for the benchmark.",
        ]
    extra: dict[str, Any] = {
        "solvers": {"summary": summary, "families": list(FAMILIES), "seeds": seeds},
        "solver_targets": solver_targets,
        "step_config": dataclasses.asdict(config),
        "step_agreement": agreement,
        "step_targets": targets,
        "elapsed": elapsed,
    }
    json_path, md_path = write_results(NAME, rows, settings, extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return {
        "rows": [dataclasses.asdict(row) for row in rows],
        **extra,
        "solver_records": part1["records"],
    }


if __name__ == "__main__":
    main()
