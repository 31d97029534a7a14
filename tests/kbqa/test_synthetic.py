"""The synthetic KB of spec 05 §8.8 (kexue.kbqa.synthetic_kb)."""

from __future__ import annotations

import collections
import itertools

import pytest

from kexue.kbqa import COMMON_CHARS, ENTITY_TYPES, Triple, synthetic_kb, synthetic_templates


@pytest.fixture(scope="module")
def kb() -> tuple[list[Triple], dict[str, list]]:
    return synthetic_kb(0)


def test_sizes_follow_the_spec(kb: tuple[list[Triple], dict[str, list]]) -> None:
    triples, splits = kb
    assert len(COMMON_CHARS) == len(set(COMMON_CHARS)) == 300
    assert len({t.subject for t in triples}) == 2000
    predicates = {t.predicate for t in triples}
    assert 140 <= len(predicates) <= 170  # ≈150
    assert {name: len(rows) for name, rows in splits.items()} == {
        "train": 5000, "dev": 1000, "test": 1000, "test_unseen": 500
    }  # fmt: skip
    for t in triples:
        assert 2 <= len(t.subject) <= 4
        assert set(t.subject) <= set(COMMON_CHARS)


def test_deterministic_for_a_seed() -> None:
    a = synthetic_kb(3, subjects=200, sizes={"train": 300, "dev": 50})
    b = synthetic_kb(3, subjects=200, sizes={"train": 300, "dev": 50})
    c = synthetic_kb(4, subjects=200, sizes={"train": 300, "dev": 50})
    assert a == b
    assert a[0] != c[0]


def test_predicates_share_prefixes(kb: tuple[list[Triple], dict[str, list]]) -> None:
    triples, _ = kb
    predicates = sorted({t.predicate for t in triples})
    for name in (
        "主要成就",
        "主讲课程",
        "主要作品",
        "主演",
        "首字",
        "首字拼音",
        "人口",
        "人口密度",
    ):
        assert name in predicates
    colliding = [(a, b) for a, b in itertools.combinations(predicates, 2) if a[:2] == b[:2]]
    assert len(colliding) >= 30
    # a predicate that is a proper prefix of another (the look-ahead's hardest case)
    assert any(b.startswith(a) for a, b in itertools.permutations(predicates, 2))


def test_meaning_is_determined_by_subject_and_predicate(
    kb: tuple[list[Triple], dict[str, list]],
) -> None:
    triples, _ = kb
    meanings: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    by_subject: dict[str, set[str]] = collections.defaultdict(set)
    for t in triples:
        meanings[(t.subject, t.predicate)].add(t.meaning)
        by_subject[t.subject].add(t.meaning)
    assert all(len(m) == 1 for m in meanings.values())
    ambiguous = [s for s, m in by_subject.items() if len(m) > 1]
    assert 0.2 <= len(ambiguous) / len(by_subject) <= 0.3  # ≈25% of subjects
    for s in ambiguous:
        assert 2 <= len(by_subject[s]) <= 3
        assert "" not in by_subject[s]
        for meaning in by_subject[s]:  # a type name, maybe after a two-character qualifier
            assert meaning in ENTITY_TYPES or meaning[2:] in ENTITY_TYPES
    qualified = [m for s in ambiguous for m in by_subject[s] if m not in ENTITY_TYPES]
    assert 0.3 <= len(qualified) / sum(len(by_subject[s]) for s in ambiguous) <= 0.7
    for m in by_subject.values():
        if len(m) == 1:
            assert m == {""}


def test_questions_are_grounded_and_use_each_key_once(
    kb: tuple[list[Triple], dict[str, list]],
) -> None:
    triples, splits = kb
    first: dict[tuple[str, str, str], Triple] = {}
    for t in triples:
        first.setdefault((t.subject, t.predicate, t.meaning), t)
    used: set[tuple[str, str, str]] = set()
    for rows in splits.values():
        for row in rows:
            gold = row.answer
            assert gold is not None
            key = (gold.subject, gold.predicate, gold.meaning)
            assert first[key] == gold  # the gold is the first stored object (spec 05 §8.2.3)
            assert key not in used
            used.add(key)
            assert gold.subject in row.question
    seen = {row.answer.subject for name in ("train", "dev", "test") for row in splits[name]}
    unseen = {row.answer.subject for row in splits["test_unseen"]}
    assert not seen & unseen


def test_multi_valued_facts_exist(kb: tuple[list[Triple], dict[str, list]]) -> None:
    triples, _ = kb
    counts = collections.Counter((t.subject, t.predicate, t.meaning) for t in triples)
    assert sum(n > 1 for n in counts.values()) >= 20


def test_templates() -> None:
    for predicate in ("主讲课程", "人口", "主演", "首字拼音"):
        templates = synthetic_templates(predicate)
        assert len(templates) == 3
        assert all("{s}" in t for t in templates)
    assert "{s}主要讲什么课程" in synthetic_templates("主讲课程")  # the post's example
    assert "{s}主讲什么课程" in synthetic_templates("主讲课程")


def test_small_kb_scales_splits_down() -> None:
    triples, splits = synthetic_kb(0, subjects=20)
    assert len(splits["train"]) + len(splits["dev"]) + len(splits["test"]) <= len(triples)
    assert len(splits["train"]) > 0


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"subjects": 0}, ValueError),
        ({"subjects": 1.5}, TypeError),
        ({"ambiguous": 1.5}, ValueError),
        ({"qualified_meanings": -0.1}, ValueError),
        ({"sizes": {"bogus": 3}}, ValueError),
        ({"facts_per_entity": (0, 3)}, ValueError),
        ({"unseen_subjects": 1.0}, ValueError),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        synthetic_kb(0, **kwargs)  # type: ignore[arg-type]
