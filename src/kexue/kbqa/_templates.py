"""Hand-written Chinese question templates for the offline KB (spec 05 §8.3).

Every predicate has several natural templates (``{s}`` = the subject mention): direct forms that
repeat the predicate, paraphrases with partial overlap in another order (the 主讲课程 pattern:
拼音缩写 → "拼音首字母"), forms without any predicate character (人口 → "有多少人"), questions that
put the subject last, and imperative forms. ``held_out`` templates never appear in train / dev /
test_public / test_unseen; they make the ``test_unseen_templates`` split (paraphrase
generalisation). Predicates outside the table get :data:`FALLBACK_TEMPLATES` (with ``{p}``).

Colloquial prefixes / particles (请问 / 你知道…吗 / 呢 / 啊 / 呀) and a few word swaps
(什么 → 啥, 哪里 → 哪儿) are added at generation time by :mod:`kexue.kbqa._offline`.
"""

from __future__ import annotations

import dataclasses
import re

__all__ = [
    "FALLBACK_TEMPLATES",
    "MENTION_PARENT",
    "MENTION_TYPE",
    "TEMPLATES",
    "PredicateTemplates",
    "templates_for",
]


@dataclasses.dataclass(frozen=True)
class PredicateTemplates:
    """Templates of one predicate: ``seen`` (train and the ordinary test splits) and
    ``held_out`` (only the ``test_unseen_templates`` split)."""

    seen: tuple[str, ...]
    held_out: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for template in (*self.seen, *self.held_out):
            if template.count("{s}") != 1:
                raise ValueError(f"template {template!r} must contain '{{s}}' exactly once")
            if not template.endswith(("？", "。")):
                raise ValueError(f"template {template!r} must end with '？' or '。'")
        if not self.seen:
            raise ValueError("a predicate needs at least one seen template")


def _split(text: str) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"(?<=[？。])\s+", text.strip()) if part)


def _t(seen: str, held_out: str = "") -> PredicateTemplates:
    return PredicateTemplates(_split(seen), _split(held_out))


# Templates are separated by whitespace after their final "？" (a question) or "。" (a request,
# which gets no question particles).
TEMPLATES: dict[str, PredicateTemplates] = {
    # --- countries --------------------------------------------------------------------------------
    "首都": _t(
        "{s}的首都是哪里？ {s}的首都是哪座城市？ {s}首都在哪？ {s}的首都叫什么名字？ "
        "{s}的首都是什么？ {s}以哪座城市为首都？ 哪座城市是{s}的首都？ {s}的国都在哪个城市？ "
        "{s}的首都城市是哪个？",
        "{s}定都在哪里？ {s}的政府设在哪座城市？ 说说{s}的首都是哪。",
    ),
    "首都人口": _t(
        "{s}的首都有多少人？ {s}首都的人口是多少？ {s}首都住了多少人？ {s}的首都人口有多少？ "
        "{s}首都有多少居民？ 住在{s}首都的人有多少？ {s}首都的人口规模是多少？",
        "{s}的首都城市人口多少？ {s}首都大概生活着多少人？",
    ),
    "人口": _t(
        "{s}有多少人？ {s}的人口是多少？ {s}人口多少？ {s}有多少人口？ {s}一共住着多少人？ "
        "{s}的人口有多少？ {s}的总人口是多少？ 生活在{s}的人有多少？ {s}人口多不多，具体是多少？",
        "{s}的居民有多少？ {s}大概有多少人生活？ {s}住着多少居民？",
    ),
    "人口密度": _t(
        "{s}的人口密度是多少？ {s}人口密度多大？ {s}每平方公里有多少人？ {s}的人口密度有多高？ "
        "{s}平均每平方公里住多少人？ {s}人口稠不稠密，密度是多少？ {s}的人口密度大概是多少？",
        "{s}一平方公里平均住几个人？ {s}的人口密集程度是多少？",
    ),
    "面积": _t(
        "{s}有多大？ {s}的面积是多少？ {s}面积多大？ {s}的国土面积有多少？ {s}占地多少平方公里？ "
        "{s}的总面积是多少？ {s}有多少平方公里？",
        "{s}的领土有多少平方公里？ {s}的土地面积多大？ {s}大不大，有多少平方公里？",
    ),
    "所属大洲": _t(
        "{s}属于哪个大洲？ {s}在哪个洲？ {s}位于哪个大洲？ {s}是哪个洲的国家？ "
        "{s}所在的大洲是什么？ {s}在哪一个大洲上？ {s}所属大洲是哪个？",
        "{s}地处哪个洲？ {s}位于世界上哪个洲？",
    ),
    "官方语言": _t(
        "{s}的官方语言是什么？ {s}说什么语言？ {s}人讲什么话？ {s}的官方语言有哪些？ "
        "{s}通用什么语言？ {s}的国语是什么？ 在{s}官方用什么语言？ {s}的官方语言是哪种？",
        "{s}的人平时说哪种语言？ 去{s}要会什么语言？ {s}的法定语言是哪种？",
    ),
    "官方货币": _t(
        "{s}用什么货币？ {s}的货币是什么？ {s}的官方货币是什么？ {s}花什么钱？ "
        "{s}的法定货币是哪种？ {s}用的是什么钱？ 在{s}买东西用什么货币？ {s}的官方货币叫什么？",
        "{s}流通什么货币？ 去{s}要换什么钱？ {s}的通行货币叫什么？",
    ),
    "官方货币代码": _t(
        "{s}的官方货币代码是什么？ {s}货币的代码是什么？ {s}用的钱的货币代码是什么？ "
        "{s}货币的三字母代码是什么？ {s}的货币代码是多少？ {s}的货币缩写是什么？ "
        "{s}官方货币的代码是哪个？",
        "{s}的货币用哪三个字母表示？ {s}货币的国际代码是什么？",
    ),
    "邻国": _t(
        "{s}的邻国有哪些？ {s}和哪些国家接壤？ {s}周边有哪些国家？ {s}跟哪些国家相邻？ "
        "{s}的邻居国家是哪些？ 和{s}接壤的国家有哪些？ {s}挨着哪些国家？ {s}的邻国是哪个？",
        "{s}与哪几个国家交界？ {s}旁边是哪些国家？ 哪些国家和{s}相邻？",
    ),
    "国际电话区号": _t(
        "{s}的国际电话区号是多少？ {s}的电话区号是多少？ 打电话到{s}要拨什么区号？ "
        "{s}的国际区号是什么？ {s}的电话国家代码是多少？ 往{s}打电话前面加多少？ "
        "{s}的国际电话区号是什么？",
        "给{s}打国际长途拨多少？ {s}的国家电话代码是几？",
    ),
    "顶级域名": _t(
        "{s}的顶级域名是什么？ {s}的国家域名是什么？ {s}的网站域名后缀是什么？ "
        "{s}的网址后缀是什么？ {s}的国家顶级域名是哪个？ {s}的网站一般以什么结尾？ "
        "{s}的顶级域是什么？",
        "{s}的互联网域名后缀是什么？ {s}的域名代码是什么？",
    ),
    "英文名": _t(
        "{s}的英文名是什么？ {s}用英语怎么说？ {s}的英文名称是什么？ {s}英文叫什么？ "
        "{s}的英语名字是什么？ {s}翻译成英文是什么？ {s}在英语里叫什么？ {s}的英文名叫什么？",
        "{s}的英文怎么写？ 英语里的{s}怎么拼？ {s}的外文名是什么？",
    ),
    "国家代码": _t(
        "{s}的国家代码是什么？ {s}的两位字母代码是什么？ {s}的ISO代码是什么？ "
        "{s}的国家简码是什么？ {s}的国家缩写代码是什么？ {s}的国别代码是什么？ "
        "{s}的国家代码是哪两个字母？",
        "{s}用哪两个字母表示？ {s}的国际标准国家代码是什么？",
    ),
    # --- cities (and shared geography predicates) -------------------------------------------------
    "所属国家": _t(
        "{s}属于哪个国家？ {s}在哪个国家？ {s}是哪个国家的？ {s}位于哪个国家？ "
        "{s}所在的国家是哪个？ {s}归哪个国家管？ {s}在哪国？ {s}是哪国的？",
        "{s}隶属于哪个国家？ {s}是在哪个国家境内？ {s}地处哪国？",
    ),
    "时区": _t(
        "{s}在哪个时区？ {s}的时区是什么？ {s}用的是哪个时区？ {s}属于哪个时区？ "
        "{s}当地时间按什么时区算？ {s}所在的时区是哪个？ {s}是什么时区？",
        "{s}的当地时区是哪个？ {s}采用哪个时区的时间？",
    ),
    "经度": _t(
        "{s}的经度是多少？ {s}在东经还是西经多少度？ {s}位于经度多少？ {s}的地理经度是多少？ "
        "{s}的经度坐标是多少？ {s}在经度多少度？ {s}的经度是几度？",
        "{s}的经度位置是多少？ {s}处在多少经度上？",
    ),
    "纬度": _t(
        "{s}的纬度是多少？ {s}在北纬还是南纬多少度？ {s}位于纬度多少？ {s}的地理纬度是多少？ "
        "{s}的纬度坐标是多少？ {s}在纬度多少度？ {s}的纬度是几度？",
        "{s}的纬度位置是多少？ {s}处在多少纬度上？",
    ),
    # --- Chinese administrative divisions ---------------------------------------------------------
    "行政区划代码": _t(
        "{s}的行政区划代码是多少？ {s}的区划代码是什么？ {s}的行政代码是多少？ "
        "{s}的行政区划代码是什么？ {s}的区划编码是多少？ {s}的行政区代码是多少？ "
        "{s}的区划代码是几？",
        "{s}的行政编码是什么？ {s}的地区代码是什么？",
    ),
    "行政级别": _t(
        "{s}是什么级别的行政区？ {s}的行政级别是什么？ {s}是哪一级行政区？ {s}属于哪个级别？ "
        "{s}的行政级别是哪一级？ {s}是省级、地级还是县级？ {s}是几级行政区？",
        "{s}算哪一级的行政单位？ {s}的行政层级是什么？",
    ),
    "所属省份": _t(
        "{s}属于哪个省？ {s}在哪个省？ {s}是哪个省的？ {s}位于哪个省份？ {s}所属的省份是哪个？ "
        "{s}归哪个省管？ {s}是哪个省份的？",
        "{s}隶属于哪个省？ {s}在哪个省境内？",
    ),
    "所属城市": _t(
        "{s}属于哪个城市？ {s}是哪个市的？ {s}在哪个市？ {s}归哪个市管？ {s}隶属于哪个地级市？ "
        "{s}位于哪座城市？ {s}所属城市是哪个？",
        "{s}是哪个城市下面的？ {s}由哪个市管辖？",
    ),
    "下辖区县": _t(
        "{s}下辖哪些区县？ {s}有哪些区县？ {s}管辖哪些区县？ {s}下面有哪些区和县？ "
        "{s}包括哪些区县？ {s}辖区内有哪些县区？ {s}下辖的区县有哪些？",
        "{s}下面管着哪些区县？ {s}由哪些区县组成？",
    ),
    "下辖地级行政区": _t(
        "{s}下辖哪些地级市？ {s}有哪些地级行政区？ {s}下面有哪些市？ {s}管辖哪些城市？ "
        "{s}包括哪些地级市？ {s}下辖哪些地级行政区？ {s}下辖的地级行政区有哪些？",
        "{s}由哪些地级市组成？ {s}下面管着哪些市？",
    ),
    # --- foreign subdivisions ---------------------------------------------------------------------
    "行政区类型": _t(
        "{s}是什么类型的行政区？ {s}是省还是州？ {s}属于哪一类行政区划？ {s}的行政区类型是什么？ "
        "{s}是哪种行政区？ {s}是个什么行政单位？ {s}的行政区类型是哪种？",
        "{s}的行政区划类别是什么？ {s}在行政上算什么？",
    ),
    "上级行政区": _t(
        "{s}的上级行政区是哪个？ {s}归哪个上级行政区管？ {s}的上一级行政区是什么？ "
        "{s}属于哪个上级地区？ {s}上面一级是哪个行政区？ {s}是哪个行政区下面的？",
        "{s}的上级区划是哪个？ 管辖{s}的上级行政区叫什么？",
    ),
    # --- languages and currencies -----------------------------------------------------------------
    "语言代码": _t(
        "{s}的语言代码是什么？ {s}的ISO语言代码是什么？ {s}的代码是什么？ {s}用什么代码表示？ "
        "{s}的语种代码是什么？ {s}的缩写代码是什么？",
        "{s}的ISO 639代码是多少？ 表示{s}的字母代码是什么？",
    ),
    "书写文字": _t(
        "{s}用什么文字书写？ {s}用什么字母写？ {s}的书写文字是什么？ {s}用哪种文字？ "
        "{s}写出来用的是什么字母？ {s}的文字系统是什么？",
        "书写{s}用的是哪种文字？ {s}采用什么书写系统？",
    ),
    "使用国家": _t(
        "哪些国家使用{s}？ {s}在哪些国家使用？ {s}在哪些国家通用？ 哪些国家用{s}？ "
        "{s}的使用国家有哪些？ {s}主要在哪些国家使用？ 使用{s}的国家有哪些？",
        "{s}流行于哪些国家？ 哪里的人用{s}？",
    ),
    "货币代码": _t(
        "{s}的货币代码是什么？ {s}的英文缩写是什么？ {s}的三字母代码是什么？ "
        "{s}的国际代码是多少？ {s}用哪个代码表示？ {s}的货币代码是哪三个字母？",
        "{s}的ISO货币代码是什么？ {s}在外汇市场上的代码是什么？",
    ),
    "货币符号": _t(
        "{s}的符号是什么？ {s}的货币符号是什么？ {s}怎么用符号表示？ {s}的标志符号是哪个？ "
        "{s}的符号怎么写？ {s}的记号是什么？",
        "表示{s}的符号是哪个？ {s}用什么符号标记？",
    ),
    # --- idioms -----------------------------------------------------------------------------------
    "拼音": _t(
        "{s}的拼音是什么？ {s}怎么读？ {s}怎么念？ {s}的读音是什么？ {s}的拼音怎么写？ "
        "成语{s}怎么读？ {s}这个成语怎么发音？ {s}的注音是什么？ {s}的正确读音是什么？",
        "{s}该怎么读？ {s}读作什么？ {s}用拼音怎么拼？",
    ),
    "拼音缩写": _t(
        "{s}的拼音缩写是什么？ {s}的拼音首字母是什么？ {s}的拼音首字母缩写是什么？ "
        "{s}的首字母缩写是什么？ {s}的拼音缩写怎么写？ {s}的简拼是什么？ "
        "成语{s}的拼音缩写是什么？",
        "{s}每个字拼音的第一个字母连起来是什么？ {s}的拼音简写是什么？",
    ),
    "解释": _t(
        "{s}是什么意思？ {s}的意思是什么？ 成语{s}是什么意思？ {s}的解释是什么？ "
        "{s}这个成语什么意思？ {s}指的是什么？ 解释一下{s}。 {s}的含义是什么？ {s}比喻什么？",
        "{s}怎么理解？ {s}说的是什么？ {s}这个词表达什么意思？",
    ),
    "出处": _t(
        "{s}的出处是什么？ {s}出自哪里？ {s}这个成语出自哪里？ {s}出自哪本书？ "
        "{s}的典故出自哪里？ {s}来源于哪里？ {s}最早出自什么地方？ 成语{s}的出处在哪？",
        "{s}是从哪里来的？ {s}语出何处？ {s}典出何处？",
    ),
    "例句": _t(
        "{s}的例句有哪些？ 用{s}造个句子。 {s}怎么造句？ {s}的例句是什么？ 给我一个{s}的例句。 "
        "{s}怎么用？ {s}用在句子里是什么样的？",
        "{s}能造什么句？ 举一个{s}的用例。",
    ),
    "首字": _t(
        "{s}的第一个字是什么？ {s}的首字是什么？ {s}开头是什么字？ {s}第一个字是哪个？ "
        "{s}以什么字开头？ {s}的头一个字是什么？",
        "{s}起头的字是哪个？ {s}打头的是哪个字？",
    ),
    "首字拼音": _t(
        "{s}的第一个字怎么读？ {s}首字的拼音是什么？ {s}的首字拼音是什么？ {s}头一个字读什么？ "
        "{s}开头那个字怎么念？ {s}第一个字的拼音是什么？",
        "{s}打头那个字怎么发音？ {s}起首的字读作什么？",
    ),
    "尾字": _t(
        "{s}的最后一个字是什么？ {s}的尾字是什么？ {s}结尾是什么字？ {s}最后一个字是哪个？ "
        "{s}以什么字结尾？ {s}的末尾是哪个字？",
        "{s}收尾的字是哪个？ {s}的末字是什么？",
    ),
    "尾字拼音": _t(
        "{s}的最后一个字怎么读？ {s}尾字的拼音是什么？ {s}的尾字拼音是什么？ "
        "{s}最后那个字读什么？ {s}结尾那个字怎么念？ {s}最后一个字的拼音是什么？",
        "{s}末尾的字怎么发音？ {s}收尾那个字读作什么？",
    ),
}

#: Templates for predicates outside :data:`TEMPLATES` (``{p}`` is the predicate itself).
FALLBACK_TEMPLATES = _t(
    "{s}的{p}是什么？ {s}的{p}是？ 请问{s}的{p}。 {s}的{p}是哪个？",
    "说说{s}的{p}。 {s}有什么{p}？",
)

#: Subject mentions that reveal a *type* gloss M (国家 / 城市 / 省 …) when the question must say it.
MENTION_TYPE = ("{s}这个{m}", "作为{m}的{s}", "叫{s}的那个{m}")
#: Subject mentions that reveal a *parent* gloss M (福州市 / 美国 …).
MENTION_PARENT = ("{m}的{s}", "{m}{s}", "位于{m}的{s}")


def templates_for(predicate: str) -> PredicateTemplates:
    """The templates of ``predicate`` (the fallback, with ``{p}`` filled in, if it has none)."""
    found = TEMPLATES.get(predicate)
    if found is not None:
        return found
    return PredicateTemplates(
        tuple(t.replace("{p}", predicate) for t in FALLBACK_TEMPLATES.seen),
        tuple(t.replace("{p}", predicate) for t in FALLBACK_TEMPLATES.held_out),
    )
