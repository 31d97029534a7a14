"""Dense dual-encoder baseline (kexue.kbqa._dense; spec 05 §8.6, E5.6) on a tiny synthetic KB."""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

faiss = pytest.importorskip("faiss")

from kexue.kbqa._dense import (  # noqa: E402 - after the importorskip
    DenseIndex,
    DenseModelConfig,
    DenseRetriever,
    DenseTrainingConfig,
    dense_key_text,
    train_dense_retriever,
)
from kexue.kbqa._types import QAExample, Triple  # noqa: E402


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread (torch and faiss) avoids contention on a loaded
    2-core machine (see tests/retrieval/conftest.py)."""
    previous, previous_omp = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    faiss.omp_set_num_threads(previous_omp)


# ---- a tiny KB: shared predicate prefixes, glosses determined by P, multi-valued facts -------

_CHARS = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董潘袁蔡蒋余于杜叶程"
_TEMPLATES = {
    "主要成就": ("{s}的主要成就是什么", "{s}有哪些成就"),
    "主讲课程": ("{s}主讲什么课程", "{s}主要讲什么课"),
    "主要作品": ("{s}的主要作品有哪些", "{s}写过什么作品"),
    "出生地": ("{s}的出生地在哪里", "{s}是在哪儿出生的"),
    "出生日期": ("{s}的出生日期是哪天", "{s}是什么时候出生的"),
    "国籍": ("{s}的国籍是哪里", "{s}是哪国人"),
    "首都": ("{s}的首都是哪座城市", "{s}首都在哪"),
    "人口": ("{s}有多少人口", "{s}的人口数量"),
}
_GLOSS = {  # meaning determined by predicate for ambiguous subjects
    "人物": ("主要成就", "主讲课程", "主要作品", "出生地", "出生日期", "国籍"),
    "国家": ("首都", "人口"),
}


def _tiny_kb(seed: int = 0) -> tuple[list[Triple], list[QAExample], list[QAExample]]:
    rng = random.Random(seed)
    subjects: list[str] = []
    while len(subjects) < 12:
        name = "".join(rng.choice(_CHARS) for _ in range(rng.randint(2, 3)))
        if name not in subjects:
            subjects.append(name)
    triples: list[Triple] = []
    for index, subject in enumerate(subjects):
        if index % 4 == 0:  # ambiguous: a person and a country of the same name
            plan = [("人物", p) for p in rng.sample(_GLOSS["人物"], 2)] + [("国家", "首都")]
        else:
            plan = [("", p) for p in rng.sample(_GLOSS["人物"], 3)]
        for meaning, predicate in plan:
            values = 2 if predicate == "主要作品" else 1
            for _ in range(values):
                obj = "".join(rng.choice(_CHARS) for _ in range(4))
                triples.append(Triple(subject, predicate, obj, meaning))
    first: dict[tuple[str, str, str], Triple] = {}
    for triple in triples:
        first.setdefault((triple.subject, triple.predicate, triple.meaning), triple)
    train, held_out = [], []
    for index, triple in enumerate(first.values()):
        question, paraphrase = (t.format(s=triple.subject) for t in _TEMPLATES[triple.predicate])
        train.append(QAExample(index, question, triple))
        held_out.append(QAExample(index, paraphrase, triple))
    return triples, train, held_out


_MODEL = DenseModelConfig(dim=64, layers=2, heads=4, ffn=128, dropout=0.1, max_length=32)


def _config(**changes: object) -> DenseTrainingConfig:
    base = DenseTrainingConfig(
        model=_MODEL, steps=150, batch_size=16, lr=2e-3, warmup_steps=10, hard_negatives=1
    )
    return base.replace(**changes)


@pytest.fixture(scope="module")
def trained() -> tuple[list[Triple], list[QAExample], list[QAExample], DenseRetriever]:
    torch.set_num_threads(1)
    triples, train, held_out = _tiny_kb()
    retriever = train_dense_retriever(triples, train, _config(), show_progress=False)
    return triples, train, held_out, retriever


@pytest.fixture(scope="module")
def index(
    trained: tuple[list[Triple], list[QAExample], list[QAExample], DenseRetriever],
) -> DenseIndex:
    triples, _, _, retriever = trained
    return DenseIndex(retriever, triples)


def _key(triple: Triple) -> tuple[str, str, str]:
    return triple.subject, triple.predicate, triple.meaning


def _same_key(a: Triple | None, b: Triple) -> bool:
    return a is not None and _key(a) == _key(b)


# ---- training --------------------------------------------------------------------------------


def test_tiny_kb_shape() -> None:
    triples, train, held_out = _tiny_kb()
    keys = {(t.subject, t.predicate, t.meaning) for t in triples}
    assert 30 <= len(triples) <= 60
    assert len(train) == len(held_out) == len(keys) < len(triples)  # multi-valued facts exist
    assert any(t.meaning for t in triples)


def test_training_lowers_loss_and_retrieves_training_keys(
    trained: tuple[list[Triple], list[QAExample], list[QAExample], DenseRetriever],
    index: DenseIndex,
) -> None:
    _, train, _, retriever = trained
    history = retriever.history
    assert len(history) == 150
    assert all(np.isfinite(history))
    assert np.mean(history[-10:]) < 0.3 * np.mean(history[:10])
    answers = index.answer([example.question for example in train])
    correct = sum(_same_key(a, e.answer) for a, e in zip(answers, train, strict=True) if e.answer)
    assert correct / len(train) >= 0.8
    for answer, example in zip(answers, train, strict=True):
        if _same_key(answer, example.answer):  # type: ignore[arg-type]
            assert answer == example.answer  # the key's first object (spec 05 §2.6)


def test_deterministic_for_a_seed() -> None:
    triples, train, _ = _tiny_kb()
    runs = [
        train_dense_retriever(triples, train, _config(steps=6, seed=seed), show_progress=False)
        for seed in (3, 3, 4)
    ]
    assert runs[0].history == runs[1].history
    assert runs[0].vocab == runs[1].vocab
    for (name, a), (_, b) in zip(
        runs[0].state_dict().items(), runs[1].state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert runs[0].history != runs[2].history


def test_training_leaves_the_global_random_state_alone() -> None:
    triples, train, _ = _tiny_kb()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_dense_retriever(triples, train, _config(steps=2), show_progress=False)
    assert torch.equal(torch.rand(3), expected)


def test_separate_towers() -> None:
    triples, train, _ = _tiny_kb()
    model = _MODEL.replace(shared_encoder=False)
    retriever = train_dense_retriever(
        triples, train, _config(steps=3, model=model, hard_negatives=0), show_progress=False
    )
    assert retriever.key_encoder is not retriever.question_encoder
    shared = train_dense_retriever(triples, train, _config(steps=1), show_progress=False)
    assert shared.key_encoder is shared.question_encoder
    count = sum(p.numel() for p in retriever.parameters())
    assert count == 2 * sum(p.numel() for p in shared.parameters())


# ---- index -----------------------------------------------------------------------------------


def test_one_vector_per_distinct_key_with_first_object(index: DenseIndex) -> None:
    triples, _, _ = _tiny_kb()
    first: dict[tuple[str, str, str], Triple] = {}
    for triple in triples:
        first.setdefault((triple.subject, triple.predicate, triple.meaning), triple)
    assert index.keys == list(first.values())
    assert len(index) == index.index.ntotal == len(first)


def test_search_agrees_with_brute_force(
    trained: tuple[list[Triple], list[QAExample], list[QAExample], DenseRetriever],
    index: DenseIndex,
) -> None:
    _, _, held_out, retriever = trained
    keys = retriever.encode_keys(index.keys).numpy()
    np.testing.assert_allclose(index.vectors(), keys, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(keys, axis=1), 1.0, atol=1e-5)
    questions = [example.question for example in held_out]
    scores = retriever.encode_questions(questions).numpy() @ keys.T
    k = 5
    hits = index.search(questions, k=k, batch_size=7)  # batch size must not matter
    for row, found in enumerate(hits):
        assert len(found) == k
        expected = np.sort(scores[row])[::-1][:k]
        np.testing.assert_allclose([s for _, s in found], expected, atol=1e-4)
        for triple, score in found:
            np.testing.assert_allclose(scores[row, index.keys.index(triple)], score, atol=1e-4)
    everything = index.search(questions[:2], k=10_000)
    assert all(len(found) == len(index) for found in everything)


def test_nbytes_is_n_times_d_times_4(index: DenseIndex) -> None:
    assert index.nbytes == len(index.keys) * 64 * 4 == index.vectors().nbytes
    serialized = faiss.serialize_index(index.index).nbytes
    assert index.nbytes <= serialized < index.nbytes + 1024  # the vectors plus a small header


def test_held_out_paraphrases_are_mostly_retrieved(
    trained: tuple[list[Triple], list[QAExample], list[QAExample], DenseRetriever],
    index: DenseIndex,
) -> None:
    """Not a claim, a sanity floor: unseen templates of seen keys beat chance (1/len) by far."""
    _, _, held_out, _ = trained
    answers = index.answer([example.question for example in held_out])
    correct = sum(
        _same_key(a, e.answer) for a, e in zip(answers, held_out, strict=True) if e.answer
    )
    assert correct / len(held_out) >= 0.3


# ---- bad input -------------------------------------------------------------------------------


def test_bad_questions(index: DenseIndex) -> None:
    assert index.search([]) == []
    assert index.answer([]) == []
    answers = index.answer(["", "   ", "\x00\u200b\t", "王" * 10_000, "😀🙂 hello?"])
    assert answers[:3] == [None, None, None]
    assert all(isinstance(a, Triple) for a in answers[3:])  # truncated / [UNK]s, still answered
    assert index.search([" \n"], k=3) == [[]]
    with pytest.raises(TypeError, match="not one string"):
        index.search("王李的国籍")
    with pytest.raises(TypeError, match=r"questions\[1\]"):
        index.answer(["王李", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="k must be"):
        index.search(["王李"], k=0)


def test_bad_training_input() -> None:
    triples, train, _ = _tiny_kb()
    config = _config(steps=1)
    with pytest.raises(ValueError, match="KB is empty"):
        train_dense_retriever([], train, config)
    with pytest.raises(TypeError, match="Triple"):
        train_dense_retriever([("a", "b", "c")], train, config)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty subject or predicate"):
        train_dense_retriever([Triple(" ", "p", "o")], train, config)
    with pytest.raises(ValueError, match="no training example"):
        train_dense_retriever(triples, [QAExample(0, "问题", None)], config)
    with pytest.raises(TypeError, match="QAExample"):
        train_dense_retriever(triples, ["问题"], config)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="temperature"):
        DenseTrainingConfig(temperature=0.0)
    with pytest.raises(ValueError, match="divisible"):
        DenseModelConfig(dim=30, heads=4)
    with pytest.raises(TypeError, match="DenseRetriever"):
        DenseIndex(object(), triples)  # type: ignore[arg-type]


def test_gold_key_outside_the_kb_still_trains() -> None:
    triples, train, _ = _tiny_kb()
    extra = QAExample("x", "外星人的首都是哪座城市", Triple("外星人", "首都", "火星", "国家"))
    retriever = train_dense_retriever(
        triples, [*train, extra], _config(steps=2), show_progress=False
    )
    assert "外" in retriever.vocab
    assert len(retriever.history) == 2


# ---- persistence, config, optional dependency --------------------------------------------------


def test_save_load_round_trip(
    tmp_path: Path,
    trained: tuple[list[Triple], list[QAExample], list[QAExample], DenseRetriever],
) -> None:
    _, train, _, retriever = trained
    path = retriever.save(tmp_path / "dense.pt")
    loaded = DenseRetriever.load(path)
    assert loaded.vocab == retriever.vocab
    assert loaded.config == retriever.config
    assert loaded.history == retriever.history
    questions = [example.question for example in train[:5]]
    assert torch.equal(loaded.encode_questions(questions), retriever.encode_questions(questions))
    (tmp_path / "other.pt").write_bytes(b"not a model")
    with pytest.raises(Exception):  # noqa: B017, PT011 - torch's unpickling error type varies
        DenseRetriever.load(tmp_path / "other.pt")


def test_config_json_round_trip() -> None:
    config = _config(hard_negatives=2)
    assert DenseTrainingConfig.from_json(config.to_json()) == config


def test_key_text() -> None:
    glossed = Triple("牛郎织女", "作者", "佚名", "民间故事")
    assert dense_key_text(glossed) == "牛郎织女（民间故事） 作者"
    assert dense_key_text(Triple("北京", "人口", "2189万")) == "北京 人口"


def test_missing_faiss_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
    trained: tuple[list[Triple], list[QAExample], list[QAExample], DenseRetriever],
) -> None:
    triples, _, _, retriever = trained
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match=r"kexue\[faiss\]"):
        DenseIndex(retriever, triples)
