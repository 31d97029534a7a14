"""Shared types of :mod:`kexue.kbqa`: triples, QA examples, the subject/meaning split (spec 05)."""

from __future__ import annotations

import dataclasses
from typing import Literal

__all__ = ["QAExample", "SplitMode", "Triple", "split_subject"]

SplitMode = Literal["balanced", "reference"]

_OPEN, _CLOSE = "（", "）"


@dataclasses.dataclass(frozen=True)
class Triple:
    """One KB fact ``(S, P, O)`` with the subject's meaning (gloss) ``M`` split off (spec 05 §2.2).

    ``subject`` is the surface name without the gloss; ``meaning`` is ``""`` when the subject has
    none. :attr:`full_subject` is the KgCLUE form ``S（M）``.
    """

    subject: str
    predicate: str
    object: str
    meaning: str = ""

    @property
    def full_subject(self) -> str:
        return f"{self.subject}{_OPEN}{self.meaning}{_CLOSE}" if self.meaning else self.subject

    @classmethod
    def from_kgclue(
        cls, subject: str, predicate: str, obj: str, *, mode: SplitMode = "balanced"
    ) -> Triple:
        """A triple from the KgCLUE fields (``subject`` may carry ``（M）``)."""
        surface, meaning = split_subject(subject, mode=mode)
        return cls(surface, predicate, obj, meaning)


@dataclasses.dataclass(frozen=True)
class QAExample:
    """One KgCLUE question; ``answer`` is None in an unlabelled (test) file."""

    id: int | str
    question: str
    answer: Triple | None = None


def split_subject(text: str, mode: SplitMode = "balanced") -> tuple[str, str]:
    """Split ``S（M）`` into ``(S, M)`` (spec 05 §2.2, C5.4); ``(text, "")`` without a gloss.

    ``mode="balanced"`` (default) splits at the ``（`` that matches the final ``）`` (scanning
    from the end with a depth counter): ``A（B）（C）`` → ``("A（B）", "C")``. ``mode="reference"``
    is the author code's rule (the *first* ``（``): ``A（B）（C）`` → ``("A", "B）（C")``. A
    final ``）`` without a matching ``（`` leaves the text unsplit.
    """
    if not isinstance(text, str):
        raise TypeError(f"subject must be a str, got {type(text).__name__}")
    if mode not in ("balanced", "reference"):
        raise ValueError(f"mode must be 'balanced' or 'reference', got {mode!r}")
    if not text.endswith(_CLOSE):
        return text, ""
    if mode == "reference":
        start = text.find(_OPEN)
        if start < 0:
            return text, ""
        return text[:start], text[start + 1 : -1]
    depth = 0
    for index in range(len(text) - 1, -1, -1):
        character = text[index]
        if character == _CLOSE:
            depth += 1
        elif character == _OPEN:
            depth -= 1
            if depth == 0:
                return text[:index], text[index + 1 : -1]
    return text, ""
