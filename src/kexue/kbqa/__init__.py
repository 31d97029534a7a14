"""Knowledge-base QA in the KgCLUE style with Seq2Seq + trie (post 8802, spec 05; engine: spec 04).

* :class:`Triple`, :class:`QAExample`, :func:`split_subject` — the KgCLUE data model (§1, §2.2).
"""

from __future__ import annotations

from ._types import QAExample, SplitMode, Triple, split_subject

__all__ = ["QAExample", "SplitMode", "Triple", "split_subject"]
