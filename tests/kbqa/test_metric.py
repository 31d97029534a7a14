"""The official KgCLUE metric (spec 05 §1.3; C5.1 metric, C5.2 score, C5.3 column swap)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.kbqa import (
    Triple,
    evaluate,
    evaluate_files,
    evaluate_per_example,
    exact_match,
    lcs_f1,
    lcs_length,
    normalize,
)

KGCLUE = Path(__file__).parent / "fixtures" / "kgclue"
_CHARS = st.text(alphabet="ab主讲课程要成就 A", max_size=10)


def _lcs_reference(a: str, b: str) -> int:
    @functools.cache
    def rec(i: int, j: int) -> int:
        if i == len(a) or j == len(b):
            return 0
        if a[i] == b[j]:
            return 1 + rec(i + 1, j + 1)
        return max(rec(i + 1, j), rec(i, j + 1))

    return rec(0, 0)


# --- C5.1 -----------------------------------------------------------------------------------------


def test_hand_computed_cases_c5_1() -> None:
    assert lcs_f1("主讲课程", "主要成就") == pytest.approx(0.25)  # 2·1/8
    assert lcs_f1("《固体物理》", "固体物理") == pytest.approx(0.8)  # 2·4/10
    assert exact_match("ABC  d", "abc d") == 1.0
    assert lcs_f1("ABC  d", "abc d") == 1.0
    assert exact_match("", "") == 1.0
    assert lcs_f1("", "") == 0.0
    assert exact_match("a", "") == 0.0
    assert lcs_f1("a", "") == 0.0
    assert normalize("  Hello \t World\n") == "hello world"
    assert lcs_length("abcde", "ace") == 3
    assert lcs_length("", "abc") == 0


@settings(max_examples=300, deadline=None)
@given(_CHARS, _CHARS)
def test_f1_properties_c5_1(prediction: str, gold: str) -> None:
    f1, em = lcs_f1(prediction, gold), exact_match(prediction, gold)
    assert 0.0 <= f1 <= 1.0
    assert lcs_f1(gold, prediction) == pytest.approx(f1)
    assert lcs_length(prediction, gold) == _lcs_reference(prediction, gold)
    if normalize(gold):
        assert f1 >= em  # EM = 1 ⇒ F1 = 1 whenever the gold is non-empty
    if normalize(prediction) and normalize(gold):
        assert (f1 == 1.0) == (em == 1.0)


def test_matches_pylcs_when_installed() -> None:
    pylcs = pytest.importorskip("pylcs")
    for a, b in [("主讲课程", "主要成就"), ("《固体物理》", "固体物理"), ("abcab", "bacba")]:
        assert lcs_length(a, b) == pylcs.lcs(a, b)


# --- C5.2 / C5.3 ----------------------------------------------------------------------------------


def test_score_and_parts_c5_2() -> None:
    golds = [
        Triple("刘晓华", "主讲课程", "《固体物理》", "广东工业大学教授"),
        Triple("龙晶", "繁体", "龍晶", "游戏"),
    ]
    predictions = [Triple("刘晓华", "主要成就", "固体物理", "广东工业大学教授"), None]
    result = evaluate(predictions, golds)
    rows = evaluate_per_example(predictions, golds)
    assert rows[0]["EM_S"] == 1.0
    assert rows[0]["EM_P"] == 0.0
    assert rows[0]["F1_P"] == pytest.approx(0.25)
    assert rows[0]["F1_O"] == pytest.approx(0.8)
    assert rows[0]["EM_All"] == 0.0
    s, p, o = "刘晓华（广东工业大学教授）", "主讲课程", "《固体物理》"
    assert rows[0]["F1_All"] == pytest.approx(lcs_f1(s + "主要成就固体物理", s + p + o))
    assert rows[1] == {key: 0.0 for key in rows[1]}  # no answer scores as the empty answer
    assert result["O"] == {"EM": 0.0, "F1": pytest.approx(40.0)}
    assert result["score"] == pytest.approx(100 * sum(r["score"] for r in rows) / 2)
    assert result["score"] == pytest.approx((result["O"]["EM"] + result["O"]["F1"]) / 2)
    assert set(result) == {"S", "P", "O", "All", "score", "n"}
    perfect = evaluate(golds, golds)
    assert perfect["score"] == 100.0
    assert perfect["All"] == {"EM": 100.0, "F1": 100.0}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_CHARS, _CHARS, _CHARS.filter(lambda s: normalize(s) != ""), _CHARS),
        min_size=1,
        max_size=8,
    ),
    st.data(),
)
def test_mean_f1_at_least_mean_em_c5_3(rows: list[tuple[str, ...]], data: st.DataObject) -> None:
    """With non-empty gold objects mean F1 ≥ mean EM, so the post's table (valid 'F1 89.20,
    EM 91.04') must have its columns swapped (spec 05 §4)."""
    golds = [Triple(s, p, o) for s, p, o, _ in rows]
    predictions = [
        data.draw(st.sampled_from([Triple(s, p, x), Triple(s, p, o), None])) for s, p, o, x in rows
    ]
    result = evaluate(predictions, golds)
    assert result["O"]["F1"] >= result["O"]["EM"] - 1e-9
    assert result["All"]["F1"] >= result["All"]["EM"] - 1e-9
    post_valid = {"F1": 89.20, "EM": 91.04}
    assert post_valid["F1"] < post_valid["EM"]  # impossible under the metric: labels swapped


def test_accepted_objects_variant() -> None:
    golds = [Triple("瑞士", "官方语言", "德语"), Triple("瑞士", "邻国", "德国")]
    predictions = [Triple("瑞士", "官方语言", "法语"), Triple("瑞士", "邻国", "德国")]
    result = evaluate(predictions, golds, accepted_objects=[["德语", "法语"], ["德国"]])
    assert result["O"]["EM"] == 50.0
    assert result["O_any"]["EM"] == 100.0
    assert result["O_any"]["F1"] >= result["O"]["F1"]
    with pytest.raises(ValueError, match="accepted_objects"):
        evaluate(predictions, golds, accepted_objects=[["德语"]])


def test_bad_input() -> None:
    gold = [Triple("a", "b", "c")]
    with pytest.raises(ValueError, match="predictions"):
        evaluate([], gold)
    with pytest.raises(TypeError):
        evaluate(["a ||| b ||| c"], gold)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="None"):
        evaluate([None], [None])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        normalize(None)  # type: ignore[arg-type]
    assert evaluate([], [])["score"] == 0.0


def test_evaluate_files_like_the_official_script(tmp_path: Path) -> None:
    gold = KGCLUE / "train.json"
    predictions = tmp_path / "pred.json"
    lines = gold.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    records[0]["answer"] = "刘晓华（广东工业大学教授） ||| 主要成就 ||| 固体物理"
    records[5]["answer"] = "CECI姐妹 ||| 发行量 ||| 10万册"  # normalisation lower-cases
    predictions.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    result = evaluate_files(predictions, gold)
    assert result["n"] == 6
    assert result["S"]["EM"] == 100.0
    assert result["O"]["EM"] == pytest.approx(500 / 6)
    assert result["O"]["F1"] == pytest.approx(100 * (5 + 0.8) / 6)
    with pytest.raises(ValueError, match="answer"):
        evaluate_files(KGCLUE / "test.json", gold)
