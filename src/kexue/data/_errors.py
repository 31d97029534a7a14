"""Errors raised by ``kexue.data``."""

from __future__ import annotations

__all__ = ["DatasetUnavailableError"]


class DatasetUnavailableError(RuntimeError):
    """A dataset's source is not installed; the message names the exact command that installs it."""
