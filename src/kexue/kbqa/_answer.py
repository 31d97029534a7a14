"""Answering questions with the trained Seq2Seq + the KB trie (spec 05 §2.5–2.6, spec 04 §3–4).

:class:`KBQA` holds a model, its tokenizer and the KB. The trie is built over every KB key
``S [SEP] P [SEP] M`` (or ``S [SEP] M [SEP] P``, ``order="SMP"``) in terminated mode with END =
``[SEP]`` (spec 04 §2.2: every key then holds exactly three ``[SEP]``, so the keys are prefix-free
and a key without meaning M stays reachable, unlike the reference's unterminated trie). The
stored value of a key is the index of its triple in the KB; duplicate keys (multi-valued facts,
spec 05 §2.6 step 4) keep all of them in KB order and the answer takes **the first** — unless
several *different* subjects share the key (possible only through characters outside the
tokenizer's vocabulary, mapped to shared rare buckets), in which case the first one whose subject
occurs in the question wins.

Per batch of questions: the prompts ``[CLS] Q [SEP]`` are left-padded and encoded once
(:meth:`PrefixLMSeq2Seq.prefill`), then :func:`kexue.retrieval.constrained_beam_search` (or
:func:`~kexue.retrieval.constrained_greedy` for one beam) runs over input-major rows with a step
function that feeds one token per row through the KV cache and re-orders the cache through the
engine's ``reorder`` hook. The best complete hypothesis is looked up (spec 05 §2.6); every
constrained answer is a KB triple (spec 04 §3.5, C5.6).

Options: ``num_beams`` (1 = greedy), ``beam_mode`` (``"standard"`` or the reference's
``"bert4keras"`` finishing rule with ``min_ends=3``), ``scoring`` (``"renormalized"`` or
``"raw"``), ``lookahead`` (``None``, ``"post"``, ``"code"``: :class:`kexue.retrieval.LookAhead`
on the question's token ids, spec 04 §4), ``constrained=False`` (plain beam search without the
trie for ablation E5.1: an output that is not a KB key gives no answer), ``min_score`` (below it:
no answer).

Bad input never crashes (issue 7): an empty or whitespace-only question, or one none of whose
characters occurs in any KB key (emoji, control characters only, text in a script the KB does
not use), gets an explicit "no answer" with the reason; control and format characters are
removed; a very long question is cut to ``max_question_length`` characters (the reason notes
it). Non-string items are a :class:`TypeError`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..retrieval import (
    BEAM_MODES,
    LOOKAHEAD_VARIANTS,
    SCORING_MODES,
    Hypothesis,
    LookAhead,
    Trie,
    constrained_beam_search,
    constrained_greedy,
)
from ._model import KVCache, PrefixLMSeq2Seq
from ._tokenizer import ORDERS, CharTokenizer, key_parts
from ._train import load_model
from ._types import Triple

__all__ = ["KBQA", "Answer"]

_NUM_ENDS = 3  # [SEP] tokens in a decoded target S [SEP] P [SEP] M [SEP]
_RAW_CUT = 4  # characters kept before normalisation: this many times max_question_length (+1k)


@dataclass(frozen=True)
class Answer:
    """The answer to one question.

    ``triple``: the KB triple (``None``: no answer); ``score``: the beam score of the decoded
    key (−inf without a decoded key); ``key_tokens``: the decoded key ids (without the final
    ``[SEP]``; empty when nothing was decoded); ``reason``: why there is no answer, or a caveat
    (e.g. truncation), ``""`` otherwise.
    """

    question: str
    triple: Triple | None
    score: float
    key_tokens: tuple[int, ...]
    reason: str = ""

    @property
    def answered(self) -> bool:
        return self.triple is not None

    def format(self) -> str:
        """``S（M） ||| P ||| O`` (the KgCLUE answer format, spec 05 §2.6 step 5) or
        ``no answer: <reason>``."""
        if self.triple is None:
            return f"no answer: {self.reason or 'unknown'}"
        t = self.triple
        return f"{t.full_subject} ||| {t.predicate} ||| {t.object}"


class _CachedStep:
    """Step function ``prefixes [R, t] -> logits [R, V]`` over a :class:`KVCache` (spec 04 §3
    protocol: rows are input-major and constant; :meth:`reorder` is the engine's hook)."""

    def __init__(
        self, model: PrefixLMSeq2Seq, first: torch.Tensor, cache: KVCache, rows_per_input: int
    ) -> None:
        self.model = model
        self.first = first.repeat_interleave(rows_per_input, dim=0)
        cache.repeat_interleave(rows_per_input)
        self.cache = cache
        self.fed = 0
        self.rows = self.first.shape[0]
        self._identity = torch.arange(self.rows)

    def __call__(self, prefixes: torch.Tensor) -> torch.Tensor:
        length = prefixes.shape[1]
        if length == 0:
            self.fed = 0
            return self.first
        if length != self.fed + 1 or prefixes.shape[0] != self.rows:
            raise RuntimeError(
                f"the cached step function expected prefixes of length {self.fed + 1} for "
                f"{self.rows} rows, got {tuple(prefixes.shape)}"
            )
        tokens = prefixes[:, -1].to(device=self.first.device, dtype=torch.int64)
        logits = self.model.decode_step(tokens, self.cache)
        self.fed += 1
        return logits

    def reorder(self, indices: torch.Tensor) -> None:
        if not torch.equal(indices, self._identity):
            self.cache.reorder(indices)


def _free_beam_search(
    step: _CachedStep,
    batch: int,
    num_beams: int,
    maxlen: int,
    end_id: int,
    banned: Sequence[int],
) -> list[tuple[tuple[int, ...], float, bool]]:
    """Plain beam search without the trie (ablation E5.1; log-probability scores, no length
    penalty): a hypothesis finishes on its third ``[SEP]``; finished candidates ranked in the top
    ``num_beams`` enter a pool of ``num_beams``; an input stops when its pool is full and no alive
    beam can beat the pool's worst. Returns per input the best ``(tokens, score, complete)``."""
    k = num_beams
    rows = batch * k
    tokens = torch.empty((rows, 0), dtype=torch.int64)
    scores = torch.full((batch, k), -math.inf, dtype=torch.float64)
    scores[:, 0] = 0.0
    ends = torch.zeros(rows, dtype=torch.int64)
    pools: list[list[tuple[float, tuple[int, ...]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    banned_index = torch.tensor(list(banned), dtype=torch.int64)
    for _ in range(maxlen):
        if all(done):
            break
        logits = step(tokens)
        log_probs = torch.log_softmax(logits.to(device="cpu", dtype=torch.float64), dim=-1)
        log_probs[:, banned_index] = -math.inf
        vocab = log_probs.shape[1]
        total = (scores.reshape(rows, 1) + log_probs).reshape(batch, k * vocab)
        top_scores, top_index = total.topk(min(2 * k, k * vocab), dim=1)
        source = torch.arange(rows)
        new_tokens = torch.full((rows,), end_id, dtype=torch.int64)
        new_scores = torch.full((batch, k), -math.inf, dtype=torch.float64)
        for b in range(batch):
            if done[b]:
                continue
            slot = 0
            for rank in range(top_index.shape[1]):
                value = float(top_scores[b, rank])
                if value == -math.inf:
                    break
                index = int(top_index[b, rank])
                beam, token = divmod(index, vocab)
                row = b * k + beam
                finished = token == end_id and int(ends[row]) + 1 >= _NUM_ENDS
                if finished:
                    if rank < k:
                        pools[b].append((value, (*tokens[row].tolist(), token)))
                elif slot < k:
                    source[b * k + slot] = row
                    new_tokens[b * k + slot] = token
                    new_scores[b, slot] = value
                    slot += 1
            pools[b] = sorted(pools[b], key=lambda item: -item[0])[:k]
            best_alive = float(new_scores[b].max())
            if slot == 0 or (len(pools[b]) == k and best_alive <= pools[b][-1][0]):
                done[b] = True
        ends = ends[source] + (new_tokens == end_id).to(torch.int64)
        tokens = torch.cat([tokens[source], new_tokens[:, None]], dim=1)
        scores = new_scores
        step.reorder(source)
    results = []
    for b in range(batch):
        if pools[b]:
            score, sequence = pools[b][0]
            results.append((sequence, score, True))
        else:
            best = int(scores[b].argmax())
            row = b * k + best
            results.append((tuple(tokens[row].tolist()), float(scores[b, best]), False))
    return results


def _check_choice(value: object, name: str, choices: Iterable[object]) -> None:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")


class KBQA:
    """Seq2Seq + trie question answering over a KB (module docstring).

    Args:
        model: a trained :class:`~kexue.kbqa.PrefixLMSeq2Seq` (put in eval mode here).
        tokenizer: its :class:`~kexue.kbqa.CharTokenizer`.
        triples: the KB; every triple's key goes into the trie.
        order: the target order the model was trained with (``"SPM"`` or ``"SMP"``).
        lookahead: ``None``, ``"post"`` or ``"code"`` (spec 04 §4); ``"post"`` reweights the
            predicate, i.e. the second key part, and therefore needs ``order="SPM"``.
        num_beams: beam size (1 = greedy).
        constrained: decode through the trie (default) or freely (ablation).
        beam_mode: ``"standard"`` or ``"bert4keras"`` (spec 04 §3.4; ``min_ends=3``).
        scoring: ``"renormalized"`` or ``"raw"`` (spec 04 §3.2).
        max_question_length: question characters fed to the model (as in training).
        min_score: answers whose score is below it become "no answer" (default: never).
    """

    def __init__(
        self,
        model: PrefixLMSeq2Seq,
        tokenizer: CharTokenizer,
        triples: Sequence[Triple],
        *,
        order: str = "SPM",
        lookahead: str | None = None,
        num_beams: int = 3,
        constrained: bool = True,
        beam_mode: str = "standard",
        scoring: str = "renormalized",
        max_question_length: int = 64,
        min_score: float | None = None,
    ) -> None:
        if not isinstance(model, PrefixLMSeq2Seq):
            raise TypeError(f"model must be a PrefixLMSeq2Seq, got {type(model).__name__}")
        if not isinstance(tokenizer, CharTokenizer):
            raise TypeError(f"tokenizer must be a CharTokenizer, got {type(tokenizer).__name__}")
        if model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"model vocabulary ({model.config.vocab_size}) and tokenizer "
                f"({tokenizer.vocab_size}) differ: use the tokenizer the model was trained with"
            )
        _check_choice(order, "order", ORDERS)
        _check_choice(lookahead, "lookahead", (None, *LOOKAHEAD_VARIANTS))
        if lookahead == "post" and order != "SPM":
            raise ValueError(
                "lookahead='post' reweights the predicate, the second part of the SPM layout; "
                "with order='SMP' use lookahead='code' or None"
            )
        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
            raise ValueError(f"num_beams must be an int >= 1, got {num_beams!r}")
        if not isinstance(constrained, bool):
            raise TypeError("constrained must be a bool")
        _check_choice(beam_mode, "beam_mode", BEAM_MODES)
        _check_choice(scoring, "scoring", SCORING_MODES)
        if (
            isinstance(max_question_length, bool)
            or not isinstance(max_question_length, int)
            or max_question_length < 1
        ):
            raise ValueError(
                f"max_question_length must be an int >= 1, got {max_question_length!r}"
            )
        if min_score is not None and math.isnan(min_score):
            raise ValueError("min_score must be a number or None")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.order = order
        self.lookahead = lookahead
        self.num_beams = num_beams
        self.constrained = constrained
        self.beam_mode = beam_mode
        self.scoring = scoring
        self.max_question_length = max_question_length
        self.min_score = min_score
        self.triples = list(triples)
        if not self.triples:
            raise ValueError("the KB is empty: pass at least one Triple")
        keys: list[list[int]] = []
        key_chars: set[str] = set()
        normalized_subjects: list[str] = []
        cache: dict[str, tuple[str, list[int]]] = {}  # text -> (normalised, ids); parts repeat

        def encoded(text: str) -> tuple[str, list[int]]:
            found = cache.get(text)
            if found is None:
                normalized = tokenizer.normalize(text)
                found = (normalized, [tokenizer.char_id(c) for c in normalized])
                cache[text] = found
                key_chars.update(normalized)
            return found

        sep = tokenizer.SEP_ID
        for i, triple in enumerate(self.triples):
            if not isinstance(triple, Triple):
                raise TypeError(f"triples[{i}] must be a Triple, got {type(triple).__name__}")
            first, second, third = (encoded(part) for part in key_parts(triple, order))
            keys.append([*first[1], sep, *second[1], sep, *third[1]])  # = encode_key(parts)
            normalized_subjects.append(encoded(triple.subject)[0])
        self._key_chars = frozenset(key_chars)
        self._subjects = normalized_subjects
        self.num_unknown_key_chars = sum(not tokenizer.is_known(c) for c in key_chars)
        """Distinct KB-key characters outside the tokenizer's vocabulary (rare buckets)."""
        self.trie = Trie.build(keys, values=range(len(self.triples)), end_id=tokenizer.SEP_ID)

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        triples: Sequence[Triple] | None = None,
        *,
        device: str | torch.device = "cpu",
        **options: Any,
    ) -> KBQA:
        """Load a model directory written by :func:`~kexue.kbqa.train_kbqa` (or ``kexue kbqa
        train``). ``triples``: the KB; by default the ``knowledge.tsv`` recorded in the
        directory's ``kbqa.json`` (``"knowledge"``) or lying in the directory. ``order`` and
        ``max_question_length`` default to the trained ones; other ``options`` go to
        :class:`KBQA`."""
        model, tokenizer, meta = load_model(directory, device=device)
        trained_order = meta.get("order", "SPM")
        order = options.pop("order", None) or trained_order
        if order != trained_order:
            raise ValueError(
                f"the model in {directory} was trained with order={trained_order!r}, not {order!r}"
            )
        options.setdefault("max_question_length", int(meta.get("max_question_length", 64)))
        if triples is None:
            triples = read_model_kb(directory, meta)
        return cls(model, tokenizer, triples, order=order, **options)

    # ------------------------------------------------------------------ answering

    def _prepare(self, question: str) -> tuple[str, str]:
        """(normalised question cut to ``max_question_length``, reason for no answer / note)."""
        raw_cut = _RAW_CUT * self.max_question_length + 1024
        text = self.tokenizer.normalize(question[:raw_cut])
        if not text:
            return "", "empty question"
        if not any(c in self._key_chars for c in text):
            return "", "no character of the question occurs in the knowledge base"
        if len(text) > self.max_question_length or len(question) > raw_cut:
            return text[: self.max_question_length], (
                f"question cut to its first {self.max_question_length} characters"
            )
        return text, ""

    def _choose(self, values: Sequence[int], question: str) -> Triple:
        """The first value, unless different subjects share the key (module docstring)."""
        subjects = {self._subjects[v] for v in values}
        if len(subjects) > 1:
            for value in values:
                if self._subjects[value] and self._subjects[value] in question:
                    return self.triples[value]
        return self.triples[values[0]]

    def _decode(self, texts: list[str]) -> list[tuple[tuple[int, ...], float, bool, list[int]]]:
        """(key tokens, score, complete, values) per normalised question."""
        tokenizer = self.tokenizer
        device = next(self.model.parameters()).device
        prompts = [
            [tokenizer.CLS_ID, *(tokenizer.char_id(c) for c in text), tokenizer.SEP_ID]
            for text in texts
        ]
        batch = len(prompts)
        width = max(len(p) for p in prompts)
        ids = torch.zeros(batch, width, dtype=torch.int64)
        valid = torch.zeros(batch, width, dtype=torch.bool)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            valid[row, width - len(prompt) :] = True
        maxlen = int(self.trie.max_depth)
        first, cache = self.model.prefill(ids.to(device), valid.to(device), maxlen)
        k = self.num_beams
        if not self.constrained:
            step = _CachedStep(self.model, first, cache, k)
            banned = (tokenizer.PAD_ID, tokenizer.CLS_ID)
            out = []
            for tokens, score, complete in _free_beam_search(
                step, batch, k, maxlen, tokenizer.SEP_ID, banned
            ):
                key = tokens[:-1] if complete else tokens
                values = self.trie.get(key, []) if complete and key else []
                out.append((key, score, complete, list(values)))
            return out
        lookaheads = None
        if self.lookahead is not None:
            lookaheads = [
                LookAhead(
                    prompt, variant=self.lookahead, sep_id=tokenizer.SEP_ID,
                    special_ids=(tokenizer.CLS_ID, tokenizer.PAD_ID),
                )
                for prompt in prompts
            ]  # fmt: skip
        hypotheses: list[Hypothesis]
        if k == 1 and self.beam_mode == "standard":
            step = _CachedStep(self.model, first, cache, 1)
            hypotheses = constrained_greedy(
                step, self.trie, batch_size=batch, lookahead=lookaheads, scoring=self.scoring
            )
        else:
            step = _CachedStep(self.model, first, cache, k)
            results = constrained_beam_search(
                step, self.trie, num_beams=k, batch_size=batch, mode=self.beam_mode,
                scoring=self.scoring, min_ends=_NUM_ENDS, lookahead=lookaheads, num_return=1,
            )  # fmt: skip
            hypotheses = [r[0] for r in results]
        return [(h.key, h.score, h.complete, list(h.values)) for h in hypotheses]

    @torch.inference_mode()
    def answer(self, questions: Sequence[str], batch_size: int = 64) -> list[Answer]:
        """Answer questions in batches of ``batch_size`` (module docstring); one :class:`Answer`
        per question, in order."""
        if isinstance(questions, str):
            raise TypeError(
                "questions must be a sequence of strings, not one str: use answer([question]) "
                "or ask(question)"
            )
        questions = list(questions)
        for i, question in enumerate(questions):
            if not isinstance(question, str):
                raise TypeError(f"questions[{i}] must be a str, got {type(question).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        answers: list[Answer | None] = [None] * len(questions)
        pending: list[tuple[int, str, str]] = []
        for i, question in enumerate(questions):
            text, note = self._prepare(question)
            if not text:
                answers[i] = Answer(question, None, -math.inf, (), note)
            else:
                pending.append((i, text, note))
        pending.sort(key=lambda item: -len(item[1]))  # similar lengths share a batch
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            decoded = self._decode([text for _, text, _ in chunk])
            for (i, text, note), (key, score, complete, values) in zip(chunk, decoded, strict=True):
                answers[i] = self._finish(questions[i], text, note, key, score, complete, values)
        return [a for a in answers if a is not None]

    def _finish(
        self,
        question: str,
        text: str,
        note: str,
        key: tuple[int, ...],
        score: float,
        complete: bool,
        values: list[int],
    ) -> Answer:
        if not complete:
            return Answer(question, None, score, key, "decoding stopped before completing a key")
        if not values:
            return Answer(question, None, score, key, "the decoded sequence is not a KB key")
        if self.min_score is not None and score < self.min_score:
            return Answer(
                question, None, score, key, f"score {score:.3f} below min_score {self.min_score}"
            )
        return Answer(question, self._choose(values, text), score, key, note)

    def ask(self, question: str) -> Answer:
        """Answer one question."""
        return self.answer([question], batch_size=1)[0]


def read_model_kb(directory: str | os.PathLike[str], meta: dict[str, Any]) -> list[Triple]:
    """The KB recorded for a model directory: ``meta["knowledge"]`` (a path, relative to the
    directory if not absolute) or ``knowledge.tsv`` in the directory."""
    from ._kgclue import read_knowledge

    base = Path(directory)
    recorded = meta.get("knowledge")
    candidates = (
        [Path(recorded) if Path(str(recorded)).is_absolute() else base / str(recorded)]
        if (recorded)
        else []
    )
    candidates.append(base / "knowledge.tsv")
    for path in candidates:
        if path.is_file():
            return read_knowledge(path)
    raise FileNotFoundError(
        f"no knowledge base for the model in {base}: pass triples=... (Python) or --kb FILE "
        "(CLI), or put knowledge.tsv into the model directory"
    )
