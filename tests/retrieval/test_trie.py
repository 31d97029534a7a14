"""Trie and DictTrie: the post's example, brute-force properties (C4.2, C4.3, C4.9, C4.10)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from kexue.retrieval import DictTrie, Trie

SENTENCES = [
    "明月几时有",
    "明天会更好",
    "明天下雨",
    "明天下午开会",
    "明天下午放假",
    "明年见",
    "今夕是何年",
    "今天去哪里玩",
]
END = 0


def ids(text: str) -> list[int]:
    return [ord(c) for c in text]


def chars(tokens: torch.Tensor) -> set[str]:
    return {chr(t) for t in tokens.tolist()}


@pytest.fixture(scope="module")
def post_trie() -> Trie:
    return Trie.build([ids(s) for s in SENTENCES], SENTENCES, end_id=END)


# ---- brute force -----------------------------------------------------------------------------


def stored_paths(keys: list[tuple[int, ...]], end: int) -> set[tuple[int, ...]]:
    return {(*k, end) for k in keys}


def brute_children(paths: set[tuple[int, ...]]) -> dict[tuple[int, ...], set[int]]:
    children: dict[tuple[int, ...], set[int]] = defaultdict(set)
    for path in paths:
        for i in range(len(path)):
            children[path[:i]].add(path[i])
    return children


def reference_allowed(keys: list[tuple[int, ...]], end: int) -> dict[tuple[int, ...], list[int]]:
    """The author's ``next_ones`` on an unterminated trie, at every prefix of every key: the
    children of the prefix's node, or only END once a key is complete and has no children."""
    children = brute_children(set(keys) | {()})
    allowed = {}
    for key in keys:
        for i in range(len(key) + 1):
            prefix = key[:i]
            allowed[prefix] = sorted(children.get(prefix, ())) or [end]
    return allowed


def unpack(words: torch.Tensor, vocab: int) -> torch.Tensor:
    bits = words.numpy().view(np.uint32)[:, :, None] >> np.arange(32, dtype=np.uint32)
    return torch.from_numpy((bits & 1).astype(bool).reshape(words.shape[0], -1)[:, :vocab])


def random_keys(
    seed: int, count: int, vocab: int, max_length: int, share: float, end: int
) -> list[tuple[int, ...]]:
    """Keys over ``range(vocab)`` minus ``end``; with probability ``share`` a key extends a
    prefix of an earlier key (shared prefixes and exact duplicates)."""
    rng = np.random.default_rng(seed)
    alphabet = np.array([t for t in range(vocab + 1) if t != end])
    keys: list[tuple[int, ...]] = []
    for _ in range(count):
        length = int(rng.integers(1, max_length + 1))
        head: tuple[int, ...] = ()
        if keys and rng.random() < share:
            base = keys[int(rng.integers(len(keys)))]
            head = base[: int(rng.integers(0, min(len(base), length) + 1))]
        tail = rng.choice(alphabet, size=length - len(head)).tolist()
        keys.append((*head, *tail))
    return keys


key_sets = st.builds(
    lambda seed, count, vocab, length, share, end_kind: (
        random_keys(seed, count, vocab, length, share, [0, vocab, vocab // 2][end_kind]),
        [0, vocab, vocab // 2][end_kind],
    ),
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 500),
    vocab=st.integers(5, 50),
    length=st.integers(1, 12),
    share=st.sampled_from([0.0, 0.5, 0.9]),
    end_kind=st.integers(0, 2),
)


# ---- the post's example (C4.2) ---------------------------------------------------------------


def test_post_example_allowed_sets(post_trie: Trie) -> None:
    assert chars(post_trie.next_tokens([])) == {"明", "今"}
    assert chars(post_trie.next_tokens(ids("明"))) == {"月", "天", "年"}
    assert chars(post_trie.next_tokens(ids("明天"))) == {"会", "下"}
    assert chars(post_trie.next_tokens(ids("明天下"))) == {"雨", "午"}
    assert chars(post_trie.next_tokens(ids("明天下午"))) == {"开", "放"}
    assert post_trie.next_tokens(ids("明后天")).numel() == 0  # dead prefix
    tokens = post_trie.next_tokens(ids("明"))
    assert tokens.dtype == torch.int64
    assert tokens.tolist() == sorted(tokens.tolist())


def test_post_example_end_allowed_exactly_at_complete_keys(post_trie: Trie) -> None:
    complete = {tuple(ids(s)) for s in SENTENCES}
    for sentence in SENTENCES:
        for i in range(len(sentence) + 1):
            prefix = ids(sentence[:i])
            allowed = post_trie.next_tokens(prefix).tolist()
            assert (END in allowed) == (tuple(prefix) in complete), sentence[:i]
        state = post_trie.walk([*ids(sentence), END])
        assert state > 0
        assert post_trie.is_complete(torch.tensor([state])).tolist() == [True]
        assert post_trie.next_tokens([*ids(sentence), END]).numel() == 0
        assert post_trie.values_of(state) == [sentence]
        assert post_trie.key_of(state) == tuple(ids(sentence))


def test_post_example_lookups(post_trie: Trie) -> None:
    assert len(post_trie) == 8
    assert post_trie.num_entries == 8
    assert post_trie.max_depth == 7  # 今天去哪里玩 + END
    assert post_trie.vocab_size == max(max(ids(s)) for s in SENTENCES) + 1
    assert post_trie.get(ids("明天下雨")) == ["明天下雨"]
    assert post_trie.get(ids("明天下"), "absent") == "absent"  # a prefix, not a key
    assert post_trie.get_first(ids("明年见")) == "明年见"
    with pytest.raises(KeyError, match="not in the trie"):
        post_trie.get_first(ids("明天"))
    assert post_trie.get_first(ids("明天"), None) is None
    assert ids("今夕是何年") in post_trie
    assert ids("今夕") not in post_trie
    assert [] not in post_trie
    under = ["".join(map(chr, k)) for k in post_trie.keys(ids("明天"))]
    assert under == sorted(["明天会更好", "明天下雨", "明天下午开会", "明天下午放假"])
    assert list(post_trie.keys(ids("明天下雨"))) == [tuple(ids("明天下雨"))]
    assert list(post_trie.keys([*ids("明天下雨"), END])) == []
    assert list(post_trie.keys(ids("后"))) == []
    everything = ["".join(map(chr, k)) for k in post_trie]
    assert everything == sorted(SENTENCES)
    assert list(post_trie) == list(post_trie.keys(()))
    # 40 characters + 8 ENDs; sharing 明 (6 keys), 今 (2), 明天 (4), 明天下 (3), 明天下午 (2)
    # saves 5 + 1 + 3 + 2 + 1 = 12 nodes (C4.10)
    total = sum(len(s) + 1 for s in SENTENCES)
    assert total == 48
    assert post_trie.num_nodes - 1 == total - 12


def test_post_example_batched_states(post_trie: Trie) -> None:
    prefixes = ["", "明", "明天下", "明天下雨", "今天去哪", "后天"]
    states = post_trie.states_of([ids(p) for p in prefixes])
    assert states.dtype == torch.int64
    assert states[0] == Trie.ROOT
    assert states[-1] == Trie.DEAD
    rows, tokens, children = post_trie.children(states)
    for b, prefix in enumerate(prefixes):
        got = tokens[rows == b].tolist()
        assert got == post_trie.next_tokens(ids(prefix)).tolist()
        for token, child in zip(got, children[rows == b].tolist(), strict=True):
            assert child == post_trie.walk([*ids(prefix), token])
    assert post_trie.num_children(states).tolist() == [2, 3, 2, 1, 1, 0]
    assert post_trie.is_complete(states).tolist() == [False] * 6
    step = post_trie.advance(states, torch.tensor([ord("明"), ord("天"), ord("午"), END, 0, 0]))
    assert step.tolist()[:4] == [
        post_trie.walk(ids("明")),
        post_trie.walk(ids("明天")),
        post_trie.walk(ids("明天下午")),
        post_trie.walk([*ids("明天下雨"), END]),
    ]
    assert step.tolist()[4:] == [-1, -1]  # token not allowed; dead state stays dead
    assert post_trie.is_complete(step).tolist() == [False, False, False, True, False, False]
    assert post_trie.advance(step, torch.tensor([0] * 6))[3] == -1  # complete: no successor


def test_dict_trie_agrees_on_the_post_example(post_trie: Trie) -> None:
    reference = DictTrie.build([ids(s) for s in SENTENCES], SENTENCES, end_id=END)
    assert len(reference) == 8
    for sentence in SENTENCES:
        for i in range(len(sentence) + 2):
            prefix = ids(sentence[:i]) if i <= len(sentence) else [*ids(sentence), END]
            assert reference.next_tokens(prefix).tolist() == post_trie.next_tokens(prefix).tolist()
        assert reference.get(ids(sentence)) == [sentence]
        assert reference.is_complete([*ids(sentence), END])
        assert not reference.is_complete(ids(sentence))
    assert list(reference.keys(ids("明"))) == list(post_trie.keys(ids("明")))


# ---- random key sets against brute force (C4.2, C4.10) ---------------------------------------


@settings(max_examples=60, deadline=None)
@example(data=(random_keys(1, 500, 5, 12, 0.9, 0), 0))
@example(data=(random_keys(2, 500, 50, 12, 0.5, 25), 25))
@given(data=key_sets)
def test_allowed_sets_keys_and_lookups_match_brute_force(
    data: tuple[list[tuple[int, ...]], int],
) -> None:
    keys, end = data
    trie = Trie.build(keys, end_id=end)
    reference = DictTrie.build(keys, end_id=end)
    paths = stored_paths(keys, end)
    children = brute_children(paths)
    distinct = sorted(set(keys))
    # structure: one node per distinct non-empty prefix of a stored path (C4.10)
    assert trie.num_nodes == 1 + len({p[:i] for p in paths for i in range(1, len(p) + 1)})
    total_tokens = sum(len(k) + 1 for k in keys)
    assert trie.num_nodes - 1 <= total_tokens
    shared = len(keys) > len({k[0] for k in keys})  # two keys start alike => a shared node
    if shared:
        assert trie.num_nodes - 1 < total_tokens
    assert len(trie) == len(reference) == len(distinct)
    assert trie.num_entries == reference.num_entries == len(keys)
    assert trie.max_depth == max(len(k) for k in keys) + 1
    assert trie.vocab_size == max(end, *(max(k) for k in keys)) + 1
    # allowed sets at every prefix of every stored path, and after completion
    for prefix in [*children, *paths]:
        expected = sorted(children.get(prefix, ()))
        assert trie.next_tokens(prefix).tolist() == expected
        assert reference.next_tokens(prefix).tolist() == expected
    # values: insertion indices in insertion order (C4.3)
    positions: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for index, key in enumerate(keys):
        positions[key].append(index)
    for key, where in positions.items():
        assert trie.get(key) == reference.get(key) == where
        assert trie.get_first(key) == where[0]
        assert key in trie
        state = trie.walk([*key, end])
        assert trie.key_of(state) == key
        assert trie.values_of(state) == where
    # keys(prefix): sorted brute force, for the root and the prefixes of a few keys
    assert list(trie) == distinct == list(reference)
    for key in keys[:10]:
        for i in range(len(key) + 1):
            expected_keys = [k for k in distinct if k[:i] == key[:i]]
            assert list(trie.keys(key[:i])) == expected_keys
            assert list(reference.keys(key[:i])) == expected_keys


@settings(max_examples=30, deadline=None)
@example(data=(random_keys(1, 500, 5, 12, 0.9, 0), 0), extra=7)
@example(data=(random_keys(2, 500, 50, 12, 0.5, 25), 25), extra=0)
@given(data=key_sets, extra=st.integers(0, 40))
def test_batched_operations_match_brute_force(
    data: tuple[list[tuple[int, ...]], int], extra: int
) -> None:
    keys, end = data
    trie = Trie.build(keys, end_id=end)
    paths = stored_paths(keys, end)
    children = brute_children(paths)
    rng = np.random.default_rng(len(keys))
    prefixes = sorted([*children, *paths])
    if len(prefixes) > 300:
        prefixes = [prefixes[i] for i in rng.choice(len(prefixes), 300, replace=False)]
    prefixes.append((trie.vocab_size + 5,))  # a dead prefix
    states = trie.states_of([list(p) for p in prefixes])
    assert states.tolist() == [trie.walk(p) for p in prefixes]
    vocab = trie.vocab_size + extra  # also widths that are not multiples of 32
    expected = torch.zeros(len(prefixes), vocab, dtype=torch.bool)
    for b, prefix in enumerate(prefixes):
        expected[b, sorted(children.get(prefix, ()))] = True
    mask = trie.allowed_mask(states=states, vocab_size=vocab)
    assert mask.dtype == torch.bool
    assert torch.equal(mask, expected)
    assert torch.equal(trie.allowed_mask([list(p) for p in prefixes], vocab), expected)
    packed = trie.allowed_mask(states=states, vocab_size=vocab, packed=True)
    assert packed.dtype == torch.int32
    assert packed.shape == (len(prefixes), -(-vocab // 32))
    assert torch.equal(unpack(packed, vocab), expected)
    assert trie.num_children(states).tolist() == expected.sum(1).tolist()
    assert trie.is_complete(states).tolist() == [p in paths for p in prefixes]
    rows, tokens, nodes = trie.children(states)
    assert torch.equal(rows, expected.nonzero()[:, 0])
    assert torch.equal(tokens, expected.nonzero()[:, 1])
    assert nodes.tolist() == [
        trie.walk((*prefixes[r], t)) for r, t in zip(rows.tolist(), tokens.tolist(), strict=True)
    ]
    # advance: every (state, token) pair, token over the whole vocabulary and beyond
    grid = torch.arange(vocab + 1)
    step = trie.advance(states.repeat_interleave(grid.numel()), grid.repeat(len(prefixes)))
    table = step.view(len(prefixes), grid.numel())
    allowed_grid = torch.cat([expected, torch.zeros(len(prefixes), 1, dtype=torch.bool)], 1)
    assert torch.equal(table >= 0, allowed_grid)
    where = allowed_grid.nonzero().tolist()
    assert [int(table[b, t]) for b, t in where] == [trie.walk((*prefixes[b], t)) for b, t in where]
    trie._numpy_advance = False  # the torch search used on accelerators gives the same answers
    assert torch.equal(
        trie.advance(states.repeat_interleave(grid.numel()), grid.repeat(len(prefixes))), step
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    count=st.integers(1, 200),
    vocab=st.integers(5, 30),
)
def test_kgclue_layout_keys_with_inner_end_tokens(seed: int, count: int, vocab: int) -> None:
    """Keys ``S END P`` (END inside every key, same count: prefix-free, spec 04 §2.2)."""
    rng = np.random.default_rng(seed)
    end = vocab // 2
    alphabet = [t for t in range(vocab) if t != end]
    keys = [
        (
            *rng.choice(alphabet, int(rng.integers(1, 4))).tolist(),
            end,
            *rng.choice(alphabet, int(rng.integers(0, 4))).tolist(),
        )
        for _ in range(count)
    ]
    trie = Trie.build(keys, end_id=end)
    reference = DictTrie.build(keys, end_id=end)
    children = brute_children(stored_paths(keys, end))
    for prefix in children:
        expected = sorted(children[prefix])
        assert trie.next_tokens(prefix).tolist() == expected
        assert reference.next_tokens(prefix).tolist() == expected
    assert list(trie) == sorted(set(keys)) == list(reference)
    for key in set(keys):
        assert trie.key_of(trie.walk([*key, end])) == key
        assert trie.key_of(trie.walk(key)) == key  # an incomplete state: the plain path


def test_large_degrees_use_bisection_and_agree_with_walk() -> None:
    """A root with 3000 children and a node with 600: advance bisects instead of windowing."""
    keys = [[t] for t in range(1, 3001)] + [[5, t] for t in range(1, 601)]
    trie = Trie.build(keys, end_id=0)
    states = torch.tensor([0, 0, 0, 0, trie.walk([5]), trie.walk([5]), trie.walk([5]), -1])
    tokens = torch.tensor([1, 3000, 3001, 0, 0, 600, 601, 1])
    expected = [trie.walk([1]), trie.walk([3000]), -1, -1, trie.walk([5, 0]), trie.walk([5, 600])]
    assert trie.advance(states, tokens).tolist() == [*expected, -1, -1]
    trie._numpy_advance = False  # torch path: bisection above 256 children, window below
    assert trie.advance(states, tokens).tolist() == [*expected, -1, -1]
    assert trie.advance(states[4:], tokens[4:]).tolist() == [*expected[4:], -1, -1]
    assert trie.num_children(states).tolist() == [3000] * 4 + [601] * 3 + [0]


# ---- duplicates and values (C4.3) ------------------------------------------------------------


def test_duplicates_keep_all_values_in_insertion_order() -> None:
    keys = [[1, 2], [3], [1, 2], [1, 2, 3], [1, 2], [3]]
    values = ["a", {"m": [1]}, "b", None, "c", "d"]
    for trie in (
        Trie.build(keys, values, end_id=0),
        Trie.build(iter(keys), iter(values), end_id=0),
    ):
        assert trie.get([1, 2]) == ["a", "b", "c"]
        assert trie.get_first([1, 2]) == "a"
        assert trie.get([3]) == [{"m": [1]}, "d"]
        assert trie.get([1, 2, 3]) == [None]
        assert trie.get_first([1, 2, 3], "default") is None  # a stored None is a value
        assert (len(trie), trie.num_entries) == (3, 6)
    reference = DictTrie.build(keys, values, end_id=0)
    assert reference.get([1, 2]) == ["a", "b", "c"]
    assert reference.get_first([3]) == {"m": [1]}
    indexed = Trie.build(keys, end_id=0)
    assert indexed.get([1, 2]) == [0, 2, 4]
    assert indexed.get([3]) == [1, 5]
    assert Trie.build(keys, np.arange(10, 16), end_id=0).get([3]) == [11, 15]
    assert Trie.build(keys, torch.arange(6), end_id=0).get_first([1, 2, 3]) == 3


def test_values_length_must_match_keys() -> None:
    with pytest.raises(ValueError, match="fewer than the keys"):
        Trie.build([[1], [2]], ["a"], end_id=0)
    with pytest.raises(ValueError, match="more items"):
        Trie.build([[1], [2]], ["a", "b", "c"], end_id=0)
    with pytest.raises(ValueError, match="3 items but there are 2 keys"):
        Trie.build([[1], [2]], np.arange(3), end_id=0)
    with pytest.raises(ValueError, match="3 items but there are 2 keys"):
        DictTrie.build([[1], [2]], ["a", "b", "c"], end_id=0)


# ---- reference-compatible mode (C4.9) --------------------------------------------------------


def reachable_complete_keys(trie: Trie) -> set[tuple[int, ...]]:
    """Every key some decoding can produce: breadth-first over allowed edges (any scores)."""
    found: set[tuple[int, ...]] = set()
    frontier = torch.tensor([Trie.ROOT])
    while frontier.numel():
        complete = trie.is_complete(frontier)
        found.update(trie.key_of(int(s)) for s in frontier[complete])
        frontier = trie.children(frontier[~complete]).states
    return found


def test_reference_mode_makes_prefix_keys_unreachable() -> None:
    sep = 9
    short, long = [1, sep, 2, sep], [1, sep, 2, sep, 3]  # S|P|  and  S|P|M
    reference = Trie.build([short, long], ["no M", "with M"], end_id=sep, terminated=False)
    terminated = Trie.build([short, long], ["no M", "with M"], end_id=sep)
    assert not reference.terminated
    assert reference.next_tokens(short).tolist() == [3]  # END hidden: another child exists
    assert terminated.next_tokens(short).tolist() == [3, sep]
    assert reference.next_tokens(long).tolist() == [sep]  # no other child: END allowed
    assert reference.walk([*short, sep]) == -1
    state = reference.states_of([short])
    assert reference.allowed_mask(states=state)[0, sep].item() is False
    assert unpack(reference.allowed_mask(states=state, packed=True), 10)[0, sep].item() is False
    assert reference.num_children(state).tolist() == [1]
    assert reference.advance(state, torch.tensor([sep])).tolist() == [-1]
    reference._numpy_advance = False
    assert reference.advance(state, torch.tensor([sep])).tolist() == [-1]
    assert terminated.advance(state, torch.tensor([sep])).tolist() == [terminated.walk([*short, 9])]
    assert reachable_complete_keys(reference) == {tuple(long)}
    assert reachable_complete_keys(terminated) == {tuple(short), tuple(long)}
    # lookups are storage-level: the unreachable key is still stored
    assert reference.get(short) == ["no M"]
    assert list(reference) == [tuple(short), tuple(long)]
    dict_reference = DictTrie.build([short, long], end_id=sep, terminated=False)
    assert dict_reference.next_tokens(short).tolist() == [3]
    assert not dict_reference.is_complete([*short, sep])
    assert DictTrie.build([short, long], end_id=sep).is_complete([*short, sep])


@settings(max_examples=30, deadline=None)
@example(data=(random_keys(1, 500, 5, 12, 0.9, 0), 0))
@example(data=(random_keys(2, 500, 50, 12, 0.5, 25), 25))
@given(data=key_sets)
def test_reference_mode_matches_the_author_next_ones(
    data: tuple[list[tuple[int, ...]], int],
) -> None:
    keys, end = data  # END never occurs inside these keys, so they are storable
    trie = Trie.build(keys, end_id=end, terminated=False)
    reference = DictTrie.build(keys, end_id=end, terminated=False)
    distinct = sorted(set(keys))
    allowed = reference_allowed(distinct, end)
    for prefix, expected in allowed.items():
        assert trie.next_tokens(prefix).tolist() == expected
        assert reference.next_tokens(prefix).tolist() == expected
    prefixes = sorted(allowed)
    mask = trie.allowed_mask(states=trie.states_of([list(p) for p in prefixes]))
    rows, tokens = mask.nonzero().T.tolist()
    flat = [(prefixes[r], t) for r, t in zip(rows, tokens, strict=True)]
    assert flat == [(p, t) for p in prefixes for t in allowed[p]]
    proper_prefixes = {k[:i] for k in distinct for i in range(len(k))}
    assert reachable_complete_keys(trie) == set(distinct) - proper_prefixes


# ---- packed bitmask --------------------------------------------------------------------------


def test_packed_mask_sign_bit_and_ragged_width() -> None:
    keys = [[31], [32], [63], [64, 1], [0, 5]]
    trie = Trie.build(keys, end_id=70)
    states = trie.states_of([[], [64], [0], [31], [99]])
    packed = trie.allowed_mask(states=states, vocab_size=71, packed=True)
    assert packed.shape == (5, 3)
    root = packed[0].tolist()
    assert root[0] == -(2**31) + 1  # tokens 0 and 31: bit 31 is the sign bit
    assert root[1] == 1 - 2**31  # tokens 32 and 63
    assert root[2] == 1  # token 64
    assert packed[1].tolist() == [2, 0, 0]
    assert packed[2].tolist() == [1 << 5, 0, 0]
    assert packed[3].tolist() == [0, 0, 1 << (70 - 64)]  # END only
    assert packed[4].tolist() == [0, 0, 0]  # dead
    expected = trie.allowed_mask(states=states, vocab_size=71)
    assert torch.equal(unpack(packed, 71), expected)


def test_mask_root_rows_cache_and_out_buffer() -> None:
    keys = random_keys(3, 300, 40, 6, 0.5, 0)
    trie = Trie.build(keys, end_id=0)
    states = trie.states_of([[], list(keys[0][:1]), [], list(keys[1]), [*keys[2], 0]])
    first = trie.allowed_mask(states=states)
    again = trie.allowed_mask(states=states)
    assert torch.equal(first, again)
    assert torch.equal(first[0], first[2])
    assert first[4].sum() == 0  # complete row
    only_roots = trie.allowed_mask(states=torch.zeros(3, dtype=torch.int64))
    assert torch.equal(only_roots, first[0].expand(3, -1))
    buffer = torch.ones(5, trie.vocab_size, dtype=torch.bool)
    result = trie.allowed_mask(states=states, out=buffer)
    assert result.data_ptr() == buffer.data_ptr()
    assert torch.equal(buffer, first)
    packed_buffer = torch.full((5, -(-trie.vocab_size // 32)), -1, dtype=torch.int32)
    trie.allowed_mask(states=states, packed=True, out=packed_buffer)
    assert torch.equal(unpack(packed_buffer, trie.vocab_size), first)
    assert trie.allowed_mask(states=torch.zeros(0, dtype=torch.int64)).shape == (0, trie.vocab_size)


def test_states_of_a_tensor_equals_the_ragged_walk() -> None:
    keys = random_keys(5, 100, 20, 8, 0.7, 0)
    trie = Trie.build(keys, end_id=0)
    batch = torch.tensor([list(k[:2]) for k in keys if len(k) >= 2] + [[19, 19]])
    walked = [trie.walk(row) for row in batch.tolist()]
    assert trie.states_of(batch).tolist() == walked
    assert trie.initial_states(4).tolist() == [0, 0, 0, 0]
    mask = trie.allowed_mask(batch)
    assert torch.equal(mask, trie.allowed_mask(states=torch.tensor(walked)))
    assert trie.to("cpu").advance(torch.tensor(walked), batch[:, 0]).tolist() == [
        trie.walk([*row, row[0]]) for row in batch.tolist()
    ]


# ---- validation ------------------------------------------------------------------------------


def test_prefix_freeness_violations_raise() -> None:
    for keys in ([[1, 2], [1, 2, 9, 3]], [[1, 2, 9, 3], [1, 2]], [[1], [1, 9]]):
        with pytest.raises(
            ValueError, match=r"not prefix-free.*key \[1(, 2)?\] followed by end_id"
        ):
            Trie.build(keys, end_id=9)
        with pytest.raises(ValueError, match="not prefix-free"):
            DictTrie.build(keys, end_id=9)
        with pytest.raises(ValueError, match="not prefix-free"):
            Trie.build(keys, end_id=9, terminated=False)


@pytest.mark.parametrize(
    ("keys", "error", "match"),
    [
        ([[1, 2], []], ValueError, "key 1 is empty"),
        ([[1, -2]], ValueError, "key 0 contains the negative token id -2"),
        ([[1, 2], [1.0, 2.0]], TypeError, "key 1 contains 1.0 of type float"),
        ([[1], ["a"]], TypeError, "key 1 contains 'a'"),
        ([torch.tensor([1.0, 2.0])], TypeError, "float32 tensor"),
        ([np.array([1.5])], TypeError, "float64 array"),
        ([torch.tensor([True])], TypeError, "torch.bool tensor"),
        ([[1], "abc"], TypeError, "key 1 is a str"),
        ([[1], 7], TypeError, "key 1 is a int"),
        ([np.array([[1, 2]])], ValueError, "must be 1-D"),
        ([[2**40]], ValueError, "must be < 2147483647"),
        ([[True, False]], TypeError, "of type bool"),
        ([], ValueError, "no keys"),
    ],
)
def test_bad_keys_raise_helpful_errors(keys: list[object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Trie.build(keys, end_id=0)  # type: ignore[arg-type]


def test_bad_build_arguments_raise() -> None:
    with pytest.raises(TypeError, match="end_id must be an integer"):
        Trie.build([[1]], end_id=True)
    with pytest.raises(ValueError, match="end_id must lie in"):
        Trie.build([[1]], end_id=-1)
    with pytest.raises(TypeError, match="terminated must be a bool"):
        Trie.build([[1]], end_id=0, terminated=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="iterable of keys"):
        Trie.build(5, end_id=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty key"):
        DictTrie.build([[]], end_id=0)
    with pytest.raises(TypeError, match="of type float"):
        DictTrie.build([[0.5]], end_id=0)


def test_bad_batched_inputs_raise() -> None:
    trie = Trie.build([[1, 2], [3, 4, 5], [40]], end_id=0)
    good = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="vocab_size is 10"):
        trie.allowed_mask(states=good, vocab_size=10)  # token 40 is allowed at the root
    with pytest.raises(ValueError, match="vocab_size is 3"):
        trie.allowed_mask(states=torch.tensor([trie.walk([3])]), vocab_size=3, packed=True)
    assert trie.allowed_mask(states=torch.tensor([trie.walk([3])]), vocab_size=5).shape == (1, 5)
    with pytest.raises(ValueError, match="must be positive"):
        trie.allowed_mask(states=good, vocab_size=0)
    with pytest.raises(ValueError, match="1-D"):
        trie.allowed_mask(states=good.view(1, 2))
    with pytest.raises(TypeError, match="integer tensor"):
        trie.advance(good.float(), good)
    with pytest.raises(TypeError, match="integer tensor"):
        trie.advance(good, good.float())
    with pytest.raises(ValueError, match="shape of states"):
        trie.advance(good, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="not a state of this trie"):
        trie.children(torch.tensor([0, trie.num_nodes]))
    with pytest.raises(ValueError, match="not a state of this trie"):
        trie.is_complete(torch.tensor([-2]))
    with pytest.raises(ValueError, match="exactly one of prefixes and states"):
        trie.allowed_mask()
    with pytest.raises(ValueError, match="exactly one of prefixes and states"):
        trie.allowed_mask([[1]], states=good)
    with pytest.raises(ValueError, match="out must be"):
        trie.allowed_mask(states=good, out=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="2-D"):
        trie.states_of(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="integer token ids"):
        trie.next_tokens("ab")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="of type float"):
        trie.get([1.0])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not a node of this trie"):
        trie.key_of(trie.num_nodes)
    with pytest.raises(TypeError, match="integer node id"):
        trie.values_of(1.0)  # type: ignore[arg-type]
    assert trie.walk([-3]) == -1
    assert trie.get([-3]) is None
    assert trie.advance(good, torch.tensor([-5, 2**40])).tolist() == [-1, -1]


# ---- streaming build (C4.10 storage) ---------------------------------------------------------


def test_streaming_build_from_a_generator() -> None:
    rng = np.random.default_rng(0)
    count = 200_000
    lengths = rng.integers(5, 16, count)
    flat = (rng.zipf(1.3, int(lengths.sum())) % 50_000).astype(np.int64) + 1
    bounds = np.concatenate([[0], np.cumsum(lengths)])

    def generate() -> Iterator[list[int]]:
        for i in range(count):
            yield flat[bounds[i] : bounds[i + 1]].tolist()

    start = time.perf_counter()
    trie = Trie.build(generate(), end_id=0)
    seconds = time.perf_counter() - start
    per_key = trie.nbytes / trie.num_keys
    print(f"\n200k keys: {seconds:.2f} s, {per_key:.1f} B/key, {trie.num_nodes} nodes")
    assert trie.num_entries == count
    assert trie.num_nodes - 1 < int(lengths.sum()) + count  # Zipf heads share prefixes
    assert per_key < 100
    assert trie.arrays["edge_token"].dtype == np.int32
    assert trie.arrays["child_start"].dtype == np.int32
    for i in (0, 12_345, count - 1):
        key = flat[bounds[i] : bounds[i + 1]].tolist()
        assert i in trie.get(key)
        assert trie.key_of(trie.walk([*key, 0])) == tuple(key)
