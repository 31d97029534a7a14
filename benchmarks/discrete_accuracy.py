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
   the exact default and the previous default (normal, logistic, uniform, exponential), at
   batch 64 × n = 10 (float32) and one row of n = 1,000, 32,000, 128,000 (float64), logits
   3·N(0, 1) without the far classes (a class 1000 nats below stretches the grid over 1000
   nats: see the accuracy table's call times).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import integrate, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _harness when run as a script

from _harness import Row, Settings, add_common_args, settings_from_args, write_results
from kexue.discrete import perturb_max_log_probs, perturb_max_probs
from kexue.utils import atomic_write_json

NAME = "discrete_accuracy"
NOISES = ("normal", "logistic", "gumbel", "uniform", "exponential")
CLASSES = (10, 1_000, 32_000, 128_000)
QUICK_CLASSES = (10,)
SPEED_CLASSES = (10, 1_000, 32_000, 128_000)
QUICK_SPEED_CLASSES = (10, 1_000)
FAR = (40.0, 150.0, 400.0, 1000.0)
LAWS = {
    "normal": stats.norm(),
    "logistic": stats.logistic(),
    "gumbel": stats.gumbel_r(),
    "uniform": stats.uniform(loc=-0.5, scale=1.0),
    "exponential": stats.expon(),
}
EXACT = "exact (default)"
PREVIOUS = "previous default (32-node rule)"
SOFTMAX = "torch.softmax"


def make_logits(n: int, far: bool = True) -> np.ndarray:
    generator = np.random.default_rng(0)
    logits = generator.normal(size=n) * 3
    if far and n >= 10:
        top = logits.max()
        logits[-len(FAR) :] = top - np.array(FAR)
    return logits


def reference_log_p(mu: np.ndarray, noise: str, i: int) -> float:
    """log p_i by adaptive quadrature of the class's own integrand (module docstring)."""
    law = LAWS[noise]
    others = np.delete(mu, i)
    low, high = law.support()  # type: ignore[attr-defined]
    start = max(mu.max() + low, mu[i] - 80.0) if math.isfinite(low) else mu[i] - 80.0
    stop = min(mu[i] + high, mu.max() + 80.0)
    if stop <= start:
        return -math.inf
    grid = np.linspace(start, stop, 4001 if len(mu) <= 32_000 else 801)  # brackets the bump

    def log_integrand(t: np.ndarray) -> np.ndarray:
        t = np.atleast_1d(t)
        with np.errstate(all="ignore"):
            total = np.zeros(len(t))
            for first in range(0, len(others), 20_000):
                block = others[first : first + 20_000]
                total += law.logcdf(t[:, None] - block[None, :]).sum(1)  # type: ignore[attr-defined]
            return np.asarray(law.logpdf(t - mu[i]) + total)  # type: ignore[attr-defined]

    values = log_integrand(grid)
    if not np.isfinite(values).any():
        return -math.inf
    peak = int(np.nanargmax(np.where(np.isfinite(values), values, -np.inf)))
    c = float(values[peak])
    alive = grid[np.isfinite(values) & (values > c - 120)]
    a, b = max(start, alive.min() - 0.5), min(stop, alive.max() + 0.5)
    points = [float(grid[peak])]
    if noise == "uniform":
        kinks = others + 0.5
        points += [float(k) for k in kinks[(kinks > a) & (kinks < b)]][:200]
    value, _ = integrate.quad(
        lambda t: float(np.exp(log_integrand(t)[0] - c)), a, b,
        points=sorted(set(points)), limit=2000, epsabs=0.0, epsrel=1e-13,
    )  # fmt: skip
    return math.log(value) + c if value > 0 else -math.inf


def previous_default(logits: torch.Tensor, noise: str) -> torch.Tensor:
    rule = "gauss-hermite" if noise == "normal" else "gauss-legendre"
    return perturb_max_log_probs(logits, noise, rule, 32)


def accuracy(n: int, noise: str) -> dict[str, Any]:
    mu = make_logits(n)
    logits = torch.tensor(mu, dtype=torch.float64)
    started = time.perf_counter()
    exact = perturb_max_log_probs(logits, noise).numpy()
    exact_seconds = time.perf_counter() - started
    previous = previous_default(logits, noise).numpy()
    order = np.argsort(-mu)
    if n <= 100:
        classes = list(range(n))
    else:
        finite = order[np.isfinite(exact[order])]
        spread = finite[np.linspace(0, len(finite) - 1, 16).astype(int)]
        classes = sorted({*order[:8], *finite[-8:], *spread, *range(n - len(FAR), n)})
    reference = np.array([reference_log_p(mu, noise, int(i)) for i in classes])
    keep = np.isfinite(reference) & (reference >= -700)
    scale = np.maximum(1.0, np.abs(reference[keep]))
    exact_error = np.abs(exact[classes][keep] - reference[keep]) / scale
    with np.errstate(invalid="ignore"):
        previous_error = np.abs(previous[classes][keep] - reference[keep]) / scale
    mismatch = int((np.isfinite(exact[classes]) != np.isfinite(reference)).sum())
    return {
        "n": n, "noise": noise, "classes_checked": len(classes), "classes_scored": int(keep.sum()),
        "lowest_reference": float(reference[np.isfinite(reference)].min()),
        "exact_worst": float(exact_error.max()),
        "previous_worst": float(np.nan_to_num(previous_error, nan=np.inf).max()),
        "support_mismatches": mismatch, "exact_seconds": exact_seconds,
    }  # fmt: skip


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
        logits = torch.tensor(make_logits(n, far=False), dtype=torch.float64)[None]
        group = f"one row, n = {n:,}, float64"
    repeats = 3 if n >= 32_000 else (5 if quick else 20)
    rows = []
    base, base_iqr, base_times = timed(lambda: torch.softmax(logits, -1), max(repeats, 50))
    rows.append(Row(group, SOFTMAX, SOFTMAX, base, base_iqr, 1.0, 0, base_times))
    for noise in ("normal", "logistic", "uniform", "exponential"):
        for method, call in (
            (EXACT, lambda noise=noise: perturb_max_probs(logits, noise)),
            (PREVIOUS, lambda noise=noise: previous_default(logits, noise)),
        ):
            median, iqr, times = timed(call, repeats)
            rows.append(Row(group, f"{method}, {noise}", SOFTMAX, median, iqr, median / base, 0,
                            times))  # fmt: skip
    return rows


def _resumable_accuracy(classes: Sequence[int], settings: Settings) -> list[dict[str, Any]]:
    """One accuracy entry per (n, noise), each stored as it finishes in a partial file whose
    name carries a hash of the configuration and the library's source (a killed run resumes;
    a changed configuration or library starts a new file, never reuses stale entries)."""
    source = Path(__file__).resolve().parents[1] / "src" / "kexue" / "discrete"
    digest = hashlib.sha256()
    digest.update(json.dumps([list(classes), NOISES, FAR, torch.__version__]).encode())
    for path in sorted(source.glob("*.py")):
        digest.update(path.read_bytes())
    partial = Path(settings.out) / f".{NAME}.{digest.hexdigest()[:16]}.partial.json"
    done: dict[str, Any] = json.loads(partial.read_text()) if partial.exists() else {}
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
            f"| {r['exact_worst']:.1e} | {r['previous_worst']:.1e} | {r['support_mismatches']} "
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
