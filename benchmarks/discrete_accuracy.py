"""Accuracy and speed of the exact Perturb-Max probabilities (issue 19 items 1–2; spec 09).

``python benchmarks/discrete_accuracy.py [--quick] [--threads N (default 1)] [--out DIR]``

1. **Accuracy, every shipped noise (normal, logistic, Gumbel, uniform, exponential), n = 10,
   1,000, 32,000, 128,000** (each finished (n, noise) entry is stored at once; a killed run
   resumes). Logits 3·N(0, 1) (seed 0) plus four classes
   40, 150, 400 and 1000 below the top; float64. The library's default
   (``perturb_max_log_probs(logits, noise)``, the exact shared-grid rule) against an
   independent per-class reference: ``scipy.integrate.quad`` of the log-shifted integrand
   exp(log f(t − μ_i) + Σ_{j≠i} log Φ(t − μ_j) − c_i) in the variable of the maximum, with the
   kinks of bounded laws as breakpoints. Above n = 100 the reference is computed for a stratified
   subset of classes (the 8 highest, the 8 lowest finite-reference ones, the four far classes
   and 16 spread through the order; the table says how many); the worst
   |Δ log p_i| / max(1, |log p_i|) over the classes with log p_i ≥ −700 is reported, beside the
   previous default (a fixed 32-node rule: Gauss–Hermite for normal noise, Gauss–Legendre
   otherwise) on the same classes.
2. **Speed**, one process, 1 thread, median of repeated calls: ``torch.softmax`` (baseline),
   the exact default and the previous default (normal, logistic, uniform, exponential; above
   n = 1,000 the previous default only where it had the interpolated path, normal and
   logistic — elsewhere it was the direct O(n²K) path, minutes per call), at
   batch 64 × n = 10 (float32) and one row of n = 1,000, 32,000, 128,000 (float64), logits
   3·N(0, 1) without the far classes (a class 1000 nats below stretches the grid over 1000
   nats: see the accuracy table's call times).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _harness when run as a script

from _harness import Row, Settings, add_common_args, settings_from_args, write_results
from kexue.discrete import perturb_max_probs
from kexue.experiments.perturb_max import (
    ACCURACY_NOISES as NOISES,
)
from kexue.experiments.perturb_max import (
    FAR_BELOW as FAR,
)
from kexue.experiments.perturb_max import (
    INTERPOLATED_NOISES,
    exact_accuracy,
    make_accuracy_logits,
    previous_default,
)
from kexue.utils import atomic_write_json, read_json

NAME = "discrete_accuracy"
CLASSES = (10, 1_000, 32_000, 128_000)
QUICK_CLASSES = (10,)
SPEED_CLASSES = (10, 1_000, 32_000, 128_000)
QUICK_SPEED_CLASSES = (10, 1_000)
EXACT = "exact (default)"
PREVIOUS = "previous default (32-node rule)"
SOFTMAX = "torch.softmax"


def timed(call: Callable[[], object], repeats: int) -> tuple[float, float, list[float]]:
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(1e3 * (time.perf_counter() - started))
    quartiles = np.percentile(times, [25, 75])
    return statistics.median(times), float(quartiles[1] - quartiles[0]), times


def speed_rows(n: int, quick: bool) -> list[Row]:
    if n == 10:
        logits = torch.tensor(np.random.default_rng(0).normal(size=(64, 10)) * 3,
                              dtype=torch.float32)  # fmt: skip
        group = "batch 64 × n = 10, float32"
    else:
        logits = torch.tensor(make_accuracy_logits(n, far=False), dtype=torch.float64)[None]
        group = f"one row, n = {n:,}, float64"
    repeats = 3 if n >= 32_000 else (5 if quick else 20)
    rows = []
    base, base_iqr, base_times = timed(lambda: torch.softmax(logits, -1), max(repeats, 50))
    rows.append(Row(group, SOFTMAX, SOFTMAX, base, base_iqr, 1.0, 0, base_times))
    for noise in ("normal", "logistic", "uniform", "exponential"):
        methods: list[tuple[str, Callable[[], object]]] = [
            (EXACT, functools.partial(perturb_max_probs, logits, noise))
        ]
        if (
            n <= 1_000 or noise in INTERPOLATED_NOISES
        ):  # else the direct O(n²K) path: minutes per call
            methods.append((PREVIOUS, functools.partial(previous_default, logits, noise)))
        for method, call in methods:
            median, iqr, times = timed(call, repeats)
            rows.append(Row(group, f"{method}, {noise}", SOFTMAX, median, iqr, median / base, 0,
                            times))  # fmt: skip
    return rows


def _previous(entry: dict[str, Any]) -> str:
    value = entry["previous_worst"]
    return "not run (O(n²K))" if value is None else f"{value:.1e}"


def accuracy(n: int, noise: str) -> dict[str, Any]:
    return exact_accuracy(n, noise)


PROBABILITY_SOURCES = ("__init__.py", "_exact.py", "_probabilities.py", "_noises.py",
                       "_quadrature.py", "_many_classes.py")  # fmt: skip


def _resumable_accuracy(classes: Sequence[int], settings: Settings) -> list[dict[str, Any]]:
    """One accuracy entry per (n, noise), each stored as it finishes in a partial file whose
    name carries a hash of the configuration and the library's source (a killed run resumes;
    a changed configuration or library starts a new file, never reuses stale entries)."""
    source = Path(__file__).resolve().parents[1] / "src" / "kexue" / "discrete"
    digest = hashlib.sha256()
    digest.update(json.dumps([list(classes), NOISES, FAR, torch.__version__]).encode())
    for name in PROBABILITY_SOURCES:  # the code the accuracy depends on (not the sampler)
        digest.update((source / name).read_bytes())
    partial = Path(settings.out) / f".{NAME}.{digest.hexdigest()[:16]}.partial.json"
    done: dict[str, Any] = read_json(partial) if partial.exists() else {}
    table = []
    for n in classes:
        for noise in NOISES:
            key = f"{n}/{noise}"
            if key not in done:
                done[key] = accuracy(n, noise)
                atomic_write_json(partial, done)
                print(f"accuracy {key}: {done[key]['exact_worst']:.1e}", flush=True)
            table.append(done[key])
    return table


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    defaults = Settings(rounds=1, min_run_time=0.0)
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    add_common_args(parser, defaults)
    parser.add_argument(
        "--accuracy-only",
        action="store_true",
        help="fill the resumable accuracy entries and stop (no timing)",
    )
    parser.set_defaults(threads=1)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = settings_from_args(args, defaults)
    classes = QUICK_CLASSES if settings.quick else CLASSES
    started = time.perf_counter()
    table = _resumable_accuracy(classes, settings)
    if args.accuracy_only:
        return {"accuracy": table, "rows": []}
    speed = QUICK_SPEED_CLASSES if settings.quick else SPEED_CLASSES
    rows = [row for n in speed for row in speed_rows(n, settings.quick)]
    notes = [
        "## Accuracy (float64; worst |Δ log p_i| / max(1, |log p_i|) over the checked classes "
        "with reference log p_i ≥ −700)",
        "",
        "| n | noise | classes checked | lowest reference log p | exact (default) | previous "
        "default | support mismatches | exact call s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['n']:,} | {r['noise']} | {r['classes_checked']} | {r['lowest_reference']:.1f} "
            f"| {r['exact_worst']:.1e} | {_previous(r)} | {r['support_mismatches']} "
            f"| {r['exact_seconds']:.2f} |"
            for r in table
        ],
        "",
        "Logits 3·N(0, 1), seed 0, with the last four classes 40, 150, 400, 1000 below the top. "
        "Reference: scipy.integrate.quad per class (module docstring). 'support mismatches': "
        "classes where one side has p = 0 exactly and the other not.",
        "",
        f"Total wall time: {time.perf_counter() - started:.0f} s.",
    ]
    json_path, md_path = write_results(NAME, rows, settings, {"accuracy": table}, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return {"accuracy": table, "rows": [row.method for row in rows]}


if __name__ == "__main__":
    main()
