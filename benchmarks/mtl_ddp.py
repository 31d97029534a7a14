"""Communication of :func:`kexue.mtl.mtl_backward` under ``torch.distributed`` (issue 20 item 3).

``python benchmarks/mtl_ddp.py [--quick] [--rounds R] [--tasks 2,4,10] [--steps K]
[--threads N (per rank, default 1)]``

Two gloo ranks on the CPU (``torch.multiprocessing.spawn``, a file store in a temporary
directory), each with its half (128 rows) of a batch of 256 random inputs; the model of
``benchmarks/mtl.py``: a shared trunk MLP 784-256-256 (ReLU) and ``T`` linear heads (10 classes,
cross-entropy each), float32, SGD. Per ``T`` in 2, 4, 10, one training step
(``zero_grad`` + forward + backward + ``optimizer.step``) of:

* ``plain DDP (sum of losses)`` — the model in ``DistributedDataParallel``, one ``backward`` of
  the summed losses (the baseline); bytes all-reduced counted by a communication hook that
  wraps DDP's default all-reduce hook;
* ``mtl_backward mgda (sync)`` — the plain model, ``mtl_backward(..., aggregator="mgda")``
  with the default synchronisation (bytes: the result's ``communicated_bytes``);
* ``mtl_backward mgda_ub (sync)`` — MGDA-UB through the features (the feature Gram, T × T, is
  all-reduced instead of the T per-task gradients);
* ``mtl_backward mgda (rank-local, sync=False)`` — the same computation without communication
  (the wrong, unsynchronised update): the difference to the synchronised row is the cost of the
  communication.

Timing: both ranks run the same fixed number of steps (a collective must be matched on every
rank, so ``blocked_autorange``'s adaptive count cannot be used): per round and method a barrier,
``--steps`` steps, the slower rank's time per step (max over ranks); rounds interleave the
methods with a rotated start like the harness; median and IQR over rounds; memory not measured
(0). Bytes are those one rank hands to ``all_reduce`` per step (the payload; gloo's ring moves
about 2(N−1)/N times that per rank).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _harness when run as a script

from _harness import Row, Settings, add_common_args, settings_from_args, write_results
from _mtl_common import StepConfig, build_model, parse_ints
from kexue.mtl import mtl_backward

NAME = "mtl_ddp"
WORLD = 2
TASKS = (2, 4, 10)
CONFIG = StepConfig(sizes=(784, 256, 256), batch=256)
QUICK_CONFIG = StepConfig(sizes=(32, 16, 16), batch=16)
BASELINE = "plain DDP (sum of losses)"
METHODS = (
    BASELINE,
    "mtl_backward mgda (sync)",
    "mtl_backward mgda_ub (sync)",
    "mtl_backward mgda (rank-local, sync=False)",
)


class Joint(nn.Module):
    """Trunk and heads as one module (what DDP wraps in the baseline)."""

    def __init__(self, trunk: nn.Module, heads: nn.ModuleList) -> None:
        super().__init__()
        self.trunk, self.heads = trunk, heads

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.trunk(x)
        return features, [head(features) for head in self.heads]


@dataclasses.dataclass
class Counter:
    bytes: int = 0


def _counting_hook(state, bucket):  # type: ignore[no-untyped-def]
    """DDP's default all-reduce, counting the bucket bytes (unannotated: DDP checks the
    annotations of a hook at run time, and postponed evaluation turns them into strings)."""
    buffer = bucket.buffer()
    state.bytes += buffer.numel() * buffer.element_size()
    return default_hooks.allreduce_hook(None, bucket)


def _make_steps(
    rank: int, n_tasks: int, config: StepConfig
) -> tuple[dict[str, Callable[[], int]], dict[str, Any]]:
    """Per method a step returning the bytes this rank all-reduced in it."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(config.batch, config.sizes[0], generator=gen)
    ys = [torch.randint(0, config.classes, (config.batch,), generator=gen) for _ in range(n_tasks)]
    rows = slice(rank * config.batch // WORLD, (rank + 1) * config.batch // WORLD)
    x, ys = x[rows], [y[rows] for y in ys]
    steps: dict[str, Callable[[], int]] = {}

    trunk, heads = build_model(config, n_tasks, "cpu")
    ddp = DistributedDataParallel(Joint(trunk, heads))
    counter = Counter()
    ddp.register_comm_hook(counter, _counting_hook)
    ddp_opt = torch.optim.SGD(ddp.parameters(), lr=config.lr)

    def plain() -> int:
        before = counter.bytes
        ddp_opt.zero_grad(set_to_none=True)
        _, outputs = ddp(x)
        sum(F.cross_entropy(o, y) for o, y in zip(outputs, ys, strict=True)).backward()
        ddp_opt.step()
        return counter.bytes - before

    steps[BASELINE] = plain

    def mtl_step(aggregator: str, sync: bool | None) -> Callable[[], int]:
        trunk, heads = build_model(config, n_tasks, "cpu")
        model = Joint(trunk, heads)
        optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
        shared, task = list(trunk.parameters()), list(heads.parameters())

        def step() -> int:
            optimizer.zero_grad(set_to_none=True)
            features, outputs = model(x)
            losses = [F.cross_entropy(o, y) for o, y in zip(outputs, ys, strict=True)]
            result = mtl_backward(
                losses,
                shared,
                features=features if aggregator == "mgda_ub" else None,
                task_parameters=task,
                aggregator=aggregator,
                sync=sync,
            )
            optimizer.step()
            return result.communicated_bytes

        return step

    steps[METHODS[1]] = mtl_step("mgda", None)
    steps[METHODS[2]] = mtl_step("mgda_ub", None)
    steps[METHODS[3]] = mtl_step("mgda", False)
    sizes = {
        "shared_parameters": sum(p.numel() for p in trunk.parameters()),
        "task_parameters": sum(p.numel() for p in heads.parameters()),
    }
    return steps, sizes


def _worker(
    rank: int, store: str, settings: Settings, tasks: tuple[int, ...], n_steps: int, out: str
) -> None:
    torch.set_num_threads(settings.threads or 1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    config = QUICK_CONFIG if settings.quick else CONFIG
    results: list[dict[str, Any]] = []
    try:
        for n_tasks in tasks:
            steps, sizes = _make_steps(rank, n_tasks, config)
            byte_counts = {}
            for name, step in steps.items():
                for _ in range(2):  # warm-up (DDP rebuilds its buckets after the first step)
                    step()
                byte_counts[name] = step()
            times: dict[str, list[float]] = {name: [] for name in steps}
            names = list(steps)
            for round_index in range(settings.rounds):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    dist.barrier()
                    start = time.perf_counter()
                    for _ in range(n_steps):
                        steps[name]()
                    elapsed = torch.tensor([(time.perf_counter() - start) / n_steps * 1e3])
                    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
                    times[name].append(float(elapsed))
            results.append({"n_tasks": n_tasks, "bytes": byte_counts, "times_ms": times, **sizes})
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _rows(results: list[dict[str, Any]], config: StepConfig) -> list[Row]:
    rows = []
    for entry in results:
        n_tasks = entry["n_tasks"]
        sizes = "-".join(map(str, config.sizes))
        group = (
            f"T={n_tasks}: trunk MLP {sizes} + {n_tasks} linear heads, 2 gloo ranks × batch "
            f"{config.batch // WORLD}, float32, one SGD step"
        )
        base = statistics.median(entry["times_ms"][BASELINE])
        for name in METHODS:
            values = sorted(entry["times_ms"][name])
            q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
            median = statistics.median(values)
            rows.append(Row(group, name, BASELINE, median, q3 - q1, median / base, 0, values))
    return rows


def _byte_table(results: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    lines = [
        "## Bytes all-reduced per step and rank (payload handed to all_reduce)",
        "",
        "| T | shared params | head params | " + " | ".join(METHODS) + " |",
        "|---:|---:|---:|" + "---:|" * len(METHODS),
    ]
    table = []
    for entry in results:
        base = entry["bytes"][BASELINE]
        cells = [
            f"{entry['bytes'][m] / 2**20:.2f} MiB ({entry['bytes'][m] / base:.2f}×)"
            for m in METHODS
        ]
        lines.append(
            f"| {entry['n_tasks']} | {entry['shared_parameters']:,} | "
            f"{entry['task_parameters']:,} | " + " | ".join(cells) + " |"
        )
        table.append(
            {
                "n_tasks": entry["n_tasks"],
                "bytes": entry["bytes"],
                "ratio_to_plain_ddp": {m: entry["bytes"][m] / base for m in METHODS},
                "shared_parameters": entry["shared_parameters"],
                "task_parameters": entry["task_parameters"],
            }
        )
    return lines, table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    defaults = Settings(rounds=5)
    add_common_args(parser, defaults)
    parser.add_argument("--tasks", help="comma-separated T values (default 2,4,10)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 10)")
    args = parser.parse_args(argv)
    if args.device != "cpu":
        parser.error("this benchmark runs gloo ranks on the CPU only")
    if args.threads is None:
        args.threads = 1
    settings = settings_from_args(args, defaults)
    tasks = parse_ints(args.tasks, TASKS)
    n_steps = args.steps if args.steps is not None else (2 if settings.quick else 10)
    config = QUICK_CONFIG if settings.quick else CONFIG
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "results.pt")
        mp.spawn(
            _worker,
            args=(os.path.join(tmp, "store"), settings, tasks, n_steps, out),
            nprocs=WORLD,
            join=True,
        )
        results = torch.load(out)
    rows = _rows(results, config)
    byte_lines, byte_table = _byte_table(results)
    notes = [
        *byte_lines,
        "",
        f"Time: {n_steps} steps per round and method, the slower rank's time per step; memory "
        "not measured (0). `rank-local` is the unsynchronised (wrong) update: its difference to "
        "`mgda (sync)` is the communication time.",
    ]
    json_path, md_path = write_results(
        NAME,
        rows,
        settings,
        extra={"world_size": WORLD, "steps_per_round": n_steps, "bytes": byte_table},
        notes=notes,
    )
    print("\n".join(byte_lines))
    for row in rows:
        print(f"{row.group} | {row.method}: {row.median_ms:.2f} ms ({row.ratio:.2f}×)")
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
