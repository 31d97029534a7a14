"""A small timing harness shared by the kexue benchmarks.

Each benchmark supplies groups of zero-argument callables (one full training step each, on fixed
inputs) and a baseline per group. Every callable is warmed up, its memory is measured once, and
then ``rounds`` interleaved rounds run: in each round every callable of the group is timed with
``torch.utils.benchmark.Timer.blocked_autorange`` (start rotated per round, so slow drift of the
machine hits all methods alike). Per method: median over rounds of the per-round medians, the
inter-quartile range over rounds, and the ratio to the group's baseline.

Memory: on CUDA the peak of ``torch.cuda.max_memory_allocated`` during one call; on CPU the bytes
of the distinct tensors (activations and weights) saved for backward during one call
(``saved_tensors_hooks``) — a proxy that excludes gradients, optimiser state and transient buffers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils import benchmark

__all__ = [
    "Row",
    "Settings",
    "Step",
    "add_common_args",
    "measure",
    "settings_from_args",
    "write_results",
]

Step = Callable[[], object]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Options common to every benchmark (see :func:`add_common_args`)."""

    device: str = "cpu"
    rounds: int = 5
    min_run_time: float = 0.5
    quick: bool = False
    out: Path = Path(__file__).resolve().parent / "results"
    threads: int | None = None

    @property
    def memory_measure(self) -> str:
        if self.device.startswith("cuda"):
            return "peak torch.cuda.max_memory_allocated during one step (bytes)"
        return "distinct tensors saved for backward in one step (saved_tensors_hooks; bytes)"


@dataclasses.dataclass
class Row:
    """One method's result within a group."""

    group: str
    method: str
    baseline: str
    median_ms: float
    iqr_ms: float
    ratio: float
    memory_bytes: int
    rounds_ms: list[float]


def add_common_args(parser: argparse.ArgumentParser, defaults: Settings) -> None:
    """Add ``--device --rounds --min-run-time --quick --out --threads`` to ``parser``."""
    add = parser.add_argument
    add("--device", default=defaults.device, help="cpu or cuda")
    add("--rounds", type=int, default=None, help=f"default {defaults.rounds}")
    add("--min-run-time", type=float, help=f"seconds, default {defaults.min_run_time}")
    add("--quick", action="store_true", help="tiny sizes, 2 rounds (smoke test)")
    add("--out", type=Path, default=defaults.out, help="results directory")
    add("--threads", type=int, default=None, help="torch.set_num_threads (default: unchanged)")


def settings_from_args(args: argparse.Namespace, defaults: Settings) -> Settings:
    """Settings from parsed arguments; ``--quick`` means 2 rounds of 0.01 s unless overridden."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    quick_rounds, quick_time = (2, 0.01) if args.quick else (defaults.rounds, defaults.min_run_time)
    return Settings(
        device=args.device,
        rounds=args.rounds if args.rounds is not None else quick_rounds,
        min_run_time=args.min_run_time if args.min_run_time is not None else quick_time,
        quick=args.quick,
        out=args.out,
        threads=torch.get_num_threads(),
    )


def _memory_bytes(step: Step, device: str) -> int:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return int(torch.cuda.max_memory_allocated())
    seen: dict[tuple[int, int], torch.Tensor] = {}  # keeps tensors alive: no address reuse

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        seen.setdefault((tensor.data_ptr(), tensor.numel() * tensor.element_size()), tensor)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step()
    total = sum(size for _, size in seen)
    seen.clear()
    return total


def measure(
    group: str,
    steps: Mapping[str, Step],
    baseline: str,
    settings: Settings,
    warmup: int = 2,
    *,
    measure_memory: bool = True,
) -> list[Row]:
    """Time every step of one group against ``steps[baseline]`` (module docstring).

    Each step runs ``warmup`` times, then once under the memory measure (skipped, memory 0, with
    ``measure_memory=False``: the CPU proxy's ``saved_tensors_hooks`` are refused inside
    ``torch.func`` transforms), then ``settings.rounds`` interleaved timed rounds (``Timer``
    synchronises accelerators itself).
    """
    if baseline not in steps:
        raise ValueError(f"baseline {baseline!r} is not one of {sorted(steps)}")
    names = list(steps)
    memory: dict[str, int] = {}
    for name in names:
        for _ in range(warmup):
            steps[name]()
        memory[name] = _memory_bytes(steps[name], settings.device) if measure_memory else 0
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(settings.rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            threads = torch.get_num_threads()
            timer = benchmark.Timer("step()", globals={"step": steps[name]}, num_threads=threads)
            measurement = timer.blocked_autorange(min_run_time=settings.min_run_time)
            times[name].append(measurement.median * 1e3)
    rows = []
    for name in names:
        values = sorted(times[name])
        q1, _, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        median = statistics.median(values)
        ratio = median / statistics.median(times[baseline])
        rows.append(Row(group, name, baseline, median, q3 - q1, ratio, memory[name], values))
    return rows


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        handle.write(text)
    os.replace(handle.name, path)


def _markdown(name: str, rows: Sequence[Row], settings: Settings, notes: Sequence[str]) -> str:
    lines = [
        f"# Benchmark `{name}`",
        "",
        f"torch {torch.__version__}, device {settings.device}, {settings.threads} threads, "
        f"{settings.rounds} interleaved rounds, blocked_autorange(min_run_time="
        f"{settings.min_run_time}); time = median over rounds of per-round medians.",
        "",
        f"Memory: {settings.memory_measure}.",
        "",
        "| group | method | median ms | IQR ms | × baseline | memory MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.group} | {r.method} | {r.median_ms:.2f} | {r.iqr_ms:.2f} | {r.ratio:.2f}× "
        f"{r.baseline} | {r.memory_bytes / 2**20:.1f} |"
        for r in rows
    ]
    return "\n".join([*lines, "", *notes, ""])


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor(),
    )


_STARTED = time.monotonic()


def _provenance() -> dict[str, Any]:
    """The commit (and whether the work tree differed from it), the command line and the
    process's wall time so far: what a stored result needs to be reproduced."""
    root = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None

    # the code's state: tracked files other than the stored results themselves
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                 ":(exclude)benchmarks/results")  # fmt: skip
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": None if status is None else bool(status),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "seconds": round(time.monotonic() - _STARTED, 1),
    }


def write_results(
    name: str,
    rows: Sequence[Row],
    settings: Settings,
    extra: Mapping[str, Any] | None = None,
    notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``<out>/<name>.json`` and ``<out>/<name>.md`` atomically; return both paths."""
    cuda = settings.device.startswith("cuda")
    payload = {
        "name": name,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **_provenance(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": torch.cuda.get_device_name() if cuda else _cpu_name(),
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "settings": {**dataclasses.asdict(settings), "out": str(settings.out)},
        "memory_measure": settings.memory_measure,
        "rows": [dataclasses.asdict(row) for row in rows],
        **(extra or {}),
    }
    json_path, md_path = settings.out / f"{name}.json", settings.out / f"{name}.md"
    _atomic_write(json_path, json.dumps(payload, indent=2) + "\n")
    _atomic_write(md_path, _markdown(name, rows, settings, notes))
    return json_path, md_path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth_bytes(call: Callable[[], object]) -> int:
    """Peak resident-memory growth of ``call()`` in this process (run it in a fresh interpreter):
    the kernel's high-water mark VmHWM is reset through /proc/self/clear_refs, then read after
    the call, minus the resident size before it. Without /proc, the growth of ``ru_maxrss`` (a
    lower bound). Bytes, never negative."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_kib("VmRSS")
        call()
        growth = _status_kib("VmHWM") - before
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        call()
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    return max(0, growth) * 1024  # KiB on Linux
