"""Dense dual-encoder retrieval baseline for KBQA (spec 05 §8.6, experiment E5.6; issue 7).

The post replaces retrieval by generation (Seq2Seq + trie, spec 05 §2.1). Its natural rival is a
**dense retriever over the same keys**: embed every KB key ``(S, P, M)`` as the text
``S（M） P`` (the spec's key text: subject with its gloss, then the predicate) and every question,
and answer with the key of largest inner product. Spec 05 §8.6 names a frozen multilingual
embedder that does not exist offline; this module trains a small char-level dual encoder from
scratch **on the same (question, key) pairs** the Seq2Seq model sees, so the comparison is on
equal data.

* :class:`DenseRetriever` — char embeddings + learned positions + a role embedding (question or
  key) → a pre-norm Transformer encoder (default 2 layers, ``d = 128``) → masked mean pooling →
  L2 normalisation. Its own char vocabulary (``[PAD] [UNK]`` + every character of the key texts
  and training questions, sorted by code point) is saved with the weights.
* :func:`train_dense_retriever` — InfoNCE with temperature over **in-batch negatives** (every
  other key of the batch) plus optional **hard negatives**: other keys of the gold subject
  (its other predicates and meanings — the hard part of the task, spec 05 §2.1, §3). AdamW,
  warm-up + cosine decay, seeded, deterministic for a seed on one machine and thread count.
* :class:`DenseIndex` — a faiss ``IndexFlatIP`` (exact inner product) over one vector per
  distinct ``(S, P, M)`` key; :meth:`DenseIndex.search` (top-k keys with scores, batched),
  :meth:`DenseIndex.answer` (top-1 as a :class:`Triple` whose object is **the first object
  stored for the key**, the rule of spec 05 §2.6 step 4) and :attr:`DenseIndex.nbytes` — the
  index memory ``N × d × 4`` bytes to set against :attr:`kexue.retrieval.Trie.nbytes` (the
  post's storage claim). faiss is optional: ``pip install 'kexue[faiss]'``.

Bad input: an empty question list gives an empty result; an empty or whitespace-only question
(after normalisation) gives ``[]`` from :meth:`DenseIndex.search` and ``None`` ("no answer")
from :meth:`DenseIndex.answer`; long questions and keys are truncated to
``DenseModelConfig.max_length`` characters; unknown characters map to ``[UNK]``; a bare string
where a list of questions is expected is a TypeError.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import Config, atomic_open, progress, resolve_device, warmup_cosine_lr
from ._types import QAExample, Triple

__all__ = [
    "DenseIndex",
    "DenseModelConfig",
    "DenseRetriever",
    "DenseTrainingConfig",
    "dense_key_text",
    "train_dense_retriever",
]

Role = Literal["question", "key"]

PAD, UNK = "[PAD]", "[UNK]"
_PAD_ID, _UNK_ID = 0, 1
_ROLES: dict[str, int] = {"question": 0, "key": 1}
_FORMAT = "kexue.kbqa.DenseRetriever"
_FORMAT_VERSION = 1
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_WHITESPACE = re.compile(r"\s+")
_FAISS_HINT = "the dense KBQA index needs faiss: pip install 'kexue[faiss]' (faiss-cpu)"


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(_FAISS_HINT) from error
    return faiss


def dense_key_text(triple: Triple) -> str:
    """The text embedded for a key: ``S（M） P`` (``S P`` without a gloss; spec 05 §8.6)."""
    if not isinstance(triple, Triple):
        raise TypeError(f"expected a Triple, got {type(triple).__name__}")
    return f"{triple.full_subject} {triple.predicate}"


def _normalize(text: str, limit: int) -> str:
    """NFKC, control/format/private-use characters removed, whitespace runs → one space,
    stripped; the raw text is cut first so that a huge input costs O(limit)."""
    text = text[: 8 * limit + 1024]
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) not in _DROPPED_CATEGORIES)
    return _WHITESPACE.sub(" ", text).strip()


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_questions(questions: object) -> list[str]:
    if isinstance(questions, str):
        raise TypeError("questions must be a list of strings, not one string: pass [question]")
    if not isinstance(questions, Sequence):
        raise TypeError(f"questions must be a sequence of str, got {type(questions).__name__}")
    out = list(questions)
    for position, question in enumerate(out):
        if not isinstance(question, str):
            raise TypeError(f"questions[{position}] must be a str, got {type(question).__name__}")
    return out


def _check_triples(triples: Iterable[Triple]) -> list[Triple]:
    if isinstance(triples, (str, bytes)):
        raise TypeError("triples must be an iterable of Triple")
    out = list(triples)
    if not out:
        raise ValueError("the KB is empty: give at least one Triple")
    for position, triple in enumerate(out):
        if not isinstance(triple, Triple):
            raise TypeError(f"triples[{position}] must be a Triple, got {type(triple).__name__}")
        if not triple.subject.strip() or not triple.predicate.strip():
            raise ValueError(f"triples[{position}] has an empty subject or predicate: {triple}")
    return out


def _key(triple: Triple) -> tuple[str, str, str]:
    return triple.subject, triple.predicate, triple.meaning


def _distinct_keys(triples: Sequence[Triple]) -> list[Triple]:
    """One triple per distinct ``(S, P, M)`` in KB order, holding the key's first object."""
    first: dict[tuple[str, str, str], Triple] = {}
    for triple in triples:
        first.setdefault(_key(triple), triple)
    return list(first.values())


# --------------------------------------------------------------------------------------------
# configs


@dataclasses.dataclass
class DenseModelConfig(Config):
    """Architecture of :class:`DenseRetriever`.

    ``vocab_size`` is set from the vocabulary (leave it 0). ``max_length``: characters kept per
    question or key text (longer ones are truncated). ``shared_encoder``: one Transformer for
    questions and keys (default, see :class:`DenseRetriever`) or two (ablation).
    """

    vocab_size: int = 0
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    dropout: float = 0.1
    max_length: int = 64
    shared_encoder: bool = True

    def __post_init__(self) -> None:
        _check_int(self.vocab_size, "vocab_size", 0)
        for name in ("dim", "layers", "heads", "ffn", "max_length"):
            _check_int(getattr(self, name), name, 1)
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not isinstance(self.shared_encoder, bool):
            raise TypeError(f"shared_encoder must be a bool, got {self.shared_encoder!r}")


@dataclasses.dataclass
class DenseTrainingConfig(Config):
    """Hyper-parameters of :func:`train_dense_retriever`.

    ``steps`` overrides ``epochs`` (``steps = ceil(epochs * len(train) / batch_size)`` when
    None). ``temperature``: the InfoNCE temperature τ (logits are cosines / τ).
    ``hard_negatives``: other keys of the gold subject added to the batch's candidates per
    question (0 = in-batch negatives only). ``log_every``: steps between progress-bar loss
    updates.
    """

    model: DenseModelConfig = dataclasses.field(default_factory=DenseModelConfig)
    steps: int | None = None
    epochs: float = 20.0
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    temperature: float = 0.05
    hard_negatives: int = 1
    seed: int = 0
    log_every: int = 20

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = DenseModelConfig.from_dict(self.model)
        if not isinstance(self.model, DenseModelConfig):
            raise TypeError("model must be a DenseModelConfig")
        if self.steps is not None:
            _check_int(self.steps, "steps", 0)
        for name, minimum in (
            ("batch_size", 1),
            ("warmup_steps", 0),
            ("hard_negatives", 0),
            ("seed", 0),
            ("log_every", 1),
        ):
            _check_int(getattr(self, name), name, minimum)
        for name in ("epochs", "lr", "temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")

    def total_steps(self, num_examples: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * num_examples / self.batch_size))

    def learning_rate(self, step: int, total: int) -> float:
        """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``."""
        return warmup_cosine_lr(step, total, peak=self.lr, warmup_steps=self.warmup_steps,
                                min_ratio=self.min_lr_ratio)  # fmt: skip


# --------------------------------------------------------------------------------------------
# model


class _CharEncoder(nn.Module):
    """Chars + positions + role → pre-norm Transformer → masked mean → L2-normalised vector."""

    def __init__(self, config: DenseModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.dim, padding_idx=_PAD_ID)
        self.position = nn.Embedding(config.max_length, config.dim)
        self.role = nn.Embedding(len(_ROLES), config.dim)
        layer = nn.TransformerEncoderLayer(
            config.dim,
            config.heads,
            config.ffn,
            config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, ids: torch.Tensor, role: int) -> torch.Tensor:
        mask = ids != _PAD_ID  # every row holds at least one token (see DenseRetriever._batch)
        positions = torch.arange(ids.shape[1], device=ids.device)
        hidden = self.embed(ids) + self.position(positions)[None] + self.role.weight[role]
        hidden = self.norm(self.encoder(hidden, src_key_padding_mask=~mask))
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1)


class DenseRetriever(nn.Module):
    """Char-level dual encoder: questions and key texts ``S（M） P`` → unit vectors (module doc).

    **Shared weights by default** (``shared_encoder=True``), with a learned role embedding that
    tells the encoder whether it reads a question or a key. Reasons: (1) the subject occurs
    verbatim in 99.8 % of KgCLUE questions (spec 05 §1.2) and in all template questions, so the
    main signal is character overlap, which a Siamese encoder captures from the start — the same
    characters get the same embeddings on both sides; (2) the question-side gradient then also
    trains the key side, which matters because the index holds far more keys than there are
    training questions (KgCLUE: 18k questions, 20M keys; unseen subjects, E5.7) and every key
    must be embedded by an encoder that never saw it; (3) half the parameters. The role
    embedding keeps the two sides' different formats (colloquial question vs ``S（M） P``)
    separable. ``shared_encoder=False`` trains two towers for comparison.

    Text → ids: NFKC normalisation, control/format characters dropped, whitespace collapsed,
    truncation to ``config.max_length`` characters, unknown characters → ``[UNK]``.
    ``history`` holds the per-step training loss (empty for an untrained model).
    """

    def __init__(self, vocab: Sequence[str], config: DenseModelConfig | None = None) -> None:
        super().__init__()
        characters = list(vocab)
        for position, character in enumerate(characters):
            if not isinstance(character, str) or len(character) != 1:
                raise ValueError(f"vocab[{position}] must be one character, got {character!r}")
        if len(set(characters)) != len(characters):
            raise ValueError("vocab holds duplicate characters")
        config = config if config is not None else DenseModelConfig()
        if not isinstance(config, DenseModelConfig):
            raise TypeError(f"config must be a DenseModelConfig, got {type(config).__name__}")
        size = len(characters) + 2
        if config.vocab_size not in (0, size):
            raise ValueError(
                f"config.vocab_size={config.vocab_size} does not match the vocabulary "
                f"({size} tokens with [PAD] and [UNK]); leave it 0"
            )
        self.config = config.replace(vocab_size=size)
        self.vocab: list[str] = characters
        self._ids = {character: index + 2 for index, character in enumerate(characters)}
        self.question_encoder = _CharEncoder(self.config)
        self.key_encoder = (
            self.question_encoder if self.config.shared_encoder else _CharEncoder(self.config)
        )
        self.history: list[float] = []
        self.training_seconds = 0.0

    # ---- vocabulary ----------------------------------------------------------------------

    @staticmethod
    def build_vocab(texts: Iterable[str], max_length: int = 64) -> list[str]:
        """Every character of the normalised ``texts`` (as :meth:`token_ids` sees them), sorted
        by code point (deterministic)."""
        characters: set[str] = set()
        for text in texts:
            characters.update(_normalize(text, max_length))
        return sorted(characters)

    def normalize(self, text: str) -> str:
        """The normalised text that :meth:`token_ids` encodes (before truncation)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return _normalize(text, self.config.max_length)

    def token_ids(self, text: str) -> list[int]:
        """Ids of the normalised text truncated to ``max_length`` characters (may be empty)."""
        normalized = self.normalize(text)[: self.config.max_length]
        return [self._ids.get(character, _UNK_ID) for character in normalized]

    @property
    def device(self) -> torch.device:
        return self.question_encoder.embed.weight.device

    # ---- encoding ------------------------------------------------------------------------

    def _batch(self, texts: Sequence[str]) -> torch.Tensor:
        rows = [self.token_ids(text) or [_UNK_ID] for text in texts]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), _PAD_ID, dtype=torch.long)
        for index, row in enumerate(rows):
            ids[index, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids.to(self.device)

    def forward(self, texts: Sequence[str], role: Role) -> torch.Tensor:
        """Unit vectors ``[len(texts), dim]`` of ``texts`` read as ``role`` (with gradients)."""
        if role not in _ROLES:
            raise ValueError(f"role must be 'question' or 'key', got {role!r}")
        if not texts:
            return torch.zeros(0, self.config.dim, device=self.device)
        encoder = self.question_encoder if role == "question" else self.key_encoder
        result: torch.Tensor = encoder(self._batch(texts), _ROLES[role])
        return result

    @torch.no_grad()
    def encode(
        self,
        texts: Sequence[str],
        role: Role,
        *,
        batch_size: int = 256,
        show_progress: bool | None = None,
    ) -> torch.Tensor:
        """Float32 CPU unit vectors ``[len(texts), dim]`` in eval mode, batched.

        Texts are sorted by length so that batches carry little padding; the output is in input
        order. An empty text is encoded as ``[UNK]`` (callers that want "no answer" for empty
        questions check first, as :class:`DenseIndex` does).
        """
        _check_int(batch_size, "batch_size", 1)
        texts = list(texts)
        out = torch.zeros(len(texts), self.config.dim, dtype=torch.float32)
        if not texts:
            return out
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        was_training = self.training
        self.eval()
        try:
            starts = range(0, len(order), batch_size)
            disable = None if show_progress is None else not show_progress
            bar = progress(starts, desc=f"dense encode {role}s", disable=disable)
            for start in bar:
                chunk = order[start : start + batch_size]
                vectors = self.forward([texts[i] for i in chunk], role)
                out[torch.tensor(chunk)] = vectors.float().cpu()
        finally:
            self.train(was_training)
        return out

    def encode_questions(self, questions: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
        """:meth:`encode` of questions (bare strings are rejected)."""
        return self.encode(_check_questions(questions), "question", batch_size=batch_size)

    def encode_keys(
        self,
        triples: Sequence[Triple],
        *,
        batch_size: int = 256,
        show_progress: bool | None = None,
    ) -> torch.Tensor:
        """:meth:`encode` of the key texts :func:`dense_key_text` of ``triples`` (one row each;
        the object is ignored)."""
        texts = [dense_key_text(triple) for triple in triples]
        return self.encode(texts, "key", batch_size=batch_size, show_progress=show_progress)

    # ---- persistence ---------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Atomically write config, vocabulary, weights and loss history to one torch file."""
        payload = {
            "format": _FORMAT,
            "version": _FORMAT_VERSION,
            "config": self.config.to_dict(),
            "vocab": list(self.vocab),
            "history": list(self.history),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        with atomic_open(path, "wb") as handle:
            torch.save(payload, handle)
        return Path(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
    ) -> DenseRetriever:
        """Read a file written by :meth:`save`."""
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved DenseRetriever")
        if payload.get("version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported DenseRetriever format {payload.get('version')}")
        model = cls(payload["vocab"], DenseModelConfig.from_dict(payload["config"]))
        model.load_state_dict(payload["state_dict"])
        model.history = [float(x) for x in payload.get("history", [])]
        model.eval()
        return model.to(resolve_device(map_location))


# --------------------------------------------------------------------------------------------
# training


def _labelled(examples: Iterable[QAExample]) -> list[tuple[str, Triple]]:
    """``(question, gold triple)`` of the examples that have both."""
    if isinstance(examples, (str, bytes)):
        raise TypeError("train_examples must be an iterable of QAExample")
    out: list[tuple[str, Triple]] = []
    for position, example in enumerate(examples):
        if not isinstance(example, QAExample):
            raise TypeError(
                f"train_examples[{position}] must be a QAExample, got {type(example).__name__}"
            )
        if not isinstance(example.question, str):
            raise TypeError(f"train_examples[{position}].question must be a str")
        if example.answer is not None and example.question.strip():
            out.append((example.question, example.answer))
    if not out:
        raise ValueError("no training example has both a question and an answer")
    return out


def train_dense_retriever(
    triples: Iterable[Triple],
    train_examples: Iterable[QAExample],
    config: DenseTrainingConfig | None = None,
    *,
    device: str | torch.device = "cpu",
    show_progress: bool | None = None,
) -> DenseRetriever:
    """Train a :class:`DenseRetriever` on (question, gold key) pairs (module docstring).

    Every step takes ``batch_size`` examples (one permutation per epoch); the candidate keys of
    the step are the batch's distinct gold keys plus, per question, up to ``hard_negatives``
    other keys of its gold subject (same ``S``, another ``P`` or ``M``) — each key once, so a
    key shared by two questions of the batch is never its own negative. The loss is the
    cross-entropy of ``cos(q, k) / τ`` over the candidates with the gold key as target
    (InfoNCE). Examples without an answer or with an empty question are skipped; a gold key
    that is not in the KB is still a valid training target.

    Deterministic for ``config.seed`` on one machine and thread count: the data order and the
    hard negatives come from seeded ``random.Random`` streams, the initialisation and dropout
    from torch's global generator re-seeded inside :func:`torch.random.fork_rng` (the caller's
    random state is left untouched). The per-step losses are in ``retriever.history``.
    """
    config = config if config is not None else DenseTrainingConfig()
    if not isinstance(config, DenseTrainingConfig):
        raise TypeError(f"config must be a DenseTrainingConfig, got {type(config).__name__}")
    kb = _check_triples(triples)
    pairs = _labelled(train_examples)
    target = resolve_device(device)

    keys = _distinct_keys(kb)
    index = {_key(triple): position for position, triple in enumerate(keys)}
    for _, answer in pairs:  # gold keys outside the KB get ids after the KB's keys
        if _key(answer) not in index:
            index[_key(answer)] = len(keys)
            keys.append(answer)
    key_texts = [dense_key_text(triple) for triple in keys]
    by_subject: dict[str, list[int]] = {}
    for position, triple in enumerate(keys):
        by_subject.setdefault(triple.subject, []).append(position)
    gold = [index[_key(answer)] for _, answer in pairs]
    questions = [question for question, _ in pairs]

    max_length = config.model.max_length
    vocab = DenseRetriever.build_vocab([*key_texts, *questions], max_length)
    total = config.total_steps(len(pairs))
    devices = [target.index or 0] if target.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        model = DenseRetriever(vocab, config.model).to(target)
        decay: list[nn.Parameter] = []  # weight matrices; not embeddings, norms or biases
        rest: list[nn.Parameter] = []
        for name, parameter in model.named_parameters():
            is_matrix = parameter.ndim == 2 and "embed" not in name and "position" not in name
            (decay if is_matrix and "role" not in name else rest).append(parameter)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        model.train()
        order: list[int] = []
        epoch = -1
        start = time.perf_counter()
        bar = progress(
            total=total,
            desc="dense retriever",
            disable=None if show_progress is None else not show_progress,
        )
        try:
            for step in range(total):
                if not order:
                    epoch += 1
                    order = list(range(len(pairs)))
                    random.Random(f"kexue.kbqa.dense:{config.seed}:order:{epoch}").shuffle(order)
                batch, order = order[: config.batch_size], order[config.batch_size :]
                rng = random.Random(f"kexue.kbqa.dense:{config.seed}:negatives:{step}")
                candidates: dict[int, int] = {}
                for i in batch:
                    candidates.setdefault(gold[i], len(candidates))
                if config.hard_negatives:
                    for i in batch:
                        pool = [k for k in by_subject[keys[gold[i]].subject] if k != gold[i]]
                        for k in rng.sample(pool, min(config.hard_negatives, len(pool))):
                            candidates.setdefault(k, len(candidates))
                for group in optimizer.param_groups:
                    group["lr"] = config.learning_rate(step, total)
                query = model([questions[i] for i in batch], "question")
                key = model([key_texts[k] for k in candidates], "key")
                logits = query @ key.T / config.temperature
                labels = torch.tensor([candidates[gold[i]] for i in batch], device=target)
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                model.history.append(float(loss.detach()))
                bar.update(1)
                if (step + 1) % config.log_every == 0 or step + 1 == total:
                    recent = model.history[-config.log_every :]
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
        finally:
            bar.close()
    model.training_seconds = time.perf_counter() - start
    model.eval()
    return model


# --------------------------------------------------------------------------------------------
# index


class DenseIndex:
    """Exact inner-product search (faiss ``IndexFlatIP``) over the KB's distinct keys.

    One vector per distinct ``(S, P, M)`` of ``triples`` in KB order; the triple stored for a key
    carries its **first** object (spec 05 §2.6 step 4). Two keys whose texts coincide (e.g.
    ``S="A（B）", M=""`` and ``S="A", M="B"``) get the same vector; ties go to the earlier key.
    """

    def __init__(
        self,
        retriever: DenseRetriever,
        triples: Iterable[Triple],
        *,
        batch_size: int = 256,
        show_progress: bool | None = None,
    ) -> None:
        if not isinstance(retriever, DenseRetriever):
            raise TypeError(f"retriever must be a DenseRetriever, got {type(retriever).__name__}")
        faiss = _import_faiss()
        self.retriever = retriever
        self.keys: list[Triple] = _distinct_keys(_check_triples(triples))
        vectors = retriever.encode_keys(
            self.keys, batch_size=batch_size, show_progress=show_progress
        )
        self.dim = int(vectors.shape[1])
        self.index = faiss.IndexFlatIP(self.dim)
        self.index.add(np.ascontiguousarray(vectors.numpy(), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Index memory in bytes: ``N × d × 4`` (float32 vectors of the flat index; the key
        table — the same strings a trie's value table holds — is not counted)."""
        return int(self.index.ntotal) * self.dim * 4

    def vectors(self) -> np.ndarray:
        """The stored key vectors ``[N, d]`` (float32, a copy)."""
        return np.asarray(self.index.reconstruct_n(0, self.index.ntotal), dtype=np.float32)

    def search(
        self, questions: Sequence[str], k: int = 1, *, batch_size: int = 256
    ) -> list[list[tuple[Triple, float]]]:
        """The ``k`` best keys per question, as ``(triple, inner product)`` best first.

        ``k`` larger than the KB returns every key; an empty or whitespace-only question (after
        normalisation) gets ``[]``.
        """
        questions = _check_questions(questions)
        _check_int(k, "k", 1)
        _check_int(batch_size, "batch_size", 1)
        results: list[list[tuple[Triple, float]]] = [[] for _ in questions]
        live = [i for i, q in enumerate(questions) if self.retriever.normalize(q)]
        if not live:
            return results
        vectors = self.retriever.encode(
            [questions[i] for i in live], "question", batch_size=batch_size, show_progress=False
        )
        k = min(k, len(self.keys))
        scores, ids = self.index.search(np.ascontiguousarray(vectors.numpy()), k)
        for row, position in enumerate(live):
            results[position] = [
                (self.keys[int(j)], float(s))
                for j, s in zip(ids[row], scores[row], strict=True)
                if j >= 0
            ]
        return results

    def answer(self, questions: Sequence[str], *, batch_size: int = 256) -> list[Triple | None]:
        """Top-1 triple per question (object = the key's first object); ``None`` = no answer
        (empty question); the official metric of spec 05 §1.3 scores these against the golds."""
        return [
            hits[0][0] if hits else None
            for hits in self.search(questions, 1, batch_size=batch_size)
        ]

    def __repr__(self) -> str:
        return f"DenseIndex(keys={len(self.keys)}, dim={self.dim}, nbytes={self.nbytes})"
