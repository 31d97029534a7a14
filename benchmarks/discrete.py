"""Benchmark of ``kexue.discrete`` (Perturb Max; spec 09, issue 10): the fixed-node rules.

The exact default (issue 19) is measured by ``benchmarks/discrete_accuracy.py``; here the
Perturb-Max rows use ``method="gauss-hermite"`` explicitly (the default before issue 19).

``python benchmarks/discrete.py [--quick] [--threads N (default 1)] [--rounds R]``

1. **Probabilities** (float32 logits 3·N(0, 1), seed 0, batch 64; n = 10, 1,000, 32,000): one
   forward call (no gradient) of ``torch.softmax`` (the baseline), of
   :func:`kexue.discrete.perturb_max_probs` with normal noise, Gauss–Hermite K = 32
   (``algorithm="auto"``: the direct O(n²K) path for n < 64, the interpolated path of spec 09
   §5.1b above, error bound 1e-8 on log p) and of a naive O(n²K) implementation (the (i, j, k)
   tensor of log Φ(z_i − z_j + ε_k) in log space, chunked over i, plain torch). Where the naive
   call would take minutes it is timed on a subset of the classes i of one row and extrapolated
   linearly to n classes × 64 rows (the row label says so). n = 10 and 1,000 also get a
   forward + backward group (the NLL of random targets), the training use.
2. **Sampling** (batch 64, one draw per row): :func:`kexue.discrete.perturb_max_sample`
   (exact argmax of logits + noise; Gumbel and normal) against
   ``torch.distributions.Categorical(logits).sample()`` (baseline; distribution built outside the
   timed call), ``F.gumbel_softmax(hard=True)`` and ``torch.distributions.Gumbel`` noise + argmax.

Time: the harness's interleaved ``blocked_autorange`` rounds (median of per-round medians).
Memory: the peak resident-set growth of one call, measured in a fresh subprocess (the Linux
high-water mark VmHWM reset through ``/proc/self/clear_refs`` after building the inputs, minus
VmRSS before the call): CPU torch allocations are invisible to tracemalloc, and the harness's
saved-tensor proxy is 0 for no-grad calls. Not measured with ``--quick``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

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
from kexue.discrete import (
    Normal,
    interpolated_log_probs,
    perturb_max_nll,
    perturb_max_probs,
    perturb_max_sample,
    quadrature_nodes,
)

NAME = "discrete"
BATCH = 64
NODES = 32
CLASSES = (10, 1000, 32_000)
QUICK_CLASSES = (10, 200)
QUICK_BATCH = 4
TRAINING_CLASSES = (10, 1000)
SOFTMAX = "torch.softmax"
PERTURB_MAX = "kexue perturb_max_probs (normal, GH K=32, auto)"
NAIVE = "naive O(n²K)"
SAMPLERS = (
    "torch Categorical.sample",
    "kexue perturb_max_sample (gumbel)",
    "kexue perturb_max_sample (normal)",
    "F.gumbel_softmax(hard=True)",
    "torch Gumbel noise + argmax",
)
NAIVE_ELEMENT_BUDGET = 1 << 25  # above this many (i, j, k) elements per call: time a subset


def make_logits(batch: int, n: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return 3 * torch.randn(batch, n, generator=generator)


def naive_log_probs(logits: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """Unnormalised log p of the first ``rows`` classes (all by default) by the (i, j, k) tensor,
    chunked over i so one block holds at most 2²² elements; float32, normal noise, GH K = 32."""
    noise = Normal()
    nodes, log_weights = quadrature_nodes(noise, "gauss-hermite", NODES, dtype=logits.dtype)
    batch, n = logits.shape
    count = n if rows is None else rows
    chunk = max(1, (1 << 22) // (batch * n * NODES))
    blocks = []
    for first in range(0, count, chunk):
        last = min(count, first + chunk)
        block = logits[:, first:last]
        x = (block[:, :, None] - logits[:, None, :])[..., None] + nodes
        terms = torch.special.log_ndtr(x)
        own = torch.arange(first, last)
        terms[:, torch.arange(last - first), own, :] = 0.0  # the self term j = i
        blocks.append(torch.logsumexp(terms.sum(2) + log_weights, dim=-1))
    return torch.cat(blocks, dim=1)


@dataclasses.dataclass(frozen=True)
class MemorySettings(Settings):
    """The harness's settings with this benchmark's memory measure in the written header."""

    @property
    def memory_measure(self) -> str:
        if self.quick:
            return "not measured with --quick (0)"
        return (
            "peak resident-set growth of one call in a fresh subprocess (VmHWM reset through "
            "/proc/self/clear_refs after building the inputs, minus VmRSS before the call; bytes)"
        )


@dataclasses.dataclass(frozen=True)
class Case:
    """One timed callable: ``build()`` returns the step; ``scale`` extrapolates its time."""

    method: str
    build: Callable[[], Step]
    scale: float = 1.0
    note: str = ""


def forward_cases(batch: int, n: int) -> list[Case]:
    logits = make_logits(batch, n)
    cases = [
        Case(SOFTMAX, lambda: lambda: torch.softmax(logits, -1)),
        Case(
            PERTURB_MAX, lambda: lambda: perturb_max_probs(logits, "normal", "gauss-hermite", NODES)
        ),
    ]
    elements = batch * n * n * NODES
    if elements <= NAIVE_ELEMENT_BUDGET:
        cases.append(Case(NAIVE, lambda: lambda: naive_log_probs(logits)))
    else:
        rows = max(1, NAIVE_ELEMENT_BUDGET // (n * NODES))
        rows = min(rows, n)
        one_row = logits[:1]
        scale = batch * n / rows
        label = f"{NAIVE} (timed on {rows} classes of 1 row, ×{scale:,.0f} extrapolated)"
        cases.append(Case(label, lambda: lambda: naive_log_probs(one_row, rows), scale))
    return cases


def training_cases(batch: int, n: int) -> list[Case]:
    logits = make_logits(batch, n).requires_grad_(True)
    target = torch.randint(0, n, (batch,), generator=torch.Generator().manual_seed(1))

    def softmax_step() -> None:
        logits.grad = None
        F.cross_entropy(logits, target).backward()

    def perturb_step() -> None:
        logits.grad = None
        perturb_max_nll(logits, target, "normal", "gauss-hermite", NODES).backward()

    return [Case("F.cross_entropy fwd+bwd", lambda: softmax_step),
            Case("kexue perturb_max_nll fwd+bwd (normal, GH K=32, auto)",
                 lambda: perturb_step)]  # fmt: skip


def sampling_cases(batch: int, n: int) -> list[Case]:
    logits = make_logits(batch, n)
    categorical = torch.distributions.Categorical(logits=logits)
    categorical.sample()  # builds the cached probabilities outside the timed calls
    gumbel = torch.distributions.Gumbel(torch.tensor(0.0), torch.tensor(1.0))
    return [
        Case(SAMPLERS[0], lambda: lambda: categorical.sample()),
        Case(SAMPLERS[1], lambda: lambda: perturb_max_sample(logits, "gumbel")),
        Case(SAMPLERS[2], lambda: lambda: perturb_max_sample(logits, "normal")),
        Case(SAMPLERS[3], lambda: lambda: F.gumbel_softmax(logits, hard=True)),
        Case(SAMPLERS[4], lambda: lambda: (logits + gumbel.sample(logits.shape)).argmax(-1)),
    ]


CASE_BUILDERS: dict[str, Callable[[int, int], list[Case]]] = {
    "forward": forward_cases,
    "training": training_cases,
    "sampling": sampling_cases,
}


def memory_probe(kind: str, batch: int, n: int, method: str) -> int:
    """Peak RSS growth (bytes) of one call of ``method`` in a fresh interpreter."""
    command = [sys.executable, __file__, "--memory-probe", kind, str(batch), str(n), method]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(json.loads(output.strip().splitlines()[-1])["bytes"])


def _probe_main(kind: str, batch: int, n: int, method: str) -> None:
    """Peak RSS growth of one call: the high-water mark (VmHWM) is reset through
    /proc/self/clear_refs after building the inputs, then read after the call, minus the resident
    size before it. Without /proc, the growth of ``ru_maxrss`` (a lower bound)."""
    torch.set_num_threads(1)
    (case,) = [c for c in CASE_BUILDERS[kind](batch, n) if c.method == method]
    step = case.build()
    print(json.dumps({"bytes": peak_rss_growth_bytes(step)}))


def run_group(kind: str, group: str, batch: int, n: int, settings: Settings,
              memory: bool) -> list[Row]:  # fmt: skip
    cases = CASE_BUILDERS[kind](batch, n)
    steps = {case.method: case.build() for case in cases}
    slow = kind == "forward" and n >= 10_000
    warmup = 0 if slow else 2
    rows = measure(group, steps, cases[0].method, settings, warmup=warmup, measure_memory=False)
    for case, row in zip(cases, rows, strict=True):
        if case.scale != 1.0:
            row.median_ms *= case.scale
            row.iqr_ms *= case.scale
            row.rounds_ms = [value * case.scale for value in row.rounds_ms]
        if memory:
            row.memory_bytes = memory_probe(kind, batch, n, case.method)
    baseline = rows[0].median_ms
    for row in rows:
        row.ratio = row.median_ms / baseline
    return rows


def agreement(n: int, subset: int) -> dict[str, Any]:
    """The library's interpolated path against the naive one on ``subset`` classes of one row."""
    logits = make_logits(1, n).double()
    nodes, log_weights = quadrature_nodes(Normal(), "gauss-hermite", NODES)
    result = interpolated_log_probs(logits, Normal(), nodes, log_weights, tolerance=1e-8)
    naive = naive_log_probs(logits, subset)
    difference = float((result.log_probs[:, :subset] - naive).abs().max())
    # float64 rounding of sums of n terms of size up to |log p| comes on top of the bound
    allowance = 1e-15 * n * max(1.0, float(naive.abs().max()))
    return {"n": n, "classes": subset, "max_abs_diff": difference, "bound": result.bound,
            "rounding_allowance": allowance, "grid_nodes": result.grid_nodes,
            "spacing": result.spacing,
            "passed": difference <= result.bound + allowance}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write ``<out>/discrete.{json,md}``, print the table; return the JSON."""
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--memory-probe":
        _probe_main(argv[1], int(argv[2]), int(argv[3]), argv[4])
        return {}
    defaults = Settings(rounds=3, min_run_time=0.5)
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    add_common_args(parser, defaults)
    parser.set_defaults(threads=1)  # two threads on a busy 2-core machine run far slower
    settings = MemorySettings(**dataclasses.asdict(settings_from_args(parser.parse_args(argv),
                                                                       defaults)))  # fmt: skip
    quick = settings.quick
    batch = QUICK_BATCH if quick else BATCH
    classes = QUICK_CLASSES if quick else CLASSES
    memory = not quick
    started = time.perf_counter()
    rows: list[Row] = []
    for n in classes:
        rows += run_group("forward", f"probabilities, n={n:,}, batch {batch}, float32", batch, n,
                          settings, memory)  # fmt: skip
    for n in classes:
        if n in TRAINING_CLASSES or quick:
            rows += run_group("training", f"NLL forward+backward, n={n:,}, batch {batch}", batch,
                              n, settings, memory)  # fmt: skip
    for n in classes:
        rows += run_group("sampling", f"sampling, n={n:,}, batch {batch}", batch, n, settings,
                          memory)  # fmt: skip
    check = agreement(classes[-1], 8 if quick else 16)
    if not check["passed"]:
        raise RuntimeError(f"interpolated and naive paths disagree: {check}")
    notes = [
        "Anchors: torch.softmax / F.cross_entropy (the normaliser Perturb Max generalises), "
        "torch.distributions.Categorical, F.gumbel_softmax and torch.distributions.Gumbel for "
        "sampling (spec 12 §6). Logits 3·N(0, 1), float32. Perturb Max: normal noise, "
        f"Gauss–Hermite K = {NODES}, renormalised; algorithm='auto' (direct O(n²K) for n < 64, "
        "interpolated spec 09 §5.1b above, float64 inside, stated bound 1e-8 on log p).",
        "",
        "Naive rows marked 'extrapolated' were timed on a subset of the classes i of one row "
        "and scaled linearly to all classes × all rows (the cost is linear in both).",
        "",
        "Memory: the naive subset's memory is that of its chunked evaluation (blocks of at "
        "most 2²² elements), which does not grow with the number of classes timed; CPU torch "
        "allocations are invisible to tracemalloc, hence the RSS measure."
        if memory
        else "Memory: not measured with --quick (0).",
        "",
        f"Agreement (n = {check['n']:,}, {check['classes']} classes of one row, float64): "
        f"interpolated − naive max |Δ log p| = {check['max_abs_diff']:.2e}, stated bound "
        f"{check['bound']:.2e} (h = {check['spacing']:.3f}, M = {check['grid_nodes']} grid "
        "nodes).",
        "",
        f"Total benchmark wall time: {time.perf_counter() - started:.0f} s.",
    ]
    extra: dict[str, Any] = {"agreement": check, "batch": batch, "classes": list(classes),
                             "nodes": NODES}  # fmt: skip
    json_path, md_path = write_results(NAME, rows, settings, extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return {"rows": [dataclasses.asdict(row) for row in rows], **extra}


if __name__ == "__main__":
    main()
