"""The look-ahead rule (spec 04 §4; claims C4.5 and C4.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexue.retrieval import (
    LookAhead,
    Trie,
    constrained_beam_search,
    constrained_greedy,
    constrained_log_probs,
    lcs_length,
    lookahead_weights_bruteforce,
)

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- worked example §4.5

PAD, CLS, SEP = 0, 1, 2
SUBJECT, QUESTION = "刘晓华", "刘晓华主要讲什么课程"
TRIPLES = [
    (SUBJECT, "主要成就", "", "很多"),
    (SUBJECT, "主讲课程", "广东工业大学教授", "《固体物理》"),
]
CHARS = sorted(set("".join(QUESTION + "".join(t[:3]) for t in TRIPLES)))
ID = {c: i + 3 for i, c in enumerate(CHARS)}
VOCAB = len(CHARS) + 3


def encode(text: str) -> list[int]:
    return [ID[c] for c in text]


def kgclue_key(s: str, p: str, m: str) -> list[int]:
    """KgCLUE layout ``S [SEP] P [SEP] M``; the trie appends END = [SEP]."""
    return [*encode(s), SEP, *encode(p), SEP, *encode(m)]


def decode(tokens: tuple[int, ...]) -> tuple[str, ...]:
    text = "".join("|" if t == SEP else CHARS[t - 3] for t in tokens)
    return tuple(text.split("|"))


@pytest.fixture(scope="module")
def example_trie() -> Trie:
    return Trie.build([kgclue_key(*t[:3]) for t in TRIPLES], [t[3] for t in TRIPLES], end_id=SEP)


def question_ids() -> list[int]:
    return [CLS, *encode(QUESTION), SEP]


def example_lookahead(variant: str) -> LookAhead:
    return LookAhead(question_ids(), variant=variant, sep_id=SEP, special_ids=(CLS, PAD))


def branch_model(p: float):  # type: ignore[no-untyped-def]
    """Mock model: after 主, p(要) = p and p(讲) = 1 − p; uniform everywhere else."""

    def step(prefixes: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(prefixes.shape[0], VOCAB, dtype=torch.float64)
        for r, row in enumerate(prefixes.tolist()):
            if row and row[-1] == ID["主"]:
                out[r] = float("-inf")
                out[r, ID["要"]] = math.log(p)
                out[r, ID["讲"]] = math.log(1 - p)
        return out

    return step


BRANCH = [*encode(SUBJECT), SEP, ID["主"]]


@pytest.mark.parametrize(("variant", "deltas"), [("post", (1, 3)), ("code", (2, 4))])
def test_worked_example_deltas(example_trie: Trie, variant: str, deltas: tuple[int, int]) -> None:
    lookahead = example_lookahead(variant)
    tokens, delta = lookahead.deltas(example_trie, BRANCH)
    assert tokens.tolist() == sorted([ID["要"], ID["讲"]])
    assert dict(zip(tokens.tolist(), delta.tolist(), strict=True)) == {
        ID["要"]: deltas[0],
        ID["讲"]: deltas[1],
    }
    brute = lookahead_weights_bruteforce(lookahead, example_trie, BRANCH)
    assert brute == {ID["要"]: deltas[0] + 1.0, ID["讲"]: deltas[1] + 1.0}
    result = lookahead.weights(example_trie, BRANCH)
    assert result is not None
    assert result[1].tolist() == [float(deltas[0] + 1), float(deltas[1] + 1)] or (
        result[1].tolist() == [float(deltas[1] + 1), float(deltas[0] + 1)]
    )


# spec 04 §4.5: post switches iff p < 0.618, code iff p < 0.588
TABLE = [
    ("post", 0.55, True), ("post", 0.6, True), ("post", 0.7, False),
    ("code", 0.55, True), ("code", 0.6, False), ("code", 0.7, False),
    ("post", 0.61, True), ("post", 0.62, False), ("code", 0.58, True), ("code", 0.59, False),
]  # fmt: skip


@pytest.mark.parametrize(("variant", "p", "switches"), TABLE)
def test_worked_example_decisions(
    example_trie: Trie, variant: str, p: float, switches: bool
) -> None:
    step = branch_model(p)
    lookahead = example_lookahead(variant)
    expected = (
        (SUBJECT, "主讲课程", "广东工业大学教授", "《固体物理》")
        if switches
        else (SUBJECT, "主要成就", "", "很多")
    )
    (plain,) = constrained_greedy(step, example_trie, prompt=[CLS])
    assert decode(plain.key) == (SUBJECT, "主要成就", "")  # without look-ahead, p > 0.5 wins
    (greedy,) = constrained_greedy(step, example_trie, prompt=[CLS], lookahead=lookahead)
    assert greedy.complete
    assert (*decode(greedy.key), greedy.values[0]) == expected
    for mode, min_ends in (("standard", 1), ("bert4keras", 3)):
        (hyps,) = constrained_beam_search(
            step, example_trie, num_beams=2, prompt=[CLS], lookahead=lookahead, mode=mode,
            min_ends=min_ends,
        )  # fmt: skip
        assert (*decode(hyps[0].key), hyps[0].values[0]) == expected
    # the reweighted step distribution is the closed form of §4.5
    w_yao, w_jiang = (2, 4) if variant == "post" else (3, 5)
    state = torch.tensor([example_trie.walk(BRANCH)])
    result = lookahead.weights(example_trie, BRANCH)
    assert result is not None
    dense = torch.ones(1, VOCAB, dtype=torch.float64)
    dense[0, result[0]] = result[1]
    scores = step(torch.tensor([[CLS, *BRANCH]]))
    out = constrained_log_probs(scores, example_trie, state, weights=dense)
    a, b = p ** (1 / w_yao), (1 - p) ** (1 / w_jiang)
    assert float(out[0, ID["讲"]].exp()) == pytest.approx(b / (a + b), rel=1e-12)


def test_triggers(example_trie: Trie) -> None:
    post, code = example_lookahead("post"), example_lookahead("code")
    subject = encode(SUBJECT)
    for lookahead in (post, code):
        assert not lookahead.triggered(example_trie, [])  # one child, no separator
        assert not lookahead.triggered(example_trie, subject[:1])
        assert lookahead.triggered(example_trie, BRANCH)
    assert post.weights(example_trie, subject) is None
    # M is decoded after the second separator: only the code variant may fire there
    trie = Trie.build(
        [kgclue_key(SUBJECT, "主讲", "课程"), kgclue_key(SUBJECT, "主讲", "要")], end_id=SEP
    )
    in_m = [*subject, SEP, *encode("主讲"), SEP]
    assert not post.triggered(trie, in_m)
    assert code.triggered(trie, in_m)
    tokens, delta = code.deltas(trie, in_m)
    assert dict(zip(tokens.tolist(), delta.tolist(), strict=True)) == {ID["课"]: 2, ID["要"]: 0}
    # span="predicate" after P ends: every completion shares the same P, so Δ = 0
    assert post.deltas(trie, in_m)[1].tolist() == [0, 0]


# --------------------------------------------------------------------------- C4.5 algebra


def random_kb(seed: int, sep: int, end: int, vocab: int, kgclue: bool) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    ordinary = [t for t in range(3, vocab) if t not in (sep, end)]
    keys: list[list[int]] = []
    for _ in range(int(rng.integers(1, 60))):
        if kgclue:  # S [SEP] P [SEP] M with END = [SEP]: three separators in every key + END
            parts = [list(rng.choice(ordinary, size=int(rng.integers(n, 4)))) for n in (1, 1, 0)]
            key = [*parts[0], sep, *parts[1], sep, *parts[2]]
        else:
            tokens = [*ordinary, sep, sep]
            key = list(rng.choice(tokens, size=int(rng.integers(1, 9))))
        if keys and rng.random() < 0.5:  # share a prefix with an earlier key
            base = keys[int(rng.integers(len(keys)))]
            cut = int(rng.integers(0, len(base) + 1))
            key = base[:cut] + key[cut:] if kgclue else base[:cut] + key
        keys.append([int(t) for t in key])
    if kgclue:
        keys = [k for k in keys if k.count(sep) == 2 and k.index(sep) > 0]
    return keys or [[3]]


def all_prefixes(trie: Trie, keys: list[list[int]]) -> set[tuple[int, ...]]:
    out = set()
    for key in keys:
        for t in range(len(key) + 1):
            out.add(tuple(key[:t]))
    return {p for p in out if trie.walk(p) >= 0}


@PROPERTY
@given(
    seed=st.integers(0, 2**31 - 1),
    kgclue=st.booleans(),
    span=st.sampled_from(["predicate", "key"]),
    include_special=st.booleans(),
    question_length=st.integers(0, 14),
)
def test_subtree_search_equals_bruteforce_lcs(
    seed: int, kgclue: bool, span: str, include_special: bool, question_length: int
) -> None:
    vocab, sep = 12, 2
    end = sep if kgclue else 0
    keys = random_kb(seed, sep, end, vocab, kgclue)
    trie = Trie.build(keys, end_id=end)
    rng = np.random.default_rng(seed + 1)
    question = [CLS, *rng.integers(2, vocab, size=question_length).tolist(), SEP]
    lookahead = LookAhead(
        question, sep_id=sep, special_ids=(CLS,), span=span, include_special=include_special
    )
    fresh = LookAhead(
        question, sep_id=sep, special_ids=(CLS,), span=span, include_special=include_special
    )
    prefixes = sorted(all_prefixes(trie, keys), key=len, reverse=True)  # deep first: cache
    for prefix in prefixes:
        tokens, delta = lookahead.deltas(trie, prefix)
        assert torch.equal(tokens, trie.next_tokens(prefix))
        assert bool((delta >= 0).all())  # Δ >= 0: the prefix is a subsequence of completions
        brute = lookahead_weights_bruteforce(lookahead, trie, prefix)
        assert {t: d + 1.0 for t, d in zip(tokens.tolist(), delta.tolist(), strict=True)} == brute
    for prefix in prefixes[::-1][:10]:  # shallow first, on a cold cache
        assert torch.equal(fresh.deltas(trie, prefix)[1], lookahead.deltas(trie, prefix)[1])


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), size=st.integers(2, 12))
def test_reweighting_is_monotone_and_keeps_zero_gain_tokens(seed: int, size: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    trie = Trie.build([[t] for t in range(1, size + 1)], end_id=0)
    root = torch.zeros(1, dtype=torch.int64)
    scores = torch.randn(1, size + 1, generator=gen, dtype=torch.float64) * 3
    weights = 1 + torch.randint(0, 4, (1, size + 1), generator=gen).double()
    weights[0, 1] = weights[0, 2] = 1.0  # Δ = 0 for tokens 1 and 2
    plain = constrained_log_probs(scores, trie, root)
    out = constrained_log_probs(scores, trie, root, weights=weights)
    # Δ = 0 tokens keep their pre-normalisation weight p: their ratio is unchanged
    torch.testing.assert_close(out[0, 1] - out[0, 2], plain[0, 1] - plain[0, 2])
    # a larger Δ never lowers a token's probability (p < 1 so p^(1/w) grows with w)
    for token in range(1, size + 1):
        bumped = weights.clone()
        bumped[0, token] += 1
        again = constrained_log_probs(scores, trie, root, weights=bumped)
        assert float(again[0, token]) >= float(out[0, token]) - 1e-12
        log_p = torch.log_softmax(scores, -1)[0, token]
        assert float(log_p / bumped[0, token]) >= float(log_p / weights[0, token])


def test_lcs_length() -> None:
    assert lcs_length(encode("主讲课程"), encode(QUESTION)) == 4
    assert lcs_length(encode("主要成就"), encode(QUESTION)) == 2
    assert lcs_length([], [1, 2]) == 0
    assert lcs_length([1, 2, 3, 4], [2, 4, 1, 3]) == 2


def test_per_input_lookaheads_in_a_batch(example_trie: Trie) -> None:
    step = branch_model(0.6)
    post = example_lookahead("post")
    other = LookAhead([CLS, *encode("刘晓华主要成就"), SEP], sep_id=SEP, special_ids=(CLS,))
    results = constrained_greedy(
        step, example_trie, batch_size=2, prompt=[CLS], lookahead=[post, other]
    )
    assert [decode(h.key)[1] for h in results] == ["主讲课程", "主要成就"]
    beams = constrained_beam_search(
        step, example_trie, num_beams=2, batch_size=2, prompt=[CLS], lookahead=[post, other]
    )
    assert [decode(h[0].key)[1] for h in beams] == ["主讲课程", "主要成就"]
    with pytest.raises(ValueError, match="one per input"):
        constrained_greedy(step, example_trie, batch_size=3, lookahead=[post, other])


def test_invalid_lookahead_arguments() -> None:
    with pytest.raises(ValueError, match="variant"):
        LookAhead([1], variant="paper", sep_id=2)
    with pytest.raises(ValueError, match="span"):
        LookAhead([1], sep_id=2, span="object")
    with pytest.raises(ValueError, match="trigger"):
        LookAhead([1], sep_id=2, trigger="always")
    with pytest.raises(ValueError, match="sep_id"):
        LookAhead([1], sep_id=-1)
    with pytest.raises(TypeError, match="question_ids"):
        LookAhead([1.5], sep_id=2)  # type: ignore[list-item]
    trie = Trie.build([[3, 4]], end_id=0)
    with pytest.raises(ValueError, match="not a path"):
        LookAhead([3], sep_id=2).deltas(trie, [4])
    preset = LookAhead([CLS, 3, SEP], variant="code", sep_id=SEP, special_ids=(CLS,))
    assert (preset.span, preset.include_special, preset.trigger) == ("key", True, "code")
    assert preset.question == (CLS, 3, SEP)
    post = LookAhead([CLS, 3, SEP], sep_id=SEP, special_ids=(CLS,))
    assert (post.span, post.include_special, post.trigger) == ("predicate", False, "post")
    assert post.question == (3,)
