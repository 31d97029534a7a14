"""Trie-constrained retrieval: Seq2Seq + prefix tree (post 8802, spec 04 — the engine part).

Retrieval as generation: a Seq2Seq model decodes the answer token by token, and a **prefix tree
(trie) of the database entries** restricts every step to tokens that continue some stored key, so
the output is always an existing entry (spec 04 §1, §3.5).

* :class:`Trie` — a static trie in flat CSR int32 arrays (spec 04 §2.4): a streaming,
  vectorised build; allowed sets (:meth:`Trie.next_tokens`), batched bool or packed-bitmask
  masks (:meth:`Trie.allowed_mask`), stateful decoding (:meth:`Trie.advance`,
  :meth:`Trie.children`; states are node ids, root ``0``, dead ``-1``), lookups
  (:meth:`Trie.get`, :meth:`Trie.get_first`, :meth:`Trie.keys`) and a single-file
  memory-mappable format (:meth:`Trie.save`, :meth:`Trie.load`). ``terminated=True`` (default)
  appends END to every key and requires prefix-freeness; ``terminated=False`` reproduces the
  reference allowed sets, under which a key that is a prefix of another is unreachable (§2.2,
  C4.9).
* :class:`DictTrie` — the nested-dict reference implementation (tests, tiny KBs).
* :func:`constrained_greedy`, :func:`constrained_beam_search` — decoding over any step function
  ``prefixes [R, t] -> scores [R, V]`` (spec 04 §3): −inf masking (never ε), ``scoring=
  "renormalized"`` (the post) or ``"raw"`` (what Hugging Face computes), ``mode="standard"``
  (finished pool) or ``"bert4keras"`` (the reference's finishing rule), optional length penalty;
  every complete :class:`Hypothesis` is a stored key (§3.5). :func:`constrained_log_probs` is
  the batched masking step shared with the Hugging Face processor.
* :class:`LookAhead` — the post's look-ahead reweighting ``p^(1/(Δ+1))`` from LCS coverage of the
  question (§4), variants ``"post"`` and ``"code"``, computed by one DFS with an LCS row per trie
  node; :func:`lookahead_weights_bruteforce` is the brute-force oracle.

The Hugging Face integration lives in :mod:`kexue.retrieval.hf` (optional extra, not imported
here).
"""

from __future__ import annotations

from ._decoding import (
    BEAM_MODES,
    SCORING_MODES,
    Hypothesis,
    StepFunction,
    constrained_beam_search,
    constrained_greedy,
    constrained_log_probs,
)
from ._dict_trie import DictTrie
from ._lookahead import LOOKAHEAD_VARIANTS, LookAhead, lcs_length, lookahead_weights_bruteforce
from ._trie import Trie, TrieChildren

__all__ = [
    "BEAM_MODES",
    "LOOKAHEAD_VARIANTS",
    "SCORING_MODES",
    "DictTrie",
    "Hypothesis",
    "LookAhead",
    "StepFunction",
    "Trie",
    "TrieChildren",
    "constrained_beam_search",
    "constrained_greedy",
    "constrained_log_probs",
    "lcs_length",
    "lookahead_weights_bruteforce",
]
