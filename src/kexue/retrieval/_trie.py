"""The flat CSR trie of spec 04 §2: build, allowed sets, batched masks, advance, lookup, save/load.

Storage (spec 04 §2.4, claim C4.10). Nodes are numbered in breadth-first order with the children of
every node contiguous and sorted by token, so the node reached by edge ``e`` is node ``e + 1`` and
no ``edge_child`` array is needed:

* ``child_start`` — int32 (int64 beyond 2³¹ nodes) ``[num_nodes + 1]``: the children of node ``n``
  are the edges ``child_start[n]:child_start[n + 1]``;
* ``edge_token`` — int32 ``[num_nodes - 1]``: the token on the edge into node ``e + 1``;
* ``terminal_nodes`` — sorted ids of the nodes that carry values (one per distinct key),
  ``value_index`` — the insertion indices of all (key, value) entries grouped by terminal node in
  insertion order (C4.3), ``value_start`` — CSR offsets into ``value_index`` (absent when no key
  is duplicated: then terminal ``i`` owns entry ``value_index[i]`` alone).

Every key is stored with ``end_id`` appended (spec 04 §2.2), in both conventions:

* ``terminated=True`` (kexue default): a key is complete exactly when its END edge has been
  taken. Keys must be prefix-free (no key followed by END is a prefix of another stored path);
  :meth:`Trie.build` raises ValueError otherwise. Hence a node carries values iff it is a leaf.
* ``terminated=False`` (reference-compatible, the author code): the same storage, but the allowed
  set of a node *hides* its terminator edge (END into a value-carrying leaf) whenever the node has
  another child — reproducing the reference ``next_ones`` and its flaw: a key that is a proper
  prefix of another key can never be produced (spec 04 §2.2, claim C4.9).

Decoder states are node ids in int64 tensors: :attr:`Trie.ROOT` (0) is the empty prefix and
:attr:`Trie.DEAD` (−1) a prefix that left the trie. Batched operations (:meth:`Trie.advance`,
:meth:`Trie.children`, :meth:`Trie.allowed_mask`) are vectorised over rows in torch; the build is
vectorised level by level in numpy (one ``np.unique`` of ``parent·V + token`` per depth), so no
Python object is ever created per node.
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from ._storage import read_arrays, write_arrays

__all__ = ["Trie", "TrieChildren"]

_KIND = "kexue.retrieval.Trie"
_MAX_TOKEN = 2**31 - 1  # token ids are stored as int32 and vocab_size = max id + 1 must fit too
_CHUNK = 1 << 15  # keys converted per numpy call while streaming the input
_WINDOW = 256  # advance: compare a padded window of children up to this degree, else bisect
_MISSING: Any = object()


class TrieChildren(NamedTuple):
    """All allowed edges of a batch of states, row-major, tokens ascending within a row."""

    rows: torch.Tensor
    """int64 ``[E]``: the batch row each edge belongs to."""
    tokens: torch.Tensor
    """int64 ``[E]``: the token on the edge."""
    states: torch.Tensor
    """int64 ``[E]``: the state reached by taking the edge."""


# --------------------------------------------------------------------------------------------
# input validation


def _check_end_id(end_id: object) -> int:
    if isinstance(end_id, bool) or not isinstance(end_id, numbers.Integral):
        raise TypeError(f"end_id must be an integer token id, got {type(end_id).__name__}")
    if not 0 <= int(end_id) < _MAX_TOKEN:
        raise ValueError(f"end_id must lie in [0, {_MAX_TOKEN}), got {end_id}")
    return int(end_id)


def _key_position(lengths: np.ndarray, position: int) -> int:
    """Index of the key holding flat token ``position`` given the keys' lengths."""
    return int(np.searchsorted(np.cumsum(lengths), position, side="right"))


def _integer_array(items: list[Any], lengths: np.ndarray, first: int) -> np.ndarray:
    """``items`` (flat token ids of keys ``first, first + 1, ...``) as an integer array."""
    try:
        array = np.array(items)
    except (TypeError, ValueError, OverflowError):
        array = None
    if array is not None and array.ndim == 1 and array.dtype.kind in "iu":
        return array
    if not items:
        return np.zeros(0, dtype=np.int64)
    for position, token in enumerate(items):
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            key = first + _key_position(lengths, position)
            raise TypeError(
                f"key {key} contains {token!r} of type {type(token).__name__}; token ids must be "
                "integers (convert float or string ids to int first)"
            )
    raise ValueError(f"token ids must lie in [0, {_MAX_TOKEN}); a key holds a larger integer")


def _key_array(key: object, index: int) -> np.ndarray:
    """One key of the build input as a 1-D integer numpy array (not yet range-checked)."""
    if isinstance(key, torch.Tensor):
        if key.dtype == torch.bool or key.is_floating_point() or key.is_complex():
            raise TypeError(
                f"key {index} is a {key.dtype} tensor; token ids must be integers (use .long())"
            )
        array = key.detach().cpu().numpy()
    elif isinstance(key, np.ndarray):
        if key.dtype.kind not in "iu":
            raise TypeError(
                f"key {index} is a {key.dtype} array; token ids must be integers "
                "(use .astype(np.int64))"
            )
        array = key
    elif isinstance(key, (str, bytes)):
        raise TypeError(
            f"key {index} is a {type(key).__name__}; keys are sequences of token ids (tokenize "
            "first, e.g. [ord(c) for c in text] or tokenizer.encode(text))"
        )
    else:
        try:
            items = list(key)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                f"key {index} is a {type(key).__name__}; each key must be a sequence of token ids"
            ) from None
        array = _integer_array(items, np.array([len(items)]), index)
    if array.ndim != 1:
        raise ValueError(f"key {index} has shape {tuple(array.shape)}; each key must be 1-D")
    return array


def _lookup_tokens(key: object, name: str = "key") -> list[int]:
    """A query key/prefix as a list of Python ints; TypeError for non-integer ids."""
    if isinstance(key, torch.Tensor):
        if key.dtype == torch.bool or key.is_floating_point() or key.is_complex():
            raise TypeError(f"{name} is a {key.dtype} tensor; token ids must be integers")
        if key.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(key.shape)}")
        return [int(t) for t in key.tolist()]
    if isinstance(key, np.ndarray):
        if key.dtype.kind not in "iu":
            raise TypeError(f"{name} is a {key.dtype} array; token ids must be integers")
        if key.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {key.shape}")
        return [int(t) for t in key.tolist()]
    if isinstance(key, (str, bytes)) or not isinstance(key, Iterable):
        raise TypeError(f"{name} must be a sequence of integer token ids, got {type(key).__name__}")
    tokens: list[int] = []
    for token in key:
        if isinstance(token, bool) or not isinstance(token, numbers.Integral):
            raise TypeError(
                f"{name} contains {token!r} of type {type(token).__name__}; token ids must be "
                "integers"
            )
        tokens.append(int(token))
    return tokens


def _check_state(state: object, num_nodes: int) -> int:
    if isinstance(state, torch.Tensor) and state.numel() == 1 and not state.is_floating_point():
        state = int(state.item())
    if isinstance(state, bool) or not isinstance(state, numbers.Integral):
        raise TypeError(f"state must be an integer node id, got {type(state).__name__}")
    if not 0 <= int(state) < num_nodes:
        raise ValueError(
            f"state {state} is not a node of this trie (valid: 0 .. {num_nodes - 1}; -1 is the "
            "dead state)"
        )
    return int(state)


# --------------------------------------------------------------------------------------------
# build


class _Ingested(NamedTuple):
    tokens: np.ndarray  # int32, all keys concatenated (without END)
    offsets: np.ndarray  # int64 [num_entries + 1]
    values: list[Any] | np.ndarray | None


def _convert_chunk(pending: list[Any], first: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat int32 tokens and int64 lengths of ``pending`` keys, validated."""
    if all(type(key) is list or type(key) is tuple for key in pending):
        lengths = np.fromiter(map(len, pending), dtype=np.int64, count=len(pending))
        flat = _integer_array(list(chain.from_iterable(pending)), lengths, first)
    else:
        parts = [_key_array(key, first + i) for i, key in enumerate(pending)]
        lengths = np.fromiter((p.size for p in parts), dtype=np.int64, count=len(parts))
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise ValueError(f"key {first + int(empty[0])} is empty; every key needs >= 1 token")
    if flat.size:
        low, high = int(flat.min()), int(flat.max())
        if low < 0:
            position = int(np.argmax(flat < 0))
            raise ValueError(
                f"key {first + _key_position(lengths, position)} contains the negative token id "
                f"{low}; token ids must be >= 0"
            )
        if high >= _MAX_TOKEN:
            position = int(np.argmax(flat >= _MAX_TOKEN))
            raise ValueError(
                f"key {first + _key_position(lengths, position)} contains token id {high}; "
                f"token ids must be < {_MAX_TOKEN} (they are stored as int32)"
            )
    return flat.astype(np.int32, copy=False), lengths


def _ingest(sequences: object, values: object) -> _Ingested:
    """Stream ``sequences`` (and ``values``) into a flat int32 buffer + offsets, chunk by chunk."""
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Iterable):
        raise TypeError(
            f"sequences must be an iterable of keys (sequences of token ids), got "
            f"{type(sequences).__name__}"
        )
    value_list: list[Any] | None = None
    value_array: np.ndarray | None = None
    value_iter: Iterator[Any] | None = None
    if values is not None:
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().numpy()
        if isinstance(values, np.ndarray):
            if values.ndim != 1:
                raise ValueError(f"values must be 1-D, got shape {values.shape}")
            if values.dtype.kind in "iu":
                value_array = values.astype(np.int64)
            else:
                value_list = values.tolist()
        elif isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise TypeError(f"values must be an iterable or None, got {type(values).__name__}")
        else:
            value_list = []
            value_iter = iter(values)
    token_chunks: list[np.ndarray] = []
    length_chunks: list[np.ndarray] = []
    pending: list[Any] = []
    count = 0
    for key in sequences:
        if value_iter is not None and value_list is not None:
            value = next(value_iter, _MISSING)
            if value is _MISSING:
                raise ValueError(f"values has {count + len(pending)} items, fewer than the keys")
            value_list.append(value)
        pending.append(key)
        if len(pending) == _CHUNK:
            tokens, lengths = _convert_chunk(pending, count)
            token_chunks.append(tokens)
            length_chunks.append(lengths)
            count += len(pending)
            pending = []
    if pending:
        tokens, lengths = _convert_chunk(pending, count)
        token_chunks.append(tokens)
        length_chunks.append(lengths)
        count += len(pending)
    if count == 0:
        raise ValueError("no keys: a trie needs at least one key")
    if value_iter is not None and next(value_iter, _MISSING) is not _MISSING:
        raise ValueError(f"values has more items than the {count} keys")
    stored: list[Any] | np.ndarray | None = value_list
    if value_array is not None:
        stored = value_array
    if stored is not None and len(stored) != count:
        raise ValueError(f"values has {len(stored)} items but there are {count} keys")
    tokens_all = np.concatenate(token_chunks) if len(token_chunks) > 1 else token_chunks[0]
    del token_chunks
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.concatenate(length_chunks), out=offsets[1:])
    return _Ingested(tokens_all, offsets, stored)


def _build_levels(
    tokens: np.ndarray, offsets: np.ndarray, end_id: int, vocab_size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(child_start, edge_token, terminal_of_entry)`` for the keys (END appended), level by level.

    At depth ``d`` the (parent node, token) pairs of all keys still running are combined into one
    int64 ``parent·V + token``; ``np.unique`` then yields the new nodes sorted by (parent, token),
    i.e. in BFS order with each node's children contiguous and sorted.
    """
    lengths = np.diff(offsets)
    num_entries = lengths.size
    order = np.argsort(-lengths, kind="stable")  # the keys alive at depth d are a prefix of order
    sorted_lengths = lengths[order]
    starts = offsets[:-1][order]
    max_length = int(sorted_lengths[0])
    # alive[d] = number of keys with length >= d (they emit a token, END for length == d, at d)
    alive = np.searchsorted(-sorted_lengths, -np.arange(max_length + 2), side="right")
    last_token = max(tokens.size - 1, 0)
    terminal = np.empty(num_entries, dtype=np.int64)
    node = np.zeros(num_entries, dtype=np.int64)
    counts: list[np.ndarray] = []
    edge_tokens: list[np.ndarray] = []
    level_start, level_size, next_id = 0, 1, 1
    for depth in range(max_length + 1):
        running, continuing = int(alive[depth]), int(alive[depth + 1])
        index = np.minimum(starts[:running] + depth, last_token)
        step = tokens[index].astype(np.int64)
        step[continuing:] = end_id  # keys of length == depth take their END edge now
        combined = node[:running] * vocab_size + step
        unique, inverse = np.unique(combined, return_inverse=True)
        parents = unique // vocab_size
        counts.append(np.bincount(parents - level_start, minlength=level_size))
        edge_tokens.append((unique - parents * vocab_size).astype(np.int32))
        new_nodes = next_id + inverse.reshape(-1)
        terminal[order[continuing:running]] = new_nodes[continuing:]
        node = new_nodes[:continuing]
        level_start, level_size = next_id, unique.size
        next_id += unique.size
    counts.append(np.zeros(level_size, dtype=np.int64))
    num_nodes = next_id
    index_dtype = np.int32 if num_nodes - 1 <= _MAX_TOKEN else np.int64
    child_start = np.zeros(num_nodes + 1, dtype=index_dtype)
    np.cumsum(np.concatenate(counts), out=child_start[1:])
    edge_token = np.concatenate(edge_tokens) if edge_tokens else np.zeros(0, dtype=np.int32)
    return child_start, edge_token, terminal


def _group_values(
    terminal: np.ndarray, num_nodes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(terminal_nodes, value_index, value_start | None)`` from each entry's terminal node."""
    order = np.argsort(terminal, kind="stable")  # insertion order within a key (C4.3)
    terminal_nodes, per_key = np.unique(terminal[order], return_counts=True)
    index_dtype = np.int32 if max(num_nodes, terminal.size) <= _MAX_TOKEN else np.int64
    value_start: np.ndarray | None = None
    if per_key.size != terminal.size:
        value_start = np.zeros(per_key.size + 1, dtype=index_dtype)
        np.cumsum(per_key, out=value_start[1:])
    return terminal_nodes.astype(index_dtype), order.astype(index_dtype), value_start


# --------------------------------------------------------------------------------------------
# the trie


class Trie:
    """A static token trie in flat CSR arrays (spec 04 §2) — build with :meth:`build` or
    :meth:`load`.

    States are node ids: ``Trie.ROOT == 0`` (empty prefix), ``Trie.DEAD == -1``. Batched methods
    take and return int64 tensors; they compute on :attr:`device` (see :meth:`to`) and return
    results on the device of the ``states`` argument.
    """

    ROOT: ClassVar[int] = 0
    DEAD: ClassVar[int] = -1

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        *,
        end_id: int,
        terminated: bool,
        num_entries: int,
        max_depth: int,
        vocab_size: int,
        values: list[Any] | np.ndarray | None = None,
        values_json: np.ndarray | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        """Internal: wrap prepared arrays. Use :meth:`build` or :meth:`load` instead."""
        self._arrays = dict(arrays)
        self._cs = self._arrays["child_start"]
        self._et = self._arrays["edge_token"]
        self._terminal = self._arrays["terminal_nodes"]
        self._value_index = self._arrays["value_index"]
        self._value_start = self._arrays.get("value_start")
        self._end_id = int(end_id)
        self._terminated = bool(terminated)
        self._num_entries = int(num_entries)
        self._max_depth = int(max_depth)
        self._vocab_size = int(vocab_size)
        self._values = values
        self._values_json = values_json
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._cs_t = torch.from_numpy(self._cs).to(self._device)
        self._et_t = torch.from_numpy(self._et).to(self._device)
        self._bits = torch.tensor(
            [1 << i for i in range(31)] + [-(1 << 31)], dtype=torch.int32, device=self._device
        )
        self._arange_t = torch.arange(_WINDOW, device=self._device)
        self._numpy_advance = self._device.type == "cpu"  # tests switch it off for coverage
        self._root_rows: dict[tuple[int, bool], torch.Tensor] = {}

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[int] | torch.Tensor | np.ndarray],
        values: Iterable[Any] | None = None,
        *,
        end_id: int,
        terminated: bool = True,
    ) -> Trie:
        """Build a trie from keys (token-id sequences), streaming (spec 04 §2.3, §2.4).

        ``sequences`` may be any iterable (a generator of millions of keys is fine: it is
        consumed in chunks into a flat int32 buffer, ~4 bytes per token). ``values`` gives one
        payload per key (any objects; JSON-serialisable ones survive :meth:`save`); ``None``
        makes each key's value its insertion index. Duplicate keys keep all their values in
        insertion order (C4.3). ``end_id`` is appended to every key (spec 04 §2.2).

        Raises ValueError for no keys, an empty key, a negative id, a key that followed by
        ``end_id`` is a prefix of another key (prefix-freeness, spec 04 §2.2) or a ``values``
        length mismatch; TypeError for non-integer ids (floats, float tensors, strings).
        """
        end = _check_end_id(end_id)
        if not isinstance(terminated, bool):
            raise TypeError(f"terminated must be a bool, got {type(terminated).__name__}")
        data = _ingest(sequences, values)
        high = int(data.tokens.max()) if data.tokens.size else 0
        vocab_size = max(high, end) + 1
        child_start, edge_token, terminal = _build_levels(
            data.tokens, data.offsets, end, vocab_size
        )
        num_nodes = child_start.size - 1
        terminal_nodes, value_index, value_start = _group_values(terminal, num_nodes)
        arrays = {
            "child_start": child_start,
            "edge_token": edge_token,
            "terminal_nodes": terminal_nodes,
            "value_index": value_index,
        }
        if value_start is not None:
            arrays["value_start"] = value_start
        trie = cls(
            arrays,
            end_id=end,
            terminated=terminated,
            num_entries=int(data.offsets.size - 1),
            max_depth=int(np.diff(data.offsets).max()) + 1,
            vocab_size=vocab_size,
            values=data.values,
        )
        degree = child_start[terminal_nodes + 1] - child_start[terminal_nodes]
        bad = np.flatnonzero(degree != 0)
        if bad.size:
            trie._raise_not_prefix_free(int(terminal_nodes[bad[0]]))
        return trie

    def _raise_not_prefix_free(self, node: int) -> None:
        key = self.key_of(node)[:-1]  # the path ends with the END appended to the key
        longer = node
        while self._degree(longer):
            longer = int(self._cs[longer]) + 1
        raise ValueError(
            f"the keys are not prefix-free: key {list(key)} followed by end_id {self._end_id} "
            f"is a prefix of key {list(self.key_of(longer))}. Terminated keys must be prefix-free "
            "(spec 04 §2.2): make end_id occur the same number of times in every key, or use an "
            "end_id that never occurs inside a key"
        )

    def to(self, device: torch.device | str) -> Trie:
        """A trie sharing this one's arrays whose batched operations run on ``device``."""
        clone = Trie(
            self._arrays,
            end_id=self._end_id,
            terminated=self._terminated,
            num_entries=self._num_entries,
            max_depth=self._max_depth,
            vocab_size=self._vocab_size,
            values=self._values,
            values_json=self._values_json,
            device=device,
        )
        return clone

    # ---- properties -----------------------------------------------------------------------

    @property
    def end_id(self) -> int:
        """The END token appended to every key (spec 04 §2.2)."""
        return self._end_id

    @property
    def terminated(self) -> bool:
        """True: kexue terminated keys; False: reference-compatible allowed sets (C4.9)."""
        return self._terminated

    @property
    def num_nodes(self) -> int:
        """Number of nodes including the root (C4.10: ≤ 1 + total stored tokens)."""
        return int(self._cs.size - 1)

    @property
    def num_keys(self) -> int:
        """Number of distinct keys."""
        return int(self._terminal.size)

    @property
    def num_entries(self) -> int:
        """Number of (key, value) pairs inserted, duplicates included."""
        return self._num_entries

    @property
    def max_depth(self) -> int:
        """Longest stored path including the END token (a decoding ``maxlen``)."""
        return self._max_depth

    @property
    def vocab_size(self) -> int:
        """Largest token id stored (END included) + 1: the default mask width."""
        return self._vocab_size

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays (structure + value index + integer values; Python value objects
        and JSON value text are not counted) — the C4.10 storage figure."""
        total = sum(int(a.nbytes) for a in self._arrays.values())
        if isinstance(self._values, np.ndarray):
            total += int(self._values.nbytes)
        return total

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The structure arrays by name (read them, do not write them; after :meth:`load` with
        ``mmap=True`` they are memory-mapped views of the file)."""
        return dict(self._arrays)

    @property
    def device(self) -> torch.device:
        """Where the batched operations compute."""
        return self._device

    def __len__(self) -> int:
        return self.num_keys

    def __repr__(self) -> str:
        mode = "terminated" if self._terminated else "reference-compatible"
        return (
            f"Trie(num_keys={self.num_keys}, num_entries={self._num_entries}, "
            f"num_nodes={self.num_nodes}, vocab_size={self._vocab_size}, end_id={self._end_id}, "
            f"{mode}, nbytes={self.nbytes})"
        )

    # ---- scalar navigation (numpy) --------------------------------------------------------

    def _degree(self, node: int) -> int:
        return int(self._cs[node + 1]) - int(self._cs[node])

    def _child(self, node: int, token: int) -> int:
        """Storage-level child of ``node`` by ``token`` or -1 (hidden edges included)."""
        if not 0 <= token < self._vocab_size:
            return -1
        low, high = int(self._cs[node]), int(self._cs[node + 1])
        if low == high:
            return -1
        slot = low + int(np.searchsorted(self._et[low:high], token))
        if slot < high and int(self._et[slot]) == token:
            return slot + 1
        return -1

    def _hidden(self, node: int, token: int, child: int) -> bool:
        """Reference mode: the terminator edge is not allowed when its node has other children."""
        return (
            not self._terminated
            and token == self._end_id
            and self._degree(child) == 0
            and self._degree(node) >= 2
        )

    def _storage_walk(self, tokens: Sequence[int]) -> int:
        node = 0
        for token in tokens:
            node = self._child(node, token)
            if node < 0:
                return -1
        return node

    def walk(self, prefix: Sequence[int]) -> int:
        """The state after ``prefix`` (taking only allowed edges), or -1 if it is not a trie path.

        In reference-compatible mode a hidden terminator edge counts as not allowed (C4.9).
        """
        node = 0
        for token in _lookup_tokens(prefix, "prefix"):
            child = self._child(node, token)
            if child < 0 or self._hidden(node, token, child):
                return -1
            node = child
        return node

    def _allowed_np(self, node: int) -> np.ndarray:
        tokens = self._et[int(self._cs[node]) : int(self._cs[node + 1])].astype(np.int64)
        if not self._terminated and tokens.size >= 2:
            slot = int(np.searchsorted(tokens, self._end_id))
            if (
                slot < tokens.size
                and tokens[slot] == self._end_id
                and self._degree(int(self._cs[node]) + slot + 1) == 0
            ):
                tokens = np.delete(tokens, slot)
        return tokens

    def next_tokens(self, prefix: Sequence[int]) -> torch.Tensor:
        """The allowed set A(prefix) as a sorted int64 tensor (spec 04 §2.1; C4.2).

        Empty for a dead prefix and after a complete key.
        """
        node = self.walk(prefix)
        if node < 0:
            return torch.zeros(0, dtype=torch.int64)
        return torch.from_numpy(self._allowed_np(node))

    def key_of(self, state: int) -> tuple[int, ...]:
        """The path from the root to ``state``; for a complete state the key without its END.

        Parents are found by binary search in ``child_start`` (no parent array is stored).
        """
        node = _check_state(state, self.num_nodes)
        complete = node > 0 and self._degree(node) == 0
        path: list[int] = []
        while node > 0:
            edge = node - 1
            path.append(int(self._et[edge]))
            node = int(np.searchsorted(self._cs, edge, side="right")) - 1
        path.reverse()
        if complete:
            path.pop()  # the appended END
        return tuple(path)

    # ---- values ---------------------------------------------------------------------------

    def _value(self, entry: int) -> Any:
        if self._values is None and self._values_json is not None:
            decoded = json.loads(self._values_json.tobytes().decode("utf-8"))
            if not isinstance(decoded, list) or len(decoded) != self._num_entries:
                raise ValueError("corrupt trie file: the JSON values do not match the entries")
            self._values = decoded
        if self._values is None:
            return entry
        if isinstance(self._values, np.ndarray):
            return int(self._values[entry])
        return self._values[entry]

    def values_of(self, state: int) -> list[Any]:
        """All values stored at ``state`` in insertion order (C4.3); ``[]`` if incomplete."""
        node = _check_state(state, self.num_nodes)
        rank = int(np.searchsorted(self._terminal, node))
        if rank >= self._terminal.size or int(self._terminal[rank]) != node:
            return []
        if self._value_start is None:
            entries = self._value_index[rank : rank + 1]
        else:
            start, stop = int(self._value_start[rank]), int(self._value_start[rank + 1])
            entries = self._value_index[start:stop]
        return [self._value(int(entry)) for entry in entries]

    def _terminal_of(self, key: Sequence[int]) -> int:
        tokens = _lookup_tokens(key)
        node = self._storage_walk([*tokens, self._end_id]) if tokens else -1
        if node < 0 or self._degree(node) != 0:
            return -1
        return node

    def get(self, key: Sequence[int], default: Any = None) -> Any:
        """The list of values of ``key`` (without the appended END) or ``default``.

        Storage-level: finds keys that reference-compatible decoding cannot produce, too.
        """
        node = self._terminal_of(key)
        return default if node < 0 else self.values_of(node)

    def get_first(self, key: Sequence[int], default: Any = _MISSING) -> Any:
        """The first value inserted for ``key`` (the KgCLUE evaluation takes the first; C4.3).

        KeyError if the key is absent and no ``default`` is given.
        """
        node = self._terminal_of(key)
        if node < 0:
            if default is _MISSING:
                raise KeyError(f"key {list(_lookup_tokens(key))} is not in the trie")
            return default
        return self.values_of(node)[0]

    def __contains__(self, key: object) -> bool:
        return self._terminal_of(key) >= 0  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        """All keys in lexicographic order (``keys()``)."""
        return self.keys()

    def keys(self, prefix: Sequence[int] = ()) -> Iterator[tuple[int, ...]]:
        """All stored keys (without END) that start with ``prefix``, in lexicographic order.

        An iterative depth-first walk of the prefix's subtree; a key ending at a node comes
        before the keys continuing through it. Storage-level, like :meth:`get`.
        """
        tokens = tuple(_lookup_tokens(prefix, "prefix"))
        node = self._storage_walk(tokens)
        if node < 0 or (node > 0 and self._degree(node) == 0):
            return
        stack: list[tuple[int, tuple[int, ...]]] = [(node, tokens)]
        end, starts, edge_tokens = self._end_id, self._cs, self._et
        while stack:
            node, path = stack.pop()
            low, high = int(starts[node]), int(starts[node + 1])
            pushes: list[tuple[int, tuple[int, ...]]] = []
            for child, token in enumerate(edge_tokens[low:high].tolist(), low + 1):
                if token == end and starts[child] == starts[child + 1]:  # a key ends here
                    yield path
                else:
                    pushes.append((child, (*path, token)))
            stack.extend(reversed(pushes))

    # ---- batched operations (torch) -------------------------------------------------------

    def initial_states(
        self, batch_size: int, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """``batch_size`` root states (int64 zeros) on ``device`` (default :attr:`device`)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
            raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size}")
        return torch.zeros(int(batch_size), dtype=torch.int64, device=device or self._device)

    def _states(self, states: object, name: str = "states") -> torch.Tensor:
        """Validated int64 [B] states on :attr:`device`."""
        if not isinstance(states, torch.Tensor):
            if isinstance(states, (str, bytes)) or not isinstance(states, Iterable):
                raise TypeError(f"{name} must be an int64 tensor [B], got {type(states).__name__}")
            states = torch.tensor(_lookup_tokens(states, name), dtype=torch.int64)
        if states.dtype == torch.bool or states.is_floating_point() or states.is_complex():
            raise TypeError(f"{name} must be an integer tensor of node ids, got {states.dtype}")
        if states.ndim != 1:
            raise ValueError(
                f"{name} must be 1-D [batch] node ids, got shape {tuple(states.shape)} (flatten "
                "batch x beams into one dimension)"
            )
        states = states.to(device=self._device, dtype=torch.int64)
        if states.numel():
            low, high = (int(v) for v in torch.aminmax(states))
            if low < -1 or high >= self.num_nodes:
                raise ValueError(
                    f"{name} holds {low if low < -1 else high}, not a state of this trie (valid: "
                    f"-1 .. {self.num_nodes - 1}); states come from walk/advance/children"
                )
        return states

    # Gathers use index_select: on CPU it is several times faster than advanced indexing.

    def _ranges(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First edge and degree of every state (degree 0 for the dead state)."""
        clamped = states.clamp(min=0)
        low = self._cs_t.index_select(0, clamped).long()
        degree = self._cs_t.index_select(0, clamped + 1).long() - low
        return low, torch.where(states >= 0, degree, 0)

    def _leaf(self, nodes: torch.Tensor) -> torch.Tensor:
        clamped = nodes.clamp(min=0)
        return self._cs_t.index_select(0, clamped) == self._cs_t.index_select(0, clamped + 1)

    def _find(self, low: torch.Tensor, degree: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Storage-level child by token per row (-1 if absent): window compare or bisection."""
        if low.numel() == 0:
            return low.clone()
        widest = int(degree.max())
        if widest == 0:
            return torch.full_like(low, -1)
        edges = self._et_t
        if widest <= _WINDOW:
            offsets = self._arange_t[:widest]
            inside = offsets < degree[:, None]
            slots = torch.where(inside, low[:, None] + offsets, 0)
            window = edges.index_select(0, slots.view(-1)).view(slots.shape)
            hit = (window == tokens[:, None]) & inside
            found = hit.any(dim=1)
            position = hit.to(torch.uint8).argmax(dim=1)
            return torch.where(found, low + position + 1, -1)
        last = max(edges.numel() - 1, 0)
        lower, upper = low.clone(), low + degree
        for _ in range(widest.bit_length()):
            middle = (lower + upper) >> 1
            less = edges.index_select(0, middle.clamp(max=last)) < tokens
            active = lower < upper
            lower = torch.where(active & less, middle + 1, lower)
            upper = torch.where(active & ~less, middle, upper)
        hit = edges.index_select(0, lower.clamp(max=last)) == tokens
        return torch.where((lower < low + degree) & hit, lower + 1, -1)

    def _advance_numpy(self, states: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """CPU :meth:`advance` in numpy (tiny per-op overhead): a batched binary lifting, i.e.
        find the last edge of each row's slice whose token is < the query, then compare."""
        clamped = np.maximum(states, 0)
        low = self._cs[clamped].astype(np.int64)
        high = self._cs[clamped + 1].astype(np.int64)
        high[states < 0] = low[states < 0]
        degree = high - low
        widest = int(degree.max()) if degree.size else 0
        child = np.full(states.shape, -1, dtype=np.int64)
        if widest == 0:
            return child
        position = low - 1  # the last slot known to hold a token < the query (none yet)
        step = 1 << (widest.bit_length() - 1)
        while step:
            candidate = position + step
            ok = candidate < high
            ok[ok] = self._et[candidate[ok]] < tokens[ok]
            position[ok] = candidate[ok]
            step >>= 1
        slot = position + 1
        hit = slot < high
        hit[hit] = self._et[slot[hit]] == tokens[hit]
        child[hit] = slot[hit] + 1
        if not self._terminated:
            hidden = hit & (tokens == self._end_id) & (degree >= 2)
            hidden[hidden] = self._cs[child[hidden]] == self._cs[child[hidden] + 1]
            child[hidden] = -1
        return child

    def _hidden_mask(
        self, tokens: torch.Tensor, children: torch.Tensor, parent_degree: torch.Tensor
    ) -> torch.Tensor:
        return (
            (tokens == self._end_id) & (children >= 0) & (parent_degree >= 2) & self._leaf(children)
        )

    def advance(self, states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The state after taking ``tokens[b]`` from ``states[b]`` (int64 ``[B]``, spec 04 §2.3).

        -1 where the token is not allowed, the state is dead (-1) or complete. Vectorised over
        rows: a batched binary search in each row's child slice (numpy on CPU, where per-op
        overhead dominates at beam sizes; torch window compare or bisection on other devices).
        """
        source = states.device if isinstance(states, torch.Tensor) else self._device
        current = self._states(states)
        step = tokens
        if not isinstance(step, torch.Tensor):
            step = torch.tensor(_lookup_tokens(step, "tokens"), dtype=torch.int64)
        if step.dtype == torch.bool or step.is_floating_point() or step.is_complex():
            raise TypeError(f"tokens must be an integer tensor, got {step.dtype}")
        if tuple(step.shape) != tuple(current.shape):
            raise ValueError(
                f"tokens must have the shape of states {tuple(current.shape)}, got "
                f"{tuple(step.shape)}"
            )
        step = step.to(device=self._device, dtype=torch.int64)
        if self._numpy_advance:
            return torch.from_numpy(self._advance_numpy(current.numpy(), step.numpy())).to(source)
        low, degree = self._ranges(current)
        child = self._find(low, degree, step)
        if not self._terminated:
            child = torch.where(self._hidden_mask(step, child, degree), -1, child)
        return child.to(source)

    def is_complete(self, states: torch.Tensor) -> torch.Tensor:
        """bool ``[B]``: the state's node carries values (terminated: END has been taken)."""
        source = states.device if isinstance(states, torch.Tensor) else self._device
        current = self._states(states)
        return ((current >= 0) & self._leaf(current)).to(source)

    def num_children(self, states: torch.Tensor) -> torch.Tensor:
        """int64 ``[B]``: size of each state's allowed set (0 for dead and complete states)."""
        source = states.device if isinstance(states, torch.Tensor) else self._device
        current = self._states(states)
        low, degree = self._ranges(current)
        if not self._terminated:
            end = torch.full_like(current, self._end_id)
            child = self._find(low, degree, end)
            degree = degree - self._hidden_mask(end, child, degree).long()
        return degree.to(source)

    def _children(self, states: torch.Tensor) -> TrieChildren:
        low, degree = self._ranges(states)
        total = int(degree.sum()) if degree.numel() else 0
        rows = torch.repeat_interleave(degree, output_size=total)
        starts = torch.cumsum(degree, 0) - degree
        edges = torch.arange(total, device=self._device) + (low - starts).index_select(0, rows)
        tokens = self._et_t.index_select(0, edges).long()
        children = edges + 1
        if not self._terminated and total:
            hidden = self._hidden_mask(tokens, children, degree.index_select(0, rows))
            if bool(hidden.any()):
                keep = ~hidden
                rows, tokens, children = rows[keep], tokens[keep], children[keep]
        return TrieChildren(rows, tokens, children)

    def children(self, states: torch.Tensor) -> TrieChildren:
        """All allowed edges of all rows as flat ``(rows, tokens, states)`` int64 tensors.

        Row-major, tokens ascending within a row (one ``repeat_interleave``); dead and complete
        states contribute nothing. This is what beam search expands (spec 04 §3.4).
        """
        source = states.device if isinstance(states, torch.Tensor) else self._device
        result = self._children(self._states(states))
        return TrieChildren(*(t.to(source) for t in result))

    def states_of(self, prefixes: Sequence[Sequence[int]] | torch.Tensor) -> torch.Tensor:
        """int64 ``[B]`` states of a batch of prefixes (ragged sequences, or a 2-D tensor whose
        rows all have the same length, walked column by column with :meth:`advance`)."""
        if isinstance(prefixes, torch.Tensor):
            if prefixes.dtype == torch.bool or prefixes.is_floating_point():
                raise TypeError(f"prefixes must be an integer tensor, got {prefixes.dtype}")
            if prefixes.ndim != 2:
                raise ValueError(
                    f"a prefixes tensor must be 2-D [B, T], got shape {tuple(prefixes.shape)}; "
                    "pass ragged prefixes as a list of lists"
                )
            source = prefixes.device
            current = torch.zeros(prefixes.shape[0], dtype=torch.int64, device=self._device)
            steps = prefixes.to(device=self._device, dtype=torch.int64)
            for column in range(steps.shape[1]):
                current = self.advance(current, steps[:, column])
            return current.to(source)
        if isinstance(prefixes, (str, bytes)) or not isinstance(prefixes, Iterable):
            raise TypeError(
                f"prefixes must be a list of token-id sequences or a 2-D tensor, got "
                f"{type(prefixes).__name__}"
            )
        return torch.tensor([self.walk(p) for p in prefixes], dtype=torch.int64)

    def _root_row(self, vocab_size: int, packed: bool) -> torch.Tensor:
        """Cached allowed row of the root (the widest node: ~19k children on 300k keys)."""
        cached = self._root_rows.get((vocab_size, packed))
        if cached is None:
            root = torch.zeros(1, dtype=torch.int64, device=self._device)
            cached = self._fill(self._new_mask(1, vocab_size, packed), root, vocab_size, packed)
            self._root_rows[(vocab_size, packed)] = cached[0]
            return cached[0]
        return cached

    def _new_mask(self, rows: int, vocab_size: int, packed: bool) -> torch.Tensor:
        """A zeroed mask (uint8 zeros viewed as bool: torch's bool fill is slow on CPU)."""
        if packed:
            return torch.zeros(rows, -(-vocab_size // 32), dtype=torch.int32, device=self._device)
        zeros = torch.zeros(rows, vocab_size, dtype=torch.uint8, device=self._device)
        return zeros.view(torch.bool)

    def _fill(
        self, out: torch.Tensor, states: torch.Tensor, vocab_size: int, packed: bool
    ) -> torch.Tensor:
        """Set the allowed entries of every row of the zeroed ``out`` (one scatter)."""
        rows, tokens, _ = self._children(states)
        if tokens.numel() and vocab_size < self._vocab_size:
            high = int(tokens.max())
            if high >= vocab_size:
                raise ValueError(
                    f"token {high} is allowed but vocab_size is {vocab_size}; the mask must be at "
                    f"least trie.vocab_size = {self._vocab_size} wide"
                )
        if packed:
            words = out.shape[1]
            out.view(-1).index_add_(0, rows * words + (tokens >> 5), self._bits[tokens & 31])
        else:
            out.view(-1).index_fill_(0, rows * vocab_size + tokens, True)
        return out

    def allowed_mask(
        self,
        prefixes: Sequence[Sequence[int]] | torch.Tensor | None = None,
        vocab_size: int | None = None,
        *,
        states: torch.Tensor | None = None,
        packed: bool = False,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Allowed-token mask of a batch (spec 04 §2.3 ``allowed_batch``; C4.11).

        Give either ``prefixes`` (walked with :meth:`states_of`) or ``states``. Returns bool
        ``[B, V]`` (True = allowed) or, ``packed=True``, int32 ``[B, ceil(V/32)]`` with bit
        ``t % 32`` of word ``t // 32`` set for allowed ``t`` (bit 31 is the sign bit). Dead and
        complete rows are all False. ``V = vocab_size`` defaults to :attr:`vocab_size`; an
        allowed token ``>= V`` raises ValueError. Root rows copy a cached row; the other rows
        are filled by one ``repeat_interleave`` and one scatter. ``out`` (the right shape and
        dtype, on :attr:`device`) is reused instead of allocating.
        """
        if (prefixes is None) == (states is None):
            raise ValueError("give exactly one of prefixes and states")
        if vocab_size is None:
            width = self._vocab_size
        elif isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        else:
            width = int(vocab_size)
        if width <= 0:
            raise ValueError(f"vocab_size must be positive, got {width}")
        if states is None:
            source = prefixes.device if isinstance(prefixes, torch.Tensor) else self._device
            current = self.states_of(prefixes).to(self._device)  # type: ignore[arg-type]
        else:
            source = states.device if isinstance(states, torch.Tensor) else self._device
            current = self._states(states)
        rows = current.numel()
        if out is None:
            mask = self._new_mask(rows, width, packed)
        else:
            expected = self._new_mask(0, width, packed)
            if (
                not isinstance(out, torch.Tensor)
                or out.dtype != expected.dtype
                or tuple(out.shape) != (rows, expected.shape[1])
                or out.device != self._device
                or not out.is_contiguous()
            ):
                raise ValueError(
                    f"out must be a contiguous {expected.dtype} tensor of shape "
                    f"{(rows, expected.shape[1])} on {self._device}"
                )
            mask = out
            (mask.view(torch.uint8) if mask.dtype == torch.bool else mask).zero_()
        if rows:
            root = current == 0
            roots = int(root.sum())
            if roots == rows:  # the first decoding step: no scatter at all
                mask.copy_(self._root_row(width, packed).expand_as(mask))
                return mask.to(source)
            self._fill(mask, torch.where(root, -1, current), width, packed)
            if roots:
                mask[root] = self._root_row(width, packed)
        return mask.to(source)

    # ---- persistence ----------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the trie to one memory-mappable file (format in :mod:`._storage`); atomic.

        Values are stored as an int64 array when they are all integers (or the default
        insertion indices), else as JSON text (TypeError if they are not JSON-serialisable).
        """
        arrays = dict(self._arrays)
        kind = "index"
        if self._values is None and self._values_json is not None:
            kind, arrays["values_json"] = "json", self._values_json
        elif isinstance(self._values, np.ndarray):
            kind, arrays["values_int64"] = "int64", self._values
        elif self._values is not None:
            items = self._values
            if all(
                isinstance(v, numbers.Integral)
                and not isinstance(v, bool)
                and -(2**63) <= int(v) < 2**63
                for v in items
            ):
                kind, arrays["values_int64"] = "int64", np.asarray(items, dtype=np.int64)
            else:
                try:
                    text = json.dumps(items, allow_nan=False, ensure_ascii=False)
                except (TypeError, ValueError) as error:
                    raise TypeError(
                        f"cannot save the values as JSON ({error}); store JSON-serialisable "
                        "values (str, int, float, bool, None, list, dict) or ids into a table"
                    ) from error
                kind = "json"
                arrays["values_json"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        meta = {
            "end_id": self._end_id,
            "terminated": self._terminated,
            "num_nodes": self.num_nodes,
            "num_keys": self.num_keys,
            "num_entries": self._num_entries,
            "max_depth": self._max_depth,
            "vocab_size": self._vocab_size,
            "values": kind,
        }
        return write_arrays(path, arrays, meta, kind=_KIND)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        mmap: bool = True,
        verify: bool = False,
        device: torch.device | str | None = None,
    ) -> Trie:
        """Load a file written by :meth:`save`.

        ``mmap=True`` maps the arrays copy-on-write (zero copy; pages load on demand and are
        shared between processes; the file is never modified). ``verify=True`` checks every
        array's CRC32 (reads the whole file). ValueError for a foreign, truncated or corrupt
        file.
        """
        arrays, meta = read_arrays(path, kind=_KIND, mmap=mmap, verify=verify)
        try:
            end_id = int(meta["end_id"])
            terminated = bool(meta["terminated"])
            num_nodes = int(meta["num_nodes"])
            num_keys = int(meta["num_keys"])
            num_entries = int(meta["num_entries"])
            max_depth = int(meta["max_depth"])
            vocab_size = int(meta["vocab_size"])
            values_kind = str(meta["values"])
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: corrupt trie metadata ({error})") from error
        expected = {
            "child_start": (num_nodes + 1,),
            "edge_token": (num_nodes - 1,),
            "terminal_nodes": (num_keys,),
            "value_index": (num_entries,),
        }
        if "value_start" in arrays:
            expected["value_start"] = (num_keys + 1,)
        if values_kind == "int64":
            expected["values_int64"] = (num_entries,)
        elif values_kind == "json":
            expected["values_json"] = arrays["values_json"].shape if "values_json" in arrays else ()
        elif values_kind != "index":
            raise ValueError(f"{path}: unknown values kind {values_kind!r}")
        for name, shape in expected.items():
            if name not in arrays or tuple(arrays[name].shape) != shape:
                found = tuple(arrays[name].shape) if name in arrays else "missing"
                raise ValueError(
                    f"{path}: corrupt trie file: array {name!r} is {found}, expected {shape}"
                )
        if arrays["child_start"][0] != 0 or int(arrays["child_start"][-1]) != num_nodes - 1:
            raise ValueError(f"{path}: corrupt trie file: child_start does not span the edges")
        if verify:
            cs = arrays["child_start"]
            if num_nodes > 1 and (
                bool(np.any(np.diff(cs) < 0)) or int(arrays["edge_token"].min()) < 0
            ):
                raise ValueError(f"{path}: corrupt trie file: structure arrays are inconsistent")
        values = arrays.pop("values_int64", None)
        values_json = arrays.pop("values_json", None)
        return cls(
            arrays,
            end_id=end_id,
            terminated=terminated,
            num_entries=num_entries,
            max_depth=max_depth,
            vocab_size=vocab_size,
            values=values,
            values_json=values_json,
            device=device,
        )
