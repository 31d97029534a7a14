"""Run registered experiments, store each result as soon as it exists, and render the report."""

from __future__ import annotations

import datetime
import logging
import platform
import shutil
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..utils import progress, progress_enabled, resolve_device
from ._context import ExperimentContext
from ._model import ExperimentResult
from ._registry import Experiment, get_experiment, list_experiments
from ._render import render_report
from ._store import ResultStore

__all__ = ["DEFAULT_OUT", "environment_metadata", "run_experiments"]

DEFAULT_OUT = Path("reports/latest")
logger = logging.getLogger(__name__)


def environment_metadata() -> dict[str, Any]:
    """Machine and library versions, recorded with every result."""
    import numpy

    from .. import __version__

    return {
        "kexue": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _run_one(
    experiment: Experiment,
    store: ResultStore,
    *,
    quick: bool,
    device: torch.device,
    num_seeds: int | None,
    run_config: dict[str, Any],
) -> ExperimentResult:
    context = ExperimentContext(
        name=experiment.name,
        directory=store.directory(experiment.name),
        quick=quick,
        device=device,
        num_seeds=num_seeds,
    )
    started = time.perf_counter()
    status, error = "ok", ""
    try:
        experiment.run(context)
    except Exception:  # one failing experiment must not lose the others
        status, error = "failed", traceback.format_exc()
        logger.error("experiment %s failed:\n%s", experiment.name, error)
    elapsed = time.perf_counter() - started
    metadata = {
        **context.metadata,
        "environment": environment_metadata(),
        "seconds": round(elapsed, 2),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return ExperimentResult(
        name=experiment.name,
        title=experiment.title,
        status=status,
        summary=context.summary,
        claims=context.claims,
        tables=context.tables,
        figures=context.figures,
        metadata=metadata,
        run_config=run_config,
        error=error,
    )


def run_experiments(
    names: Sequence[str] | None = None,
    *,
    out: str | Path = DEFAULT_OUT,
    quick: bool = True,
    device: str | torch.device = "auto",
    num_seeds: int | None = None,
    force: bool = False,
    echo: bool = True,
) -> list[ExperimentResult]:
    """Run experiments (default: all registered) and write ``<out>/index.html``.

    Finished experiments with the same settings are skipped unless ``force``; each result is saved
    the moment its experiment ends and the report is re-rendered after every experiment, so a killed
    run keeps what it finished.
    """
    experiments = list_experiments() if not names else [get_experiment(name) for name in names]
    if not experiments:
        raise ValueError("no experiments are registered")
    if num_seeds is not None and num_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {num_seeds}")
    resolved = resolve_device(device)
    store = ResultStore(out)
    run_config = {"mode": "quick" if quick else "full", "seeds": num_seeds, "device": resolved.type}
    results: list[ExperimentResult] = []
    bar = progress(
        total=len(experiments),
        desc="kexue reproduce",
        unit="experiment",
        disable=not (echo and progress_enabled()),
    )

    def say(message: str) -> None:
        if echo:
            bar.write(message)  # printed above the bar (also when the bar is disabled)

    for experiment in experiments:
        bar.set_postfix_str(experiment.name)
        if not force and store.is_done(experiment.name, run_config):
            say(f"[skip] {experiment.name}: finished result exists (use --force to re-run)")
            stored = store.load(experiment.name)
            assert stored is not None
            results.append(stored)
            bar.update(1)
            continue
        if force:
            shutil.rmtree(store.directory(experiment.name), ignore_errors=True)
        say(
            f"[run ] {experiment.name} ({run_config['mode']}, ~{experiment.quick_minutes:g} "
            "min quick) ..."
        )
        result = _run_one(
            experiment,
            store,
            quick=quick,
            device=resolved,
            num_seeds=num_seeds,
            run_config=run_config,
        )
        store.save(result)
        results.append(result)
        counts = ", ".join(f"{v} {k}" for k, v in result.verdict_counts().items() if v)
        status = "done" if result.status == "ok" else "FAIL"
        say(
            f"[{status}] {experiment.name} in {result.metadata['seconds']:.1f}s; "
            f"claims: {counts or 'none'}"
        )
        bar.update(1)
        render_report(out)
    bar.close()
    index = render_report(out)
    if echo:
        print(f"report: {index}")
    return results
