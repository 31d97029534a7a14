"""Progress bars (tqdm), silenced with ``KEXUE_PROGRESS=0`` or ``disable=True``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["progress", "progress_enabled"]

T = TypeVar("T")


def progress_enabled() -> bool:
    """False when the environment variable ``KEXUE_PROGRESS`` is ``0``/``false``/``no``."""
    return os.environ.get("KEXUE_PROGRESS", "1").strip().lower() not in {"0", "false", "no", "off"}


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    disable: bool | None = None,
    **kwargs: Any,
) -> Any:
    """A ``tqdm`` bar over ``iterable`` (or a manual bar when ``iterable`` is None)."""
    if disable is None:
        disable = not progress_enabled()
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)
