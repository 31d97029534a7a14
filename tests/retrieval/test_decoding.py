"""Constrained greedy / beam search (spec 04 §3; claims C4.1, C4.4, C4.7, C4.8)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kexue.retrieval import (
    Hypothesis,
    Trie,
    constrained_beam_search,
    constrained_greedy,
    constrained_log_probs,
)

END = 0
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_keys(seed: int, num_keys: int, vocab: int, max_len: int) -> list[tuple[int, ...]]:
    """Keys over tokens 1..vocab-1 (END = 0 never inside a key: prefix-free); new keys often
    extend a prefix of an earlier key, so shared prefixes are likely."""
    rng = np.random.default_rng(seed)
    keys: list[tuple[int, ...]] = []
    for _ in range(num_keys):
        length = int(rng.integers(1, max_len + 1))
        if keys and rng.random() < 0.7:
            base = keys[int(rng.integers(len(keys)))]
            head = base[: int(rng.integers(0, min(len(base), length) + 1))]
        else:
            head = ()
        tail = rng.integers(1, vocab, size=length - len(head))
        keys.append(head + tuple(int(t) for t in tail))
    return keys


class HashModel:
    """A deterministic mock model: logits are a pseudo-random function of (input, prefix)."""

    def __init__(
        self,
        vocab: int,
        seed: int,
        scale: float = 2.0,
        dtype: torch.dtype = torch.float32,
        rows_per_input: int = 1,
        prompt: Sequence[int] = (),
    ) -> None:
        self.vocab, self.seed, self.scale, self.dtype = vocab, seed, scale, dtype
        self.rows_per_input = rows_per_input
        self.prompt = tuple(prompt)
        self.calls = 0
        self.cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def logits(self, item: int, key_prefix: tuple[int, ...]) -> torch.Tensor:
        cached = self.cache.get((item, key_prefix))
        if cached is None:
            data = np.asarray([self.seed, item, *key_prefix], dtype=np.int64).tobytes()
            gen = torch.Generator().manual_seed(zlib.crc32(data))
            cached = torch.randn(self.vocab, generator=gen, dtype=torch.float64) * self.scale
            self.cache[(item, key_prefix)] = cached
        return cached

    def log_probs(self, item: int, key_prefix: tuple[int, ...]) -> torch.Tensor:
        return torch.log_softmax(self.logits(item, key_prefix), dim=-1)

    def __call__(self, prefixes: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        p = len(self.prompt)
        assert prefixes.dtype == torch.int64
        if p:
            assert bool((prefixes[:, :p] == torch.tensor(self.prompt)).all())
        rows = [
            self.logits(r // self.rows_per_input, tuple(prefixes[r, p:].tolist()))
            for r in range(prefixes.shape[0])
        ]
        return torch.stack(rows).to(self.dtype)


def exhaustive_scores(
    model: HashModel, trie: Trie, keys: Sequence[tuple[int, ...]], item: int = 0
) -> dict[tuple[int, ...], tuple[float, float]]:
    """(Σ log p̃, Σ log p) of every key, float64, by walking each key's allowed sets."""
    out = {}
    for key in set(keys):
        path = (*key, END)
        renormalized = raw = 0.0
        for t in range(len(path)):
            log_p = model.log_probs(item, path[:t])
            allowed = trie.next_tokens(path[:t])
            renormalized += float(log_p[path[t]] - torch.logsumexp(log_p[allowed], 0))
            raw += float(log_p[path[t]])
        out[key] = (renormalized, raw)
    return out


# --------------------------------------------------------------------------- C4.1 validity


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    num_keys=st.integers(1, 500),
    vocab=st.integers(5, 50),
    max_len=st.integers(1, 12),
    scale=st.sampled_from([0.3, 2.0, 8.0]),
)
def test_every_complete_output_is_a_stored_key(
    seed: int, num_keys: int, vocab: int, max_len: int, scale: float
) -> None:
    """C4.1: 80 examples x 14 decodings (greedy and k in {1, 3, 5} x 2 beam modes, each in both
    scoring modes) = 1120 cases."""
    keys = random_keys(seed, num_keys, vocab, max_len)
    stored = set(keys)
    trie = Trie.build(keys, end_id=END)
    model = HashModel(vocab, seed, scale)
    for scoring in ("renormalized", "raw"):
        for hyp in constrained_greedy(model, trie, scoring=scoring):
            assert hyp.complete
            assert hyp.key in stored
            assert hyp.tokens == (*hyp.key, END)
        for k in (1, 3, 5):
            model.rows_per_input = k
            for mode in ("standard", "bert4keras"):
                (hyps,) = constrained_beam_search(
                    model, trie, num_beams=k, mode=mode, scoring=scoring
                )
                assert hyps, (mode, scoring, k)
                assert all(h.complete and h.key in stored for h in hyps)
                assert [h.values for h in hyps] == [trie.get(h.key) for h in hyps]
                if mode == "standard":
                    assert len({h.key for h in hyps}) == len(hyps) == min(k, len(stored))
                    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
                else:
                    assert len(hyps) == 1
            model.rows_per_input = 1


# --------------------------------------------------------------------------- C4.4 masking


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), vocab=st.integers(5, 50))
def test_masked_rows_are_distributions_on_the_allowed_set(seed: int, vocab: int) -> None:
    keys = random_keys(seed, 60, vocab, 8)
    trie = Trie.build(keys, end_id=END)
    gen = torch.Generator().manual_seed(seed)
    states = torch.randint(-1, trie.num_nodes, (64,), generator=gen)
    scores = torch.randn(64, vocab + 3, generator=gen) * 6
    allowed = trie.allowed_mask(states=states, vocab_size=vocab + 3)
    count = allowed.sum(1)
    weights = 1 + torch.randint(0, 4, scores.shape, generator=gen).float()
    for w in (None, weights):
        out = constrained_log_probs(scores, trie, states, weights=w)
        assert out.dtype == torch.float32
        assert torch.isneginf(out[~allowed]).all()  # support ⊆ allowed, −inf (never ε)
        assert torch.isfinite(out[allowed]).all()
        live = count > 0
        sums = out[live].exp().double().sum(1)  # float32 rows, accumulated in float64
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)
        single = count == 1
        assert (out[single][allowed[single]] == 0).all()  # probability exactly 1
        assert torch.isneginf(out[~live]).all()
    raw = constrained_log_probs(scores, trie, states, renormalize=False)
    log_p = torch.log_softmax(scores, -1)
    assert torch.equal(raw[allowed], log_p[allowed])
    assert torch.isneginf(raw[~allowed]).all()
    # raw with look-ahead weights keeps each row's allowed mass
    reweighted = constrained_log_probs(scores, trie, states, renormalize=False, weights=weights)
    mass = torch.logsumexp(reweighted, -1)[count > 0]
    torch.testing.assert_close(mass, torch.logsumexp(raw, -1)[count > 0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_and_dense_masking_paths_agree(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import kexue.retrieval._decoding as decoding
    from kexue.retrieval.hf import TrieLogitsProcessor

    keys = random_keys(seed, 80, 12, 8)
    trie = Trie.build(keys, end_id=END)
    gen = torch.Generator().manual_seed(seed)
    states = torch.randint(-1, trie.num_nodes, (32,), generator=gen)
    scores = torch.randn(32, 15, generator=gen, dtype=torch.float64) * 5
    scores[0, :] = float("-inf")  # a row with no allowed mass
    ids = torch.tensor([[1, keys[0][0]]] * 4)  # decoder start + a stored first token
    results = {}
    for name, fraction in (("sparse", 0), ("dense", 10**9)):
        monkeypatch.setattr(decoding, "_SPARSE_FRACTION", fraction)
        processor = TrieLogitsProcessor(trie, prompt_length=1, renormalize=False)
        results[name] = (
            constrained_log_probs(scores, trie, states),
            constrained_log_probs(scores, trie, states, renormalize=False),
            processor(ids, scores[:4].clone()),
        )
    for sparse, dense in zip(results["sparse"], results["dense"], strict=True):
        assert torch.equal(torch.isneginf(sparse), torch.isneginf(dense))
        finite = torch.isfinite(dense)
        torch.testing.assert_close(sparse[finite], dense[finite], rtol=0, atol=1e-12)


def test_renormalised_row_with_zero_allowed_mass_is_uniform() -> None:
    trie = Trie.build([[1], [2], [3, 4]], end_id=END)
    scores = torch.zeros(2, 5)
    scores[:, 1:4] = float("-inf")  # the model puts all mass on masked tokens
    states = torch.tensor([0, trie.walk([3])])
    out = constrained_log_probs(scores, trie, states)
    torch.testing.assert_close(out[0, 1:4].exp(), torch.full((3,), 1 / 3))
    assert out[1, 4] == 0
    raw = constrained_log_probs(scores, trie, states, renormalize=False)
    assert torch.isneginf(raw[0, 1:4]).all()


# --------------------------------------------------------------------------- C4.7, C4.8


@PROPERTY
@given(
    seed=st.integers(0, 2**31 - 1),
    num_keys=st.integers(1, 200),
    vocab=st.integers(5, 30),
    max_len=st.integers(1, 10),
)
def test_greedy_equals_beam_one(seed: int, num_keys: int, vocab: int, max_len: int) -> None:
    keys = random_keys(seed, num_keys, vocab, max_len)
    trie = Trie.build(keys, end_id=END)
    model = HashModel(vocab, seed, 3.0)
    for scoring in ("renormalized", "raw"):
        (greedy,) = constrained_greedy(model, trie, scoring=scoring)
        for mode in ("standard", "bert4keras"):
            ((beam,),) = constrained_beam_search(
                model, trie, num_beams=1, mode=mode, scoring=scoring
            )
            assert beam == greedy


@PROPERTY
@given(
    seed=st.integers(0, 2**31 - 1),
    num_keys=st.integers(1, 50),
    vocab=st.integers(5, 20),
    max_len=st.integers(1, 8),
    scale=st.sampled_from([0.5, 3.0]),
)
def test_beam_with_k_at_least_keys_is_exact(
    seed: int, num_keys: int, vocab: int, max_len: int, scale: float
) -> None:
    keys = random_keys(seed, num_keys, vocab, max_len)
    trie = Trie.build(keys, end_id=END)
    k = len(trie)
    model = HashModel(vocab, seed, scale, dtype=torch.float64, rows_per_input=k)
    exact = exhaustive_scores(model, trie, keys)
    for index, scoring in enumerate(("renormalized", "raw")):
        (hyps,) = constrained_beam_search(model, trie, num_beams=k, scoring=scoring)
        assert len(hyps) == k  # nothing pruned: every key comes back
        best = max(exact, key=lambda key: exact[key][index])
        assert hyps[0].key == best
        for h in hyps:
            assert h.score == pytest.approx(exact[h.key][index], abs=1e-9)
    # length penalty: argmax of score / |y|^alpha (|y| counts END)
    for alpha in (0.5, 1.0):
        (hyps,) = constrained_beam_search(model, trie, num_beams=k, length_penalty=alpha)
        penalised = {key: v[0] / (len(key) + 1) ** alpha for key, v in exact.items()}
        assert hyps[0].key == max(penalised, key=penalised.__getitem__)
        assert hyps[0].score == pytest.approx(penalised[hyps[0].key], abs=1e-9)


def test_ties_take_the_smallest_token() -> None:
    keys = random_keys(9, 60, 10, 6)
    trie = Trie.build(keys, end_id=END)

    def uniform(prefixes: torch.Tensor) -> torch.Tensor:
        return torch.zeros(prefixes.shape[0], 10)

    (greedy,) = constrained_greedy(uniform, trie)
    assert greedy.key == min(keys)  # END = 0 is the smallest token: a prefix key comes first
    for mode in ("standard", "bert4keras"):
        ((beam,),) = constrained_beam_search(uniform, trie, num_beams=1, mode=mode)
        assert beam == greedy


# --------------------------------------------------------------------------- robustness


def adversarial(trie: Trie, vocab: int, prompt_length: int = 0, finite: bool = False):  # type: ignore[no-untyped-def]
    """All the probability mass on tokens the trie does not allow."""

    def step(prefixes: torch.Tensor) -> torch.Tensor:
        states = trie.states_of(prefixes[:, prompt_length:])
        allowed = trie.allowed_mask(states=states, vocab_size=vocab)
        low = -1e4 if finite else float("-inf")
        return torch.where(allowed, torch.tensor(low), torch.tensor(1e4))

    return step


@pytest.mark.parametrize("finite", [False, True])
def test_model_with_all_mass_on_masked_tokens_still_yields_keys(finite: bool) -> None:
    keys = random_keys(3, 40, 12, 6)
    trie = Trie.build(keys, end_id=END)
    step = adversarial(trie, 12, finite=finite)
    for scoring in ("renormalized", "raw"):
        (greedy,) = constrained_greedy(step, trie, scoring=scoring)
        assert greedy.complete
        assert greedy.key in set(keys)
        for mode in ("standard", "bert4keras"):
            (hyps,) = constrained_beam_search(step, trie, num_beams=4, mode=mode, scoring=scoring)
            assert hyps
            assert all(h.complete and h.key in set(keys) for h in hyps)
            if not finite and scoring == "raw":
                assert all(h.score == float("-inf") for h in hyps)


def test_maxlen_truncation_is_flagged_incomplete() -> None:
    keys = [(1, 2, 3, 4), (1, 2, 5, 6), (7, 8, 9)]
    trie = Trie.build(keys, end_id=END)
    model = HashModel(10, 0)
    (greedy,) = constrained_greedy(model, trie, maxlen=2)
    assert not greedy.complete
    assert len(greedy.tokens) == 2
    assert greedy.values == []
    assert trie.walk(greedy.tokens) > 0
    for mode in ("standard", "bert4keras"):
        model.rows_per_input = 3
        (hyps,) = constrained_beam_search(model, trie, num_beams=3, maxlen=3, mode=mode)
        assert hyps
        assert all(not h.complete and len(h.tokens) == 3 for h in hyps)
        assert all(trie.walk(h.tokens) > 0 for h in hyps)
    # a short key completes within maxlen, the truncated ones follow it
    (hyps,) = constrained_beam_search(model, trie, num_beams=3, maxlen=4)
    assert [h.complete for h in hyps] == [True, False, False]
    assert hyps[0].key == (7, 8, 9)


def test_default_maxlen_is_the_trie_depth() -> None:
    keys = random_keys(5, 30, 9, 7)
    trie = Trie.build(keys, end_id=END)
    model = HashModel(9, 1)
    constrained_greedy(model, trie)
    assert model.calls <= trie.max_depth


# --------------------------------------------------------------------------- batching, hooks


@pytest.mark.parametrize("mode", ["standard", "bert4keras"])
def test_batched_inputs_are_input_major_and_match_single_runs(mode: str) -> None:
    keys = random_keys(11, 80, 15, 7)
    trie = Trie.build(keys, end_id=END)
    k, batch, prompt = 3, 4, (13, 14)
    model = HashModel(15, 2, rows_per_input=k, prompt=prompt)
    together = constrained_beam_search(
        model, trie, num_beams=k, batch_size=batch, prompt=prompt, mode=mode
    )
    greedy_together = constrained_greedy(
        HashModel(15, 2, prompt=prompt), trie, batch_size=batch, prompt=prompt
    )
    for item in range(batch):

        def single(prefixes: torch.Tensor, item: int = item) -> torch.Tensor:
            rows = [model.logits(item, tuple(p[len(prompt) :].tolist())) for p in prefixes]
            return torch.stack(rows).float()

        (alone,) = constrained_beam_search(single, trie, num_beams=k, prompt=prompt, mode=mode)
        assert together[item] == alone
        assert greedy_together[item] == constrained_greedy(single, trie, prompt=prompt)[0]


class ReorderingModel(HashModel):
    """Checks the rows it receives against its own "cache", reordered by the engine's hook."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.expected: torch.Tensor | None = None
        self.last: torch.Tensor | None = None
        self.shapes: set[int] = set()
        self.reorders = 0

    def __call__(self, prefixes: torch.Tensor) -> torch.Tensor:
        self.shapes.add(prefixes.shape[0])
        if self.expected is not None:
            assert torch.equal(prefixes[:, :-1], self.expected)
        self.last = prefixes
        return super().__call__(prefixes)

    def reorder(self, indices: torch.Tensor) -> None:
        assert self.last is not None
        assert indices.dtype == torch.int64
        self.reorders += 1
        self.expected = self.last[indices]


@pytest.mark.parametrize("mode", ["standard", "bert4keras"])
def test_reorder_hook_receives_the_source_row_of_every_new_row(mode: str) -> None:
    keys = random_keys(21, 120, 10, 9)
    trie = Trie.build(keys, end_id=END)
    model = ReorderingModel(10, 4, rows_per_input=5, prompt=(9,))
    constrained_beam_search(model, trie, num_beams=5, batch_size=2, prompt=[9], mode=mode)
    assert model.shapes == {10}  # R = batch * beams, constant
    assert model.reorders == model.calls


# --------------------------------------------------------------------------- modes


class TableModel:
    """Next-token probabilities by key prefix; unlisted prefixes are uniform."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], vocab: int) -> None:
        self.table, self.vocab = table, vocab

    def __call__(self, prefixes: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(prefixes.shape[0], self.vocab, dtype=torch.float64)
        for r, p in enumerate(prefixes.tolist()):
            probs = self.table.get(tuple(p))
            if probs is not None:
                out[r] = float("-inf")
                for t, q in probs.items():
                    out[r, t] = math.log(q)
        return out


def test_bert4keras_mode_discards_finished_non_best_hypotheses() -> None:
    trie = Trie.build([(1,), (2, 3), (2, 4)], end_id=END)
    model = TableModel(
        {(): {1: 0.3, 2: 0.7}, (1,): {END: 0.9, 5: 0.1}, (2,): {3: 0.9, 4: 0.1},
         (2, 3): {END: 0.1, 5: 0.9}, (2, 4): {END: 0.1, 5: 0.9}},
        6,
    )  # fmt: skip
    (standard,) = constrained_beam_search(model, trie, num_beams=3, scoring="raw")
    ((reference,),) = constrained_beam_search(
        model, trie, num_beams=3, scoring="raw", mode="bert4keras"
    )
    assert standard[0].key == (1,)
    assert standard[0].score == pytest.approx(math.log(0.3 * 0.9))
    # (1, END) finished at step 2 while (2, 3) ranked first: the reference drops it (spec 04 §6.6)
    assert reference.key == (2, 3)
    assert reference.score == pytest.approx(math.log(0.7 * 0.9 * 0.1))


def test_bert4keras_min_ends_on_the_kgclue_layout() -> None:
    sep = 1
    keys = [(5, sep, 6, sep, 7), (5, sep, 6, sep), (5, sep, 8, sep, 9, 9)]
    trie = Trie.build(keys, end_id=sep)  # every key + END holds three [SEP]
    model = HashModel(10, 7, rows_per_input=3)
    ((hyp,),) = constrained_beam_search(model, trie, num_beams=3, mode="bert4keras", min_ends=3)
    assert hyp.complete
    assert hyp.key in set(keys)
    # min_ends=1 finishes at "S [SEP]": a finished but incomplete hypothesis, not a key
    ((early,),) = constrained_beam_search(model, trie, num_beams=3, mode="bert4keras")
    assert early.tokens == (5, sep)
    assert not early.complete
    assert early.values == []
    # the standard mode finishes on complete keys only
    (hyps,) = constrained_beam_search(model, trie, num_beams=3)
    assert {h.key for h in hyps} == set(keys)


def test_renormalized_and_raw_rank_differently() -> None:
    # renormalised: the single-child tail of (1, 2, 3) is free; raw: it pays log p every step
    trie = Trie.build([(1, 2, 3), (4,)], end_id=END)
    model = TableModel(
        {(): {1: 0.6, 4: 0.4}, (1,): {2: 0.5, 5: 0.5}, (1, 2): {3: 0.5, 5: 0.5},
         (1, 2, 3): {END: 0.5, 5: 0.5}, (4,): {END: 0.9, 5: 0.1}},
        6,
    )  # fmt: skip
    (renormalized,) = constrained_beam_search(model, trie, num_beams=2)
    (raw,) = constrained_beam_search(model, trie, num_beams=2, scoring="raw")
    assert [h.key for h in renormalized] == [(1, 2, 3), (4,)]
    assert renormalized[0].score == pytest.approx(math.log(0.6))
    assert [h.key for h in raw] == [(4,), (1, 2, 3)]
    assert raw[0].score == pytest.approx(math.log(0.4 * 0.9))


def test_num_return_and_hypothesis_fields() -> None:
    keys = random_keys(8, 30, 8, 5)
    trie = Trie.build(keys, [f"v{i}" for i in range(len(keys))], end_id=END)
    model = HashModel(8, 3, rows_per_input=4)
    (hyps,) = constrained_beam_search(model, trie, num_beams=4, num_return=2)
    assert len(hyps) == 2
    assert all(isinstance(h, Hypothesis) for h in hyps)
    assert hyps[0].values == trie.get(hyps[0].key)
    assert hash(hyps[0]) == hash(Hypothesis(hyps[0].tokens, hyps[0].key, hyps[0].score, True))


# --------------------------------------------------------------------------- validation


def test_invalid_arguments_raise_clear_errors() -> None:
    trie = Trie.build([(1, 2), (3,)], end_id=END)
    model = HashModel(5, 0, rows_per_input=2)
    with pytest.raises(ValueError, match="num_beams"):
        constrained_beam_search(model, trie, num_beams=0)
    with pytest.raises(TypeError, match="num_beams"):
        constrained_beam_search(model, trie, num_beams=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        constrained_beam_search(model, trie, mode="greedy")
    with pytest.raises(ValueError, match="scoring"):
        constrained_beam_search(model, trie, scoring="normalized")
    with pytest.raises(ValueError, match="scoring"):
        constrained_greedy(model, trie, scoring="logits")
    with pytest.raises(ValueError, match="num_return"):
        constrained_beam_search(model, trie, num_beams=2, num_return=3)
    with pytest.raises(ValueError, match="bert4keras"):
        constrained_beam_search(model, trie, num_beams=2, mode="bert4keras", num_return=2)
    with pytest.raises(ValueError, match="maxlen"):
        constrained_greedy(model, trie, maxlen=0)
    with pytest.raises(ValueError, match="min_ends"):
        constrained_beam_search(model, trie, min_ends=0)
    with pytest.raises(ValueError, match="length_penalty"):
        constrained_beam_search(model, trie, length_penalty=float("nan"))
    with pytest.raises(ValueError, match="prompt"):
        constrained_greedy(model, trie, prompt=[-1])
    with pytest.raises(TypeError, match="callable"):
        constrained_greedy(None, trie)  # type: ignore[arg-type]


def test_bad_step_function_outputs_name_the_step() -> None:
    trie = Trie.build([(1, 2, 3), (1, 4)], end_id=END)
    with pytest.raises(ValueError, match=r"shape \[2, V\].*got \(2, 3\) at step 0"):
        constrained_beam_search(lambda p: torch.zeros(p.shape[0], 3), trie, num_beams=2)
    with pytest.raises(ValueError, match=r"shape \[1, V\].*got \(2, 5\)"):
        constrained_greedy(lambda p: torch.zeros(2, 5), trie)
    with pytest.raises(TypeError, match="floating"):
        constrained_greedy(lambda p: torch.zeros(p.shape[0], 5, dtype=torch.int64), trie)

    def nan_at_step_two(prefixes: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(prefixes.shape[0], 5)
        if prefixes.shape[1] == 2:
            out[:, 3] = float("nan")
        return out

    with pytest.raises(ValueError, match=r"NaN.*step 2"):
        constrained_beam_search(nan_at_step_two, trie, num_beams=2)
    with pytest.raises(ValueError, match=r"NaN.*step 2"):
        constrained_greedy(nan_at_step_two, trie)
