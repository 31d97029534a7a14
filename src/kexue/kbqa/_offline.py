"""The offline KgCLUE-style Chinese KB and its question sets (spec 05 §8, spec 11 §7).

* :func:`build_kb` / :func:`build_offline_kb` join the packaged sources (:mod:`._sources`) into
  ``S（M）\\tP\\tO`` triples, giving glosses M to names shared by several entities (spec 05 §8.2.2):

  - a **type** gloss (国家 / 城市 / 省 / 县级行政区 …) when the entities differ in type — their
    predicate sets differ, so M is often *determined by P* (新加坡（国家） vs 新加坡（城市）);
  - a **parent** gloss (the country or city: 鼓楼区（福州市）, 维多利亚（加拿大）) when they share
    a type — questions then name the parent (*M inferable from the question*);
  - a **parent + type** gloss when neither alone separates them (贝尔格莱德（美国城市）).

  Among entities with the same name, type and parent only the most prominent is kept.
  Predicates share prefixes on purpose (拼音 / 拼音缩写, 首字 / 首字拼音, 人口 / 人口密度,
  官方语言 / 官方货币 / 官方货币代码, 所属省份 / 所属城市, 行政区划代码 / 行政级别,
  首都 / 首都人口), and several facts are multi-valued (邻国, 官方语言, 下辖区县, repeated
  idioms …; KB order = source order).

* :func:`build_questions` samples QA examples in the KgCLUE JSON-lines format (spec 05 §8.3–8.4):
  one example per (S, P, M) key at most, gold O = the key's **first** object (so C5.5 holds 100%),
  sources stratified by :data:`SOURCE_WEIGHTS` (idioms ≤ 50%), glossed subjects over-sampled,
  many hand-written templates per predicate (:mod:`._templates`) with colloquial prefixes and
  particles. Splits: train / dev / test_public; ``test_unseen`` (subjects never asked about in any
  other split); ``test_unseen_templates`` (seen subjects, held-out templates only).

* :func:`build_dataset` writes ``knowledge.tsv``, the five ``*.json`` files and ``stats.json``.

Everything is deterministic given the seed and the installed package versions (recorded).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import os
import random
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data import cache_dir
from ..utils import atomic_write_json
from ._kgclue import write_kgclue, write_knowledge
from ._metric import normalize
from ._sources import SOURCE_LICENCES, SOURCES, Entity, load_entities, package_versions
from ._templates import MENTION_PARENT, MENTION_TYPE, TEMPLATES, templates_for
from ._types import QAExample, Triple

__all__ = [
    "DEFAULT_SIZES",
    "GEONAMES_ATTRIBUTION",
    "SOURCE_WEIGHTS",
    "SPLITS",
    "OfflineKB",
    "answer_integrity",
    "build_dataset",
    "build_kb",
    "build_offline_kb",
    "build_questions",
    "colliding_predicate_pairs",
    "default_dataset_dir",
    "example_categories",
    "kb_statistics",
]

SPLITS = ("train", "dev", "test_public", "test_unseen", "test_unseen_templates")
#: KgCLUE's sizes plus the two generalisation splits (spec 05 §8.4).
DEFAULT_SIZES: Mapping[str, int] = {
    "train": 18000,
    "dev": 2000,
    "test_public": 2000,
    "test_unseen": 2000,
    "test_unseen_templates": 2000,
}
#: Target share of questions per source (renormalised over the sources present; idioms ≤ 50%).
SOURCE_WEIGHTS: Mapping[str, float] = {
    "idiom": 0.40,
    "city": 0.17,
    "cn_admin": 0.12,
    "subdivision": 0.12,
    "country": 0.08,
    "capital_city": 0.05,
    "language": 0.03,
    "currency": 0.03,
    "other": 0.10,
}
GEONAMES_ATTRIBUTION = (
    "Contains data from GeoNames (https://www.geonames.org/), licensed under CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/); names converted to Simplified Chinese and "
    "facts reformatted by kexue."
)

_TYPE_WORDS = frozenset(
    {"国家", "城市", "成语", "语言", "货币", "行政区", "省级行政区", "地级行政区", "县级行政区"}
)


def default_dataset_dir() -> Path:
    """Where ``kexue kbqa build-kb`` writes by default: ``$KEXUE_CACHE/kbqa``
    (``~/.cache/kexue/kbqa``), next to the other dataset caches (spec 11 §1)."""
    return cache_dir() / "kbqa"


# --- the KB -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OfflineKB:
    """The offline KB with its provenance: ``sources`` maps every entity ``(subject, meaning)`` to
    its source, ``gloss_kinds`` every glossed entity to ``"type"``, ``"parent"`` or
    ``"parent_type"`` (how a question can name its meaning)."""

    triples: tuple[Triple, ...]
    sources: Mapping[tuple[str, str], str]
    gloss_kinds: Mapping[tuple[str, str], str]

    @functools.cached_property
    def _index(self) -> _Index:
        return _Index.of(self.triples)


def _gloss(entities: list[Entity]) -> list[tuple[Entity, str, str]]:
    """Keep one entity per (name, kind, parent) and give shared names distinct glosses."""
    best: dict[tuple[str, str, str], Entity] = {}
    for entity in entities:
        key = (entity.name, entity.kind, entity.parent)
        if key not in best or entity.rank > best[key].rank:
            best[key] = entity
    kept = [e for e in entities if best[(e.name, e.kind, e.parent)] is e]
    groups: dict[str, list[Entity]] = collections.defaultdict(list)
    for entity in kept:
        groups[entity.name].append(entity)
    glossed: dict[int, tuple[str, str]] = {}
    for group in groups.values():
        if len(group) == 1:
            continue
        options = (
            ("type", [e.kind for e in group]),
            ("parent", [e.parent or e.kind for e in group]),
            ("parent_type", [e.parent + e.kind for e in group]),
        )
        for kind, glosses in options:
            if len(set(glosses)) == len(glosses):
                for entity, gloss in zip(group, glosses, strict=True):
                    label = kind if kind != "parent" or entity.parent else "type"
                    glossed[id(entity)] = (gloss, label)
                break
        else:  # pragma: no cover - (name, kind, parent) is unique after the de-duplication
            raise AssertionError(f"cannot separate the entities named {group[0].name!r}")
    return [(e, *glossed.get(id(e), ("", ""))) for e in kept]


def build_offline_kb(
    sources: Sequence[str] = SOURCES, *, subjects: Collection[str] | None = None
) -> OfflineKB:
    """Build the KB from the packaged ``sources`` (spec 05 §8.1–8.2); see the module docstring.

    ``subjects`` restricts the output to those surface names (glosses are still chosen against
    all entities of the selected sources) — used to cut the committed test fixture.
    """
    if isinstance(sources, str):
        raise TypeError("sources must be a sequence of source names, not a single string")
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise ValueError(f"unknown sources {unknown}; choose from {', '.join(SOURCES)}")
    ordered = [s for s in SOURCES if s in set(sources)]
    entities: list[Entity] = []
    for source in ordered:
        entities.extend(load_entities(source))
    triples: list[Triple] = []
    seen: set[tuple[str, str, str, str]] = set()
    entity_sources: dict[tuple[str, str], str] = {}
    gloss_kinds: dict[tuple[str, str], str] = {}
    wanted = None if subjects is None else set(subjects)
    for entity, meaning, kind in _gloss(entities):
        if wanted is not None and entity.name not in wanted:
            continue
        entity_sources[(entity.name, meaning)] = entity.source
        if meaning:
            gloss_kinds[(entity.name, meaning)] = kind
        for predicate, obj in entity.facts:
            key = (entity.name, predicate, obj, meaning)
            if key not in seen:
                seen.add(key)
                triples.append(Triple(entity.name, predicate, obj, meaning))
    return OfflineKB(tuple(triples), entity_sources, gloss_kinds)


def build_kb(sources: Sequence[str] = SOURCES, seed: int = 0) -> list[Triple]:
    """The offline KB as a list of triples (spec 05 §8; see :func:`build_offline_kb`).

    The KB is fully determined by the installed packages; ``seed`` is accepted for interface
    symmetry with :func:`build_questions` and does not change it.
    """
    del seed
    return list(build_offline_kb(sources).triples)


def _common_prefix(a: str, b: str) -> int:
    length = 0
    for char_a, char_b in zip(a, b, strict=False):
        if char_a != char_b:
            break
        length += 1
    return length


def colliding_predicate_pairs(triples: Iterable[Triple]) -> list[tuple[str, str, int, int]]:
    """Predicate pairs that share a leading prefix and occur on a common subject surface
    (spec 05 §8.2.1): ``(p, q, common_prefix_length, subjects)`` sorted by subjects."""
    by_subject: dict[str, set[str]] = collections.defaultdict(set)
    for triple in triples:
        by_subject[triple.subject].add(triple.predicate)
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for predicates in by_subject.values():
        ordered = sorted(predicates)
        for i, p in enumerate(ordered):
            for q in ordered[i + 1 :]:
                if p[0] == q[0]:
                    counts[(p, q)] += 1
    pairs = [(p, q, _common_prefix(p, q), n) for (p, q), n in counts.items()]
    return sorted(pairs, key=lambda row: (-row[3], row[0], row[1]))


# --- categories ---------------------------------------------------------------------------------


@dataclasses.dataclass
class _Index:
    """Lookups over a KB: objects per key, meanings per (S, P), predicates per surface."""

    objects: dict[tuple[str, str, str], list[str]]
    meanings: dict[tuple[str, str], list[str]]
    predicates: dict[str, list[str]]

    @classmethod
    def of(cls, triples: Iterable[Triple]) -> _Index:
        objects: dict[tuple[str, str, str], list[str]] = {}
        meanings: dict[tuple[str, str], dict[str, None]] = {}
        predicates: dict[str, dict[str, None]] = {}
        for t in triples:
            subject, predicate, meaning = t.subject, t.predicate, t.meaning
            key = (subject, predicate, meaning)
            found = objects.get(key)
            if found is None:
                objects[key] = [t.object]
                pair = (subject, predicate)
                if pair in meanings:
                    meanings[pair][meaning] = None
                else:
                    meanings[pair] = {meaning: None}
                if subject in predicates:
                    predicates[subject][predicate] = None
                else:
                    predicates[subject] = {predicate: None}
            else:
                found.append(t.object)
        return cls(
            objects,
            {pair: list(names) for pair, names in meanings.items()},
            {subject: list(names) for subject, names in predicates.items()},
        )

    def meaning_category(self, subject: str, predicate: str, meaning: str) -> str:
        if not meaning:
            return "no_meaning"
        if len(self.meanings.get((subject, predicate), ())) == 1:
            return "meaning_by_predicate"
        return "meaning_in_question"

    def collides(self, subject: str, predicate: str) -> bool:
        return any(
            q != predicate and q[:1] == predicate[:1] for q in self.predicates.get(subject, ())
        )

    def categories(self, triple: Triple) -> frozenset[str]:
        key = (triple.subject, triple.predicate, triple.meaning)
        found = {self.meaning_category(*key)}
        if len(self.objects.get(key, ())) > 1:
            found.add("multi_valued")
        if self.collides(triple.subject, triple.predicate):
            found.add("collision")
        return frozenset(found)


def example_categories(
    triples: Iterable[Triple], examples: Iterable[QAExample]
) -> list[frozenset[str]]:
    """Categories of each example's gold key in the KB (spec 05 §8.2, E5.2/E5.3 subsets):
    one of ``no_meaning`` / ``meaning_by_predicate`` (S has several meanings but only one has P) /
    ``meaning_in_question`` (several meanings have P: the question must name M), plus
    ``multi_valued`` (the key stores several objects) and ``collision`` (another predicate of the
    same subject surface starts with the same character). Unlabelled examples get an empty set."""
    index = _Index.of(triples)
    return [
        frozenset() if example.answer is None else index.categories(example.answer)
        for example in examples
    ]


def _ranked(counts: collections.Counter[str]) -> dict[str, int]:
    """Counts by decreasing frequency, ties by name (never by set iteration order)."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def answer_integrity(triples: Iterable[Triple], examples: Iterable[QAExample]) -> dict[str, Any]:
    """Data integrity of a QA set against its KB (spec 05 C5.5): how many labelled examples have
    their gold (S, P, M) as a KB key, and how many have the key's *first* stored object equal to
    the gold O (what the post's answering returns). ``share`` = the latter / labelled examples
    (the offline dataset: 1.0; real KgCLUE: below 1 where a key holds several objects)."""
    index = _Index.of(triples)
    labelled = found = first = 0
    for example in examples:
        if example.answer is None:
            continue
        labelled += 1
        t = example.answer
        objects = index.objects.get((t.subject, t.predicate, t.meaning))
        if objects:
            found += 1
            first += objects[0] == t.object
    return {
        "examples": labelled,
        "key_found": found,
        "first_object_matches": first,
        "share": first / labelled if labelled else 1.0,
    }


def kb_statistics(kb: OfflineKB | Iterable[Triple]) -> dict[str, Any]:
    """Counts for ``stats.json``: triples per source and predicate, keys, multi-valued share,
    glossed entities by kind, colliding predicate pairs (spec 05 §8.4)."""
    triples = list(kb.triples if isinstance(kb, OfflineKB) else kb)
    sources = kb.sources if isinstance(kb, OfflineKB) else _infer_sources(triples)
    gloss_kinds = kb.gloss_kinds if isinstance(kb, OfflineKB) else {}
    index = kb._index if isinstance(kb, OfflineKB) else _Index.of(triples)
    per_source: collections.Counter[str] = collections.Counter()
    with_meaning: collections.Counter[str] = collections.Counter()
    for t in triples:
        per_source[sources.get((t.subject, t.meaning), "other")] += 1
        if t.meaning:
            with_meaning[gloss_kinds.get((t.subject, t.meaning), "unknown")] += 1
    multi = [key for key, objects in index.objects.items() if len(objects) > 1]
    entity_kinds = collections.Counter(gloss_kinds.values())
    entities = {(t.subject, t.meaning) for t in triples}
    return {
        "triples": len(triples),
        "entities": len(entities),
        "subjects": len(index.predicates),
        "keys": len(index.objects),
        "triples_per_source": _ranked(per_source),
        "triples_per_predicate": _ranked(collections.Counter(t.predicate for t in triples)),
        "predicates": len({t.predicate for t in triples}),
        "glossed_entities": len(gloss_kinds) if gloss_kinds else sum(1 for _, m in entities if m),
        "glossed_entities_by_kind": _ranked(entity_kinds),
        "triples_with_meaning": sum(with_meaning.values()),
        "triples_with_meaning_share": sum(with_meaning.values()) / max(len(triples), 1),
        "triples_with_meaning_by_kind": _ranked(with_meaning),
        "multi_valued_keys": len(multi),
        "multi_valued_key_share": len(multi) / max(len(index.objects), 1),
        "triples_in_multi_valued_keys": sum(len(index.objects[key]) for key in multi),
        "colliding_predicate_pairs": [list(row) for row in colliding_predicate_pairs(triples)],
    }


_SIGNATURES = (
    ("idiom", ("拼音", "拼音缩写", "解释", "出处", "首字", "尾字")),
    ("country", ("首都", "国家代码", "邻国", "官方语言", "顶级域名")),
    ("cn_admin", ("行政级别", "所属省份", "下辖区县", "下辖地级行政区")),
    ("subdivision", ("行政区类型", "上级行政区")),
    ("language", ("语言代码", "书写文字")),
    ("currency", ("货币代码", "货币符号")),
    ("city", ("时区",)),
)


def _infer_sources(triples: Sequence[Triple]) -> dict[tuple[str, str], str]:
    """Source of each entity of a plain triple list, from its predicates (``"other"`` if none)."""
    predicates: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    capitals = set()
    for t in triples:
        predicates[(t.subject, t.meaning)].add(t.predicate)
        if t.predicate == "首都":
            capitals.add(t.object)
    result: dict[tuple[str, str], str] = {}
    for entity, names in predicates.items():
        source = next((s for s, marks in _SIGNATURES if names.intersection(marks)), "other")
        if source == "city" and entity[0] in capitals:
            source = "capital_city"
        result[entity] = source
    return result


# --- questions ----------------------------------------------------------------------------------

# (prefix, weight, required particle); prefixes such as 你知道 take the particle 吗.
_PREFIXES: tuple[tuple[str, float, str], ...] = (
    ("", 0.50, ""),
    ("请问", 0.12, ""),
    ("你知道", 0.06, "吗"),
    ("我想知道", 0.05, ""),
    ("我很好奇", 0.03, ""),
    ("谁知道", 0.03, ""),
    ("谁能告诉我", 0.03, ""),
    ("请告诉我", 0.02, ""),
    ("我想问一下，", 0.03, ""),
    ("问一下，", 0.02, ""),
    ("有人知道", 0.02, "吗"),
    ("大家知道", 0.02, "吗"),
    ("我想了解一下", 0.02, ""),
    ("麻烦问下，", 0.02, ""),
    ("你好，", 0.02, ""),
    ("想问问", 0.01, ""),
)
_PARTICLES = (("", 0.70), ("呢", 0.10), ("啊", 0.10), ("呀", 0.05), ("啦", 0.05))
_QUESTION_MARKS = (("？", 0.85), ("?", 0.05), ("", 0.10))
_REQUEST_PREFIXES = (("", 0.6), ("请", 0.25), ("麻烦", 0.15))
_REQUEST_MARKS = (("。", 0.6), ("", 0.4))
# Colloquial word swaps applied to the template (never to the subject), each with probability.
_SWAPS = (("什么", "啥", 0.2), ("哪里", "哪儿", 0.3), ("怎么", "咋", 0.1))


def _weighted(rng: random.Random, options: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    return rng.choices(options, weights=[o[1] for o in options])[0]


def _render(template: str, subject: str, meaning: str, gloss_kind: str, rng: random.Random) -> str:
    """Fill a template: word swaps, the subject mention (naming M if needed), prefix, particle."""
    for old, new, probability in _SWAPS:
        if old in template and rng.random() < probability:
            template = template.replace(old, new)
    mention = subject
    if gloss_kind:
        forms: tuple[str, ...] = MENTION_TYPE if gloss_kind == "type" else MENTION_PARENT
        if gloss_kind == "parent_type":
            forms = ("{m}{s}", "{s}这个{m}")
        mention = rng.choice(forms).replace("{m}", meaning).replace("{s}", subject)
    body = template.replace("{s}", mention)
    core, mark = body[:-1], body[-1]
    if mark == "。":
        prefix = str(_weighted(rng, _REQUEST_PREFIXES)[0])
        return prefix + core + str(_weighted(rng, _REQUEST_MARKS)[0])
    prefix, _, particle = _weighted(rng, _PREFIXES)
    if particle and rng.random() < 0.2:
        particle = ""
    if not particle:
        particle = _weighted(rng, _PARTICLES)[0]
    return f"{prefix}{core}{particle}{_weighted(rng, _QUESTION_MARKS)[0]}"


@dataclasses.dataclass
class _Candidate:
    triple: Triple  # the gold answer: the key with its first object
    mention: str  # "" or the gloss kind the question has to name


def _quotas(total: int, weights: Mapping[Any, float]) -> dict[Any, int]:
    """Largest-remainder split of ``total`` proportional to ``weights``."""
    mass = sum(weights.values())
    if total <= 0 or mass <= 0:
        return {name: 0 for name in weights}
    exact = {name: total * w / mass for name, w in weights.items()}
    quotas = {name: math.floor(x) for name, x in exact.items()}
    rest = total - sum(quotas.values())
    for name in sorted(exact, key=lambda n: (quotas[n] - exact[n], str(n)))[:rest]:
        quotas[name] += 1
    return quotas


def _water_fill(
    total: float, weights: Mapping[Any, float], capacity: Mapping[Any, float]
) -> dict[Any, float]:
    """Split ``total`` proportionally to ``weights`` without exceeding any ``capacity``; the
    excess goes to the others by weight (the result sums to less only if everything is full)."""
    fixed: dict[Any, float] = {}
    free = {name: w for name, w in weights.items() if w > 0}
    while free:
        budget = total - sum(fixed.values())
        mass = sum(free.values())
        over = [n for n, w in free.items() if budget * w / mass > capacity[n]]
        if not over:
            fixed.update({n: budget * w / mass for n, w in free.items()})
            break
        for name in over:
            fixed[name] = capacity[name]
            del free[name]
    return {name: fixed.get(name, 0.0) for name in weights}


def _check_sizes(sizes: Mapping[str, int] | None) -> dict[str, int]:
    if sizes is None:
        return dict(DEFAULT_SIZES)
    unknown = set(sizes) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown splits {sorted(unknown)}; choose from {', '.join(SPLITS)}")
    result = {split: int(sizes.get(split, 0)) for split in SPLITS}
    if any(n < 0 for n in result.values()):
        raise ValueError(f"split sizes must be >= 0, got {result}")
    return result


# Share of a source's keys that the splits may use (slack for withheld subjects), and of its
# glossed keys (scarce: KgCLUE-like glossed shares need nearly all of them).
_USABLE = 0.6
_USABLE_GLOSSED = 0.8


def build_questions(
    kb: OfflineKB | Sequence[Triple],
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    *,
    source_weights: Mapping[str, float] | None = None,
    meaning_share: float = 0.25,
) -> dict[str, list[QAExample]]:
    """Sample KgCLUE-format QA splits from the KB (spec 05 §8.3–8.4); see the module docstring.

    ``sizes`` maps split names (:data:`SPLITS`) to sizes (missing splits are empty; default
    :data:`DEFAULT_SIZES`). Questions are stratified by source (``source_weights``, default
    :data:`SOURCE_WEIGHTS`, capped by what each source has) and by whether the subject has a gloss
    M: ``meaning_share`` is the target share of glossed subjects (KgCLUE: 21.6–27.3%), reached
    when the KB has enough glossed keys. Every split gets the same mix. Every key is used at most
    once across all splits; a ``test_unseen`` subject surface is never asked about in any other
    split. Raises ``ValueError`` when the KB has too few usable keys.
    """
    if isinstance(kb, OfflineKB):
        sources, gloss_kinds, index = kb.sources, kb.gloss_kinds, kb._index
    else:
        triples = list(kb)
        if not all(isinstance(t, Triple) for t in triples):
            raise TypeError("kb must be an OfflineKB or a sequence of Triple")
        sources, gloss_kinds, index = _infer_sources(triples), {}, _Index.of(triples)
    if not 0.0 <= meaning_share <= 1.0:
        raise ValueError(f"meaning_share must be in [0, 1], got {meaning_share}")
    wanted = _check_sizes(sizes)
    total = sum(wanted.values())
    weights_table = dict(SOURCE_WEIGHTS if source_weights is None else source_weights)
    rng = random.Random(seed)

    # Strata (source, glossed) of usable keys, each in random order.
    strata: dict[tuple[str, bool], list[_Candidate]] = collections.defaultdict(list)
    for (subject, predicate, meaning), objects in index.objects.items():
        gold = objects[0]
        mention = ""
        if index.meaning_category(subject, predicate, meaning) == "meaning_in_question":
            mention = gloss_kinds.get((subject, meaning)) or (
                "type" if meaning in _TYPE_WORDS else "parent"
            )
            if normalize(gold) in normalize(meaning):
                continue  # naming M would give the answer away (所属国家 of 圣何塞（美国）)
        source = sources.get((subject, meaning), "other")
        strata[(source, bool(meaning))].append(
            _Candidate(Triple(subject, predicate, gold, meaning), mention)
        )
    keys = sorted(strata)
    for key in keys:
        rng.shuffle(strata[key])
    available = sum(len(pool) for pool in strata.values())
    if total > available:
        raise ValueError(f"the KB has {available} usable (S, P, M) keys, {total} were requested")

    # Questions per source, then the glossed part of each source, then per split and stratum.
    size = {key: len(strata[key]) for key in keys}
    names = sorted({source for source, _ in keys})
    per_source = {n: size.get((n, False), 0) + size.get((n, True), 0) for n in names}
    weights = {n: weights_table.get(n, weights_table.get("other", 0.0)) for n in names}
    if not any(weights.values()):
        weights = dict.fromkeys(names, 1.0)
    by_source = _water_fill(total, weights, {n: _USABLE * per_source[n] for n in names})
    glossed = _water_fill(
        meaning_share * total,
        {n: float(size.get((n, True), 0)) for n in names},
        {n: min(_USABLE_GLOSSED * size.get((n, True), 0), by_source[n]) for n in names},
    )
    mix = {(n, True): glossed[n] for n in names}
    mix.update({(n, False): by_source[n] - glossed[n] for n in names})
    quotas = {split: _quotas(wanted[split], mix) for split in SPLITS}

    chosen: dict[str, list[_Candidate]] = {split: [] for split in SPLITS}
    used: set[tuple[str, str, str]] = set()
    withheld: set[str] = set()

    def key_of(candidate: _Candidate) -> tuple[str, str, str]:
        t = candidate.triple
        return t.subject, t.predicate, t.meaning

    def free(pool: Iterable[_Candidate], limit: int) -> list[_Candidate]:
        """The first ``limit`` candidates of ``pool`` not used yet and not withheld."""
        found: list[_Candidate] = []
        for candidate in pool:
            if len(found) >= limit:
                break
            if key_of(candidate) not in used and candidate.triple.subject not in withheld:
                found.append(candidate)
        return found

    def deal(split: str, members: Iterable[_Candidate]) -> None:
        for candidate in members:
            used.add(key_of(candidate))
            chosen[split].append(candidate)

    def withhold(pool: list[_Candidate], order: list[_Candidate], quota: int) -> int:
        """Withhold the subjects met in ``order`` until ``quota`` questions; each gives half of
        its keys in ``pool`` (rounded up; a small stratum may overshoot its quota, never the
        split's size) to test_unseen. Returns how many questions were taken."""
        groups: dict[str, list[_Candidate]] = collections.defaultdict(list)
        for candidate in pool:
            groups[candidate.triple.subject].append(candidate)
        taken = 0
        for candidate in order:
            subject = candidate.triple.subject
            room = wanted["test_unseen"] - len(chosen["test_unseen"])
            if taken >= quota or room <= 0:
                break
            if subject in withheld:
                continue
            group = groups[subject]
            members = free(group, min(math.ceil(len(group) / 2), room))
            withheld.add(subject)
            deal("test_unseen", members)
            taken += len(members)
        return taken

    def leftovers(include_idioms: bool) -> list[_Candidate]:
        merged = [c for key in keys if include_idioms or key[0] != "idiom" for c in strata[key]]
        rng.shuffle(merged)
        return merged

    # 1. test_unseen: subjects drawn from each stratum's block for all splits (same mix as the
    #    others), half of the keys of each withheld subject.
    for key in rng.sample(keys, len(keys)):
        pool = strata[key]
        order = free(pool, sum(quotas[split][key] for split in SPLITS))
        rng.shuffle(order)
        withhold(pool, order, quotas["test_unseen"][key])
    for include_idioms in (False, True):
        if len(chosen["test_unseen"]) < wanted["test_unseen"]:
            pool = leftovers(include_idioms)
            withhold(pool, pool, wanted["test_unseen"])
    # 2. The other splits from the remaining subjects, dealt at random from each stratum's block
    #    (test_unseen_templates: seen subjects, held-out templates).
    others = ("train", "dev", "test_public", "test_unseen_templates")
    for key in keys:
        block = free(strata[key], sum(quotas[split][key] for split in others))
        rng.shuffle(block)
        # A stratum short of keys (its subjects withheld) shrinks every split alike.
        shares = _quotas(len(block), {split: quotas[split][key] for split in others})
        for split in others:
            deal(split, block[: shares[split]])
            block = block[shares[split] :]
    for split in others:
        for include_idioms in (False, True):
            short = wanted[split] - len(chosen[split])
            if short > 0:
                deal(split, free(leftovers(include_idioms), short))
    missing = {split: wanted[split] - len(chosen[split]) for split in SPLITS}
    if any(missing.values()):
        raise ValueError(
            f"not enough usable keys outside the withheld subjects: missing {missing}; "
            "ask for smaller splits"
        )

    result: dict[str, list[QAExample]] = {}
    for split in SPLITS:
        rng.shuffle(chosen[split])
        rows: list[QAExample] = []
        for number, candidate in enumerate(chosen[split]):
            t = candidate.triple
            templates = templates_for(t.predicate)
            choices = templates.held_out if split == "test_unseen_templates" else templates.seen
            template = rng.choice(choices or templates.seen)
            question = _render(template, t.subject, t.meaning, candidate.mention, rng)
            rows.append(QAExample(number, question, t))
        result[split] = rows
    return result


def _split_statistics(kb: OfflineKB, splits: Mapping[str, Sequence[QAExample]]) -> dict[str, Any]:
    sources = kb.sources
    index = kb._index
    stats: dict[str, Any] = {}
    for split, rows in splits.items():
        per_source: collections.Counter[str] = collections.Counter()
        per_predicate: collections.Counter[str] = collections.Counter()
        categories: collections.Counter[str] = collections.Counter()
        for row in rows:
            assert row.answer is not None
            t = row.answer
            per_source[sources.get((t.subject, t.meaning), "other")] += 1
            per_predicate[t.predicate] += 1
            categories.update(index.categories(t))
        n = max(len(rows), 1)
        stats[split] = {
            "size": len(rows),
            "subjects": len({row.answer.subject for row in rows if row.answer}),
            "per_source": _ranked(per_source),
            "per_predicate": _ranked(per_predicate),
            "categories": _ranked(categories),
            "meaning_share": 1.0 - categories["no_meaning"] / n,
            "mean_question_length": sum(len(r.question) for r in rows) / n,
            "mean_object_length": sum(len(r.answer.object) for r in rows if r.answer) / n,
        }
    return stats


def build_dataset(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    sizes: Mapping[str, int] | None = None,
    sources: Sequence[str] = SOURCES,
    subjects: Collection[str] | None = None,
) -> dict[str, Any]:
    """Build the KB and its QA splits and write them to ``out_dir`` (atomically, spec 05 §8.4):
    ``knowledge.tsv`` (``S（M）\\tP\\tO`` after a ``#`` header with the GeoNames attribution),
    ``train.json``, ``dev.json``, ``test_public.json``, ``test_unseen.json``,
    ``test_unseen_templates.json`` (KgCLUE JSON lines) and ``stats.json``. Returns the stats."""
    kb = build_offline_kb(sources, subjects=subjects)
    splits = build_questions(kb, seed=seed, sizes=sizes)
    out = Path(out_dir)
    header = [
        "kexue offline Chinese KB in the KgCLUE format: S（M）<TAB>P<TAB>O (spec 05 §8).",
        GEONAMES_ATTRIBUTION,
        "Other sources: " + "; ".join(f"{k}: {v}" for k, v in SOURCE_LICENCES.items()) + ".",
    ]
    write_knowledge(out / "knowledge.tsv", kb.triples, header=header)
    for split in SPLITS:
        write_kgclue(out / f"{split}.json", splits[split])
    stats = {
        "seed": seed,
        "sources": [s for s in SOURCES if s in set(sources)],
        "attribution": GEONAMES_ATTRIBUTION,
        "licences": {s: SOURCE_LICENCES[s] for s in SOURCES if s in set(sources)},
        "package_versions": package_versions(),
        "kb": kb_statistics(kb),
        "splits": _split_statistics(kb, splits),
        "templates": {
            p: {"seen": len(t.seen), "held_out": len(t.held_out)} for p, t in TEMPLATES.items()
        },
    }
    atomic_write_json(out / "stats.json", stats)
    return stats
