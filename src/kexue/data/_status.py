"""Which datasets are available offline, and how to get the missing ones (``kexue data check``)."""

from __future__ import annotations

import dataclasses
import importlib.util

from ._images import DATASETS, _read_cache, cache_path, locate_source

__all__ = ["DatasetStatus", "dataset_status", "format_status"]


@dataclasses.dataclass(frozen=True)
class DatasetStatus:
    """Availability of one dataset."""

    name: str
    description: str
    available: bool
    cached: bool
    source: str | None
    install_hint: str
    licence: str


def _status(name: str) -> DatasetStatus:
    info = DATASETS[name]
    if name == "digits":
        available = importlib.util.find_spec("sklearn") is not None
        return DatasetStatus(
            name, info.description, available, False,
            "scikit-learn (bundled)" if available else None, info.install_hint, info.licence,
        )  # fmt: skip
    cached = _read_cache(name) is not None
    located = locate_source(name)
    source = f"cache {cache_path(name)}" if cached else (located[1] if located else None)
    return DatasetStatus(
        name, info.description, cached or located is not None, cached, source,
        info.install_hint, info.licence,
    )  # fmt: skip


def dataset_status(names: list[str] | None = None) -> list[DatasetStatus]:
    """Status of the named datasets (default: all), without loading or converting anything."""
    selected = sorted(DATASETS) if names is None else names
    unknown = [name for name in selected if name not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; available: {', '.join(sorted(DATASETS))}")
    return [_status(name) for name in selected]


def format_status(statuses: list[DatasetStatus]) -> str:
    """A human-readable report: one block per dataset, with the install command for missing ones."""
    lines = []
    for status in statuses:
        mark = "ok     " if status.available else "MISSING"
        lines.append(f"[{mark}] {status.name:<14} {status.description}")
        if status.available:
            lines.append(f"          source: {status.source}")
        else:
            lines.append(f"          install: {status.install_hint}")
        lines.append(f"          licence: {status.licence}")
    missing = sum(not status.available for status in statuses)
    lines.append(
        f"{len(statuses) - missing}/{len(statuses)} datasets available"
        + ("" if not missing else "; install the missing ones with the commands above")
    )
    return "\n".join(lines)
