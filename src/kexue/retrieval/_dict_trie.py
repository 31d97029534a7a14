"""``DictTrie``: the nested-dict reference implementation of spec 04 §2.4.

One Python dict per node (``token -> child``; the values list under the slot ``-1``), as in the
reference code — about 1.37 KB per stored sequence (spec 04 §8), so only for tests and tiny
knowledge bases. It has the semantics of :class:`kexue.retrieval.Trie` (END appended to every
key, prefix-freeness checked, duplicates keep all values in insertion order, the
reference-compatible allowed sets of ``terminated=False``) and serves as its test oracle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from ._trie import _check_end_id, _lookup_tokens

__all__ = ["DictTrie"]

_VALUES = -1  # the slot of a node dict holding its values list (token ids are >= 0)
_MISSING: Any = object()

_Node = dict[int, Any]


class DictTrie:
    """Nested-dict trie with the semantics of :class:`~kexue.retrieval.Trie` (spec 04 §2)."""

    def __init__(self, *, end_id: int, terminated: bool = True) -> None:
        self._end_id = _check_end_id(end_id)
        if not isinstance(terminated, bool):
            raise TypeError(f"terminated must be a bool, got {type(terminated).__name__}")
        self._terminated = terminated
        self._root: _Node = {}
        self._num_keys = 0
        self._num_entries = 0

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[int] | torch.Tensor],
        values: Iterable[Any] | None = None,
        *,
        end_id: int,
        terminated: bool = True,
    ) -> DictTrie:
        """Insert every key (with its value; default: its insertion index) in order."""
        trie = cls(end_id=end_id, terminated=terminated)
        if values is None:
            for key in sequences:
                trie.insert(key)
        else:
            keys, items = list(sequences), list(values)
            if len(keys) != len(items):
                raise ValueError(f"values has {len(items)} items but there are {len(keys)} keys")
            for key, value in zip(keys, items, strict=True):
                trie.insert(key, value)
        if trie._num_entries == 0:
            raise ValueError("no keys: a trie needs at least one key")
        return trie

    @property
    def end_id(self) -> int:
        """The END token appended to every key."""
        return self._end_id

    @property
    def terminated(self) -> bool:
        """True: terminated keys; False: reference-compatible allowed sets (C4.9)."""
        return self._terminated

    @property
    def num_keys(self) -> int:
        """Number of distinct keys."""
        return self._num_keys

    @property
    def num_entries(self) -> int:
        """Number of (key, value) pairs inserted."""
        return self._num_entries

    def __len__(self) -> int:
        return self._num_keys

    def _first_key_below(self, node: _Node, path: list[int]) -> list[int]:
        while _VALUES not in node:
            token = min(t for t in node if t != _VALUES)
            path.append(token)
            node = node[token]
        return path[:-1]  # without the END that leads to the values

    def insert(self, key: Sequence[int] | torch.Tensor, value: Any = _MISSING) -> None:
        """Add ``key`` with ``value`` (default: the insertion index); ValueError if the keys
        would stop being prefix-free (spec 04 §2.2)."""
        tokens = _lookup_tokens(key)
        if not tokens:
            raise ValueError("empty key; every key needs >= 1 token")
        if min(tokens) < 0:
            raise ValueError(f"key {tokens} contains a negative token id; ids must be >= 0")
        path = [*tokens, self._end_id]
        node = self._root
        for depth, token in enumerate(path):
            if _VALUES in node:
                raise ValueError(
                    f"the keys are not prefix-free: key {path[: depth - 1]} followed by end_id "
                    f"{self._end_id} is a prefix of key {tokens} (spec 04 §2.2)"
                )
            if token not in node:
                break
            node = node[token]
        else:
            if any(t != _VALUES for t in node):
                other = self._first_key_below(node, list(path))
                raise ValueError(
                    f"the keys are not prefix-free: key {tokens} followed by end_id "
                    f"{self._end_id} is a prefix of key {other} (spec 04 §2.2)"
                )
        node = self._root
        for token in path:
            node = node.setdefault(token, {})
        if _VALUES not in node:
            node[_VALUES] = []
            self._num_keys += 1
        node[_VALUES].append(self._num_entries if value is _MISSING else value)
        self._num_entries += 1

    def _allowed(self, node: _Node) -> list[int]:
        tokens = sorted(t for t in node if t != _VALUES)
        if not self._terminated and len(tokens) >= 2:
            end = node.get(self._end_id)
            if end is not None and _VALUES in end:
                tokens.remove(self._end_id)  # the reference hides the value slot (C4.9)
        return tokens

    def _walk(self, prefix: Sequence[int]) -> _Node | None:
        node = self._root
        for token in _lookup_tokens(prefix, "prefix"):
            if token not in self._allowed(node):
                return None
            node = node[token]
        return node

    def next_tokens(self, prefix: Sequence[int]) -> torch.Tensor:
        """The allowed next tokens after ``prefix`` as a sorted int64 tensor."""
        node = self._walk(prefix)
        return torch.tensor(self._allowed(node) if node is not None else [], dtype=torch.int64)

    def is_complete(self, prefix: Sequence[int]) -> bool:
        """Whether ``prefix`` (decoded tokens, END included) completes a key."""
        node = self._walk(prefix)
        return node is not None and _VALUES in node

    def get(self, key: Sequence[int], default: Any = None) -> Any:
        """The list of values of ``key`` (without END), or ``default``."""
        node: _Node | None = self._root
        for token in [*_lookup_tokens(key), self._end_id]:
            node = node.get(token) if node is not None else None
        if node is None or _VALUES not in node:
            return default
        return list(node[_VALUES])

    def get_first(self, key: Sequence[int], default: Any = _MISSING) -> Any:
        """The first value of ``key``; KeyError if absent and no ``default``."""
        values = self.get(key)
        if values is None:
            if default is _MISSING:
                raise KeyError(f"key {_lookup_tokens(key)} is not in the trie")
            return default
        return values[0]

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        """All keys in lexicographic order (``keys()``)."""
        return self.keys()

    def keys(self, prefix: Sequence[int] = ()) -> Iterator[tuple[int, ...]]:
        """Stored keys starting with ``prefix``, lexicographic (iterative DFS)."""
        tokens = tuple(_lookup_tokens(prefix, "prefix"))
        node: _Node | None = self._root
        for token in tokens:
            node = node.get(token) if node is not None else None
        if node is None or _VALUES in node:
            return
        stack: list[tuple[_Node, tuple[int, ...]]] = [(node, tokens)]
        while stack:
            node, path = stack.pop()
            pushes = []
            for token in sorted(t for t in node if t != _VALUES):
                child = node[token]
                if token == self._end_id and _VALUES in child:
                    yield path
                else:
                    pushes.append((child, (*path, token)))
            stack.extend(reversed(pushes))
