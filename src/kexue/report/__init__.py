"""Reproduction report: experiment registry, result store, HTML rendering (``kexue reproduce``).

An experiment is a function ``run(ctx)`` registered with :func:`register_experiment`; it records
claims (verdicts computed from :class:`Check` comparisons), tables and figures on its
:class:`ExperimentContext`. :func:`run_experiments` stores each result as it finishes and renders
``index.html``.
"""

from __future__ import annotations

from ._context import ExperimentContext
from ._model import (
    Check,
    Claim,
    ExperimentResult,
    Figure,
    Table,
    Verdict,
    check_at_least,
    check_at_most,
    check_close,
    check_equal,
)
from ._registry import (
    Experiment,
    get_experiment,
    list_experiments,
    register_experiment,
    unregister_experiment,
)
from ._render import format_cell, render_report
from ._runner import DEFAULT_OUT, environment_metadata, run_experiments
from ._store import ResultStore

__all__ = [
    "DEFAULT_OUT",
    "Check",
    "Claim",
    "Experiment",
    "ExperimentContext",
    "ExperimentResult",
    "Figure",
    "ResultStore",
    "Table",
    "Verdict",
    "check_at_least",
    "check_at_most",
    "check_close",
    "check_equal",
    "environment_metadata",
    "format_cell",
    "get_experiment",
    "list_experiments",
    "register_experiment",
    "render_report",
    "run_experiments",
    "unregister_experiment",
]
