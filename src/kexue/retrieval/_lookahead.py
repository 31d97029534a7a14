"""The look-ahead ("前瞻") rule of post 8802 (spec 04 §4).

While decoding, an allowed next token ``c`` gets the weight ``w = Δ + 1`` with

    Δ(c) = max over completions k through c of LCS(span(k), Q) − LCS(span(prefix), Q)

(LCS = length of the longest common subsequence with the question ``Q``), and the step
distribution becomes ``log p̃_c = log p_c / w_c − logsumexp_A(log p / w)`` (§4.1, §4.3): a token
whose completions cover more of the question is raised (``p < 1`` so a larger root is larger).

``Δ`` of all children is computed by one search of the current node's subtree, level by level
over the trie's CSR arrays, carrying the LCS dynamic-programming row against ``Q`` (one
vectorised ``O(|Q|)`` update per edge); the subtree maximum of every visited node is cached, so
the next steps inside the same subtree cost a dictionary lookup (§4.3).

Two presets (§4.1–4.2), every part of which can be overridden:

========  ===========  =================  =====================================================
variant   span         include_special    trigger
========  ===========  =================  =====================================================
post      "predicate"  False              "post": the decoded key holds exactly one ``sep_id``
code      "key"        True               "code": ``sep_id`` occurs in the decoded key
========  ===========  =================  =====================================================

* ``span="predicate"``: the compared sequence is the part of the key after the first ``sep_id``
  up to and including the second one (the predicate P of ``S [SEP] P [SEP] M``); the subtree
  search stops at the separator that ends P. ``span="key"``: the whole stored path, including
  the terminator ``END`` appended by the trie.
* ``include_special=False``: ``sep_id`` and ``special_ids`` are removed from the question and
  from the compared sequences (characters only, the post's formula); ``True`` keeps them (the
  author code compares token ids with ``[CLS] Q [SEP]``).
* Trigger (checked on the decoded key tokens, without the decoder prompt), and in both cases only
  when the node has more than one allowed token (with a single token the reweighting is the
  identity after renormalisation, in both scoring modes): ``"post"`` — exactly one ``sep_id`` so
  far (S is done, P is being decoded); ``"code"`` — ``sep_id`` already occurs (so it also fires
  while decoding M; the reference's ``END`` is ``[SEP]``, the separator).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt
import torch

if TYPE_CHECKING:
    from ._trie import Trie

__all__ = [
    "LOOKAHEAD_VARIANTS",
    "LookAhead",
    "lcs_length",
    "lookahead_weights_bruteforce",
]

LOOKAHEAD_VARIANTS: dict[str, tuple[str, bool, str]] = {
    "post": ("predicate", False, "post"),
    "code": ("key", True, "code"),
}
"""Presets ``variant -> (span, include_special, trigger)`` (spec 04 §4.1, §4.2)."""

_SPANS = ("predicate", "key")
_TRIGGERS = ("post", "code")

IntArray = npt.NDArray[np.int64]


def _int_tuple(values: Iterable[int] | torch.Tensor, name: str) -> tuple[int, ...]:
    if isinstance(values, torch.Tensor):
        if values.ndim != 1 or values.is_floating_point():
            raise ValueError(f"{name} must be a 1-D integer tensor")
        return tuple(int(v) for v in values.tolist())
    items = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must hold ints, got {type(v).__name__}")
        items.append(int(v))
    return tuple(items)


def lcs_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common subsequence of two token sequences (plain ``O(|a||b|)``
    dynamic programme; the brute-force reference of C4.5)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            current[j] = previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1])
        previous = current
    return previous[-1]


class LookAhead:
    """The look-ahead reweighting of one question (spec 04 §4; presets in the module docstring).

    ``question_ids``: the question's token ids (as fed to the encoder, ``[CLS]``/``[SEP]``
    included; with ``include_special=False`` they are filtered out here). ``sep_id``: the
    separator of the key layout ``S [SEP] P [SEP] M`` (KgCLUE: ``[SEP]``, also ``END``).
    ``special_ids``: further ids ignored when ``include_special`` is False (e.g. ``[CLS]``).

    :meth:`weights` is what the decoders call; :meth:`deltas` gives ``Δ`` without the trigger.
    One instance caches per-node results for the trie it was last used with.
    """

    def __init__(
        self,
        question_ids: Iterable[int] | torch.Tensor,
        *,
        variant: str = "post",
        sep_id: int,
        special_ids: Iterable[int] = (),
        span: str | None = None,
        include_special: bool | None = None,
        trigger: str | None = None,
    ) -> None:
        if variant not in LOOKAHEAD_VARIANTS:
            raise ValueError(
                f"variant must be one of {', '.join(map(repr, LOOKAHEAD_VARIANTS))}, "
                f"got {variant!r}"
            )
        preset_span, preset_special, preset_trigger = LOOKAHEAD_VARIANTS[variant]
        span = preset_span if span is None else span
        trigger = preset_trigger if trigger is None else trigger
        if span not in _SPANS:
            raise ValueError(f"span must be 'predicate' or 'key', got {span!r}")
        if trigger not in _TRIGGERS:
            raise ValueError(f"trigger must be 'post' or 'code', got {trigger!r}")
        if isinstance(sep_id, bool) or not isinstance(sep_id, int) or sep_id < 0:
            raise ValueError(f"sep_id must be an int >= 0, got {sep_id!r}")
        self.variant = variant
        self.span = span
        self.trigger = trigger
        self.include_special = preset_special if include_special is None else bool(include_special)
        self.sep_id = sep_id
        self.special_ids = tuple(sorted(set(_int_tuple(special_ids, "special_ids"))))
        self.question_ids = _int_tuple(question_ids, "question_ids")
        dropped = () if self.include_special else (*self.special_ids, sep_id)
        self._drop_set = frozenset(dropped)
        self._dropped = np.asarray(sorted(self._drop_set), dtype=np.int64)
        self.question = tuple(t for t in self.question_ids if t not in self._drop_set)
        self._q: IntArray = np.asarray(self.question, dtype=np.int64)
        self._trie: object | None = None
        self._best: dict[int, int] = {}
        self._base: dict[tuple[int, ...], tuple[IntArray, int]] = {}

    def __repr__(self) -> str:
        return (
            f"LookAhead(variant={self.variant!r}, span={self.span!r}, "
            f"include_special={self.include_special}, trigger={self.trigger!r}, "
            f"question={len(self.question)} tokens)"
        )

    # ----------------------------------------------------------------- sequences and LCS rows

    def compared_tokens(self, path: Sequence[int]) -> tuple[int, ...]:
        """The part of a decoded path that is compared with the question (span and filter)."""
        out = []
        seps = 0
        for t in path:
            if (self.span == "key" or seps == 1) and t not in self._drop_set:
                out.append(int(t))
            seps += int(t == self.sep_id)
            if self.span == "predicate" and seps >= 2:
                break
        return tuple(out)

    def _extend(self, rows: IntArray, tokens: IntArray) -> IntArray:
        """LCS rows after appending one token per row: ``new = cummax(max(old, old[j-1] + 1 if
        Q[j-1] == x))`` — the standard recurrence, vectorised over rows and question positions."""
        candidate = rows.copy()
        if self._q.size:
            match = self._q[None, :] == tokens[:, None]
            candidate[:, 1:] = np.maximum(rows[:, 1:], np.where(match, rows[:, :-1] + 1, 0))
        return np.maximum.accumulate(candidate, axis=1)

    def _scored(self, parent_seps: IntArray, tokens: IntArray) -> npt.NDArray[np.bool_]:
        scored = np.ones(tokens.shape, dtype=bool) if self.span == "key" else parent_seps == 1
        if not self.include_special and self._dropped.size:
            scored &= ~np.isin(tokens, self._dropped)
        return scored

    def _prefix_row(self, prefix: tuple[int, ...]) -> tuple[IntArray, int]:
        cached = self._base.get(prefix)
        if cached is not None:
            return cached
        row = np.zeros((1, self._q.size + 1), dtype=np.int64)
        seps = np.zeros(1, dtype=np.int64)
        for t in prefix:
            tok = np.asarray([t], dtype=np.int64)
            if bool(self._scored(seps, tok)[0]):
                row = self._extend(row, tok)
            seps = seps + int(t == self.sep_id)
        result = (row[0], int(seps[0]))
        self._base[prefix] = result
        return result

    def _bind(self, trie: Trie) -> None:
        if self._trie is not trie:
            self._trie = trie
            self._best = {}
            self._base = {}

    # ----------------------------------------------------------------- subtree search (§4.3)

    def _subtree_best(
        self, trie: Trie, row: IntArray, seps: int, tokens: IntArray, nodes: IntArray
    ) -> IntArray:
        """Max LCS over the complete spans below each child ``nodes`` (reached by ``tokens``)."""
        parent_seps = np.full(tokens.shape, seps, dtype=np.int64)
        rows = np.repeat(row[None, :], tokens.size, axis=0)
        scored = self._scored(parent_seps, tokens)
        if scored.any():
            rows[scored] = self._extend(rows[scored], tokens[scored])
        node_seps = parent_seps + (tokens == self.sep_id)
        levels: list[tuple[IntArray, IntArray, IntArray]] = []  # (nodes, parent, value)
        parent = np.zeros(0, dtype=np.int64)
        while nodes.size:
            complete = trie.is_complete(torch.from_numpy(nodes)).numpy().astype(bool)
            terminal = complete | ((node_seps >= 2) if self.span == "predicate" else False)
            value = np.full(nodes.shape, -1, dtype=np.int64)
            value[terminal] = rows[terminal, -1]
            expand = np.flatnonzero(~terminal)
            if expand.size:
                cached = np.asarray([self._best.get(int(n), -1) for n in nodes[expand]])
                value[expand] = cached
                expand = expand[cached < 0]
            levels.append((nodes, parent, value))
            if not expand.size:
                break
            edge_row, edge_token, edge_child = trie.children(torch.from_numpy(nodes[expand]))
            parent = expand[edge_row.numpy().astype(np.int64)]
            tokens = edge_token.numpy().astype(np.int64)
            rows = rows[parent]
            scored = self._scored(node_seps[parent], tokens)
            if scored.any():
                rows[scored] = self._extend(rows[scored], tokens[scored])
            node_seps = node_seps[parent] + (tokens == self.sep_id)
            nodes = edge_child.numpy().astype(np.int64)
        for depth in range(len(levels) - 1, 0, -1):
            _, parent, value = levels[depth]
            np.maximum.at(levels[depth - 1][2], parent, value)
        for level_nodes, _, value in levels:
            node_ids = cast("list[int]", level_nodes.tolist())
            maxima = cast("list[int]", value.tolist())
            self._best.update(zip(node_ids, maxima, strict=True))
        return levels[0][2] if levels else np.zeros(0, dtype=np.int64)

    # ----------------------------------------------------------------- public interface

    def _state(self, trie: Trie, prefix: tuple[int, ...], state: int | None) -> int:
        if state is None:
            state = int(trie.walk(prefix))
        if state < 0:
            raise ValueError(f"prefix {list(prefix)} is not a path of the trie")
        return state

    def triggered(self, trie: Trie, prefix: Sequence[int], state: int | None = None) -> bool:
        """Whether the rule applies after the decoded key tokens ``prefix`` (module docstring)."""
        prefix = _int_tuple(prefix, "prefix")
        node = self._state(trie, prefix, state)
        if int(trie.num_children(torch.tensor([node], dtype=torch.int64))[0]) <= 1:
            return False
        seps = prefix.count(self.sep_id)
        return seps == 1 if self.trigger == "post" else seps >= 1

    def deltas(
        self, trie: Trie, prefix: Sequence[int], state: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens, Δ)``: the allowed next tokens (sorted, int64) and their coverage gains
        (int64, ``>= 0``), whatever the trigger (spec 04 §4.1, §4.3)."""
        prefix = _int_tuple(prefix, "prefix")
        node = self._state(trie, prefix, state)
        self._bind(trie)
        _, tokens, children = trie.children(torch.tensor([node], dtype=torch.int64))
        tokens = tokens.to(torch.int64)
        if tokens.numel() == 0:
            return tokens, torch.zeros(0, dtype=torch.int64)
        row, seps = self._prefix_row(prefix)
        best = self._subtree_best(
            trie, row, seps, tokens.numpy().copy(), children.numpy().astype(np.int64)
        )
        return tokens, torch.from_numpy(best - int(row[-1]))

    def weights(
        self, trie: Trie, prefix: Sequence[int], state: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(tokens, w = Δ + 1)`` (float64) for the allowed next tokens, or ``None`` when the
        trigger does not fire after ``prefix`` (decoded key tokens, no prompt)."""
        prefix = _int_tuple(prefix, "prefix")
        node = self._state(trie, prefix, state)
        if not self.triggered(trie, prefix, node):
            return None
        tokens, delta = self.deltas(trie, prefix, node)
        return tokens, delta.to(torch.float64) + 1.0


def lookahead_weights_bruteforce(
    lookahead: LookAhead, trie: Trie, prefix: Sequence[int]
) -> dict[int, float]:
    """Reference for C4.5: ``{token: Δ + 1}`` over the stored keys extending ``prefix``, by plain
    LCS of every key (``trie.keys(prefix)`` plus the appended ``END``), max over keys sharing the
    next token; the trigger is ignored."""
    prefix = _int_tuple(prefix, "prefix")
    question = list(lookahead.question)
    base = lcs_length(lookahead.compared_tokens(prefix), question)
    out: dict[int, float] = {}
    for key in trie.keys(prefix):
        path = (*key, int(trie.end_id))
        if len(path) <= len(prefix) or path[: len(prefix)] != prefix:
            continue
        delta = lcs_length(lookahead.compared_tokens(path), question) - base
        token = path[len(prefix)]
        out[token] = max(out.get(token, float("-inf")), float(delta + 1))
    return out
