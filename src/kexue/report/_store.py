"""Stored results: ``<out>/<name>/result.json`` written atomically as soon as an experiment ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..utils import atomic_write_json, read_json
from ._model import ExperimentResult

__all__ = ["ResultStore"]


class ResultStore:
    """Reads and writes experiment results under one output directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def directory(self, name: str) -> Path:
        return self.root / name

    def result_path(self, name: str) -> Path:
        return self.directory(name) / "result.json"

    def save(self, result: ExperimentResult) -> Path:
        return atomic_write_json(self.result_path(result.name), result.to_dict())

    def load(self, name: str) -> ExperimentResult | None:
        path = self.result_path(name)
        if not path.is_file():
            return None
        try:
            return ExperimentResult.from_dict(read_json(path))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable (older format or damaged): treat as not run

    def is_done(self, name: str, run_config: dict[str, Any]) -> bool:
        """True when a successful result exists for the same run configuration."""
        result = self.load(name)
        return result is not None and result.status == "ok" and result.run_config == run_config

    def load_all(self, names: list[str]) -> list[ExperimentResult]:
        return [result for name in names if (result := self.load(name)) is not None]
