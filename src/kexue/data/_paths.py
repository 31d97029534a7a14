"""Where kexue looks for raw data and where it caches converted arrays (spec 11 §1).

* ``KEXUE_DATA`` (or ``--data-dir``): a directory the user fills with standard files, e.g. the IDX
  files of MNIST under ``$KEXUE_DATA/mnist/``. Optional.
* ``KEXUE_CACHE``: where converted ``.npz`` files go. Default ``$XDG_CACHE_HOME/kexue``
  (``~/.cache/kexue``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "data_dir", "set_data_dir"]

_data_dir_override: Path | None = None


def set_data_dir(path: str | os.PathLike[str] | None) -> None:
    """Set (``None``: clear) the user data directory for this process (the CLI's ``--data-dir``)."""
    global _data_dir_override
    if path is None:
        _data_dir_override = None
        return
    candidate = Path(path).expanduser()
    if not candidate.is_dir():
        raise ValueError(f"data directory {candidate} does not exist or is not a directory")
    _data_dir_override = candidate


def data_dir() -> Path | None:
    """The user data directory (``--data-dir`` or ``KEXUE_DATA``), or ``None`` if neither is set."""
    if _data_dir_override is not None:
        return _data_dir_override
    value = os.environ.get("KEXUE_DATA")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The cache directory for converted datasets (created on demand by writers)."""
    value = os.environ.get("KEXUE_CACHE")
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "kexue"
