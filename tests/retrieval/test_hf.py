"""Hugging Face integration (spec 04 §5; claim C4.12) with a tiny, randomly initialised T5 built
offline from a config (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from kexue.retrieval import (  # noqa: E402
    LookAhead,
    Trie,
    constrained_beam_search,
    constrained_greedy,
    constrained_log_probs,
)
from kexue.retrieval.hf import TrieLogitsProcessor  # noqa: E402

START, EOS, SEP = 0, 1, 2  # decoder start (= pad), END = EOS, key separator
VOCAB = 64


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2,
        num_heads=2, decoder_start_token_id=START, pad_token_id=START, eos_token_id=EOS,
    )  # fmt: skip
    return transformers.T5ForConditionalGeneration(config).eval()


def kb(seed: int, num_keys: int, layout: bool = False) -> list[list[int]]:
    """Random keys over ids 3..63 (END = EOS never inside); ``layout``: ``S [SEP] P [SEP] M``."""
    rng = np.random.default_rng(seed)
    keys: list[list[int]] = []
    for _ in range(num_keys):
        if layout:
            s, p, m = (rng.integers(3, VOCAB, size=int(rng.integers(1, 4))).tolist() for _ in "spm")
            key = [*s, SEP, *p, SEP, *m]
        else:
            key = rng.integers(3, VOCAB, size=int(rng.integers(1, 7))).tolist()
        if keys and rng.random() < 0.6:
            base = keys[int(rng.integers(len(keys)))]
            key = base[: int(rng.integers(1, len(base) + 1))] + key
        keys.append(key)
    return keys


def generation_config(num_beams: int, trie: Trie, **kwargs: object) -> object:
    if num_beams > 1:
        kwargs["length_penalty"] = 0.0  # kexue's beam scores are not length-normalised
    return transformers.GenerationConfig(
        max_new_tokens=trie.max_depth, num_beams=num_beams, do_sample=False,
        eos_token_id=EOS, pad_token_id=START, decoder_start_token_id=START, **kwargs,
    )  # fmt: skip


def step_function(model: torch.nn.Module, inputs: torch.Tensor, rows_per_input: int = 1):  # type: ignore[no-untyped-def]
    encoder_inputs = inputs.repeat_interleave(rows_per_input, dim=0)

    def step(prefixes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = model(input_ids=encoder_inputs, decoder_input_ids=prefixes)
        return out.logits[:, -1]

    return step


def generated_keys(sequences: torch.Tensor) -> list[tuple[int, ...]]:
    """Decoded tokens after the start token, up to and including the first EOS."""
    out = []
    for row in sequences[:, 1:].tolist():
        out.append(tuple(row[: row.index(EOS) + 1]) if EOS in row else tuple(row))
    return out


@pytest.mark.parametrize("renormalize", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hf_greedy_equals_kexue_greedy(
    model: torch.nn.Module, seed: int, renormalize: bool
) -> None:
    keys = kb(seed, 60)
    trie = Trie.build(keys, end_id=EOS)
    inputs = torch.randint(3, VOCAB, (3, 9), generator=torch.Generator().manual_seed(seed))
    processor = TrieLogitsProcessor(trie, renormalize=renormalize)
    with torch.no_grad():
        sequences = model.generate(
            input_ids=inputs,
            generation_config=generation_config(1, trie, use_cache=False),
            logits_processor=transformers.LogitsProcessorList([processor]),
        )
    ours = constrained_greedy(step_function(model, inputs), trie, batch_size=3, prompt=[START])
    assert generated_keys(sequences) == [h.tokens for h in ours]
    assert all(h.complete and h.key in trie for h in ours)


def test_hf_greedy_with_lookahead_equals_kexue(model: torch.nn.Module) -> None:
    keys = kb(5, 40, layout=True)
    trie = Trie.build(keys, end_id=EOS)
    inputs = torch.tensor([[*keys[3][:6], SEP], [*keys[17][:6], SEP]])
    lookaheads = [LookAhead(q.tolist(), variant="code", sep_id=SEP) for q in inputs]
    processor = TrieLogitsProcessor(trie, lookahead=lookaheads)
    with torch.no_grad():
        sequences = model.generate(
            input_ids=inputs,
            generation_config=generation_config(1, trie, use_cache=False),
            logits_processor=transformers.LogitsProcessorList([processor]),
        )
    ours = constrained_greedy(
        step_function(model, inputs), trie, batch_size=2, prompt=[START], lookahead=lookaheads
    )
    assert generated_keys(sequences) == [h.tokens for h in ours]


@pytest.mark.parametrize("renormalize", [True, False])
def test_hf_beam_search_returns_stored_keys(model: torch.nn.Module, renormalize: bool) -> None:
    keys = kb(7, 80)
    trie = Trie.build(keys, end_id=EOS)
    inputs = torch.randint(3, VOCAB, (2, 8), generator=torch.Generator().manual_seed(7))
    processor = TrieLogitsProcessor(trie, renormalize=renormalize)
    with torch.no_grad():
        out = model.generate(
            input_ids=inputs,
            generation_config=generation_config(
                4, trie, num_return_sequences=4, return_dict_in_generate=True, output_scores=True
            ),
            logits_processor=transformers.LogitsProcessorList([processor]),
        )
    found = generated_keys(out.sequences)
    assert len(found) == 8
    for tokens in found:
        assert tokens[-1] == EOS
        assert tokens[:-1] in trie
    # the best beam agrees with kexue's standard beam search in the matching scoring mode
    ours = constrained_beam_search(
        step_function(model, inputs, 4), trie, num_beams=4, batch_size=2, prompt=[START],
        scoring="renormalized" if renormalize else "raw",
    )  # fmt: skip
    assert [found[0], found[4]] == [ours[0][0].tokens, ours[1][0].tokens]


def test_processor_masks_in_one_batch_and_renormalises() -> None:
    trie = Trie.build([[3, 4], [3, 5, 6], [7]], end_id=EOS)
    processor = TrieLogitsProcessor(trie, prompt_length=1)
    ids = torch.tensor([[START], [START]])
    scores = torch.randn(2, 10)
    out = processor(ids, scores)
    assert torch.isneginf(out[:, [0, 1, 2, 4, 5, 6, 8, 9]]).all()
    torch.testing.assert_close(out.exp().sum(1), torch.ones(2))
    # next step: rows extend the previous rows (HF beam reordering needs no hook)
    out = processor(torch.tensor([[START, 7], [START, 3]]), scores)
    assert out[0, EOS] == 0  # single child: probability exactly 1
    expected = constrained_log_probs(scores[1:], trie, torch.tensor([trie.walk([3])]))
    torch.testing.assert_close(out[1], expected[0])
    # a completed row (HF pads it) gets −inf everywhere, without NaN
    out = processor(torch.tensor([[START, 7, EOS], [START, 3, 5]]), scores)
    assert torch.isneginf(out[0]).all()
    assert out[1, 6] == 0
    out = processor(torch.tensor([[START, 7, EOS, START], [START, 3, 5, 2]]), scores)
    assert torch.isneginf(out).all()  # row 1 took a masked token: a dead beam
    raw = TrieLogitsProcessor(trie, renormalize=False)(torch.tensor([[START]]), scores[:1])
    assert torch.equal(raw[0, [3, 7]], scores[0, [3, 7]])


def test_processor_errors() -> None:
    trie = Trie.build([[3, 4], [5]], end_id=EOS)
    processor = TrieLogitsProcessor(trie)
    with pytest.raises(ValueError, match="prompt_length"):
        processor(torch.tensor([[START, 4]]), torch.zeros(1, 8))  # 4 cannot start a key
    with pytest.raises(ValueError, match=r"trie\.vocab_size"):
        processor(torch.tensor([[START]]), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="prompt_length"):
        TrieLogitsProcessor(trie, prompt_length=-1)
    with pytest.raises(ValueError, match="do not divide"):
        TrieLogitsProcessor(trie, lookahead=[LookAhead([3], sep_id=2)] * 2)(
            torch.tensor([[START]] * 3), torch.zeros(3, 8)
        )
