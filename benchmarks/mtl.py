"""Benchmark of ``kexue.mtl`` against LibMTL's and torchjd's MGDA (spec 07 E7.2, spec 12 §5).

``python benchmarks/mtl.py [--quick] [--device cuda] [--threads N (default 1)] [--rounds R]
[--tasks 2,4,10] [--solver-tasks 2,4,10,40] [--scaling-tasks 2,4,10,40] [--seeds S]``

Anchors (spec 12 §9), installed with ``pip install --no-deps libmtl==1.1.5 torchjd==0.18.0`` so that
torch is never replaced; a missing anchor is reported and its rows are skipped. LibMTL declares
torchvision and its package ``__init__`` imports ``torchvision.models.utils`` (for ResNet weights
it never loads here): :func:`load_libmtl` puts a stand-in ``torchvision`` into ``sys.modules`` for
the import only.

1. **Min-norm solvers on the same problems.** Random task gradients ``G`` (``T × d``,
   ``d = 2T + 16``, ``T`` in 2, 4, 10, 40, several seeds) from five families: ``gaussian``;
   ``scaled`` (rows × 10^U(−2,2)); ``correlated`` (a common component plus noise: little
   conflict); ``rank_deficient`` (rank ``max(1, T // 3)``: α is not unique, usually 0 in the
   hull); ``near_stationary`` (centred rows plus a common 10⁻³ offset: ‖u*‖ tiny, M positive
   definite but ill-conditioned). Each problem in float64 and float32 (``G`` rounded, Gram
   ``M = GGᵀ`` formed in that dtype). Every solver sees the same problem: kexue's
   :func:`kexue.mtl.min_norm_weights` (``"auto"`` = closed form for T = 2, Wolfe's exact algorithm
   for T ≥ 3, and ``fw``, ``sener``, ``averaging``, ``softmax_gd``, ``qp``) and torchjd's
   ``MGDAWeighting`` (what ``torchjd.aggregation.MGDA`` applies to the Gramian) get ``M``;
   LibMTL's ``MGDA._find_min_norm_element`` gets the rows of ``G`` (it forms ``GGᵀ`` itself).
   Reference α*: the lower objective of kexue's ``qp`` (support enumeration for T ≤ 12, SciPy
   SLSQP + KKT polish above, which stops early on badly scaled problems) and ``wolfe`` on ``M``
   recomputed in float64 from the (rounded) ``G``; its Frank–Wolfe gap certifies it. Per solver:
   max |α − α*| (on the families where α is unique: all but ``rank_deficient``),
   ‖Gᵀ(α − α*)‖ / maxᵢ‖gᵢ‖ (the update's difference; meaningful when α is not unique), the
   objective's relative gap (‖u‖² − ‖u*‖²)/‖u*‖² on problems that are not Pareto stationary, and
   the median wall time of one call (``time.perf_counter`` after one untimed warm-up call per
   solver, T and dtype; repeated within a small budget per problem; median over repeats, then
   over problems). Solvers run on the CPU (T × T problems).
2. **Time per training step** (float32, SGD; ``zero_grad`` + forward + backward-with-method +
   ``optimizer.step``): a shared trunk MLP 784-256-256 (ReLU) on a fixed batch of 256 random inputs
   with ``T`` linear heads (10 classes, cross-entropy each), T in 2, 4, 10, every method from the
   same initialisation, timed by the harness's interleaved ``blocked_autorange`` against linear
   scalarisation (sum of the losses, one backward). Loss weightings (one backward of the combined
   loss): kexue ``EqualWeights``, ``RealTimeNormalized``, ``InitNormalized``, ``PowerMean(0)``,
   ``UncertaintyWeighting`` (its log-variances in the optimiser). Gradient methods:
   :func:`kexue.mtl.mtl_backward` with ``"mgda"`` on the shared parameters
   (``jacobian_method="vmap"`` and ``"loop"``), ``"mgda"`` through the features (∂L/∂H, then
   the VJPs through the trunk), ``"mgda_ub"`` (features) and ``GradNormalized()``, the last three
   with the library's default ``jacobian_method="auto"``; LibMTL's
   ``MGDA.backward`` (``mgda_gn="none"``) on LibMTL's own ``HPS`` architecture composed with
   ``MGDA`` as its ``Trainer._prepare_model`` does (the ``Trainer`` itself hard-codes
   ``cuda:0``), with and without ``rep_grad``; torchjd 0.18's ``mtl_backward(losses,
   features=H)`` followed by ``jac_to_grad(shared_params, MGDA())`` (0.18 moved the aggregator out
   of ``mtl_backward``). A first step from the same initialisation checks that the exact-MGDA
   implementations write the same shared gradient.

   The harness's CPU memory proxy (bytes saved for backward) is the same for every method of
   this part (only the forward saves tensors), so it is not reported here (0); see part 3.
3. **Time and peak memory against T** (issue 20 item 3; ``--scaling-tasks``, default 2, 4, 10,
   40): a trunk MLP 784-1024-1024 with T linear heads, and the same trunk with "heavy" heads
   (Linear(1024, 1024)-ReLU-Linear(1024, 10) each), batch 256: linear scalarisation, kexue
   ``mtl_backward`` exact MGDA (loop, vmap, through the features), torchjd 0.18 and LibMTL
   MGDA. Time: the harness's interleaved rounds against linear scalarisation. Peak memory: on
   CUDA ``torch.cuda.max_memory_allocated`` over one step; on CPU the peak resident-set growth of
   one step in a fresh subprocess per (method, model, T) (one warm-up step, every ``.grad`` freed
   as ``zero_grad()`` does, VmHWM reset through ``/proc/self/clear_refs``, minus VmRSS before the
   step; glibc's mmap threshold fixed at 128 KiB so freed blocks leave the resident set).

Targets (issue 8, spec 12 §5.4; issue 20 for part 3: memory ≤ 3× linear scalarisation at T = 10,
heavy heads no more than torchjd): solver ≤ 1 ms for T ≤ 10, weights equal to 10⁻⁶ (or the
difference explained); per step ≤ (T+1)× linear scalarisation for gradient methods, ≤ 1.2× for loss
weightings.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
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
    peak_rss_growth_bytes,
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
    EqualWeights,
    GradNormalized,
    InitNormalized,
    PowerMean,
    RealTimeNormalized,
    UncertaintyWeighting,
    gram_matrix,
    min_norm_weights,
    mtl_backward,
    task_gradients,
)

NAME = "mtl"
SOLVER_TASKS = (2, 4, 10, 40)
QUICK_SOLVER_TASKS = (2, 4, 10)
STEP_TASKS = (2, 4, 10)
FAMILIES = ("gaussian", "scaled", "correlated", "rank_deficient", "near_stationary")
UNIQUE_ALPHA_FAMILIES = ("gaussian", "scaled", "correlated", "near_stationary")
KEXUE_METHODS = ("auto", "fw", "sener", "averaging", "softmax_gd", "qp")
TORCHJD_TIGHT = {"epsilon": 1e-12, "max_iters": 2000}
WEIGHT_TOL = 1e-6
SOLVER_TARGET_US = 1000.0
STATIONARY_REL = 1e-10  # ‖u*‖² ≤ this × maxᵢ‖gᵢ‖²: Pareto stationary, no relative gap
LOSS_WEIGHTINGS = (
    "kexue EqualWeights",
    "kexue RealTimeNormalized",
    "kexue InitNormalized",
    "kexue PowerMean(0)",
    "kexue UncertaintyWeighting",
)
STEP_TITLE = (
    "## Time per step relative to linear scalarization (target: ≤ 1.2× loss weightings, "
    "≤ (T+1)× gradient methods)"
)
KEXUE_GRADIENT_METHODS = (
    "kexue mgda (params, vmap)",
    "kexue mgda (params, loop)",
    "kexue mgda (features)",
    "kexue mgda_ub (features)",
    "kexue GradNormalized",
)
LIBMTL_METHODS = ("LibMTL MGDA", "LibMTL MGDA (rep_grad)")
TORCHJD_METHODS = ("torchjd MGDA",)
SCALING_KEXUE = ("kexue mgda (params, loop)", "kexue mgda (params, vmap)", "kexue mgda (features)")
SCALING_TASKS = (2, 4, 10, 40)
QUICK_SCALING_TASKS = (2, 4)
MEMORY_TARGET = 3.0
BASELINE = "linear scalarization"
INSTALL = "pip install --no-deps libmtl==1.1.5 torchjd==0.18.0"


# ----------------------------------------------------------------------------------------------
# Anchors


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """``torchvision``, ``torchvision.models``, ``torchvision.models.utils`` as empty modules
    (``load_state_dict_from_url`` raises) while LibMTL is imported; previous entries restored."""
    names = ("torchvision", "torchvision.models", "torchvision.models.utils")
    saved = {name: sys.modules.get(name) for name in names}
    root, models, utils = (types.ModuleType(name) for name in names)

    def load_state_dict_from_url(*args: object, **kwargs: object) -> None:
        raise RuntimeError("torchvision stand-in: LibMTL's pretrained ResNets are not available")

    utils.load_state_dict_from_url = load_state_dict_from_url  # type: ignore[attr-defined]
    models.utils = utils  # type: ignore[attr-defined]
    root.models = models  # type: ignore[attr-defined]
    sys.modules.update(zip(names, (root, models, utils), strict=True))
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def load_libmtl() -> tuple[Any, str]:
    """``(namespace with HPS and MGDA, status)`` or ``(None, reason)``."""
    try:
        with _torchvision_stand_in():
            architecture = importlib.import_module("LibMTL.architecture")
            weighting = importlib.import_module("LibMTL.weighting")
    except ImportError as error:
        return None, f"LibMTL not importable ({error}); its rows skipped. Install: {INSTALL}"
    anchor = types.SimpleNamespace(HPS=architecture.HPS, MGDA=weighting.MGDA)
    return anchor, f"LibMTL {importlib.metadata.version('LibMTL')} (torchvision stand-in)"


def load_torchjd() -> tuple[Any, str]:
    """``(namespace with MGDA, MGDAWeighting, mtl_backward, jac_to_grad, status)``."""
    try:
        aggregation = importlib.import_module("torchjd.aggregation")
        autojac = importlib.import_module("torchjd.autojac")
    except ImportError as error:
        return None, f"torchjd not importable ({error}); its rows skipped. Install: {INSTALL}"
    anchor = types.SimpleNamespace(
        MGDA=aggregation.MGDA,
        MGDAWeighting=aggregation.MGDAWeighting,
        mtl_backward=autojac.mtl_backward,
        jac_to_grad=autojac.jac_to_grad,
    )
    return anchor, f"torchjd {importlib.metadata.version('torchjd')}"


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """LibMTL's solver allocates its iterate with ``torch.zeros(n)`` (the default dtype)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def libmtl_quirks(libmtl: Any) -> dict[str, str]:
    """Observed behaviour of LibMTL's solver outside the benchmark's problems (run live)."""
    solver = libmtl.MGDA()._find_min_norm_element
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(5, 20, generator=gen)
    found: dict[str, str] = {}

    def attempt(key: str, call: Callable[[], object]) -> None:
        try:
            result = call()
        except Exception as error:
            found[key] = f"{type(error).__name__}: {error}"
        else:
            found[key] = f"returned {None if result is None else 'weights'}"

    attempt("float64 gradients, default dtype float32", lambda: solver(grads.double()))
    attempt("gradients scaled by 1e5 (all pair costs ≥ 1e8)", lambda: solver(grads * 1e5))
    endpoint = solver(torch.tensor([[1.0, 0.0], [2.0, 0.0]]))  # g₁ is the min-norm point
    found["two tasks, optimum at a vertex (g1=(1,0), g2=(2,0))"] = f"alpha = {endpoint.tolist()}"
    return found


# ----------------------------------------------------------------------------------------------
# Part 1: min-norm solvers


def make_gradients(family: str, n_tasks: int, seed: int) -> torch.Tensor:
    """Task gradients ``G`` [T, 2T + 16] (float64) of one problem family (module docstring)."""
    gen = torch.Generator().manual_seed(100_003 * n_tasks + 1009 * FAMILIES.index(family) + seed)
    dim = 2 * n_tasks + 16
    randn = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    if family == "gaussian":
        return randn(n_tasks, dim)
    if family == "scaled":
        scale = 10.0 ** (4.0 * torch.rand(n_tasks, 1, generator=gen, dtype=torch.float64) - 2.0)
        return randn(n_tasks, dim) * scale
    if family == "correlated":
        return randn(1, dim) + 0.5 * randn(n_tasks, dim)
    if family == "rank_deficient":
        rank = max(1, n_tasks // 3)
        return randn(n_tasks, rank) @ randn(rank, dim) / math.sqrt(rank)
    if family == "near_stationary":
        centred = randn(n_tasks, dim)
        centred = centred - centred.mean(dim=0, keepdim=True)
        offset = randn(dim)
        offset = offset / offset.norm() * 1e-3 * centred.norm(dim=1).mean()
        return centred + offset
    raise ValueError(f"unknown family {family!r}")


@dataclasses.dataclass(frozen=True)
class Problem:
    family: str
    n_tasks: int
    seed: int
    dtype: str
    grads: torch.Tensor  # [T, d] in ``dtype``
    gram: torch.Tensor  # GGᵀ formed in ``dtype``
    exact_gram: np.ndarray  # GGᵀ in float64 from the rounded G (the reference's problem)


def make_problem(family: str, n_tasks: int, seed: int, dtype: torch.dtype) -> Problem:
    grads = make_gradients(family, n_tasks, seed).to(dtype)
    exact = grads.double().numpy()
    return Problem(
        family, n_tasks, seed, str(dtype).removeprefix("torch."), grads, grads @ grads.T,
        exact @ exact.T,
    )  # fmt: skip


Solver = Callable[[Problem], "torch.Tensor | None"]


def solvers(libmtl: Any, torchjd: Any) -> dict[str, Solver]:
    """Every solver under test, each taking a :class:`Problem` and returning α (or None)."""
    table: dict[str, Solver] = {}
    for method in KEXUE_METHODS:

        def kexue(problem: Problem, method: str = method) -> torch.Tensor:
            return min_norm_weights(problem.gram, method)[0]  # type: ignore[arg-type]

        table[f"kexue {method}"] = kexue
    if libmtl is not None:
        find = libmtl.MGDA()._find_min_norm_element

        def libmtl_solver(problem: Problem) -> torch.Tensor | None:
            with _default_dtype(problem.grads.dtype):
                result: torch.Tensor | None = find(problem.grads)
            return result

        table["LibMTL MGDA"] = libmtl_solver
    if torchjd is not None:
        default = torchjd.MGDAWeighting()
        tight = torchjd.MGDAWeighting(**TORCHJD_TIGHT)
        table["torchjd MGDA"] = lambda problem: default(problem.gram)
        table["torchjd MGDA (tight)"] = lambda problem: tight(problem.gram)
    return table


def _fw_gap(alpha: np.ndarray, gram: np.ndarray) -> float:
    s = gram @ alpha
    return float(alpha @ s - s.min())


def reference_weights(gram: np.ndarray) -> tuple[np.ndarray, str, float]:
    """``(α*, source, qp's objective)``: α* is the lower objective of kexue's ``qp`` and
    ``wolfe`` (``qp`` is SciPy SLSQP above T = 12 and stops early on badly scaled problems),
    certified by its Frank–Wolfe gap."""
    candidates = [(min_norm_weights(gram, m)[0].numpy(), m) for m in ("qp", "wolfe")]
    values = [float(alpha @ gram @ alpha) for alpha, _ in candidates]
    best = int(np.argmin(values))
    return candidates[best][0], candidates[best][1], values[0]


def solver_benchmark(
    libmtl: Any, torchjd: Any, tasks: Sequence[int], seeds: int, budget: float
) -> dict[str, Any]:
    """Part 1: every solver on every problem; per-problem records and per-group summaries."""
    table = solvers(libmtl, torchjd)
    records: list[dict[str, Any]] = []
    reference_gap = {"scaled": 0.0, "relative": 0.0}
    reference_source: dict[str, int] = {}
    qp_excess = 0.0  # worst (qp − α*)/‖u*‖² on non-stationary problems
    for n_tasks in tasks:
        for dtype in (torch.float64, torch.float32):
            for family in FAMILIES:
                for seed in range(seeds):
                    problem = make_problem(family, n_tasks, seed, dtype)
                    m = problem.exact_gram
                    scale = float(np.diag(m).max())
                    ref, source, qp_value = reference_weights(m)
                    key = f"T={n_tasks}: {source}"
                    reference_source[key] = reference_source.get(key, 0) + 1
                    best = float(ref @ m @ ref)
                    stationary = best <= STATIONARY_REL * scale
                    gap = _fw_gap(ref, m)
                    reference_gap["scaled"] = max(reference_gap["scaled"], gap / scale)
                    if not stationary:
                        reference_gap["relative"] = max(reference_gap["relative"], gap / best)
                        qp_excess = max(qp_excess, (qp_value - best) / best)
                    for name, solver in table.items():
                        if seed == 0 and family == FAMILIES[0]:
                            solver(problem)  # untimed warm-up (lazy imports, first-call costs)
                        seconds, output = time_call(partial(solver, problem), budget)
                        record: dict[str, Any] = {
                            "solver": name, "n_tasks": n_tasks, "dtype": problem.dtype,
                            "family": family, "seed": seed, "time_us": seconds * 1e6,
                            "stationary": stationary, "failed": output is None,
                        }  # fmt: skip
                        if isinstance(output, torch.Tensor):
                            alpha = output.detach().to(torch.float64).cpu().numpy()
                            delta = alpha - ref
                            value = float(alpha @ m @ alpha)
                            record.update(
                                alpha_diff=float(np.abs(delta).max()),
                                update_diff=math.sqrt(max(float(delta @ m @ delta), 0.0) / scale),
                                rel_gap=None if stationary else (value - best) / best,
                                scaled_gap=(value - best) / scale,
                                simplex_error=abs(float(alpha.sum()) - 1.0),
                            )
                        records.append(record)
    return {
        "records": records,
        "summary": summarize_solvers(records),
        "reference_max_fw_gap": reference_gap,
        "reference_source": reference_source,
        "qp_max_rel_excess": qp_excess,
        "families": list(FAMILIES),
        "unique_alpha_families": list(UNIQUE_ALPHA_FAMILIES),
        "seeds": seeds,
        "timing_budget_s": budget,
    }


def _max(values: Sequence[float | None]) -> float | None:
    present = [abs(v) for v in values if v is not None]
    return max(present) if present else None


def _signed_max(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _signed_min(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def summarize_solvers(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (solver, dtype, T): worst agreement and median time over problems."""
    keys = sorted(
        {(r["solver"], r["dtype"], r["n_tasks"]) for r in records},
        key=lambda k: (k[1] != "float64", k[2], _solver_order(k[0])),
    )
    summary = []
    for solver, dtype, n_tasks in keys:
        group = [
            r
            for r in records
            if (r["solver"], r["dtype"], r["n_tasks"]) == (solver, dtype, n_tasks)
        ]
        ok = [r for r in group if not r["failed"]]
        unique = [r for r in ok if r["family"] in UNIQUE_ALPHA_FAMILIES]
        summary.append(
            {
                "solver": solver,
                "dtype": dtype,
                "n_tasks": n_tasks,
                "problems": len(group),
                "failed": len(group) - len(ok),
                "max_alpha_diff_unique": _max([r["alpha_diff"] for r in unique]),
                "max_alpha_diff_all": _max([r["alpha_diff"] for r in ok]),
                "max_update_diff": _max([r["update_diff"] for r in ok]),
                "max_rel_gap": _signed_max([r["rel_gap"] for r in ok]),
                "min_rel_gap": _signed_min([r["rel_gap"] for r in ok]),
                "max_scaled_gap": _signed_max([r["scaled_gap"] for r in ok]),
                "median_us": statistics.median(r["time_us"] for r in group),
                "max_us": max(r["time_us"] for r in group),
                "per_family_max_alpha_diff": {
                    family: _max([r["alpha_diff"] for r in ok if r["family"] == family])
                    for family in FAMILIES
                },
                "per_family_max_rel_gap": {
                    family: _signed_max([r["rel_gap"] for r in ok if r["family"] == family])
                    for family in FAMILIES
                },
            }
        )
    return summary


def _solver_order(name: str) -> int:
    order = [f"kexue {m}" for m in KEXUE_METHODS] + [
        "LibMTL MGDA", "torchjd MGDA", "torchjd MGDA (tight)"
    ]  # fmt: skip
    return order.index(name) if name in order else len(order)


def solver_markdown(summary: Sequence[dict[str, Any]], seeds: int) -> list[str]:
    lines = [
        f"## Min-norm solvers ({len(FAMILIES)} families × {seeds} seeds per T and dtype)",
        "",
        "max |Δα|: against the reference optimum α* (below), on the families where α is unique; "
        "‖ΔGᵀα‖: the update's difference relative to maxᵢ‖gᵢ‖ (all families); rel gap: "
        "(‖u‖² − ‖u*‖²)/‖u*‖² on problems that are not Pareto stationary; time: median µs of one "
        "call.",
        "",
        "| dtype | T | solver | failed | max \\|Δα\\| | max ‖ΔGᵀα‖ | max rel gap | median µs |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['dtype']} | {s['n_tasks']} | {s['solver']} | {s['failed']}/{s['problems']} | "
            f"{fmt(s['max_alpha_diff_unique'])} | {fmt(s['max_update_diff'])} | "
            f"{fmt(s['max_rel_gap'])} | {s['median_us']:.0f} |"
        )
    return lines


# ----------------------------------------------------------------------------------------------
# Part 2: time per training step


def make_batch(config: StepConfig, n_tasks: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(config.batch, config.sizes[0], generator=gen)
    y = torch.randint(0, config.classes, (n_tasks, config.batch), generator=gen)
    return x.to(device), y.to(device)


def _libmtl_model(
    libmtl: Any, trunk: nn.Module, heads: nn.ModuleList, rep_grad: bool, device: str
) -> Any:
    """LibMTL's ``HPS`` composed with its ``MGDA`` as ``Trainer._prepare_model`` does (which
    hard-codes ``cuda:0``). ``zero_grad_share_params`` passes ``set_to_none=False``: LibMTL
    1.1.5 calls ``encoder.zero_grad()``, which since torch 2.0 sets ``.grad`` to None, and its
    ``_reset_grad`` then fails on ``param.grad.data`` (written for torch 1.x semantics)."""

    class LibMTLModel(libmtl.HPS, libmtl.MGDA):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__(
                task_name=[f"task{i}" for i in range(len(heads))],
                encoder_class=lambda: trunk,
                decoders=nn.ModuleDict({f"task{i}": head for i, head in enumerate(heads)}),
                rep_grad=rep_grad,
                multi_input=False,
                device=torch.device(device),
            )
            self.init_param()

        def zero_grad_share_params(self) -> None:
            self.encoder.zero_grad(set_to_none=False)

    return LibMTLModel()


def training_step(
    name: str,
    n_tasks: int,
    config: StepConfig,
    device: str,
    libmtl: Any,
    torchjd: Any,
    record: dict[str, Any] | None = None,
    params_out: list[torch.Tensor] | None = None,
) -> Step:
    """One SGD step of method ``name`` on its own copy of the model (same initialisation).
    ``record``, when given, receives the last step's weights (for the agreement check);
    ``params_out``, when given, receives every trained parameter (the memory probe frees their
    ``.grad`` before the measured step)."""
    trunk, heads = build_model(config, n_tasks, device)
    x, y = make_batch(config, n_tasks, device)
    shared = list(trunk.parameters())
    head_params = [list(head.parameters()) for head in heads]
    task_flat = [p for params in head_params for p in params]
    weighting: nn.Module | None = {
        "kexue EqualWeights": lambda: EqualWeights(),
        "kexue RealTimeNormalized": lambda: RealTimeNormalized(),
        "kexue InitNormalized": lambda: InitNormalized(n_tasks),
        "kexue PowerMean(0)": lambda: PowerMean(0.0),
        "kexue UncertaintyWeighting": lambda: UncertaintyWeighting(n_tasks),
    }.get(name, lambda: None)()
    params = shared + task_flat
    if weighting is not None:
        weighting = weighting.to(device)
        params += list(weighting.parameters())
    optimizer = torch.optim.SGD(params, lr=config.lr)
    store = record if record is not None else {}
    if params_out is not None:
        params_out.extend(params)

    def keep_shared_grad() -> None:  # agreement check only: the update before the SGD step
        if record is not None:
            record["shared_grad"] = torch.cat([p.grad.detach().flatten() for p in shared])

    def losses_of(features: torch.Tensor) -> list[torch.Tensor]:
        return [F.cross_entropy(head(features), y[i]) for i, head in enumerate(heads)]

    if name in LIBMTL_METHODS:
        model = _libmtl_model(libmtl, trunk, heads, name.endswith("(rep_grad)"), device)

        def libmtl_step() -> None:
            optimizer.zero_grad()
            preds = model(x)  # dict task -> logits, through LibMTL's forward (_prepare_rep)
            losses = torch.stack([F.cross_entropy(preds[t], y[i]) for i, t in enumerate(preds)])
            store["weights"] = model.backward(losses, mgda_gn="none")
            keep_shared_grad()
            optimizer.step()

        return libmtl_step

    aggregator = torchjd.MGDA() if name in TORCHJD_METHODS else None
    kexue_gradient: dict[str, dict[str, Any]] = {
        "kexue mgda (params, vmap)": {"aggregator": "mgda", "jacobian_method": "vmap"},
        "kexue mgda (params, loop)": {"aggregator": "mgda", "jacobian_method": "loop"},
        "kexue mgda (features)": {"aggregator": "mgda", "features": True},
        "kexue mgda_ub (features)": {"aggregator": "mgda_ub", "features": True},
        "kexue GradNormalized": {"aggregator": GradNormalized()},
    }

    def step() -> None:
        optimizer.zero_grad()
        features = trunk(x)
        losses = losses_of(features)
        if name == BASELINE:
            torch.stack(losses).sum().backward()  # type: ignore[no-untyped-call]
        elif weighting is not None:
            weighting(losses).backward()
            store["weights"] = weighting.weights
        elif name in kexue_gradient:
            options = dict(kexue_gradient[name])
            if options.pop("features", False):
                options["features"] = features
            result = mtl_backward(losses, shared, task_parameters=task_flat, **options)
            store["weights"] = result.weights
        elif name == "torchjd MGDA":
            torchjd.mtl_backward(
                losses, features=features, tasks_params=head_params, shared_params=shared
            )
            store["weights"] = torchjd.jac_to_grad(shared, aggregator)
        else:
            raise ValueError(f"unknown method {name!r}")
        keep_shared_grad()
        optimizer.step()

    return step


def step_methods(libmtl: Any, torchjd: Any) -> tuple[str, ...]:
    names = [BASELINE, *LOSS_WEIGHTINGS, *KEXUE_GRADIENT_METHODS]
    if libmtl is not None:
        names += LIBMTL_METHODS
    if torchjd is not None:
        names += TORCHJD_METHODS
    return tuple(names)


def step_agreement(
    config: StepConfig, n_tasks: int, device: str, libmtl: Any, torchjd: Any
) -> dict[str, Any]:
    """First step from the same initialisation: the shared gradient and weights of every exact
    MGDA implementation against kexue's (params, vmap)."""
    exact = ["kexue mgda (params, vmap)", "kexue mgda (params, loop)", "kexue mgda (features)"]
    exact += ["LibMTL MGDA"] if libmtl is not None else []
    exact += ["torchjd MGDA"] if torchjd is not None else []
    grads: dict[str, torch.Tensor] = {}
    weights: dict[str, np.ndarray] = {}
    for name in exact:
        record: dict[str, Any] = {}
        training_step(name, n_tasks, config, device, libmtl, torchjd, record)()
        grads[name] = record["shared_grad"].double().cpu()
        value = record["weights"]
        weights[name] = np.asarray(
            value.detach().double().cpu().numpy() if isinstance(value, torch.Tensor) else value,
            dtype=np.float64,
        )
    reference = exact[0]
    out: dict[str, Any] = {"n_tasks": n_tasks, "reference": reference, "methods": {}}
    for name in exact:
        diff = float((grads[name] - grads[reference]).norm() / grads[reference].norm())
        out["methods"][name] = {
            "weights": weights[name].tolist(),
            "max_weight_diff": float(np.abs(weights[name] - weights[reference]).max()),
            "shared_grad_rel_diff": diff,
        }
    return out


def rep_grad_agreement(
    config: StepConfig, n_tasks: int, device: str, libmtl: Any
) -> dict[str, Any]:
    """What LibMTL's ``rep_grad`` MGDA solves: its weights against the exact min-norm weights of
    the representation gradients ∇_H Lᵢ flattened over the batch (Sener & Koltun's MGDA-UB, kexue's
    ``"mgda_ub"``) and of the same gradients summed over the batch, on the first step."""
    trunk, heads = build_model(config, n_tasks, device)
    x, y = make_batch(config, n_tasks, device)
    features = trunk(x)
    losses = [F.cross_entropy(head(features), y[i]) for i, head in enumerate(heads)]
    jacobian = task_gradients(losses, [features])[0]  # [T, B, width]
    problems = {
        "flattened": gram_matrix(jacobian).numpy(),
        "batch_summed": gram_matrix(jacobian.sum(dim=1)).numpy(),
    }
    optimum = {key: reference_weights(gram)[0] for key, gram in problems.items()}
    out: dict[str, Any] = {"n_tasks": n_tasks}
    for name in ("kexue mgda_ub (features)", "LibMTL MGDA (rep_grad)"):
        record: dict[str, Any] = {}
        training_step(name, n_tasks, config, device, libmtl, None, record)()
        value = record["weights"]
        w = np.asarray(
            value.detach().double().cpu().numpy() if isinstance(value, torch.Tensor) else value,
            dtype=np.float64,
        )
        entry: dict[str, Any] = {"weights": w.tolist()}
        for key, gram in problems.items():
            best = float(optimum[key] @ gram @ optimum[key])
            entry[f"max_diff_{key}"] = float(np.abs(w - optimum[key]).max())
            entry[f"rel_gap_{key}"] = (float(w @ gram @ w) - best) / best
        if name.startswith("LibMTL"):  # its own solver on each candidate problem
            find = libmtl.MGDA()._find_min_norm_element
            for key, grads in (
                ("flattened", jacobian.flatten(1)),
                ("batch_summed", jacobian.sum(dim=1)),
            ):
                own = find(grads.detach().float().cpu())
                entry[f"own_solver_diff_{key}"] = (
                    None if own is None else float(np.abs(w - own.double().numpy()).max())
                )
        out[name] = entry
    return out


# ----------------------------------------------------------------------------------------------
# Part 3: time and peak memory against T (issue 20 item 3)


def scaling_configs(quick: bool) -> dict[str, StepConfig]:
    """The wide trunk with linear heads, and the same trunk with heavy two-layer heads."""
    if quick:
        return {  # large enough for the resident size to register (a few MiB)
            "trunk 128-512-512": StepConfig((128, 512, 512), 64),
            "heavy heads": StepConfig((128, 512, 512), 64, head_hidden=512),
        }
    return {
        "trunk 784-1024-1024": StepConfig((784, 1024, 1024), 256),
        "heavy heads": StepConfig((784, 1024, 1024), 256, head_hidden=1024),
    }


def scaling_methods(libmtl: Any, torchjd: Any) -> tuple[str, ...]:
    names = [BASELINE, *SCALING_KEXUE]
    if torchjd is not None:
        names += TORCHJD_METHODS
    if libmtl is not None:
        names.append("LibMTL MGDA")
    return tuple(names)


def memory_probe(name: str, n_tasks: int, config: StepConfig) -> int:
    """Peak RSS growth (bytes) of one training step of ``name`` in a fresh interpreter
    (:func:`_probe_main`). glibc's mmap threshold is fixed at 128 KiB there, so large blocks are
    returned to the system when freed and the resident size follows the live tensors."""
    spec = json.dumps({"name": name, "n_tasks": n_tasks, "config": dataclasses.asdict(config)})
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-probe", spec]
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return int(json.loads(output.strip().splitlines()[-1])["bytes"])


def _probe_main(spec: str) -> None:
    """One warm-up step, every ``.grad`` set to None (as ``zero_grad()`` does), then the
    high-water mark (VmHWM) is reset through /proc/self/clear_refs and the measured step's peak
    minus the resident size before it is printed (bytes). Without /proc, ``ru_maxrss`` growth (a
    lower bound)."""
    import gc

    args = json.loads(spec)
    torch.set_num_threads(1)
    name, n_tasks = args["name"], int(args["n_tasks"])
    config = StepConfig(**{**args["config"], "sizes": tuple(args["config"]["sizes"])})
    libmtl = load_libmtl()[0] if name in LIBMTL_METHODS else None
    torchjd = load_torchjd()[0] if name in TORCHJD_METHODS else None
    params: list[torch.Tensor] = []
    step = training_step(name, n_tasks, config, "cpu", libmtl, torchjd, params_out=params)
    step()
    for param in params:
        param.grad = None
    gc.collect()
    print(json.dumps({"bytes": peak_rss_growth_bytes(step)}))


def scaling_benchmark(
    libmtl: Any, torchjd: Any, tasks: Sequence[int], settings: Settings
) -> tuple[list[Row], dict[str, Any]]:
    """Part 3: per (model, T), every method's step time (interleaved, against linear
    scalarisation) and peak memory (CUDA: ``max_memory_allocated``; CPU: :func:`memory_probe`)."""
    rows: list[Row] = []
    table: list[dict[str, Any]] = []
    names = scaling_methods(libmtl, torchjd)
    cuda = settings.device.startswith("cuda")
    for label, config in scaling_configs(settings.quick).items():
        for n_tasks in tasks:
            group = f"{label}, T={n_tasks}"
            steps = {
                name: training_step(name, n_tasks, config, settings.device, libmtl, torchjd)
                for name in names
            }
            group_rows = measure(group, steps, BASELINE, settings, warmup=1, measure_memory=cuda)
            del steps
            for row in group_rows:
                if not cuda:
                    row.memory_bytes = memory_probe(row.method, n_tasks, config)
            base = next(r for r in group_rows if r.method == BASELINE)
            for row in group_rows:
                table.append(
                    {
                        "model": label, "n_tasks": n_tasks, "method": row.method,
                        "median_ms": row.median_ms, "time_ratio": row.ratio,
                        "time_target": float(n_tasks + 1), "peak_bytes": row.memory_bytes,
                        "memory_ratio": (
                            row.memory_bytes / base.memory_bytes if base.memory_bytes else None
                        ),
                    }
                )  # fmt: skip
            rows += group_rows
    configs = {label: dataclasses.asdict(c) for label, c in scaling_configs(settings.quick).items()}
    memory = (
        "peak torch.cuda.max_memory_allocated during one step"
        if cuda
        else "peak RSS growth of one step in a fresh subprocess (after a warm-up step and "
        "with every .grad freed; glibc mmap threshold 128 KiB)"
    )
    return rows, {"configs": configs, "table": table, "memory_measure": memory}


def scaling_markdown(part3: dict[str, Any]) -> list[str]:
    """Per model: time ×baseline and peak MiB (×baseline) for every method and T."""
    table = part3["table"]
    tasks = sorted({t["n_tasks"] for t in table})
    lines = [
        "## Time and peak memory against T (issue 20 item 3; targets for exact MGDA: time ≤ "
        f"(T+1)×, memory ≤ {MEMORY_TARGET:g}× linear scalarization at T = 10)",
        "",
        f"Memory: {part3['memory_measure']}. Cells: time × baseline / peak MiB (× baseline).",
    ]
    for model, config in part3["configs"].items():
        head = (
            f"{config['head_hidden']}-unit two-layer heads"
            if config["head_hidden"]
            else "linear heads"
        )
        lines += [
            "",
            f"### {model}: trunk {'-'.join(map(str, config['sizes']))}, {head} "
            f"({config['classes']} classes, CE), batch {config['batch']}, float32, SGD",
            "",
            "| method | " + " | ".join(f"T={n}" for n in tasks) + " |",
            "|---|" + "---:|" * len(tasks),
        ]
        cells = {(t["method"], t["n_tasks"]): t for t in table if t["model"] == model}
        for method in dict.fromkeys(t["method"] for t in table):
            values = []
            for n in tasks:
                cell = cells.get((method, n))
                values.append(
                    "—"
                    if cell is None
                    else f"{cell['time_ratio']:.2f}× / {cell['peak_bytes'] / 2**20:.1f} MiB "
                    f"({fmt(cell['memory_ratio'], '.2f')}×)"
                )
            lines.append(f"| {method} | " + " | ".join(values) + " |")
    return lines


# ----------------------------------------------------------------------------------------------


def solver_notes(part1: dict[str, Any], quirks: dict[str, str]) -> list[str]:
    gap = part1["reference_max_fw_gap"]
    sources = ", ".join(f"{key} × {count}" for key, count in part1["reference_source"].items())
    lines = [
        "Reference α*: the lower objective of kexue `qp` and `wolfe` on M in float64 "
        f"({sources}); largest Frank–Wolfe gap αᵀMα − minᵢ(Mα)ᵢ of α*: "
        f"{gap['scaled']:.1e} × maxᵢ‖gᵢ‖², {gap['relative']:.1e} × ‖u*‖² on problems that are "
        "not Pareto stationary. kexue `qp` alone exceeds α*'s objective by up to "
        f"{part1['qp_max_rel_excess']:.1e} × ‖u*‖² (SLSQP above T = 12). kexue `auto` = closed "
        "form (T = 2), Wolfe (T ≥ 3). torchjd MGDA (tight): "
        f"`MGDAWeighting(epsilon={TORCHJD_TIGHT['epsilon']:g}, "
        f"max_iters={TORCHJD_TIGHT['max_iters']})` (default epsilon=1e-3, max_iters=100).",
    ]
    if quirks:
        lines += [
            "",
            "LibMTL quirks observed (run live): "
            + "; ".join(f"{key} → {value}" for key, value in quirks.items())
            + ". Its float64 rows run under `torch.set_default_dtype(torch.float64)`.",
        ]
    return lines


def step_notes(
    agreement: dict[str, Any],
    rep_grad: dict[str, Any],
    targets: Sequence[dict[str, Any]],
    n_tasks_of: dict[str, int],
) -> list[str]:
    lines = [
        f"Step agreement (first step, T = {agreement['n_tasks']}, against "
        f"{agreement['reference']}): "
        + "; ".join(
            f"{name}: max |Δw| {m['max_weight_diff']:.1e}, shared grad rel. diff "
            f"{m['shared_grad_rel_diff']:.1e}"
            for name, m in agreement["methods"].items()
            if name != agreement["reference"]
        )
        + ".",
    ]
    if rep_grad:
        ub, lib = rep_grad["kexue mgda_ub (features)"], rep_grad["LibMTL MGDA (rep_grad)"]
        lines += [
            "",
            f"Representation gradients (first step, T = {rep_grad['n_tasks']}), objective gap "
            "(‖u‖² − ‖u*‖²)/‖u*‖² against the exact optimum of ∇_H Lᵢ flattened over the batch "
            "(MGDA-UB) / summed over the batch: kexue mgda_ub "
            f"{ub['rel_gap_flattened']:.1e} / {ub['rel_gap_batch_summed']:.1e}; LibMTL rep_grad "
            f"{lib['rel_gap_flattened']:.1e} / {lib['rel_gap_batch_summed']:.1e}. LibMTL's "
            "weights against its own solver run on the flattened / batch-summed gradients: max "
            f"|Δw| {fmt(lib['own_solver_diff_flattened'])} / "
            f"{fmt(lib['own_solver_diff_batch_summed'])} (LibMTL 1.1.5 "
            "sums the representation gradients over the batch, `.sum(1)`, before solving).",
        ]
    lines += ["", *step_pivot(targets, n_tasks_of, STEP_TITLE)]
    return lines


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write ``<out>/mtl.{json,md}``, print the table; return the JSON."""
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--memory-probe":  # the subprocess of memory_probe
        _probe_main(argv[1])
        return {}
    defaults = Settings(rounds=8, min_run_time=0.2)  # spec 12 §9: median of ≥ 8 rounds
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    add_common_args(parser, defaults)
    parser.add_argument("--tasks", default=None, help="comma-separated T of the step part")
    parser.add_argument("--solver-tasks", default=None, help="comma-separated T of the solvers")
    parser.add_argument("--seeds", type=int, default=None, help="problems per family (3; quick 1)")
    parser.add_argument(
        "--scaling-tasks", default=None, help="comma-separated T of the time/memory part"
    )
    parser.set_defaults(threads=1)  # two threads on a busy 2-core machine run far slower
    args = parser.parse_args(argv)
    settings = settings_from_args(args, defaults)
    quick, device = settings.quick, settings.device

    libmtl, libmtl_status = load_libmtl()
    torchjd, torchjd_status = load_torchjd()
    quirks = libmtl_quirks(libmtl) if libmtl is not None else {}

    seeds = args.seeds if args.seeds is not None else (1 if quick else 3)
    solver_tasks = parse_ints(args.solver_tasks, QUICK_SOLVER_TASKS if quick else SOLVER_TASKS)
    started = time.perf_counter()
    part1 = solver_benchmark(libmtl, torchjd, solver_tasks, seeds, 0.002 if quick else 0.01)
    elapsed = {"solvers_s": time.perf_counter() - started}
    started = time.perf_counter()

    config = StepConfig((64, 32, 32), 32) if quick else StepConfig((784, 256, 256), 256)
    names = step_methods(libmtl, torchjd)
    step_tasks = parse_ints(args.tasks, STEP_TASKS)
    rows: list[Row] = []
    n_tasks_of: dict[str, int] = {}
    shape = "-".join(map(str, config.sizes))
    for n_tasks in step_tasks:
        group = (
            f"T={n_tasks}: trunk MLP {shape} + {n_tasks} linear heads ({config.classes} classes, "
            f"CE), batch {config.batch}, float32, one SGD step"
        )
        n_tasks_of[group] = n_tasks
        steps = {
            name: training_step(name, n_tasks, config, device, libmtl, torchjd) for name in names
        }
        # The CPU memory proxy (bytes saved for backward) is the same for every method here:
        # peak memory is measured in part 3 instead.
        rows += measure(group, steps, BASELINE, settings, measure_memory=device != "cpu")
    agreement = step_agreement(config, max(step_tasks), device, libmtl, torchjd)
    rep_grad = (
        rep_grad_agreement(config, max(step_tasks), device, libmtl) if libmtl is not None else {}
    )
    targets = check_targets(rows, n_tasks_of, LOSS_WEIGHTINGS, "loss weighting")
    elapsed["steps_s"] = time.perf_counter() - started
    started = time.perf_counter()
    scaling_tasks = parse_ints(args.scaling_tasks, QUICK_SCALING_TASKS if quick else SCALING_TASKS)
    scaling_rows, part3 = scaling_benchmark(libmtl, torchjd, scaling_tasks, settings)
    rows += scaling_rows
    elapsed["scaling_s"] = time.perf_counter() - started

    summary = part1["summary"]
    auto = [s for s in summary if s["solver"] == "kexue auto"]
    solver_targets = {
        "max_alpha_diff_unique_kexue_auto": _max([s["max_alpha_diff_unique"] for s in auto]),
        "max_median_us_kexue_auto_T_le_10": max(
            (s["median_us"] for s in auto if s["n_tasks"] <= 10), default=None
        ),
        "weight_tol": WEIGHT_TOL,
        "time_target_us": SOLVER_TARGET_US,
    }
    notes = [
        f"Anchors: {libmtl_status}; {torchjd_status}.",
        "",
        *solver_markdown(summary, seeds),
        "",
        *solver_notes(part1, quirks),
        "",
        *step_notes(agreement, rep_grad, targets, n_tasks_of),
        "",
        *scaling_markdown(part3),
    ]
    if quick:
        notes += [
            "",
            "`--quick` (smoke test): a tiny model whose baseline step takes well under a "
            "millisecond, so the ratios above measure fixed per-call overhead and are not "
            "comparable to the targets; run without `--quick` for the benchmark.",
        ]
    extra: dict[str, Any] = {
        "anchors": {"libmtl": libmtl_status, "torchjd": torchjd_status},
        "libmtl_quirks": quirks,
        "solvers": {k: v for k, v in part1.items() if k != "records"},
        "solver_targets": solver_targets,
        "step_config": dataclasses.asdict(config),
        "step_agreement": agreement,
        "rep_grad_agreement": rep_grad,
        "step_targets": targets,
        "scaling": part3,
        "elapsed": elapsed,
    }
    json_path, md_path = write_results(NAME, rows, settings, extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    # Per-problem solver records (about a thousand) are returned, not written.
    return {
        "rows": [dataclasses.asdict(row) for row in rows],
        **extra,
        "solver_records": part1["records"],
    }


if __name__ == "__main__":
    main()
