"""What an experiment gets to work with: settings, a place for files, and recorders for results."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..utils import atomic_open, atomic_write_json, progress, read_json
from ._model import Check, Claim, Figure, Table

if TYPE_CHECKING:
    from matplotlib.figure import Figure as MatplotlibFigure

__all__ = ["ExperimentContext"]

T = TypeVar("T")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass
class ExperimentContext:
    """Passed to every experiment's ``run`` function.

    Attributes:
        name: the experiment's name.
        directory: ``<out>/<name>/``; figures, ``result.json`` and checkpoints live here.
        quick: ``True`` for ``--quick`` (CI-sized), ``False`` for ``--full``.
        device: the resolved torch device.
        num_seeds: the ``--seeds`` value, or ``None`` to let the experiment choose.
    """

    name: str
    directory: Path
    quick: bool = True
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    num_seeds: int | None = None
    summary: str = ""
    claims: list[Claim] = dataclasses.field(default_factory=list)
    tables: list[Table] = dataclasses.field(default_factory=list)
    figures: list[Figure] = dataclasses.field(default_factory=list)
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    # ----------------------------------------------------------------- settings

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    def seeds(self, default: int) -> list[int]:
        """Seeds ``0..n-1`` where ``n`` is ``--seeds`` if given, else ``default``."""
        count = self.num_seeds if self.num_seeds is not None else default
        if count < 1:
            raise ValueError(f"need at least one seed, got {count}")
        return list(range(count))

    def progress(self, iterable: Any = None, **kwargs: Any) -> Any:
        """A progress bar labelled with the experiment name."""
        kwargs.setdefault("desc", self.name)
        kwargs.setdefault("leave", False)
        return progress(iterable, **kwargs)

    # ----------------------------------------------------------------- recording

    def add_claim(
        self,
        claim_id: str,
        statement: str,
        checks: Sequence[Check],
        *,
        source: str = "",
        note: str = "",
    ) -> Claim:
        """Record a claim; its verdict is computed from ``checks``."""
        claim = Claim(claim_id, statement, tuple(checks), source=source, note=note)
        self.claims.append(claim)
        return claim

    def add_table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        caption: str = "",
    ) -> Table:
        table = Table(title, tuple(columns), tuple(tuple(row) for row in rows), caption)
        self.tables.append(table)
        return table

    def save_figure(
        self, figure: MatplotlibFigure, filename: str, *, title: str, caption: str = ""
    ) -> Figure:
        """Save a matplotlib figure as PNG (atomically) in the experiment directory and record
        it."""
        if not filename.endswith(".png"):
            filename += ".png"
        if not _FILENAME.match(filename):
            raise ValueError(f"figure filename {filename!r} must be a plain file name")
        with atomic_open(self.directory / filename, "wb") as handle:
            figure.savefig(handle, format="png", dpi=110, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(figure)
        record = Figure(title, filename, caption)
        self.figures.append(record)
        return record

    # ----------------------------------------------------------------- resumability

    @property
    def checkpoint_dir(self) -> Path:
        """A directory kept across runs for checkpoints of long training loops."""
        path = self.directory / "checkpoints"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def _partial_path(self) -> Path:
        return self.directory / f"partial-{self.mode}.json"

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        """Return the stored value for ``key`` or compute, store (atomically) and return it.

        Use it for each finished unit of work (a seed, a method): a killed run resumes without
        recomputing them. Values must be JSON-serialisable. The store is per mode (quick/full)
        and is
        deleted with ``--force``.
        """
        store: dict[str, Any] = (
            read_json(self._partial_path) if self._partial_path.is_file() else {}
        )
        if key in store:
            return store[key]  # type: ignore[no-any-return]
        value = compute()
        store[key] = value
        atomic_write_json(self._partial_path, store)
        return value

    def clear_partial(self) -> None:
        self._partial_path.unlink(missing_ok=True)
