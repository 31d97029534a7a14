"""Training the KBQA Seq2Seq from scratch (spec 05 §2.3, §8.5): seeded, resumable, atomic.

:func:`train_kbqa` builds the :class:`~kexue.kbqa.CharTokenizer` (KB keys + training questions),
encodes every example as ``[CLS] Q [SEP]`` + target ``S [SEP] P [SEP] M [SEP]`` (or the ``SMP``
order), and trains :class:`~kexue.kbqa.PrefixLMSeq2Seq` with AdamW, linear warm-up and cosine
decay, on the loss of spec 05 §2.3 (token cross-entropy over the target, shifted by one).

**Copy augmentation** (spec 05 §5, the rare-character failure): with probability
``copy_augment`` a training example has some characters of its subject replaced, *in the
question and in the target alike*, by random tokens drawn from the characters of all KB subjects
and the rare buckets. The model thus learns to copy the subject from the question whatever its
characters, every KB character's (tied) embedding is trained in that role even if no training
question contains it, and the rare buckets that stand for characters outside the vocabulary are
copyable too. Keys need not exist for augmented targets: the trie is applied at decoding only.

**Determinism and resumption**: the data order (one permutation per epoch), the augmentation and
dropout are drawn from seeds derived from ``(config.seed, step)``, not from running random
streams, so a step's batch and noise depend only on the step number; the model and optimizer
state go into an atomic ``checkpoint.pt`` every ``checkpoint_every`` steps and at the end
(:class:`kexue.utils.Checkpointer`). A killed run restarted with the same arguments resumes
from the last checkpoint and ends with the same weights as an uninterrupted run (bit-identical
on the same machine and thread count).

Files in ``checkpoint_dir``: ``training_config.json``, ``tokenizer.json`` (written first),
``checkpoint.pt`` (training state), and at the end ``model.pt`` (model config + weights),
``kbqa.json`` (order, question length, steps, speed) and ``history.json`` — the directory is
what :meth:`kexue.kbqa.KBQA.load` reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..utils import (
    Checkpointer,
    Config,
    atomic_write_json,
    load_checkpoint,
    make_generator,
    progress,
    read_json,
    resolve_device,
    save_checkpoint,
    warmup_cosine_lr,
)
from ._model import KBQAModelConfig, PrefixLMSeq2Seq
from ._tokenizer import ORDERS, CharTokenizer, key_parts
from ._types import QAExample, Triple

__all__ = [
    "KBQATrainingConfig",
    "TrainingResult",
    "derive_seed",
    "load_model",
    "save_model",
    "train_kbqa",
]

MODEL_FILE = "model.pt"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "kbqa.json"
CONFIG_FILE = "training_config.json"
CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"

# Fields that may change between a run and its resumption (they do not change a step's work;
# ``steps``/``epochs`` extend or shorten the schedule).
_RESUMABLE_CHANGES = frozenset(
    {"steps", "epochs", "checkpoint_every", "log_every", "eval_every", "eval_examples"}
)


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and labels (stable across processes and platforms)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


@dataclasses.dataclass
class KBQATrainingConfig(Config):
    """Hyper-parameters of :func:`train_kbqa` (spec 05 §8.5; defaults sized for the CPU tier).

    ``model.vocab_size`` is set from the tokenizer (leave it 0). ``steps`` overrides
    ``epochs`` (``steps = ceil(epochs * len(train) / batch_size)`` when None). ``order``:
    ``"SPM"`` (the post) or ``"SMP"`` (ablation E5.2). ``max_question_length``: characters kept
    per question (the author code keeps 64 + [CLS]). ``copy_augment`` / ``copy_augment_char``:
    probability that an example's subject is augmented and that each of its characters is
    replaced (module docstring). ``eval_every``: greedy dev accuracy every so many steps (0 =
    only at the end, when dev examples are given), on at most ``eval_examples`` of them.
    """

    model: KBQAModelConfig = dataclasses.field(default_factory=KBQAModelConfig)
    order: str = "SPM"
    steps: int | None = None
    epochs: float = 10.0
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    max_question_length: int = 64
    num_rare_buckets: int = 32
    copy_augment: float = 0.3
    copy_augment_char: float = 1.0
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    eval_every: int = 0
    eval_examples: int = 500

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = KBQAModelConfig.from_dict(self.model)
        if not isinstance(self.model, KBQAModelConfig):
            raise TypeError("model must be a KBQAModelConfig")
        if self.order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {self.order!r}")
        positive = ("batch_size", "max_question_length", "checkpoint_every", "log_every")
        for name in (*positive, "warmup_steps", "eval_every", "eval_examples", "num_rare_buckets"):
            value = getattr(self, name)
            minimum = 1 if name in positive else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 0
        ):
            raise ValueError(f"steps must be an int >= 0 or None, got {self.steps!r}")
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise ValueError(f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        for name in ("copy_augment", "copy_augment_char"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")

    def total_steps(self, num_examples: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, math.ceil(self.epochs * num_examples / self.batch_size))

    def learning_rate(self, step: int, total: int) -> float:
        """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``."""
        return warmup_cosine_lr(step, total, peak=self.lr, warmup_steps=self.warmup_steps,
                                min_ratio=self.min_lr_ratio)  # fmt: skip


@dataclasses.dataclass
class TrainingResult:
    """What :func:`train_kbqa` returns; ``history`` entries: ``step, loss, lr, seconds`` and,
    at evaluation steps, ``dev_accuracy``."""

    model: PrefixLMSeq2Seq
    tokenizer: CharTokenizer
    config: KBQATrainingConfig
    history: list[dict[str, float]]
    steps: int
    seconds: float
    steps_per_second: float
    tokens_per_second: float
    checkpoint_dir: Path | None


@dataclasses.dataclass(frozen=True)
class _Encoded:
    question: list[int]
    target: list[int]
    span: int  # index of the subject in ``question`` (-1: not found / no augmentation)
    subject_length: int


def _labelled(examples: Sequence[QAExample], name: str) -> list[QAExample]:
    out = []
    for i, example in enumerate(examples):
        if not isinstance(example, QAExample):
            raise TypeError(f"{name}[{i}] must be a QAExample, got {type(example).__name__}")
        if example.answer is None:
            raise ValueError(f"{name}[{i}] (id {example.id!r}) has no answer; training needs one")
        out.append(example)
    return out


def build_tokenizer(
    triples: Sequence[Triple], train_examples: Sequence[QAExample], num_rare_buckets: int = 32
) -> CharTokenizer:
    """The tokenizer of :func:`train_kbqa`: KB key characters (also of the training answers) and
    training-question characters."""
    keys: list[str] = []
    for triple in triples:
        keys.extend((triple.subject, triple.predicate, triple.meaning))
    for example in train_examples:
        if example.answer is not None:
            keys.extend((example.answer.subject, example.answer.predicate, example.answer.meaning))
    return CharTokenizer.from_texts(
        keys, (e.question for e in train_examples), num_rare_buckets=num_rare_buckets
    )


def _encode(tokenizer: CharTokenizer, example: QAExample, config: KBQATrainingConfig) -> _Encoded:
    assert example.answer is not None
    question = tokenizer.encode_question(example.question, config.max_question_length)
    target = [*tokenizer.encode_key(key_parts(example.answer, config.order)), tokenizer.SEP_ID]
    subject = tokenizer.normalize(example.answer.subject)
    text = tokenizer.normalize(example.question)[: config.max_question_length]
    found = text.find(subject) if subject else -1
    return _Encoded(question, target, found + 1 if found >= 0 else -1, len(subject))


class _Batches:
    """Stateless batch sampling: step ``s`` takes positions ``s*B .. (s+1)*B-1`` of the stream of
    per-epoch permutations (each seeded from ``(seed, epoch)``)."""

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            if len(self._perms) > 4:
                self._perms.clear()
            generator = make_generator(derive_seed(self.seed, "epoch", epoch))
            self._perms[epoch] = torch.randperm(self.size, generator=generator).tolist()
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        start = step * self.batch_size
        return [
            self._perm(p // self.size)[p % self.size] for p in range(start, start + self.batch_size)
        ]


def _augment(
    items: list[_Encoded], rng: random.Random, pool: Sequence[int], config: KBQATrainingConfig
) -> list[tuple[list[int], list[int]]]:
    out = []
    for item in items:
        question, target = item.question, item.target
        if pool and item.span > 0 and item.subject_length and rng.random() < config.copy_augment:
            question, target = list(question), list(target)
            positions = [
                i for i in range(item.subject_length) if rng.random() < config.copy_augment_char
            ]
            if not positions:
                positions = [rng.randrange(item.subject_length)]
            for i in positions:
                token = pool[rng.randrange(len(pool))]
                question[item.span + i] = token
                target[i] = token
        out.append((question, target))
    return out


def _collate(
    pairs: list[tuple[list[int], list[int]]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, int]:
    length = max(len(q) + len(t) for q, t in pairs)
    ids = torch.zeros(len(pairs), length, dtype=torch.int64)
    segments = torch.zeros(len(pairs), length, dtype=torch.int64)
    tokens = 0
    for row, (question, target) in enumerate(pairs):
        n, m = len(question), len(target)
        ids[row, : n + m] = torch.tensor(question + target)
        segments[row, n : n + m] = 1
        tokens += n + m
    return ids.to(device), segments.to(device), tokens


def save_model(
    directory: str | os.PathLike[str],
    model: PrefixLMSeq2Seq,
    tokenizer: CharTokenizer,
    meta: dict[str, Any],
) -> Path:
    """Write ``model.pt``, ``tokenizer.json`` and ``kbqa.json`` (atomically) into ``directory``."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path / TOKENIZER_FILE)
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    save_checkpoint(
        path / MODEL_FILE, {"model_config": model.config.to_dict(), "state_dict": state}
    )
    atomic_write_json(path / META_FILE, meta)
    return path


def load_model(
    directory: str | os.PathLike[str], device: str | torch.device = "cpu"
) -> tuple[PrefixLMSeq2Seq, CharTokenizer, dict[str, Any]]:
    """Read what :func:`save_model` (or :func:`train_kbqa`) wrote: model (eval mode), tokenizer,
    meta (``order``, ``max_question_length`` ...)."""
    path = Path(directory)
    if not (path / MODEL_FILE).is_file():
        raise FileNotFoundError(
            f"no trained KBQA model in {path} (expected {MODEL_FILE}); train one with "
            "`kexue kbqa train` or kexue.kbqa.train_kbqa"
        )
    state = load_checkpoint(path / MODEL_FILE)
    tokenizer = CharTokenizer.load(path / TOKENIZER_FILE)
    meta = read_json(path / META_FILE) if (path / META_FILE).is_file() else {}
    config = KBQAModelConfig.from_dict(state["model_config"])
    if config.vocab_size != tokenizer.vocab_size:
        raise ValueError(
            f"{path}: model vocabulary ({config.vocab_size}) and tokenizer "
            f"({tokenizer.vocab_size}) differ; the directory is inconsistent"
        )
    model = PrefixLMSeq2Seq(config)
    model.load_state_dict(state["state_dict"])
    return model.to(resolve_device(device)).eval(), tokenizer, dict(meta)


def _check_resume(directory: Path, config: KBQATrainingConfig, tokenizer: CharTokenizer) -> None:
    stored_tokenizer = directory / TOKENIZER_FILE
    if stored_tokenizer.is_file() and CharTokenizer.load(stored_tokenizer) != tokenizer:
        raise ValueError(
            f"{directory} holds a run trained on another KB or training set (the tokenizer "
            "differs); use another checkpoint_dir or delete it to start over"
        )
    stored_config = directory / CONFIG_FILE
    if stored_config.is_file():
        previous = KBQATrainingConfig.load(stored_config).to_dict()
        current = config.to_dict()
        changed = sorted(
            key
            for key in current
            if key not in _RESUMABLE_CHANGES and previous[key] != current[key]
        )
        if changed:
            raise ValueError(
                f"{directory} holds a run with a different configuration (fields {changed}); "
                "use another checkpoint_dir or delete it to start over"
            )


def _dev_accuracy(
    model: PrefixLMSeq2Seq,
    tokenizer: CharTokenizer,
    triples: Sequence[Triple],
    dev: Sequence[QAExample],
    config: KBQATrainingConfig,
    cache: dict[str, Any],
) -> float:
    """Share of dev questions whose greedy constrained answer has the gold (S, P, M, O)."""
    from ._answer import KBQA

    answerer = cache.get("answerer")
    if answerer is None:
        answerer = KBQA(
            model, tokenizer, triples, order=config.order, num_beams=1,
            max_question_length=config.max_question_length,
        )  # fmt: skip
        cache["answerer"] = answerer
    was_training = model.training
    model.eval()
    try:
        answers = answerer.answer([e.question for e in dev], batch_size=64)
    finally:
        model.train(was_training)
    correct = sum(
        a.triple is not None and e.answer is not None and _same_fact(a.triple, e.answer)
        for a, e in zip(answers, dev, strict=True)
    )
    return correct / max(1, len(dev))


def _same_fact(a: Triple, b: Triple) -> bool:
    return (a.subject, a.predicate, a.meaning, a.object) == (
        b.subject, b.predicate, b.meaning, b.object
    )  # fmt: skip


def train_kbqa(
    config: KBQATrainingConfig,
    triples: Sequence[Triple],
    train_examples: Sequence[QAExample],
    dev_examples: Sequence[QAExample] | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    callback: Callable[[int, dict[str, float]], None] | None = None,
    progress_bar: bool | None = None,
) -> TrainingResult:
    """Train the KBQA Seq2Seq (module docstring) and return the model, tokenizer and history.

    Args:
        config: :class:`KBQATrainingConfig`.
        triples: the KB (every key character joins the vocabulary; copy-augmentation pool).
        train_examples: labelled questions (``answer`` must be set).
        dev_examples: optional labelled questions for the greedy dev accuracy in the history.
        checkpoint_dir: where checkpoints and the final model go; an existing run there (same
            configuration up to ``steps``/``epochs``/logging, same tokenizer) is resumed.
            ``None``: no files, nothing resumable.
        device: ``"cpu"`` (default), ``"cuda"``, ``"auto"``.
        callback: called after every step with ``(step, {"loss": ..., "lr": ...})`` (an
            exception raised there stops training like a kill: the last checkpoint survives).
        progress_bar: ``None`` follows ``KEXUE_PROGRESS``.
    """
    if not isinstance(config, KBQATrainingConfig):
        raise TypeError(f"config must be a KBQATrainingConfig, got {type(config).__name__}")
    triples = list(triples)
    if not triples:
        raise ValueError("the KB is empty: pass at least one Triple")
    for i, triple in enumerate(triples):
        if not isinstance(triple, Triple):
            raise TypeError(f"triples[{i}] must be a Triple, got {type(triple).__name__}")
    train = _labelled(train_examples, "train_examples")
    if not train:
        raise ValueError("train_examples is empty")
    dev = _labelled(dev_examples or [], "dev_examples")[: config.eval_examples]
    target_device = resolve_device(device)

    tokenizer = build_tokenizer(triples, train, config.num_rare_buckets)
    model_config = dataclasses.replace(config.model, vocab_size=tokenizer.vocab_size)
    config = dataclasses.replace(config, model=model_config)
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    if directory is not None:
        _check_resume(directory, config, tokenizer)
        directory.mkdir(parents=True, exist_ok=True)
        config.save(directory / CONFIG_FILE)
        tokenizer.save(directory / TOKENIZER_FILE)

    encoded = [_encode(tokenizer, example, config) for example in train]
    subject_chars = sorted(
        {tokenizer.char_id(c) for t in triples for c in tokenizer.normalize(t.subject)}
    )
    pool = [*subject_chars, *tokenizer.rare_ids]
    total = config.total_steps(len(encoded))

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = PrefixLMSeq2Seq(model_config)
    model.to(target_device).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
    )
    history: list[dict[str, float]] = []
    window: list[float] = []  # losses since the last history entry
    seconds = 0.0
    tokens_seen = 0
    start = 0
    checkpointer: Checkpointer | None = None
    if directory is not None:
        checkpointer = Checkpointer(
            directory / CHECKPOINT_FILE, every=config.checkpoint_every,
            model=model, optimizer=optimizer,
        )  # fmt: skip
        if checkpointer.exists():
            with torch.random.fork_rng(devices=[]):  # restore() also sets the global RNG
                start = checkpointer.restore()
            extra = load_checkpoint(checkpointer.path).get("extra", {})
            history = list(extra.get("history", []))
            seconds = float(extra.get("seconds", 0.0))
            tokens_seen = int(extra.get("tokens", 0))
            window = [float(v) for v in extra.get("window", [])]

    batches = _Batches(len(encoded), config.batch_size, config.seed)
    eval_cache: dict[str, Any] = {}
    step = start
    saved = start

    def save(at: int) -> None:
        if checkpointer is not None:
            checkpointer.save(
                at, history=history, seconds=seconds, tokens=tokens_seen, window=window
            )

    bar = progress(total=total, initial=min(start, total), desc="kbqa train", disable=(
        None if progress_bar is None else not progress_bar
    ))  # fmt: skip
    try:
        while step < total:
            began = time.perf_counter()
            items = [encoded[i] for i in batches.indices(step)]
            rng = random.Random(derive_seed(config.seed, "augment", step))
            ids, segments, count = _collate(_augment(items, rng, pool, config), target_device)
            lr = config.learning_rate(step, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(derive_seed(config.seed, "dropout", step))
                loss, _ = model.loss(ids, segments)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
            value = float(loss.detach())
            seconds += time.perf_counter() - began
            tokens_seen += count
            step += 1
            window.append(value)
            bar.update(1)
            record: dict[str, float] = {"loss": value, "lr": lr}
            evaluate = bool(dev) and (
                step == total or (config.eval_every > 0 and step % config.eval_every == 0)
            )
            if step % config.log_every == 0 or step == total or evaluate:
                entry: dict[str, float] = {
                    "step": step,
                    "loss": sum(window) / len(window),
                    "lr": lr,
                    "seconds": seconds,
                }
                window = []
                if evaluate:
                    entry["dev_accuracy"] = _dev_accuracy(
                        model, tokenizer, triples, dev, config, eval_cache
                    )
                    record["dev_accuracy"] = entry["dev_accuracy"]
                history.append(entry)
                bar.set_postfix(loss=f"{entry['loss']:.4f}")
            if checkpointer is not None and step % config.checkpoint_every == 0:
                save(step)
                saved = step
            if callback is not None:
                callback(step, record)
    finally:
        bar.close()
    if saved != step or (checkpointer is not None and not checkpointer.exists()):
        save(step)
    model.eval()
    steps_done = step
    speed = steps_done / seconds if seconds > 0 else 0.0
    token_speed = tokens_seen / seconds if seconds > 0 else 0.0
    if directory is not None:
        save_model(
            directory,
            model,
            tokenizer,
            {
                "order": config.order,
                "max_question_length": config.max_question_length,
                "steps": steps_done,
                "seconds": seconds,
                "steps_per_second": speed,
                "tokens_per_second": token_speed,
                "num_parameters": model.num_parameters(),
            },
        )
        atomic_write_json(directory / HISTORY_FILE, history)
    return TrainingResult(
        model=model,
        tokenizer=tokenizer,
        config=config,
        history=history,
        steps=steps_done,
        seconds=seconds,
        steps_per_second=speed,
        tokens_per_second=token_speed,
        checkpoint_dir=directory,
    )
