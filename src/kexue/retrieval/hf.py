"""Hugging Face ``generate`` integration (spec 04 §5, C4.12): :class:`TrieLogitsProcessor`.

An optional extra (``pip install 'kexue[hf]'``); not imported by :mod:`kexue.retrieval`.
Instead of ``prefix_allowed_tokens_fn`` (a Python callback per batch×beam row), the processor
recovers every row's trie state in a few vectorised :meth:`Trie.advance` calls and builds one
batched mask per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

try:
    from transformers import LogitsProcessor
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "kexue.retrieval.hf needs the optional dependency transformers: pip install 'kexue[hf]'"
    ) from error

from ._decoding import _dense_masked, _lookahead_weights, _sparse_masked, constrained_log_probs
from ._lookahead import LookAhead

if TYPE_CHECKING:
    from ._trie import Trie

__all__ = ["TrieLogitsProcessor"]

_OK, _FINISHED, _DEAD = 0, 1, 2


class TrieLogitsProcessor(LogitsProcessor):
    """Restrict ``generate`` to the keys of a trie (spec 04 §5).

    ``prompt_length``: tokens at the start of every decoder row that are not part of the key (the
    decoder start token of an encoder-decoder: 1; the prompt of a decoder-only model: its length).
    Each call recovers every row's trie state — by extending the previous call's rows (a row's
    prefix is matched to the row it extends, so beam reordering needs no hook) or, on the first
    call, by walking the key tokens with one batched :meth:`Trie.advance` per position — and sets
    every disallowed score to −inf with one batched mask.

    ``renormalize=True`` returns ``masked − logsumexp(masked)`` over the allowed set (after
    ``log_softmax``), i.e. the ``renormalized`` scoring mode of spec 04 §3.2 inside Hugging Face
    beam search; ``False`` only masks (HF's own ``raw`` behaviour). Use ``length_penalty=0.0`` in
    the generation config to match kexue's beam scores (HF's default 1.0 divides by length).
    ``lookahead``: a :class:`~kexue.retrieval.LookAhead` for all rows, or one per input (rows are
    input-major, ``num_beams`` consecutive rows per input).

    Rows that completed a key (``END`` taken; HF then pads them) get −inf everywhere, as do beams
    that Hugging Face filled with a −inf-scored masked token when fewer valid continuations than
    beams existed (they can never win). A row whose key tokens leave the trie otherwise (at the
    first call, or when its prefix extends no previous row) raises a ValueError: check
    ``prompt_length`` and that the trie was built with the model's tokenizer.
    """

    supports_continuous_batching = False

    def __init__(
        self,
        trie: Trie,
        *,
        prompt_length: int = 1,
        renormalize: bool = True,
        lookahead: LookAhead | Sequence[LookAhead] | None = None,
    ) -> None:
        if isinstance(prompt_length, bool) or not isinstance(prompt_length, int):
            raise TypeError(f"prompt_length must be an int, got {type(prompt_length).__name__}")
        if prompt_length < 0:
            raise ValueError(f"prompt_length must be >= 0, got {prompt_length}")
        if lookahead is None or isinstance(lookahead, LookAhead):
            self.lookaheads: list[LookAhead] | None = None if lookahead is None else [lookahead]
        else:
            self.lookaheads = list(lookahead)
            if not self.lookaheads or not all(isinstance(x, LookAhead) for x in self.lookaheads):
                raise TypeError("lookahead must be a LookAhead or a non-empty sequence of them")
        self.trie = trie
        self.prompt_length = prompt_length
        self.renormalize = bool(renormalize)
        self._ids: torch.Tensor | None = None
        self._states = torch.zeros(0, dtype=torch.int64)
        self._status = torch.zeros(0, dtype=torch.int64)

    def reset(self) -> None:
        """Forget the previous call's rows (a new ``generate`` also resets by itself)."""
        self._ids = None

    def _advance(
        self,
        states: torch.Tensor,
        status: torch.Tensor,
        ids: torch.Tensor,
        column: int,
        fresh: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = ids[:, column]
        ok = status == _OK
        complete = ok & self.trie.is_complete(states.clamp(min=0)).to(torch.bool)
        moving = ok & ~complete
        nxt = self.trie.advance(torch.where(moving, states, 0), tokens).to(torch.int64)
        left = moving & (nxt < 0)
        if fresh and bool(left.any()):
            row = int(left.nonzero()[0, 0])
            key = ids[row, self.prompt_length : column].tolist()
            raise ValueError(
                f"row {row}: token {int(tokens[row])} at position {column} is not allowed after "
                f"the key prefix {key} (the decoded tokens leave the trie); check prompt_length="
                f"{self.prompt_length} (decoder tokens before the key) and that the trie was "
                "built with the model's tokenizer"
            )
        status = torch.where(complete, _FINISHED, torch.where(left, _DEAD, status))
        states = torch.where(moving & ~left, nxt, states)
        return states, status

    def _row_states(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows, length = ids.shape
        previous = self._ids
        if previous is not None and previous.shape[1] == length - 1 and length > self.prompt_length:
            equal = (ids[:, None, :-1] == previous[None, :, :]).all(dim=-1)
            if bool(equal.any(dim=1).all()):
                source = equal.to(torch.int8).argmax(dim=1)
                return self._advance(
                    self._states[source], self._status[source], ids, length - 1, fresh=False
                )
        states = torch.zeros(rows, dtype=torch.int64)
        status = torch.zeros(rows, dtype=torch.int64)
        for column in range(self.prompt_length, length):
            states, status = self._advance(states, status, ids, column, fresh=True)
        return states, status

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if input_ids.ndim != 2 or scores.ndim != 2 or scores.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"expected input_ids [R, t] and scores [R, V], got {tuple(input_ids.shape)} and "
                f"{tuple(scores.shape)}"
            )
        if scores.shape[1] < self.trie.vocab_size:
            raise ValueError(
                f"scores have {scores.shape[1]} columns, fewer than trie.vocab_size = "
                f"{self.trie.vocab_size}: the trie holds ids the model cannot produce"
            )
        if input_ids.shape[1] < self.prompt_length:
            raise ValueError(
                f"input_ids have {input_ids.shape[1]} tokens, fewer than prompt_length = "
                f"{self.prompt_length}"
            )
        ids = input_ids.detach().to(device="cpu", dtype=torch.int64)
        states, status = self._row_states(ids)
        self._ids, self._states, self._status = ids, states, status
        live = status == _OK
        live_states = torch.where(live, states, -1)
        weights = None
        if self.lookaheads is not None:
            rows = ids.shape[0]
            if rows % len(self.lookaheads):
                raise ValueError(
                    f"{len(self.lookaheads)} look-aheads do not divide the {rows} rows "
                    "(one LookAhead per input, num_beams rows each)"
                )
            weights = _lookahead_weights(
                self.lookaheads,
                self.trie,
                live_states,
                ids[:, self.prompt_length :],
                live,
                rows // len(self.lookaheads),
                (int(scores.shape[0]), int(scores.shape[1])),
                torch.promote_types(scores.dtype, torch.float32),
                scores.device,
            )
        if not self.renormalize and weights is None:
            sparse = _sparse_masked(scores, self.trie, live_states, "none")
            if sparse is not None:
                return sparse
            return _dense_masked(scores, self.trie, live_states, "none")
        out = constrained_log_probs(
            scores, self.trie, live_states, renormalize=self.renormalize, weights=weights
        )
        return out.to(scores.dtype)
