"""The result model of a reproduction: claims with computed verdicts, tables, figures, metadata.

Verdicts are never typed by hand: a :class:`Claim` is built from :class:`Check` objects, each
of which
compares a measured number with the post's statement, and the verdict follows from how many
checks pass.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "Check",
    "Claim",
    "ExperimentResult",
    "Figure",
    "Table",
    "Verdict",
    "check_at_least",
    "check_at_most",
    "check_close",
    "check_equal",
]


class Verdict(str, enum.Enum):
    """Outcome of a claim, computed from its checks."""

    REPRODUCED = "reproduced"
    PARTIALLY = "partially reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"

    @classmethod
    def from_checks(cls, checks: Sequence[Check]) -> Verdict:
        """All checks pass → reproduced; some → partially; none → not reproduced; no usable
        measurement (no checks, or a NaN measurement) → inconclusive."""
        if not checks or any(check.passed is None for check in checks):
            return cls.INCONCLUSIVE
        passed = sum(bool(check.passed) for check in checks)
        if passed == len(checks):
            return cls.REPRODUCED
        return cls.PARTIALLY if passed else cls.NOT_REPRODUCED


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


@dataclasses.dataclass(frozen=True)
class Check:
    """One numeric comparison behind a claim.

    Attributes:
        description: what is compared (e.g. "MNIST extractor test accuracy").
        measured: the measured value (number or short string).
        target: the post's statement in words (e.g. ">= 0.99").
        passed: the comparison's outcome; ``None`` when the measurement is missing or NaN.
    """

    description: str
    measured: Any
    target: str
    passed: bool | None

    def to_dict(self) -> dict[str, Any]:
        measured = self.measured
        if isinstance(measured, float) and not math.isfinite(measured):
            measured = str(measured)
        return {
            "description": self.description,
            "measured": measured,
            "target": self.target,
            "passed": self.passed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Check:
        return cls(data["description"], data["measured"], data["target"], data["passed"])


def check_at_least(description: str, measured: float, threshold: float) -> Check:
    """``measured >= threshold``."""
    passed = None if _is_missing(measured) else bool(measured >= threshold)
    return Check(description, measured, f">= {threshold:g}", passed)


def check_at_most(description: str, measured: float, threshold: float) -> Check:
    """``measured <= threshold``."""
    passed = None if _is_missing(measured) else bool(measured <= threshold)
    return Check(description, measured, f"<= {threshold:g}", passed)


def check_close(
    description: str, measured: float, target: float, *, abs_tol: float = 0.0, rel_tol: float = 0.0
) -> Check:
    """``|measured - target| <= max(abs_tol, rel_tol * |target|)``."""
    if abs_tol < 0 or rel_tol < 0 or (abs_tol == 0 and rel_tol == 0):
        raise ValueError("check_close needs a positive abs_tol or rel_tol")
    tolerance = max(abs_tol, rel_tol * abs(target))
    passed = None if _is_missing(measured) else bool(abs(measured - target) <= tolerance)
    return Check(description, measured, f"{target:g} ± {tolerance:g}", passed)


def check_equal(description: str, measured: Any, expected: Any) -> Check:
    """Exact equality (lists, ints, strings)."""
    return Check(description, measured, f"== {expected}", bool(measured == expected))


@dataclasses.dataclass(frozen=True)
class Claim:
    """A testable statement of a post (or spec) and what was measured for it."""

    claim_id: str
    statement: str
    checks: tuple[Check, ...]
    source: str = ""
    note: str = ""

    @property
    def verdict(self) -> Verdict:
        return Verdict.from_checks(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim_id": self.claim_id,
            "statement": self.statement,
            "source": self.source,
            "note": self.note,
            "checks": [check.to_dict() for check in self.checks],
            "verdict": self.verdict.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Claim:
        return cls(
            claim_id=data["claim_id"],
            statement=data["statement"],
            checks=tuple(Check.from_dict(c) for c in data["checks"]),
            source=data.get("source", ""),
            note=data.get("note", ""),
        )


@dataclasses.dataclass(frozen=True)
class Table:
    """A results table; cells are numbers or short strings."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {row!r} has {len(row)} cells, "
                    f"expected {len(self.columns)} ({self.columns})"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [[_jsonable_cell(cell) for cell in row] for row in self.rows],
            "caption": self.caption,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Table:
        return cls(
            data["title"],
            tuple(data["columns"]),
            tuple(tuple(row) for row in data["rows"]),
            data.get("caption", ""),
        )


def _jsonable_cell(cell: Any) -> Any:
    if isinstance(cell, float) and not math.isfinite(cell):
        return str(cell)
    if hasattr(cell, "item") and callable(cell.item):  # numpy / torch scalars
        return _jsonable_cell(cell.item())
    return cell


@dataclasses.dataclass(frozen=True)
class Figure:
    """A PNG figure stored next to the experiment's ``result.json``."""

    title: str
    filename: str
    caption: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Figure:
        return cls(data["title"], data["filename"], data.get("caption", ""))


@dataclasses.dataclass
class ExperimentResult:
    """Everything one experiment produced; serialised to ``<out>/<name>/result.json``."""

    name: str
    title: str
    status: str  # "ok" or "failed"
    summary: str = ""
    claims: list[Claim] = dataclasses.field(default_factory=list)
    tables: list[Table] = dataclasses.field(default_factory=list)
    figures: list[Figure] = dataclasses.field(default_factory=list)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    run_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "summary": self.summary,
            "claims": [claim.to_dict() for claim in self.claims],
            "tables": [table.to_dict() for table in self.tables],
            "figures": [figure.to_dict() for figure in self.figures],
            "metadata": self.metadata,
            "run_config": self.run_config,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentResult:
        return cls(
            name=data["name"],
            title=data["title"],
            status=data["status"],
            summary=data.get("summary", ""),
            claims=[Claim.from_dict(c) for c in data.get("claims", [])],
            tables=[Table.from_dict(t) for t in data.get("tables", [])],
            figures=[Figure.from_dict(f) for f in data.get("figures", [])],
            metadata=data.get("metadata", {}),
            run_config=data.get("run_config", {}),
            error=data.get("error", ""),
        )

    def verdict_counts(self) -> dict[str, int]:
        counts = {verdict.value: 0 for verdict in Verdict}
        for claim in self.claims:
            counts[claim.verdict.value] += 1
        return counts
