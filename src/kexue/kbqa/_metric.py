"""The official KgCLUE metric: EM and LCS-F1 on S, P, O and "All"; score = mean of EM_O and F1_O.

Spec 05 §1.3 (``baselines/evaluate_f1_em.py`` of the KgCLUE repository), claims C5.1–C5.3:

* every string is normalised as ``" ".join(text.lower().split())``;
* EM is equality of the normalised strings;
* F1 is ``2·LCS(a, b) / (|a| + |b|)`` over characters (LCS = longest common *subsequence*), and
  **0 when both strings are empty** (so EM = 1 > F1 = 0 there — the only case with F1 < EM);
* S is the full subject ``S（M）`` as written in the answer, "All" compares the tuple (EM) and the
  concatenation ``S + P + O`` of the normalised parts (F1);
* the leaderboard score is ``0.5·EM_O + 0.5·F1_O``; every mean is reported in percent.

The LCS is a pure-Python dynamic programme (KgCLUE answers are short); it equals ``pylcs.lcs``.
A prediction of ``None`` (no answer) is scored as the empty answer ``("", "", "")``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Sequence
from typing import Any

from ._kgclue import ANSWER_SEPARATOR
from ._types import Triple

__all__ = [
    "evaluate",
    "evaluate_files",
    "evaluate_per_example",
    "exact_match",
    "lcs_f1",
    "lcs_length",
    "normalize",
]

_PARTS = ("S", "P", "O", "All")


def normalize(text: str) -> str:
    """The official normalisation: lower-case and collapse runs of whitespace (spec 05 §1.3)."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    return " ".join(text.lower().split())


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence of ``a`` and ``b`` (characters, as given)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    previous = [0] * (len(b) + 1)
    for char_a in a:
        current = [0]
        for j, char_b in enumerate(b):
            if char_a == char_b:
                current.append(previous[j] + 1)
            else:
                current.append(max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def exact_match(prediction: str, gold: str) -> float:
    """1.0 if the normalised strings are equal, else 0.0 (both empty → 1.0)."""
    return float(normalize(prediction) == normalize(gold))


def lcs_f1(prediction: str, gold: str) -> float:
    """Character LCS-F1 of the normalised strings; 0.0 when both are empty (spec 05 §1.3, C5.1).

    Examples: ``lcs_f1("主讲课程", "主要成就") == 0.25``,
    ``lcs_f1("《固体物理》", "固体物理") == 0.8``.
    """
    return _f1(normalize(prediction), normalize(gold))


def _f1(a: str, b: str) -> float:
    if not a and not b:
        return 0.0
    return 2.0 * lcs_length(a, b) / (len(a) + len(b))


def _parts(answer: Triple | None) -> tuple[str, str, str]:
    if answer is None:
        return "", "", ""
    if not isinstance(answer, Triple):
        raise TypeError(
            f"predictions and golds must be Triple or None, got {type(answer).__name__}"
        )
    return answer.full_subject, answer.predicate, answer.object


def _score(prediction: tuple[str, str, str], gold: tuple[str, str, str]) -> dict[str, float]:
    ps, pp, po = (normalize(text) for text in prediction)
    gs, gp, go = (normalize(text) for text in gold)
    row = {
        "EM_S": float(ps == gs),
        "F1_S": _f1(ps, gs),
        "EM_P": float(pp == gp),
        "F1_P": _f1(pp, gp),
        "EM_O": float(po == go),
        "F1_O": _f1(po, go),
        "EM_All": float((ps, pp, po) == (gs, gp, go)),
        "F1_All": _f1(ps + pp + po, gs + gp + go),
    }
    row["score"] = 0.5 * row["EM_O"] + 0.5 * row["F1_O"]
    return row


def evaluate_per_example(
    predictions: Sequence[Triple | None], golds: Sequence[Triple]
) -> list[dict[str, float]]:
    """Per-example scores: keys ``EM_S, F1_S, EM_P, F1_P, EM_O, F1_O, EM_All, F1_All, score``
    (fractions in [0, 1]; ``score = (EM_O + F1_O) / 2``)."""
    if len(predictions) != len(golds):
        raise ValueError(
            f"got {len(predictions)} predictions for {len(golds)} gold answers; "
            "pass one prediction (or None) per gold example, in the same order"
        )
    rows: list[dict[str, float]] = []
    for prediction, gold in zip(predictions, golds, strict=True):
        if gold is None:
            raise ValueError("a gold answer is None; evaluate only labelled examples")
        rows.append(_score(_parts(prediction), _parts(gold)))
    return rows


def _aggregate(rows: Sequence[dict[str, float]]) -> dict[str, Any]:
    n = len(rows)

    def mean(key: str) -> float:
        return 100.0 * sum(row[key] for row in rows) / n if n else 0.0

    result: dict[str, Any] = {
        part: {"EM": mean(f"EM_{part}"), "F1": mean(f"F1_{part}")} for part in _PARTS
    }
    result["score"] = 0.5 * result["O"]["EM"] + 0.5 * result["O"]["F1"]
    result["n"] = n
    return result


def evaluate(
    predictions: Sequence[Triple | None],
    golds: Sequence[Triple],
    *,
    accepted_objects: Sequence[Collection[str]] | None = None,
) -> dict[str, Any]:
    """The official KgCLUE metric over a split (spec 05 §1.3, C5.2), in percent.

    Returns ``{"S": {"EM", "F1"}, "P": ..., "O": ..., "All": ..., "score": (EM_O + F1_O) / 2,
    "n": number of examples}``. With ``accepted_objects`` (one collection of strings per example,
    e.g. every object the KB stores under the gold key, spec 05 §8.2.3) an extra entry ``"O_any"``
    gives EM/F1 of the object against the best-matching accepted string (never lower than "O").
    An empty split gives zeros.
    """
    rows = evaluate_per_example(predictions, golds)
    n = len(rows)
    result = _aggregate(rows)
    if accepted_objects is not None:
        if len(accepted_objects) != n:
            raise ValueError(
                f"accepted_objects has {len(accepted_objects)} entries for {n} examples"
            )
        em_any = f1_any = 0.0
        for prediction, gold, accepted in zip(predictions, golds, accepted_objects, strict=True):
            predicted = normalize(_parts(prediction)[2])
            candidates = {normalize(gold.object), *(normalize(text) for text in accepted)}
            em_any += float(predicted in candidates)
            f1_any += max(_f1(predicted, candidate) for candidate in candidates)
        result["O_any"] = {
            "EM": 100.0 * em_any / n if n else 0.0,
            "F1": 100.0 * f1_any / n if n else 0.0,
        }
    return result


def evaluate_files(
    prediction_path: str | os.PathLike[str], gold_path: str | os.PathLike[str]
) -> dict[str, Any]:
    """:func:`evaluate` on two KgCLUE JSON-lines files matched line by line, on the raw answer
    strings exactly as the official script reads them (every line needs ``"S ||| P ||| O"``)."""

    def answers(path: str | os.PathLike[str]) -> list[tuple[str, str, str]]:
        rows: list[tuple[str, str, str]] = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if not isinstance(record, dict) or "answer" not in record:
                    raise ValueError(f"{path}:{number}: no 'answer' field to evaluate")
                parts = str(record["answer"]).split(ANSWER_SEPARATOR)
                if len(parts) != 3:
                    raise ValueError(f"{path}:{number}: answer must be 'S ||| P ||| O'")
                rows.append((parts[0], parts[1], parts[2]))
        return rows

    predictions, golds = answers(prediction_path), answers(gold_path)
    if len(predictions) != len(golds):
        raise ValueError(
            f"{prediction_path} has {len(predictions)} answers, {gold_path} has {len(golds)}"
        )
    return _aggregate([_score(p, g) for p, g in zip(predictions, golds, strict=True)])
