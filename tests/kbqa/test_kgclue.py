"""KgCLUE file formats and the subject/meaning split (spec 05 §1.1–1.2, §2.2; C5.4, C5.5, C5.10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.kbqa import (
    ANSWER_SEPARATOR,
    QAExample,
    Triple,
    answer_integrity,
    format_answer,
    iter_knowledge,
    parse_answer,
    read_kgclue,
    read_knowledge,
    split_subject,
    write_kgclue,
    write_knowledge,
)

KGCLUE = Path(__file__).parent / "fixtures" / "kgclue"


# --- C5.4: the subject split ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "mode", "expected"),
    [
        ("A（B）", "balanced", ("A", "B")),
        ("A", "balanced", ("A", "")),
        ("A（B）（C）", "balanced", ("A（B）", "C")),
        ("A（B）（C）", "reference", ("A", "B）（C")),
        ("（B）", "balanced", ("", "B")),
        ("（B）", "reference", ("", "B")),
        ("A（B（C））", "balanced", ("A", "B（C）")),
        ("B）", "balanced", ("B）", "")),
        ("刘晓华（广东工业大学教授）", "balanced", ("刘晓华", "广东工业大学教授")),
        ("A(B)", "balanced", ("A(B)", "")),  # only full-width brackets form a gloss
    ],
)
def test_split_subject_c5_4(text: str, mode: str, expected: tuple[str, str]) -> None:
    assert split_subject(text, mode=mode) == expected  # type: ignore[arg-type]


def test_split_subject_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        split_subject(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        split_subject("A", mode="first")  # type: ignore[arg-type]


# --- C5.10: the answer string round trip ----------------------------------------------------------

_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"), blacklist_characters="\t\r\n\x0b\x0c\x1c\x1d\x1e\x85"
    ),
    max_size=12,
).filter(lambda s: "|" not in s)  # a '|' next to the separator is ambiguous in the format itself


@settings(max_examples=300, deadline=None)
@given(
    _TEXT.filter(lambda s: not s.endswith("）")),
    _TEXT,
    _TEXT,
    _TEXT.filter(lambda s: "（" not in s and "）" not in s),
)
def test_answer_round_trip_c5_10(subject: str, predicate: str, obj: str, meaning: str) -> None:
    """``S（M） ||| P ||| O`` ↔ (S, M, P, O) is lossless when S has no trailing gloss."""
    triple = Triple(subject, predicate, obj, meaning)
    text = format_answer(triple)
    assert text.count(ANSWER_SEPARATOR) == 2
    assert parse_answer(text) == triple


def test_answer_format_examples() -> None:
    triple = parse_answer("刘晓华（广东工业大学教授） ||| 主讲课程 ||| 《固体物理》")
    assert triple == Triple("刘晓华", "主讲课程", "《固体物理》", "广东工业大学教授")
    assert triple.full_subject == "刘晓华（广东工业大学教授）"
    assert parse_answer("A（B）（C） ||| P ||| O", mode="reference").meaning == "B）（C"
    with pytest.raises(ValueError, match="S \\|\\|\\| P \\|\\|\\| O"):
        parse_answer("S|||P|||O")
    with pytest.raises(ValueError, match="form"):
        parse_answer("a ||| b ||| c ||| d")
    with pytest.raises(TypeError):
        parse_answer(None)  # type: ignore[arg-type]


def test_writers_refuse_ambiguous_or_broken_triples(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="read back"):
        format_answer(Triple("刚果（金）", "首都", "金沙萨"))  # would read back as 刚果 / 金
    assert format_answer(Triple("刚果（金）", "首都", "金沙萨", "国家")).startswith(
        "刚果（金）（国家）"
    )
    with pytest.raises(ValueError, match="tab"):
        write_knowledge(tmp_path / "k.tsv", [Triple("A", "P", "x\ty")])
    with pytest.raises(ValueError, match="line break"):
        write_knowledge(tmp_path / "k.tsv", [Triple("A", "P\n", "x")])
    assert not (tmp_path / "k.tsv").exists()  # atomic: nothing half-written
    with pytest.raises(TypeError):
        write_kgclue(tmp_path / "q.json", ["question"])  # type: ignore[list-item]


# --- files ----------------------------------------------------------------------------------------


def test_read_real_format_knowledge() -> None:
    triples = read_knowledge(KGCLUE / "Knowledge.txt")
    assert len(triples) == 11
    assert triples[0] == Triple("刘晓华", "主讲课程", "《固体物理》", "广东工业大学教授")
    assert Triple("A（B）", "别名", "甲", "C") in triples
    reference = read_knowledge(KGCLUE / "Knowledge.txt", mode="reference")
    assert Triple("A", "别名", "甲", "B）（C") in reference


def test_read_real_format_questions() -> None:
    train = read_kgclue(KGCLUE / "train.json")
    assert [row.id for row in train] == list(range(6))
    assert train[0].question == "刘晓华主要讲什么课啊？"
    assert train[0].answer == Triple("刘晓华", "主讲课程", "《固体物理》", "广东工业大学教授")
    test = read_kgclue(KGCLUE / "test.json")
    assert [row.answer for row in test] == [None, None]


def test_integrity_share_on_kgclue_fixture_c5_5() -> None:
    """C5.5 on KgCLUE-format data: the share is reported; a multi-object key whose gold is not
    the first stored object (橘子 别称 柑橘) lowers it."""
    report = answer_integrity(
        read_knowledge(KGCLUE / "Knowledge.txt"), read_kgclue(KGCLUE / "train.json")
    )
    assert report == {"examples": 6, "key_found": 6, "first_object_matches": 5, "share": 5 / 6}
    assert answer_integrity([], read_kgclue(KGCLUE / "test.json"))["share"] == 1.0


def test_knowledge_round_trip_with_header(tmp_path: Path) -> None:
    triples = [
        Triple("#话题", "类别", "标签"),  # a subject starting with '#' after the header
        Triple("A（B）", "P", "O", "C"),
        Triple("鼓楼区", "所属省份", "福建省", "福州市"),
        Triple("x", "y", "  spaced  object "),
    ]
    path = tmp_path / "knowledge.tsv"
    assert write_knowledge(path, triples, header=["attribution line", "second"]) == 4
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["# attribution line", "# second"]
    assert read_knowledge(path) == triples
    assert list(iter_knowledge(path)) == triples


def test_knowledge_reader_strictness(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("A\tP\tO\nbroken line\n\nB\tP\tO\twith\ttabs\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":2:"):
        read_knowledge(path)
    triples = read_knowledge(path, strict=False)
    assert triples == [Triple("A", "P", "O"), Triple("B", "P", "O\twith\ttabs")]


def test_kgclue_round_trip(tmp_path: Path) -> None:
    rows = [
        QAExample(0, "新加坡的首都是哪里？", Triple("新加坡", "首都", "新加坡", "国家")),
        QAExample(1, "没有答案的问题", None),
        QAExample("x-2", 'quote " and \\ backslash', Triple("A", "P", "O")),
    ]
    path = tmp_path / "q.json"
    assert write_kgclue(path, rows) == 3
    assert read_kgclue(path) == rows
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert records[0] == {
        "id": 0,
        "question": "新加坡的首都是哪里？",
        "answer": "新加坡（国家） ||| 首都 ||| 新加坡",
    }
    assert "answer" not in records[1]


def test_kgclue_reader_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"id": 0, "question": "q", "answer": "a ||| b"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="S \\|\\|\\| P \\|\\|\\| O"):
        read_kgclue(path)
    path.write_text("not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":1:"):
        read_kgclue(path)
    path.write_text('{"id": 0}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="question"):
        read_kgclue(path)
