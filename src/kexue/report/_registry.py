"""Experiment registry: experiments register themselves by name with :func:`register_experiment`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._context import ExperimentContext

__all__ = ["Experiment", "get_experiment", "list_experiments", "register_experiment"]

ExperimentFunction = Callable[["ExperimentContext"], None]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A registered reproduction.

    Attributes:
        name: identifier used on the command line (lower case, digits, dashes).
        title: section heading in the report.
        run: the function; it receives an :class:`ExperimentContext` and records claims, tables and
            figures on it.
        post: the kexue.fm archive id of the post (e.g. "8757"), or "" for infrastructure.
        spec: the spec file number(s) (e.g. "01").
        description: one paragraph: what is reproduced and how.
        quick_minutes: expected wall time of ``--quick`` on 2 CPU cores (for the 15-minute budget).
        order: position in the report (lower first).
    """

    name: str
    title: str
    run: ExperimentFunction
    post: str = ""
    spec: str = ""
    description: str = ""
    quick_minutes: float = 1.0
    order: int = 100

    @property
    def post_url(self) -> str:
        return f"https://kexue.fm/archives/{self.post}" if self.post else ""


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(
    name: str,
    *,
    title: str,
    post: str = "",
    spec: str = "",
    description: str = "",
    quick_minutes: float = 1.0,
    order: int = 100,
) -> Callable[[ExperimentFunction], ExperimentFunction]:
    """Decorator registering ``run(ctx)`` as experiment ``name``.

    Registering the same name twice with a different function raises ``ValueError``.
    """
    if not _NAME.match(name):
        raise ValueError(f"experiment name {name!r} must match {_NAME.pattern}")

    def decorator(function: ExperimentFunction) -> ExperimentFunction:
        experiment = Experiment(
            name=name,
            title=title,
            run=function,
            post=post,
            spec=spec,
            description=description,
            quick_minutes=quick_minutes,
            order=order,
        )
        existing = _REGISTRY.get(name)
        if existing is not None and existing.run.__qualname__ != function.__qualname__:
            raise ValueError(f"experiment {name!r} is already registered by {existing.run!r}")
        _REGISTRY[name] = experiment
        return function

    return decorator


def unregister_experiment(name: str) -> None:
    """Remove ``name`` from the registry (tests use this to clean up)."""
    _REGISTRY.pop(name, None)


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; unknown names raise ``ValueError`` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(experiment.name for experiment in list_experiments()) or "(none)"
        raise ValueError(f"unknown experiment {name!r}; registered experiments: {known}") from None


def list_experiments() -> list[Experiment]:
    """All registered experiments in report order."""
    return sorted(_REGISTRY.values(), key=lambda experiment: (experiment.order, experiment.name))
