"""A synthetic KgCLUE-style KB and questions: the minimal CPU tier of spec 05 §8.8.

No package data: subjects are random 2–4-character strings over ~300 common characters; ~150
predicates with deliberate shared prefixes (主要成就 / 主讲课程 / 主要作品 / 主演, 所属城市 /
所属省份, 首字 / 首字拼音, 人口 / 人口密度 ...), grouped into entity *types* (人物, 电影, 小说 ...).
A share ``ambiguous`` of subjects has 2–3 meanings, each with a disjoint predicate subset, so **M
is determined by (S, P)** and never named in the question — the KgCLUE case in which the (S, P,
M) target order beats (S, M, P) (spec 05 §2.3, C5.7). A meaning is the type name (``电影``),
or, with probability ``qualified_meanings``, the type name after a random two-character
qualifier (``春雨电影``, like KgCLUE's idiosyncratic glosses ``广东工业大学教授``): the type is
inferable from the predicate, the qualifier only from the KB (through the trie once P is
decoded). Some
facts are multi-valued (several objects for one (S, P, M); the question's gold is the first in KB
order, spec 05 §8.2.3). Each predicate has three question templates: the predicate verbatim, the
predicate split by inserted characters (``{S}主讲什么课程``), and a paraphrase (hand-written for
the collision predicates, e.g. ``{S}主要讲什么课程`` for 主讲课程, the post's example, and
predicate-free ones such as ``{S}有多少人`` for 人口), with optional colloquial prefixes and
suffixes. The subject surface always occurs verbatim in the question.

Splits: ``train``, ``dev``, ``test`` (subjects seen in training) and ``test_unseen`` (subjects
reserved from all other splits, spec 05 §8.4, E5.7). Every KB key (S, P, M) is used by at most
one question. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from ._types import QAExample, Triple

__all__ = [
    "COMMON_CHARS",
    "ENTITY_TYPES",
    "SYNTHETIC_SPLITS",
    "synthetic_kb",
    "synthetic_templates",
]

COMMON_CHARS = (
    "天地人日月山水火木金土风云雨雪花草鸟鱼龙虎马牛羊春夏秋冬东西南北中上下左右大小多少长短高低"
    "远近新旧明暗红黄蓝绿白黑青紫光阳星海河江湖泉石田林森竹松梅兰菊桃李杨柳心思想念爱情义礼智信"
    "仁德善美真文武书画诗歌舞乐声音言语笑哭喜怒安宁静和平正清华英雄豪杰志方圆古今朝夕晨昏早晚岁"
    "年时刻分秒百千万亿元宝珠玉银铜铁钢福禄寿康富贵吉祥如意开门关窗家国城乡村镇街路桥车船飞行走"
    "跑跳立坐卧看听说读写学问知识能力才艺巧妙奇异神仙灵魂梦境影像形色香味甜酸苦辣咸冷热温凉寒暖"
    "晴阴雷电霜露冰霞虹彩锦绣丝绸布衣帽鞋袜床桌椅灯烛烟尘沙泥岩峰岭谷川原野泽洲岛湾港浪潮波涛舟"
    "帆旗鼓琴棋剑刀弓箭盾甲兵将帅王侯公卿士民众谐秀丽晓慧敏俊瑞泰"
)
"""300 distinct common characters: the subject and object alphabet (spec 05 §8.8)."""

_OBJECT_EXTRA = "0123456789甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"

# Entity types (the meanings M) and their predicates. Shared prefixes on purpose (spec 05
# §8.2.1): the look-ahead rule of spec 04 §4 matters only where predicates collide.
ENTITY_TYPES: Mapping[str, tuple[str, ...]] = {
    "人物": (
        "主要成就", "主要作品", "主讲课程", "主讲内容", "主要职务", "出生日期", "出生地点",
        "出生年份", "毕业院校", "毕业时间", "代表作品", "身高", "体重", "血型", "星座", "国籍",
        "民族", "职业", "英文名", "别名", "原名", "所属公司",
    ),
    "歌曲": (
        "作词", "作曲", "主唱", "所属专辑", "发行时间", "发行公司", "歌曲时长", "歌曲语言",
        "外文名", "首发时间", "创作背景", "创作者", "创作年代",
    ),
    "电影": (
        "导演", "编剧", "主演", "制片人", "制片地区", "上映时间", "上映地区", "首映时间",
        "出品公司", "出品时间", "外文名", "类型", "主要人物", "片长",
    ),
    "小说": (
        "作者", "连载网站", "连载状态", "字数", "出版社", "出版时间", "主要人物", "所属系列",
        "创作年代", "别名", "作品类型", "主要奖项",
    ),
    "城市": (
        "所属省份", "所属国家", "人口", "人口密度", "面积", "海拔", "气候", "气候类型", "主要景点",
        "简称", "别名", "英文名", "所属地区", "城市代码",
    ),
    "国家": (
        "首都", "首都人口", "官方语言", "官方货币", "国歌", "国花", "人口", "面积", "所属大洲",
        "全称", "简称", "英文名", "国家代码",
    ),
    "公司": (
        "创始人", "成立时间", "成立地点", "总部地点", "总部位置", "注册资本", "经营范围",
        "主要产品", "官方网站", "英文缩写", "所属国家", "员工数量", "董事长",
    ),
    "植物": (
        "学名", "科属", "分布区域", "花期", "花色", "果实", "主要用途", "主要成分", "别名",
        "发源地", "生长环境",
    ),
    "游戏": (
        "游戏类型", "游戏平台", "游戏引擎", "发布时间", "发布平台", "发行公司", "主要人物",
        "所属系列", "英文名", "开发商",
    ),
    "学校": (
        "校训", "校长", "校庆日", "建校时间", "所属城市", "占地面积", "主要奖项", "英文名", "简称",
        "学校类型", "主管部门",
    ),
    "菜品": ("口味", "菜系", "主料", "辅料", "做法", "主要原料", "发源地", "所属地区", "烹饪时间"),
    "动物": ("学名", "体长", "体重", "寿命", "食性", "栖息地", "颜色", "主要特点", "分布区域"),
    "建筑": (
        "建筑面积", "建筑风格", "建成时间", "所属城市", "占地面积", "设计师", "建筑高度",
        "主要用途", "开放时间",
    ),
    "成语": (
        "拼音", "拼音缩写", "首字", "首字拼音", "尾字", "尾字拼音", "出处", "解释", "近义词",
        "反义词", "例句",
    ),
    "专辑": ("发行时间", "发行公司", "歌手", "曲目数量", "专辑类型", "制作人", "唱片公司"),
    "公园": ("所在城市", "所在地区", "开放时间", "门票价格", "占地面积", "主要景点", "建成时间"),
    "河流": ("发源地", "流经地区", "全长", "流域面积", "注入", "主要支流"),
    "品牌": ("品牌创始人", "品牌口号", "创立时间", "所属公司", "主要产品", "品牌定位"),
}  # fmt: skip

# Multi-valued predicates (spec 05 §8.2.3): sometimes two objects for one (S, P, M).
_MULTI_VALUED = frozenset({"代表作品", "主演", "官方语言", "主要景点", "主要作品", "流经地区"})

# Hand-written paraphrases with partial / no predicate characters (spec 05 §8.3, §3).
_PARAPHRASES: Mapping[str, str] = {
    "主讲课程": "{s}主要讲什么课程",
    "主讲内容": "{s}主要讲哪些内容",
    "主要成就": "{s}取得过什么成就",
    "主要作品": "{s}写过哪些作品",
    "主演": "{s}是谁演的",
    "人口": "{s}有多少人",
    "人口密度": "{s}的人口密不密集",
    "面积": "{s}有多大",
    "首都": "{s}的首府在哪",
    "首都人口": "{s}首府有多少人口",
    "首字": "{s}第一个字是什么",
    "首字拼音": "{s}第一个字的拼音",
    "尾字": "{s}最后一个字是什么",
    "尾字拼音": "{s}最后一个字怎么读",
    "拼音": "{s}怎么读",
    "拼音缩写": "{s}的拼音首字母缩写是什么",
    "官方语言": "{s}说什么语言",
    "官方货币": "{s}用什么钱",
    "所属省份": "{s}在哪个省",
    "所属国家": "{s}是哪国的",
    "出生日期": "{s}哪天出生的",
    "出生地点": "{s}在哪里出生",
    "作者": "{s}是谁写的",
    "导演": "{s}是谁导的",
    "作曲": "{s}的曲子谁写的",
    "作词": "{s}的词是谁填的",
    "创始人": "{s}是谁创办的",
    "发源地": "{s}起源于哪里",
    "身高": "{s}有多高",
    "体重": "{s}有多重",
}

_PREFIXES = ("", "", "", "请问", "你知道", "我想知道")
_SUFFIXES = ("？", "？", "", "呢", "啊", "呀")

SYNTHETIC_SPLITS = ("train", "dev", "test", "test_unseen")


def synthetic_templates(predicate: str) -> tuple[str, ...]:
    """The three question templates of a predicate (``{s}`` = subject): verbatim, split by
    inserted characters, paraphrase (module docstring)."""
    verbatim = "{s}的" + predicate + "是什么"
    if len(predicate) >= 3:
        split = "{s}" + predicate[:2] + "什么" + predicate[2:]
    else:
        split = "{s}" + predicate + "是多少"
    paraphrase = _PARAPHRASES.get(predicate, "告诉我{s}" + predicate + "是啥")
    return verbatim, split, paraphrase


def _random_string(rng: random.Random, alphabet: str, low: int, high: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def _check_count(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def synthetic_kb(
    seed: int = 0,
    subjects: int = 2000,
    *,
    ambiguous: float = 0.25,
    facts_per_entity: tuple[int, int] = (4, 8),
    multi_valued: float = 0.3,
    qualified_meanings: float = 0.5,
    sizes: Mapping[str, int] | None = None,
    unseen_subjects: float = 0.1,
) -> tuple[list[Triple], dict[str, list[QAExample]]]:
    """The synthetic KB and its QA splits (module docstring; spec 05 §8.8).

    Args:
        seed: everything is a deterministic function of the arguments.
        subjects: distinct subject surfaces (random 2–4-character strings over
            :data:`COMMON_CHARS`).
        ambiguous: share of subjects with 2–3 meanings (M determined by P); the others have no M.
        facts_per_entity: inclusive range of predicates per (subject, meaning).
        multi_valued: probability that a fact with a multi-valued predicate gets a second object.
        qualified_meanings: probability that a meaning carries a random qualifier before its
            type name.
        sizes: questions per split, default ``{"train": 5000, "dev": 1000, "test": 1000,
            "test_unseen": 500}``; scaled down proportionally when the KB has too few keys.
        unseen_subjects: share of subjects reserved for ``test_unseen``.

    Returns:
        ``(triples, splits)``: the KB in KB order and ``{split: [QAExample]}`` whose answers are
        the first stored object of their key.
    """
    subjects = _check_count(subjects, "subjects", 1)
    for name, value in (
        ("ambiguous", ambiguous), ("multi_valued", multi_valued),
        ("qualified_meanings", qualified_meanings),
    ):  # fmt: skip
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    if not 0.0 <= unseen_subjects < 1.0:
        raise ValueError(f"unseen_subjects must be in [0, 1), got {unseen_subjects}")
    low, high = facts_per_entity
    if not 1 <= low <= high:
        raise ValueError(
            f"facts_per_entity must be (low, high) with 1 <= low <= high, got {low, high}"
        )
    wanted = dict(sizes) if sizes is not None else {
        "train": 5000, "dev": 1000, "test": 1000, "test_unseen": 500
    }  # fmt: skip
    unknown = sorted(set(wanted) - set(SYNTHETIC_SPLITS))
    if unknown:
        raise ValueError(f"unknown split(s) {unknown}; choose from {SYNTHETIC_SPLITS}")
    for name, size in wanted.items():
        _check_count(size, f"sizes[{name!r}]")

    rng = random.Random(f"kexue.kbqa.synthetic:{seed}")
    surfaces: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(surfaces) < subjects:
        attempts += 1
        if attempts > 100 * subjects + 1000:
            raise ValueError(f"cannot draw {subjects} distinct subjects; ask for fewer")
        surface = _random_string(rng, COMMON_CHARS, 2, 4)
        if surface not in seen:
            seen.add(surface)
            surfaces.append(surface)

    types = sorted(ENTITY_TYPES)
    object_alphabet = COMMON_CHARS + _OBJECT_EXTRA
    triples: list[Triple] = []
    keys_by_subject: dict[str, list[tuple[str, str]]] = {}
    for surface in surfaces:
        n_meanings = rng.choice((2, 2, 3)) if rng.random() < ambiguous else 1
        meanings = rng.sample(types, n_meanings)
        used: set[str] = set()
        keys: list[tuple[str, str]] = []
        for meaning_type in meanings:
            available = [p for p in ENTITY_TYPES[meaning_type] if p not in used]
            count = min(len(available), rng.randint(low, high))
            predicates = rng.sample(available, count)
            used.update(predicates)  # disjoint predicate sets: M is determined by (S, P)
            meaning = ""
            if n_meanings > 1:
                qualifier = ""
                if rng.random() < qualified_meanings:
                    qualifier = _random_string(rng, COMMON_CHARS, 2, 2)
                meaning = qualifier + meaning_type
            for predicate in predicates:
                objects = [_random_string(rng, object_alphabet, 2, 6)]
                if predicate in _MULTI_VALUED and rng.random() < multi_valued:
                    objects.append(_random_string(rng, object_alphabet, 2, 6))
                for obj in objects:
                    triples.append(Triple(surface, predicate, obj, meaning))
                keys.append((predicate, meaning))
        keys_by_subject[surface] = keys

    # Questions: one per (S, P, M) key at most; the gold is the first object in KB order.
    first: dict[tuple[str, str, str], Triple] = {}
    for triple in triples:
        first.setdefault((triple.subject, triple.predicate, triple.meaning), triple)
    order = list(surfaces)
    rng.shuffle(order)
    n_unseen = round(unseen_subjects * len(order)) if wanted.get("test_unseen") else 0
    unseen, seen_subjects = order[:n_unseen], order[n_unseen:]

    def keys_of(group: list[str]) -> list[Triple]:
        out = [first[(s, p, m)] for s in group for p, m in keys_by_subject[s]]
        rng.shuffle(out)
        return out

    seen_keys, unseen_keys = keys_of(seen_subjects), keys_of(unseen)
    seen_splits = [name for name in ("train", "dev", "test") if wanted.get(name)]
    total_seen = sum(wanted[name] for name in seen_splits)
    scale = min(1.0, len(seen_keys) / total_seen) if total_seen else 1.0
    plan = {name: int(wanted[name] * scale) for name in seen_splits}
    if wanted.get("test_unseen"):
        plan["test_unseen"] = min(wanted["test_unseen"], len(unseen_keys))

    def question(triple: Triple) -> str:
        template = rng.choice(synthetic_templates(triple.predicate))
        prefix = rng.choice(_PREFIXES) if template.startswith("{s}") else ""
        return prefix + template.format(s=triple.subject) + rng.choice(_SUFFIXES)

    splits: dict[str, list[QAExample]] = {}
    cursor = 0
    for name in SYNTHETIC_SPLITS:
        if name not in plan:
            continue
        if name == "test_unseen":
            chosen = unseen_keys[: plan[name]]
        else:
            chosen = seen_keys[cursor : cursor + plan[name]]
            cursor += plan[name]
        splits[name] = [
            QAExample(id=i, question=question(triple), answer=triple)
            for i, triple in enumerate(chosen)
        ]
    return triples, splits
