"""Tokenizer, prefix-LM model and training of kexue.kbqa (spec 05 §2.3, §5, §8.5)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from kexue.kbqa import (
    CharTokenizer,
    KBQAModelConfig,
    KBQATrainingConfig,
    PrefixLMSeq2Seq,
    QAExample,
    Triple,
    key_parts,
    load_model,
    synthetic_kb,
    train_kbqa,
)
from kexue.kbqa._model import prefix_lm_mask
from kexue.kbqa._train import build_tokenizer, derive_seed

# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip_and_special_ids() -> None:
    tok = CharTokenizer.from_texts(
        ["刘晓华", "主讲课程", "广东工业大学教授"], ["刘晓华主要讲什么课程？"]
    )
    assert tok.tokens[:4] == ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
    assert (tok.PAD_ID, tok.CLS_ID, tok.SEP_ID, tok.UNK_ID) == (0, 1, 2, 3)
    for text in ("刘晓华主讲课程", "主要讲什么？", "教授"):
        assert tok.decode(tok.encode(text)) == tok.normalize(text)
    assert tok.normalize("什么？") == "什么?"  # NFKC: full-width punctuation -> ASCII
    assert tok.encode_question("刘晓华", 2) == [tok.CLS_ID, *tok.encode("刘晓"), tok.SEP_ID]
    key = tok.encode_key(("刘晓华", "主讲课程", ""))
    assert key == [*tok.encode("刘晓华"), tok.SEP_ID, *tok.encode("主讲课程"), tok.SEP_ID]
    assert tok.split_key(key) == ["刘晓华", "主讲课程", ""]
    assert tok.decode([tok.SEP_ID, 4]) == "[SEP][R0]"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


def test_every_key_character_has_its_own_id_and_unknown_characters_share_buckets() -> None:
    # 龘 occurs only in the KB, never in a question: it still gets its own id (spec 05 §5)
    tok = CharTokenizer.from_texts(["龘山", "首都"], ["山的首都是哪里"], num_rare_buckets=8)
    assert tok.is_known("龘")
    assert tok.encode("龘")[0] >= tok.first_char_id
    unknown = tok.encode("😀䶮😀")
    assert all(i in tok.rare_ids for i in unknown)
    assert unknown[0] == unknown[2]  # the same character always maps to the same bucket
    assert unknown[0] == 4 + ord("😀") % 8
    plain = CharTokenizer.from_texts(["山"], num_rare_buckets=0)
    assert plain.encode("😀") == [plain.UNK_ID]
    assert plain.vocab_size == 5


def test_min_question_count_keeps_key_characters() -> None:
    tok = CharTokenizer.from_texts(["甲"], ["乙乙丙"], min_question_count=2)
    assert tok.is_known("甲")
    assert tok.is_known("乙")
    assert not tok.is_known("丙")


def test_normalization() -> None:
    norm = CharTokenizer.normalize
    assert norm("  法国\t的\n\n首都 ") == "法国 的 首都"
    assert norm("法\x00国\x07的\u200b首都\ufeff") == "法国的首都"
    assert norm("ＡＢＣ１２３") == "ABC123"  # NFKC
    assert norm("\x00\x01 \u200b") == ""
    with pytest.raises(TypeError):
        norm(None)  # type: ignore[arg-type]


def test_tokenizer_save_load(tmp_path: Path) -> None:
    tok = CharTokenizer.from_texts(
        ["法国", "首都", "巴黎"], ["法国的首都是哪里？"], num_rare_buckets=5
    )
    tok.save(tmp_path / "tok.json")
    again = CharTokenizer.load(tmp_path / "tok.json")
    assert again == tok
    assert again.encode("法国😀") == tok.encode("法国😀")
    with pytest.raises(ValueError, match="not a kexue"):
        CharTokenizer.from_dict({"chars": "ab"})


def test_bad_tokenizer_arguments() -> None:
    with pytest.raises(ValueError, match="distinct"):
        CharTokenizer(["a", "a"])
    with pytest.raises(ValueError, match="single characters"):
        CharTokenizer(["ab"])
    with pytest.raises(ValueError, match="num_rare_buckets"):
        CharTokenizer(["a"], num_rare_buckets=-1)
    with pytest.raises(TypeError):
        CharTokenizer.from_texts([3])  # type: ignore[list-item]


def test_key_parts_orders() -> None:
    t = Triple("刘晓华", "主讲课程", "《固体物理》", "广东工业大学教授")
    assert key_parts(t, "SPM") == ("刘晓华", "主讲课程", "广东工业大学教授")
    assert key_parts(t, "SMP") == ("刘晓华", "广东工业大学教授", "主讲课程")
    with pytest.raises(ValueError, match="order"):
        key_parts(t, "PSM")


# --------------------------------------------------------------------------- model


def _model(vocab: int = 40, seed: int = 0, **kwargs: object) -> PrefixLMSeq2Seq:
    torch.manual_seed(seed)
    config = KBQAModelConfig(
        vocab_size=vocab, d_model=32, num_layers=2, num_heads=4, ffn_dim=64, dropout=0.0
    )
    return PrefixLMSeq2Seq(dataclasses.replace(config, **kwargs)).eval()


def _row(question: list[int], target: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[1, *question, 2, *target]])
    segments = torch.tensor([[0] * (len(question) + 2) + [1] * len(target)])
    return ids, segments


def test_forward_and_loss_shapes() -> None:
    model = _model()
    ids = torch.tensor([[1, 5, 6, 2, 7, 8, 2], [1, 9, 2, 10, 2, 0, 0]])
    segments = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]])
    assert model(ids, segments).shape == (2, 7, 40)
    loss, count = model.loss(ids, segments)
    assert loss.ndim == 0
    assert count == 5
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match="no target"):
        model.loss(ids, torch.zeros_like(ids))
    with pytest.raises(ValueError, match="outside"):
        model(torch.tensor([[1, 99]]), torch.zeros(1, 2, dtype=torch.int64))


def test_prefix_lm_mask() -> None:
    segments = torch.tensor([[0, 0, 0, 1, 1, 1, 0]])
    valid = torch.tensor([[True] * 6 + [False]])
    mask = prefix_lm_mask(segments, valid)[0, 0]
    assert mask[:3, :3].all()  # bidirectional over the source
    assert not mask[:3, 3:].any()  # the source never sees the target
    assert mask[3:6, :3].all()  # the target sees the whole source
    assert torch.equal(mask[3:6, 3:6], torch.ones(3, 3, dtype=torch.bool).tril())
    assert not mask[:, 6].any()  # padding is never attended


def test_causal_masking_future_tokens_do_not_change_earlier_logits() -> None:
    model = _model()
    ids, segments = _row([5, 6, 7], [8, 9, 10, 11])
    base = model(ids, segments)
    changed = ids.clone()
    changed[0, 7] = 20  # the third target token
    other = model(changed, segments)
    assert torch.allclose(base[0, :7], other[0, :7], atol=1e-6)
    assert not torch.allclose(base[0, 7:], other[0, 7:], atol=1e-4)
    # the source is bidirectional: a later question token changes the first position's logits
    changed = ids.clone()
    changed[0, 3] = 20
    assert not torch.allclose(base[0, 0], model(changed, segments)[0, 0], atol=1e-4)


def test_right_padding_does_not_change_logits() -> None:
    model = _model()
    ids, segments = _row([5, 6], [8, 9])
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.int64)], dim=1)
    padded_segments = torch.cat([segments, torch.zeros(1, 3, dtype=torch.int64)], dim=1)
    assert torch.allclose(model(ids, segments), model(padded, padded_segments)[:, :6], atol=1e-6)


def test_kv_cache_decoding_equals_full_recompute() -> None:
    model = _model()
    questions = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    targets = [[20, 2, 21, 22, 2], [23, 24, 2, 25, 2], [26, 27, 28, 2, 2]]
    full = []
    for question, target in zip(questions, targets, strict=True):
        ids, segments = _row(question, target)
        full.append(model(ids, segments)[0, len(question) + 1 : -1])
    width = max(len(q) for q in questions) + 2
    prompt = torch.zeros(3, width, dtype=torch.int64)
    valid = torch.zeros(3, width, dtype=torch.bool)
    for row, question in enumerate(questions):  # left padding
        prompt[row, width - len(question) - 2 :] = torch.tensor([1, *question, 2])
        valid[row, width - len(question) - 2 :] = True
    first, cache = model.prefill(prompt, valid, max_new_tokens=5)
    steps = [first]
    for position in range(4):
        steps.append(model.decode_step(torch.tensor([t[position] for t in targets]), cache))
    incremental = torch.stack(steps, dim=1)
    for row in range(3):
        assert torch.allclose(incremental[row], full[row], atol=1e-5)
    # re-ordering the cache (beam search) equals recomputing the permuted rows
    order = torch.tensor([2, 0, 0])
    cache.reorder(order)
    logits = model.decode_step(torch.tensor([7, 7, 7]), cache)
    for row, source in enumerate(order.tolist()):
        ids, segments = _row(questions[source], [*targets[source][:4], 7])
        expected = model(ids, segments)[0, -1]
        assert torch.allclose(logits[row], expected, atol=1e-5)


def test_kv_cache_capacity_and_shapes() -> None:
    model = _model()
    first, cache = model.prefill(torch.tensor([[1, 5, 2]]), torch.ones(1, 3, dtype=torch.bool), 1)
    assert first.shape == (1, 40)
    cache.repeat_interleave(3)
    assert cache.rows == 3
    assert cache.capacity == 4
    model.decode_step(torch.tensor([5, 6, 7]), cache)
    with pytest.raises(ValueError, match="full"):
        model.decode_step(torch.tensor([5, 6, 7]), cache)
    with pytest.raises(ValueError, match="shape"):
        model.decode_step(torch.tensor([5]), cache)


def test_model_config_validation() -> None:
    with pytest.raises(ValueError, match="multiple"):
        KBQAModelConfig(vocab_size=10, d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="dropout"):
        KBQAModelConfig(vocab_size=10, dropout=1.0)
    with pytest.raises(ValueError, match="vocab_size must be set"):
        PrefixLMSeq2Seq(KBQAModelConfig())
    with pytest.raises(TypeError):
        PrefixLMSeq2Seq({"vocab_size": 10})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- training


def _tiny_data() -> tuple[list[Triple], list[QAExample]]:
    triples, splits = synthetic_kb(0, subjects=30, sizes={"train": 80})
    return triples, splits["train"]


def _tiny_config(**kwargs: object) -> KBQATrainingConfig:
    model = KBQAModelConfig(d_model=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.1)
    config = KBQATrainingConfig(
        model=model, steps=12, batch_size=16, lr=3e-3, warmup_steps=3, checkpoint_every=5,
        log_every=2,
    )  # fmt: skip
    return dataclasses.replace(config, **kwargs)


def _weights(model: PrefixLMSeq2Seq) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_is_seeded() -> None:
    triples, train = _tiny_data()
    a = train_kbqa(_tiny_config(), triples, train)
    b = train_kbqa(_tiny_config(), triples, train)
    c = train_kbqa(_tiny_config(seed=1), triples, train)
    wa, wb, wc = _weights(a.model), _weights(b.model), _weights(c.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)

    def without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert without_time(a.history) == without_time(b.history)


class _Killed(Exception):
    pass


def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    triples, train = _tiny_data()
    config = _tiny_config()
    reference = train_kbqa(config, triples, train)

    def kill(step: int, record: dict[str, float]) -> None:
        if step == 7:  # after the checkpoint of step 5
            raise _Killed

    with pytest.raises(_Killed):
        train_kbqa(config, triples, train, checkpoint_dir=tmp_path, callback=kill)
    assert (tmp_path / "checkpoint.pt").is_file()
    assert not (tmp_path / "model.pt").exists()
    steps: list[int] = []
    resumed = train_kbqa(
        config, triples, train, checkpoint_dir=tmp_path, callback=lambda s, r: steps.append(s)
    )
    assert steps == list(range(6, 13))  # resumed from step 5, not from scratch

    def without_time(history: list[dict[str, float]]) -> list[dict[str, float]]:
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert without_time(resumed.history) == without_time(reference.history)
    ref, res = _weights(reference.model), _weights(resumed.model)
    for key in ref:
        assert torch.allclose(ref[key], res[key], atol=1e-6), key
    # the written model directory loads back to the same weights
    model, tokenizer, meta = load_model(tmp_path)
    assert tokenizer == resumed.tokenizer
    assert meta["order"] == "SPM"
    assert meta["steps"] == 12
    assert all(torch.equal(model.state_dict()[k], res[k]) for k in res)
    # a finished run is not trained again
    again = train_kbqa(config, triples, train, checkpoint_dir=tmp_path, callback=lambda s, r: 1 / 0)
    assert again.steps == 12


def test_resume_refuses_a_different_run(tmp_path: Path) -> None:
    triples, train = _tiny_data()
    train_kbqa(_tiny_config(steps=2), triples, train, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="different configuration"):
        train_kbqa(_tiny_config(steps=2, lr=1e-2), triples, train, checkpoint_dir=tmp_path)
    more = [*triples, Triple("龘龘", "首都", "某地")]
    with pytest.raises(ValueError, match="tokenizer"):
        train_kbqa(_tiny_config(steps=2), more, train, checkpoint_dir=tmp_path)
    # steps may change: the run is extended
    longer = train_kbqa(_tiny_config(steps=4), triples, train, checkpoint_dir=tmp_path)
    assert longer.steps == 4


def test_training_drives_the_loss_down() -> None:
    triples, train = _tiny_data()
    result = train_kbqa(_tiny_config(steps=120, log_every=10, lr=5e-3), triples, train)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert result.steps_per_second > 0
    assert result.tokens_per_second > 0


def test_tokenizer_covers_kb_and_questions() -> None:
    triples, train = _tiny_data()
    tok = build_tokenizer(triples, train)
    for t in triples:
        assert all(tok.is_known(c) for c in t.subject + t.predicate + t.meaning)
    for e in train:
        assert all(tok.is_known(c) for c in tok.normalize(e.question))


def test_training_config_validation_and_schedule() -> None:
    with pytest.raises(ValueError, match="order"):
        KBQATrainingConfig(order="PSM")
    with pytest.raises(ValueError, match="batch_size"):
        KBQATrainingConfig(batch_size=0)
    with pytest.raises(ValueError, match="copy_augment"):
        KBQATrainingConfig(copy_augment=2.0)
    config = KBQATrainingConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert config.learning_rate(0, 100) == pytest.approx(1e-4)
    assert config.learning_rate(9, 100) == pytest.approx(1e-3)
    assert config.learning_rate(100, 100) == pytest.approx(1e-4)
    assert config.total_steps(640) == 100  # 10 epochs of batch 64
    again = KBQATrainingConfig.from_json(config.to_json())
    assert again == config
    assert derive_seed(0, "a") == derive_seed(0, "a") != derive_seed(0, "b")


def test_train_rejects_bad_input() -> None:
    triples, train = _tiny_data()
    with pytest.raises(ValueError, match="empty"):
        train_kbqa(_tiny_config(), [], train)
    with pytest.raises(ValueError, match="no answer"):
        train_kbqa(_tiny_config(), triples, [QAExample(0, "问题")])
    with pytest.raises(TypeError):
        train_kbqa({"steps": 1}, triples, train)  # type: ignore[arg-type]
