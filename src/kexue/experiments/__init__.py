"""Reproduction experiments: one module per post; each composes the library and registers itself.

:func:`load_all` imports every experiment module so that the registry in :mod:`kexue.report` is
complete. Library packages never import this package.
"""

from __future__ import annotations

import importlib

__all__ = ["EXPERIMENT_MODULES", "load_all"]

#: Modules that register experiments, in report order.
EXPERIMENT_MODULES: tuple[str, ...] = (
    "kexue.experiments.data_overview",
    "kexue.experiments.lipschitz",
    "kexue.experiments.density",
    "kexue.experiments.penalties",
    "kexue.experiments.retrieval",
    "kexue.experiments.kbqa",
    "kexue.experiments.mtl",
    "kexue.experiments.primary_aux",
    "kexue.experiments.perturb_max",
    "kexue.experiments.hubness",
)


def load_all() -> None:
    """Import every experiment module (idempotent)."""
    for module in EXPERIMENT_MODULES:
        importlib.import_module(module)
