"""Character tokenizer of the KBQA Seq2Seq model (spec 05 §8.5) with rare-character buckets.

Vocabulary: ``[PAD] [CLS] [SEP] [UNK]``, then ``num_rare_buckets`` bucket tokens ``[R0] ...``,
then every character of the KB keys (S, P, M) and of the training questions, sorted by code
point (deterministic). Every character of every KB key has its own id, so every key is
producible (spec 04 §6.7, spec 05 §5: the post's ``[UNK]`` failure cannot happen for the KB the
tokenizer was built from).

Characters outside the vocabulary (a question's emoji, or a KB that grew after training) are
mapped to the bucket ``[R{ord(c) % num_rare_buckets}]`` — the same bucket in the question and in
the KB key, so the model can *copy* it (it is trained to copy bucket tokens, see
:mod:`kexue.kbqa._train`) and the trie still holds the key; keys that differ only by
out-of-vocabulary characters in the same bucket collide, and the answerer disambiguates them by
the subject's presence in the question (:mod:`kexue.kbqa._answer`). ``num_rare_buckets=0``
maps them to ``[UNK]`` instead (the plain BERT behaviour).

Normalisation (:meth:`CharTokenizer.normalize`, applied to questions and keys alike): Unicode
NFKC (full-width letters/digits → ASCII, compatibility ideographs → unified), control, format,
surrogate and private-use characters removed, any run of whitespace → one space, stripped.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..utils import atomic_write_json, read_json
from ._types import Triple

__all__ = ["ORDERS", "SPECIAL_TOKENS", "CharTokenizer", "key_parts"]

ORDERS: tuple[str, ...] = ("SPM", "SMP")
"""Target orders (spec 05 §2.3, E5.2): ``S [SEP] P [SEP] M`` (the post's) or
``S [SEP] M [SEP] P``."""

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
"""Fixed ids 0–3."""

_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_WHITESPACE = re.compile(r"\s+")
_FORMAT_VERSION = 1


def key_parts(triple: Triple, order: str = "SPM") -> tuple[str, str, str]:
    """The three parts of a triple's trie key in ``order`` (``"SPM"`` or ``"SMP"``)."""
    if order == "SPM":
        return triple.subject, triple.predicate, triple.meaning
    if order == "SMP":
        return triple.subject, triple.meaning, triple.predicate
    raise ValueError(f"order must be 'SPM' or 'SMP', got {order!r}")


def _check_text(text: object, name: str = "text") -> str:
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    return text


class CharTokenizer:
    """Character-level tokenizer (module docstring). Build with :meth:`from_texts`.

    ``chars``: the non-special vocabulary in id order (ids start at ``first_char_id``).
    """

    PAD_ID = 0
    CLS_ID = 1
    SEP_ID = 2
    UNK_ID = 3

    def __init__(self, chars: Sequence[str], *, num_rare_buckets: int = 32) -> None:
        if isinstance(num_rare_buckets, bool) or not isinstance(num_rare_buckets, int):
            raise TypeError("num_rare_buckets must be an int")
        if num_rare_buckets < 0:
            raise ValueError(f"num_rare_buckets must be >= 0, got {num_rare_buckets}")
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"vocabulary entries must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be distinct")
        self.num_rare_buckets = num_rare_buckets
        self.chars: tuple[str, ...] = tuple(chars)
        self.first_char_id = len(SPECIAL_TOKENS) + num_rare_buckets
        self._ids = {c: self.first_char_id + i for i, c in enumerate(self.chars)}
        self.tokens: tuple[str, ...] = (
            *SPECIAL_TOKENS,
            *(f"[R{i}]" for i in range(num_rare_buckets)),
            *self.chars,
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_texts(
        cls,
        key_texts: Iterable[str],
        question_texts: Iterable[str] = (),
        *,
        num_rare_buckets: int = 32,
        min_question_count: int = 1,
    ) -> CharTokenizer:
        """Vocabulary = every character of ``key_texts`` (the S, P, M strings of the KB) plus the
        characters occurring at least ``min_question_count`` times in ``question_texts``, after
        :meth:`normalize`, sorted by code point."""
        if isinstance(min_question_count, bool) or not isinstance(min_question_count, int):
            raise TypeError("min_question_count must be an int")
        if min_question_count < 1:
            raise ValueError(f"min_question_count must be >= 1, got {min_question_count}")
        chars: set[str] = set()
        for text in key_texts:
            chars.update(cls.normalize(_check_text(text, "key text")))
        counts: dict[str, int] = {}
        for text in question_texts:
            for c in cls.normalize(_check_text(text, "question")):
                counts[c] = counts.get(c, 0) + 1
        chars.update(c for c, n in counts.items() if n >= min_question_count)
        return cls(sorted(chars), num_rare_buckets=num_rare_buckets)

    # ------------------------------------------------------------------ properties

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def special_ids(self) -> tuple[int, ...]:
        """``[PAD] [CLS] [SEP] [UNK]``."""
        return (self.PAD_ID, self.CLS_ID, self.SEP_ID, self.UNK_ID)

    @property
    def rare_ids(self) -> range:
        """Ids of the rare-character buckets."""
        return range(len(SPECIAL_TOKENS), self.first_char_id)

    def __len__(self) -> int:
        return self.vocab_size

    def __contains__(self, char: object) -> bool:
        return isinstance(char, str) and char in self._ids

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CharTokenizer):
            return NotImplemented
        return self.chars == other.chars and self.num_rare_buckets == other.num_rare_buckets

    def __hash__(self) -> int:
        return hash((self.chars, self.num_rare_buckets))

    def __repr__(self) -> str:
        return (
            f"CharTokenizer(vocab_size={self.vocab_size}, chars={len(self.chars)}, "
            f"num_rare_buckets={self.num_rare_buckets})"
        )

    # ------------------------------------------------------------------ encoding

    @staticmethod
    def normalize(text: str) -> str:
        """NFKC; control/format/surrogate/private-use characters dropped; whitespace runs → one
        space; stripped (module docstring)."""
        text = unicodedata.normalize("NFKC", _check_text(text))
        kept = "".join(
            " " if c.isspace() else c
            for c in text
            if c.isspace() or unicodedata.category(c) not in _DROPPED_CATEGORIES
        )
        return _WHITESPACE.sub(" ", kept).strip()

    def char_id(self, char: str) -> int:
        """Id of one (normalised) character: its own id, else its rare bucket (or ``[UNK]``)."""
        found = self._ids.get(char)
        if found is not None:
            return found
        if self.num_rare_buckets == 0:
            return self.UNK_ID
        return len(SPECIAL_TOKENS) + ord(char) % self.num_rare_buckets

    def is_known(self, char: str) -> bool:
        """Whether a character has its own id."""
        return char in self._ids

    def encode(self, text: str, *, normalize: bool = True) -> list[int]:
        """Ids of the characters of ``text`` (no special tokens), one per normalised character."""
        text = self.normalize(text) if normalize else _check_text(text)
        return [self.char_id(c) for c in text]

    def encode_question(self, question: str, max_length: int | None = None) -> list[int]:
        """``[CLS] Q [SEP]`` with ``Q`` cut to its first ``max_length`` characters."""
        ids = self.encode(question)
        if max_length is not None:
            ids = ids[:max_length]
        return [self.CLS_ID, *ids, self.SEP_ID]

    def encode_key(self, parts: Sequence[str]) -> list[int]:
        """A trie key: the parts joined by ``[SEP]`` (KgCLUE: ``S [SEP] P [SEP] M``, no final
        ``[SEP]``; the trie appends it as END, spec 05 §2.5, spec 04 §2.2)."""
        out: list[int] = []
        for i, part in enumerate(parts):
            if i:
                out.append(self.SEP_ID)
            out.extend(self.encode(part))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special and bucket tokens are written as ``[SEP]``, ``[R7]`` ..."""
        out = []
        for i in ids:
            index = int(i)
            if not 0 <= index < self.vocab_size:
                raise ValueError(
                    f"token id {index} is outside the vocabulary [0, {self.vocab_size})"
                )
            out.append(self.tokens[index])
        return "".join(out)

    def split_key(self, ids: Sequence[int]) -> list[str]:
        """Decode a key and split it at ``[SEP]`` into its parts."""
        parts: list[list[int]] = [[]]
        for i in ids:
            if int(i) == self.SEP_ID:
                parts.append([])
            else:
                parts[-1].append(int(i))
        return [self.decode(part) for part in parts]

    # ------------------------------------------------------------------ persistence

    def to_dict(self) -> dict[str, object]:
        return {
            "format": "kexue.kbqa.CharTokenizer",
            "version": _FORMAT_VERSION,
            "num_rare_buckets": self.num_rare_buckets,
            "chars": "".join(self.chars),
        }

    @classmethod
    def from_dict(cls, data: object) -> CharTokenizer:
        if not isinstance(data, dict) or data.get("format") != "kexue.kbqa.CharTokenizer":
            raise ValueError("not a kexue.kbqa.CharTokenizer file")
        if data.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported CharTokenizer version {data.get('version')!r}")
        chars = data.get("chars")
        buckets = data.get("num_rare_buckets")
        if not isinstance(chars, str) or not isinstance(buckets, int):
            raise ValueError("malformed CharTokenizer file")
        return cls(list(chars), num_rare_buckets=buckets)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Atomically write the tokenizer as JSON."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CharTokenizer:
        return cls.from_dict(read_json(path))
