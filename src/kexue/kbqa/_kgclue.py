"""KgCLUE file formats: ``Knowledge.txt`` triples and the JSON-lines QA files (spec 05 §1.1–1.2).

* Knowledge: one triple per line, ``S（M）\\tP\\tO``; the subject's gloss M is split off with
  :func:`~kexue.kbqa.split_subject` (spec 05 §2.2). Leading ``#`` lines without a tab form a header
  (kexue's own files carry the GeoNames CC BY 4.0 attribution there, spec 05 §8.4); the real
  ``Knowledge.txt`` has none.
* QA: ``{"id": 0, "question": "...", "answer": "S（M） ||| P ||| O"}`` per line; the separator is
  exactly ``" ||| "``; the hidden test file has no ``answer``.

The answer string round-trips (C5.10): ``parse_answer(format_answer(t)) == t`` for every triple
whose surface does not itself end in a gloss-like ``（…）``; writers refuse such subjects instead of
producing a file that reads back differently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator

from ..utils import atomic_open
from ._types import QAExample, SplitMode, Triple, split_subject

__all__ = [
    "ANSWER_SEPARATOR",
    "format_answer",
    "iter_knowledge",
    "parse_answer",
    "read_kgclue",
    "read_knowledge",
    "write_kgclue",
    "write_knowledge",
]

ANSWER_SEPARATOR = " ||| "


def parse_answer(text: str, *, mode: SplitMode = "balanced") -> Triple:
    """``"S（M） ||| P ||| O"`` → :class:`Triple` (spec 05 §1.2, C5.10)."""
    if not isinstance(text, str):
        raise TypeError(f"answer must be a str, got {type(text).__name__}")
    parts = text.split(ANSWER_SEPARATOR)
    if len(parts) != 3:
        raise ValueError(
            f"answer must have the form 'S ||| P ||| O' (separator {ANSWER_SEPARATOR!r}), "
            f"got {text!r}"
        )
    return Triple.from_kgclue(parts[0], parts[1], parts[2], mode=mode)


def format_answer(triple: Triple) -> str:
    """:class:`Triple` → ``"S（M） ||| P ||| O"`` (the submission format, spec 05 §2.6 step 5)."""
    _check_writable(triple, where="answer")
    return ANSWER_SEPARATOR.join((triple.full_subject, triple.predicate, triple.object))


def _check_writable(triple: Triple, *, where: str) -> None:
    if not isinstance(triple, Triple):
        raise TypeError(f"expected a Triple, got {type(triple).__name__}")
    for name in ("subject", "predicate", "meaning"):
        value = getattr(triple, name)
        if any(char in value for char in "\t\r\n"):
            raise ValueError(
                f"{name} {value!r} contains a tab or line break; {where}s cannot hold it"
            )
    if any(char in triple.object for char in "\r\n"):
        raise ValueError(f"object {triple.object!r} contains a line break")
    if ANSWER_SEPARATOR in triple.full_subject or ANSWER_SEPARATOR in triple.predicate:
        raise ValueError(f"subject/predicate must not contain {ANSWER_SEPARATOR!r}")
    if (triple.meaning or triple.subject.endswith("）")) and split_subject(triple.full_subject) != (
        triple.subject,
        triple.meaning,
    ):
        raise ValueError(
            f"subject {triple.full_subject!r} would read back as "
            f"{split_subject(triple.full_subject)!r}, not {(triple.subject, triple.meaning)!r}: "
            "a surface ending in '（…）' needs an explicit meaning, or rename it"
        )


def iter_knowledge(
    path: str | os.PathLike[str], *, mode: SplitMode = "balanced", strict: bool = True
) -> Iterator[Triple]:
    """Stream the triples of a KgCLUE ``Knowledge.txt``-style file (``S（M）\\tP\\tO`` per line).

    Leading lines that start with ``#`` and hold no tab (a header) and blank lines are
    skipped; a subject that starts with ``#`` is still read (its line has tabs). The object is
    everything after the second tab. A line with fewer than three fields raises ``ValueError``
    (``strict=False`` skips it).
    """
    with open(path, encoding="utf-8") as handle:
        in_header = True
        for number, raw in enumerate(handle, 1):
            line = raw.rstrip("\r\n")
            if in_header and line.startswith("#") and "\t" not in line:
                continue  # header comment (a data line always has tabs)
            in_header = False
            if not line.strip():
                continue
            fields = line.split("\t", 2)
            if len(fields) != 3:
                if strict:
                    raise ValueError(
                        f"{path}:{number}: expected 'S\\tP\\tO', got {len(fields)} field(s): "
                        f"{line[:80]!r} (pass strict=False to skip such lines)"
                    )
                continue
            yield Triple.from_kgclue(fields[0], fields[1], fields[2], mode=mode)


def read_knowledge(
    path: str | os.PathLike[str], *, mode: SplitMode = "balanced", strict: bool = True
) -> list[Triple]:
    """All triples of a knowledge file, in file order (see :func:`iter_knowledge`)."""
    return list(iter_knowledge(path, mode=mode, strict=strict))


def write_knowledge(
    path: str | os.PathLike[str], triples: Iterable[Triple], *, header: Iterable[str] = ()
) -> int:
    """Atomically write ``S（M）\\tP\\tO`` lines; ``header`` lines are written first, prefixed by
    ``"# "``. Returns the number of triples written."""
    count = 0
    with atomic_open(path, "w") as handle:
        for line in header:
            if any(char in line for char in "\t\r\n"):
                raise ValueError("header lines must not contain tabs or line breaks")
            handle.write(f"# {line}\n")
        for triple in triples:
            _check_writable(triple, where="knowledge line")
            if "\t" in triple.object:
                raise ValueError(f"object {triple.object!r} contains a tab")
            handle.write(f"{triple.full_subject}\t{triple.predicate}\t{triple.object}\n")
            count += 1
    return count


def read_kgclue(path: str | os.PathLike[str], *, mode: SplitMode = "balanced") -> list[QAExample]:
    """Read a KgCLUE QA file (JSON lines ``{"id", "question", "answer"?}``)."""
    rows: list[QAExample] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON object: {error}") from None
            if not isinstance(record, dict) or "question" not in record:
                raise ValueError(f"{path}:{number}: expected an object with a 'question' field")
            answer = record.get("answer")
            rows.append(
                QAExample(
                    id=record.get("id", len(rows)),
                    question=str(record["question"]),
                    answer=None if answer is None else parse_answer(str(answer), mode=mode),
                )
            )
    return rows


def write_kgclue(path: str | os.PathLike[str], rows: Iterable[QAExample]) -> int:
    """Atomically write QA examples as KgCLUE JSON lines (``answer`` omitted when None); returns
    the number of lines."""
    count = 0
    with atomic_open(path, "w") as handle:
        for row in rows:
            if not isinstance(row, QAExample):
                raise TypeError(f"expected QAExample rows, got {type(row).__name__}")
            record: dict[str, object] = {"id": row.id, "question": row.question}
            if row.answer is not None:
                record["answer"] = format_answer(row.answer)
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count
