"""Pieces shared by the multi-task benchmarks (``mtl.py``, ``primary_aux.py``): the trunk-and-heads
model of the per-step timings, a call timer and small formatting helpers."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from _harness import Row


@dataclasses.dataclass(frozen=True)
class StepConfig:
    sizes: tuple[int, ...]
    batch: int
    classes: int = 10
    lr: float = 0.01
    head_hidden: int = 0  # > 0: "heavy" heads Linear(width, hidden)-ReLU-Linear(hidden, classes)


def build_model(config: StepConfig, n_tasks: int, device: str) -> tuple[nn.Module, nn.ModuleList]:
    """The shared trunk (Linear-ReLU per layer) and ``n_tasks`` heads (linear, or two-layer
    with ``config.head_hidden`` hidden units), seed 0."""
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(config.sizes[:-1], config.sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    trunk = nn.Sequential(*layers).to(device)
    width, hidden = config.sizes[-1], config.head_hidden

    def head() -> nn.Module:
        if hidden <= 0:
            return nn.Linear(width, config.classes)
        return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, config.classes))

    heads = nn.ModuleList(head() for _ in range(n_tasks)).to(device)
    return trunk, heads


def time_call(call: Callable[[], object], budget: float) -> tuple[float, Any]:
    """``(median seconds of one call, result of the first call)``: repeated while the calls so
    far took less than ``budget`` (at most 25 repeats); a first call over budget is the only one."""
    start = time.perf_counter()
    result = call()
    times = [time.perf_counter() - start]
    while sum(times) < budget and len(times) < 25:
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def fmt(value: float | None, spec: str = ".1e") -> str:
    return "—" if value is None else format(value, spec)


def parse_ints(text: str | None, default: Sequence[int]) -> tuple[int, ...]:
    if text is None:
        return tuple(default)
    return tuple(int(part) for part in text.split(",") if part.strip())


def check_targets(
    rows: Sequence[Row], n_tasks_of: dict[str, int], light: Sequence[str], light_kind: str
) -> list[dict[str, Any]]:
    """Each timed row against its target: ≤ 1.2× the baseline for the ``light`` methods (loss
    weightings, gradient hooks: one backward), ≤ (T+1)× for gradient methods (T backwards)."""
    checks = []
    for row in rows:
        if row.method == row.baseline:
            continue
        is_light = row.method in light
        target = 1.2 if is_light else float(n_tasks_of[row.group] + 1)
        checks.append(
            {
                "group": row.group, "method": row.method,
                "kind": light_kind if is_light else "gradient method", "ratio": row.ratio,
                "target": target, "met": row.ratio <= target,
            }
        )  # fmt: skip
    return checks


def step_pivot(
    targets: Sequence[dict[str, Any]], n_tasks_of: dict[str, int], title: str
) -> list[str]:
    """Time per step / baseline, one row per method and one column per T, under ``title``."""
    tasks = sorted(set(n_tasks_of.values()))
    methods = list(dict.fromkeys(t["method"] for t in targets))
    cells = {(t["method"], n_tasks_of[t["group"]]): t for t in targets}
    lines = [
        title,
        "",
        "| method | kind | " + " | ".join(f"T={n}" for n in tasks) + " |",
        "|---|---|" + "---:|" * len(tasks),
    ]
    for method in methods:
        row = [cells.get((method, n)) for n in tasks]
        kind = next(t["kind"] for t in row if t is not None)
        values = [
            "—" if t is None else f"{t['ratio']:.2f}× " + ("✓" if t["met"] else "✗") for t in row
        ]
        lines.append(f"| {method} | {kind} | " + " | ".join(values) + " |")
    return lines
