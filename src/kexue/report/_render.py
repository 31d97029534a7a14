"""Render stored results as one self-contained HTML page (``index.html``) with PNG figures
beside it."""

from __future__ import annotations

import datetime
import importlib.resources
import math
from pathlib import Path
from typing import Any

from ..utils import atomic_write_text
from ._model import ExperimentResult, Verdict
from ._registry import list_experiments
from ._store import ResultStore

__all__ = ["format_cell", "render_report"]


def format_cell(value: Any) -> str:
    """Numbers to 4 significant digits (integers exactly); everything else via ``str``."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_cell(item) for item in value) + "]"
    return str(value)


_VERDICT_CLASS = {
    Verdict.REPRODUCED.value: "ok",
    Verdict.PARTIALLY.value: "partial",
    Verdict.NOT_REPRODUCED.value: "bad",
    Verdict.INCONCLUSIVE.value: "unknown",
}


def _collect(out: Path) -> list[ExperimentResult]:
    store = ResultStore(out)
    registered = [experiment.name for experiment in list_experiments()]
    on_disk = sorted(p.parent.name for p in out.glob("*/result.json"))
    names = registered + [name for name in on_disk if name not in registered]
    return store.load_all(names)


def _template() -> Any:
    try:
        import jinja2
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "rendering the report needs jinja2: pip install 'kexue[report]'"
        ) from error
    text = (importlib.resources.files("kexue.report") / "templates" / "index.html.j2").read_text(
        encoding="utf-8"
    )
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["cell"] = format_cell
    return environment.from_string(text)


def render_report(out: str | Path, *, title: str = "kexue — reproduction report") -> Path:
    """Write ``<out>/index.html`` from every stored result; return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = _collect(out)
    experiments = {experiment.name: experiment for experiment in list_experiments()}
    totals = {verdict.value: 0 for verdict in Verdict}
    for result in results:
        for verdict, count in result.verdict_counts().items():
            totals[verdict] += count
    sections = []
    for result in results:
        experiment = experiments.get(result.name)
        sections.append(
            {
                "result": result,
                "post": experiment.post if experiment else "",
                "post_url": experiment.post_url if experiment else "",
                "spec": experiment.spec if experiment else "",
                "description": experiment.description if experiment else "",
                "figures": [
                    {"figure": f, "exists": (out / result.name / f.filename).is_file()}
                    for f in result.figures
                ],
            }
        )
    from .. import __version__

    html = _template().render(
        title=title,
        generated=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        version=__version__,
        sections=sections,
        totals=totals,
        verdict_class=_VERDICT_CLASS,
    )
    return atomic_write_text(out / "index.html", html)
