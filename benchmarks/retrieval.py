"""Benchmark of the trie engine against GENRE-style tries and Hugging Face (spec 04 §8, E4.2).

``python benchmarks/retrieval.py [--quick] [--sizes 300000,3000000] [--threads N (default 2)]``

Workload (seeded, as in spec 04 §8): ``N`` sequences of 5-15 tokens including BOS and EOS, token
ids drawn from a Zipf law (exponent :data:`ZIPF_EXPONENT`) over a vocabulary of ``V = 50 000``;
ids 0/1/2 are pad/BOS/EOS. Every structure stores the same keys.

1. **Storage and build** for each ``N``: (i) a nested-dict trie built the way GENRE builds its
   ``Trie`` (one ``dict`` per node, keys ``[BOS, ..., EOS]``; memory by ``tracemalloc``), (ii) a
   ``marisa-trie`` over code-point strings as GENRE's ``MarisaTrie`` stores them (serialised
   size), (iii) :class:`kexue.retrieval.Trie` (bytes of its arrays). Build time is one timed run;
   bytes per stored sequence; a dense index of ``N × d`` float32 vectors for comparison.
2. **Next-token lookup by depth** (2000 random stored prefixes per depth; 200 for marisa's
   predictive enumeration, which walks every key under the prefix as GENRE does).
3. **Per-step mask for 64 beams at V = 50k**: Hugging Face's ``PrefixConstrainedLogitsProcessor``
   driven by the dict trie (one Python callback and one ``mask[row, list] = 0`` per beam) vs
   :class:`kexue.retrieval.hf.TrieLogitsProcessor` (one batched mask), on the same ``input_ids``
   and scores, at several decoding depths; plus ``Trie.allowed_mask`` from trie states alone.
4. **End-to-end ``generate``**: a tiny randomly initialised BART (vocabulary 50k, built from a
   config, no download), batch 8 × 8 beams = 64 rows, constrained by each processor; every
   returned sequence must be a stored key for both.

Targets (issue 6): ≤ 100 bytes per stored sequence, ≤ 2 ms per mask step for 64 beams on 2
cores, ≥ 50× faster than the Hugging Face path.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finds _harness when run as a script

from _harness import (
    Row,
    Settings,
    Step,
    add_common_args,
    measure,
    settings_from_args,
    write_results,
)
from kexue.data import zipf_token_sequences
from kexue.retrieval import Trie

NAME = "retrieval"
VOCAB = 50_000
PAD, BOS, EOS = 0, 1, 2
ZIPF_EXPONENT = 1.2
LENGTHS = (5, 15)  # including BOS and EOS
BEAMS = 64
DEPTHS = (1, 2, 3, 5)
ANCHOR = (
    "GENRE (facebookresearch/GENRE) nested-dict Trie and MarisaTrie layouts re-implemented from "
    "their description (GENRE is not on PyPI); marisa-trie {marisa}; Hugging Face transformers "
    "{transformers} PrefixConstrainedLogitsProcessor"
)


# --------------------------------------------------------------------------- workload


def synthetic_keys(count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` keys ``[BOS, t..., EOS]`` of 5-15 tokens with Zipf token ids (spec 04 §8)."""
    return zipf_token_sequences(count, vocab_size=VOCAB, lengths=LENGTHS, exponent=ZIPF_EXPONENT,
                                bos_id=BOS, eos_id=EOS, first_token=3, seed=seed)  # fmt: skip


# --------------------------------------------------------------------------- anchors


class GenreStyleDictTrie:
    """One ``dict`` per node, ``get(prefix)`` returns the children's tokens (GENRE ``Trie``)."""

    def __init__(self, sequences: Iterator[Sequence[int]]) -> None:
        self.root: dict[int, Any] = {}
        for sequence in sequences:
            node = self.root
            for token in sequence:
                node = node.setdefault(int(token), {})

    def get(self, prefix: Sequence[int]) -> list[int]:
        node = self.root
        for token in prefix:
            node = node.get(int(token))  # type: ignore[assignment]
            if node is None:
                return []
        return list(node)


class GenreStyleMarisaTrie:
    """Tokens as code points in a ``marisa_trie.Trie``; next tokens by predictive enumeration of
    every key under the prefix (GENRE ``MarisaTrie.get``)."""

    OFFSET = 0x100  # keep ids away from control characters; BOS/EOS/pad included

    def __init__(self, sequences: Sequence[Sequence[int]]) -> None:
        import marisa_trie

        self.trie = marisa_trie.Trie(self._encode(s) for s in sequences)

    @classmethod
    def _encode(cls, sequence: Sequence[int]) -> str:
        return "".join(chr(int(t) + cls.OFFSET) for t in sequence)

    def get(self, prefix: Sequence[int]) -> list[int]:
        encoded = self._encode(prefix)
        depth = len(encoded)
        return sorted(
            {ord(key[depth]) - self.OFFSET for key in self.trie.keys(encoded) if len(key) > depth}
        )

    @property
    def nbytes(self) -> int:
        return len(self.trie.tobytes())


# --------------------------------------------------------------------------- 1. storage


def storage_rows(count: int, keys: list[np.ndarray]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build each structure once; time and memory. Returns (table rows, the built structures)."""
    results: dict[str, Any] = {}
    built: dict[str, Any] = {}

    gc.collect()
    start = time.perf_counter()
    trie = Trie.build((k[1:-1] for k in keys), end_id=EOS)
    results["kexue Trie"] = {"seconds": time.perf_counter() - start, "bytes": trie.nbytes}
    built["kexue"] = trie

    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    dict_trie = GenreStyleDictTrie(iter(keys))
    seconds = time.perf_counter() - start
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    results["nested dict (GENRE Trie)"] = {"seconds": seconds, "bytes": current}
    built["dict"] = dict_trie

    try:
        start = time.perf_counter()
        marisa = GenreStyleMarisaTrie(keys)
        results["marisa-trie (GENRE MarisaTrie)"] = {
            "seconds": time.perf_counter() - start,
            "bytes": marisa.nbytes,
        }
        built["marisa"] = marisa
    except ImportError:
        results["marisa-trie (GENRE MarisaTrie)"] = None
    for value in results.values():
        if value is not None:
            value["bytes_per_sequence"] = value["bytes"] / count
    results["dense index d=384 (float32)"] = {"bytes": count * 384 * 4, "seconds": None,
                                              "bytes_per_sequence": 384 * 4}  # fmt: skip
    results["dense index d=768 (float32)"] = {"bytes": count * 768 * 4, "seconds": None,
                                              "bytes_per_sequence": 768 * 4}  # fmt: skip
    return results, built


# --------------------------------------------------------------------------- 2. lookups


def prefixes_at_depth(keys: list[np.ndarray], depth: int, count: int, seed: int) -> list[list[int]]:
    """``count`` random stored prefixes ``[BOS, t_1, ..., t_(depth-1)]`` (depth 1 = the root)."""
    rng = np.random.default_rng(seed)
    long_enough = np.flatnonzero(np.array([len(k) > depth for k in keys]))  # no EOS in prefix
    chosen = rng.choice(long_enough, size=count)
    return [keys[i][:depth].tolist() for i in chosen]


def lookup_rows(
    built: dict[str, Any], keys: list[np.ndarray], settings: Settings
) -> tuple[list[Row], dict[str, Any]]:
    trie: Trie = built["kexue"]
    rows: list[Row] = []
    sizes: dict[str, Any] = {}
    for depth in DEPTHS:
        prefixes = prefixes_at_depth(keys, depth, 200 if settings.quick else 2000, depth)
        few = prefixes[:200]
        expected = [sorted(built["dict"].get(p)) for p in few]
        mine = [trie.next_tokens(p[1:]).tolist() for p in few]
        if mine != expected:
            raise RuntimeError(f"kexue and dict trie disagree at depth {depth}")
        sizes[str(depth)] = statistics.mean(len(e) for e in expected)

        def run_dict(prefixes: list[list[int]] = prefixes) -> None:
            for p in prefixes:
                built["dict"].get(p)

        def run_kexue(prefixes: list[list[int]] = prefixes) -> None:
            for p in prefixes:
                trie.next_tokens(p[1:])

        steps: dict[str, Step] = {"kexue next_tokens": run_kexue, "dict get": run_dict}
        if "marisa" in built:
            marisa_prefixes = prefixes[:20] if depth == 1 else prefixes[:200]

            def run_marisa(prefixes: list[list[int]] = marisa_prefixes) -> None:
                for p in prefixes:
                    built["marisa"].get(p)

            steps["marisa predictive enumeration"] = run_marisa
        group_rows = measure(f"next tokens, depth {depth}", steps, "kexue next_tokens", settings,
                             warmup=1, measure_memory=False)  # fmt: skip
        # Per-lookup time in µs (calls differ in how many prefixes they run).
        for row in group_rows:
            per_call = {"kexue next_tokens": len(prefixes), "dict get": len(prefixes)}.get(
                row.method, 20 if depth == 1 else min(200, len(prefixes))
            )
            scale = 1e3 / per_call
            row.median_ms *= scale
            row.iqr_ms *= scale
            row.rounds_ms = [v * scale for v in row.rounds_ms]
        base = next(r.median_ms for r in group_rows if r.baseline == r.method)
        for row in group_rows:
            row.ratio = row.median_ms / base
            row.group += " (µs per lookup)"
        rows += group_rows
    return rows, sizes


# --------------------------------------------------------------------------- 3. masks


def _process(processor: Any, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """One logits-processor call. Both processors return a new tensor and leave ``scores`` as it
    is (checked in :func:`mask_rows`), so no defensive copy is timed."""
    result: torch.Tensor = processor(input_ids, scores)
    return result


def mask_rows(built: dict[str, Any], keys: list[np.ndarray], settings: Settings) -> list[Row]:
    from transformers import PrefixConstrainedLogitsProcessor

    from kexue.retrieval.hf import TrieLogitsProcessor

    trie: Trie = built["kexue"]
    dict_trie: GenreStyleDictTrie = built["dict"]
    rows: list[Row] = []
    generator = torch.Generator().manual_seed(0)
    for depth in DEPTHS:
        prefixes = prefixes_at_depth(keys, depth, BEAMS, 100 + depth)
        input_ids = torch.tensor(prefixes, dtype=torch.long)
        scores = torch.randn(BEAMS, VOCAB, generator=generator)

        def allowed(batch_id: int, sentence: torch.Tensor) -> list[int]:
            return dict_trie.get(sentence.tolist())

        hf = PrefixConstrainedLogitsProcessor(allowed, num_beams=BEAMS)
        ours = TrieLogitsProcessor(trie, prompt_length=1, renormalize=False)
        original = scores.clone()
        reference = hf(input_ids, scores)
        if not torch.equal(torch.isinf(reference), torch.isinf(ours(input_ids, scores))):
            raise RuntimeError(f"masks differ at depth {depth}")
        if not torch.equal(scores, original):
            raise RuntimeError("a processor modified its input scores in place")
        states = torch.tensor([trie.walk(p[1:]) for p in prefixes], dtype=torch.long)
        steps: dict[str, Step] = {
            "kexue TrieLogitsProcessor": partial(_process, ours, input_ids, scores),
            "kexue Trie.allowed_mask(states)": partial(trie.allowed_mask, states=states,
                                                       vocab_size=VOCAB),
            "HF PrefixConstrainedLogitsProcessor + dict trie": partial(_process, hf, input_ids,
                                                                       scores),
        }  # fmt: skip
        rows += measure(f"mask step, {BEAMS} beams, V={VOCAB}, depth {depth}", steps,
                        "kexue TrieLogitsProcessor", settings, warmup=1,
                        measure_memory=False)  # fmt: skip
    return rows


# --------------------------------------------------------------------------- 4. generate


def generate_rows(
    built: dict[str, Any], keys: list[np.ndarray], settings: Settings
) -> tuple[list[Row], dict[str, Any]]:
    from transformers import BartConfig, BartForConditionalGeneration, LogitsProcessorList

    from kexue.retrieval.hf import TrieLogitsProcessor

    trie: Trie = built["kexue"]
    dict_trie: GenreStyleDictTrie = built["dict"]
    torch.manual_seed(0)
    config = BartConfig(vocab_size=VOCAB, d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                        pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                        decoder_start_token_id=BOS, forced_bos_token_id=None,
                        forced_eos_token_id=None)  # fmt: skip
    model = BartForConditionalGeneration(config).eval()
    batch, beams = 8, 8
    source = torch.randint(3, VOCAB, (batch, 12), generator=torch.Generator().manual_seed(1))
    common = dict(num_beams=beams, num_return_sequences=beams, max_new_tokens=LENGTHS[1],
                  do_sample=False, length_penalty=0.0, early_stopping=True)  # fmt: skip

    def allowed(batch_id: int, sentence: torch.Tensor) -> list[int]:
        # The usual workaround: HF fills beams with -inf-scored masked tokens when fewer valid
        # continuations than beams exist, and raises on the empty allowed set that follows.
        return dict_trie.get(sentence.tolist()) or [EOS]

    def with_hf() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(source, prefix_allowed_tokens_fn=allowed, **common)

    def with_kexue() -> torch.Tensor:
        processors = LogitsProcessorList([TrieLogitsProcessor(trie, prompt_length=1,
                                                              renormalize=False)])  # fmt: skip
        with torch.no_grad():
            return model.generate(source, logits_processor=processors, **common)

    validity = {}
    for name, run in (("kexue", with_kexue), ("hf", with_hf)):
        outputs = run()
        valid = 0
        for row in outputs.tolist():
            # [BOS, key..., EOS, padding]; generate pads finished rows (with EOS or PAD).
            if EOS in row[1:]:
                valid += int(tuple(row[1 : row.index(EOS, 1)]) in trie)
        validity[name] = f"{valid}/{len(outputs)}"
    steps: dict[str, Step] = {"kexue TrieLogitsProcessor": with_kexue,
                              "HF prefix_allowed_tokens_fn + dict trie": with_hf}  # fmt: skip
    rows = measure(f"generate: tiny BART (V={VOCAB}), batch {batch} × {beams} beams",
                   steps, "kexue TrieLogitsProcessor", settings, warmup=1,
                   measure_memory=False)  # fmt: skip
    return rows, validity


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write ``<out>/retrieval.{json,md}``, print the table; return the JSON."""
    defaults = Settings(rounds=5, min_run_time=0.3)
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    add_common_args(parser, defaults)
    parser.add_argument("--sizes", default=None, help="comma-separated N (default 300000,3000000)")
    parser.set_defaults(threads=2)
    args = parser.parse_args(argv)
    settings = settings_from_args(args, defaults)
    sizes = [int(s) for s in (args.sizes or ("20000" if settings.quick else "300000,3000000"))
             .split(",")]  # fmt: skip

    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "(not installed)"

    anchor = ANCHOR.format(marisa=installed("marisa-trie"), transformers=installed("transformers"))
    storage: dict[str, Any] = {}
    rows: list[Row] = []
    extra: dict[str, Any] = {"anchor": anchor, "zipf_exponent": ZIPF_EXPONENT, "vocab": VOCAB}
    notes: list[str] = [
        f"Anchors: {anchor}.",
        "",
        "Targets (issue 6): <= 100 bytes per stored sequence; <= 2 ms per mask step for 64 beams; "
        ">= 50x faster than the Hugging Face path. A logits processor must write a full "
        f"[{BEAMS}, {VOCAB}] output (one pass over {BEAMS * VOCAB * 4 / 2**20:.1f} MiB), which "
        "bounds its speed-up where the HF callback is cheap (deep nodes with few children); "
        "`Trie.allowed_mask(states)` is the mask construction alone.",
        "",
    ]
    for index, count in enumerate(sizes):
        keys = synthetic_keys(count, seed=count)
        results, built = storage_rows(count, keys)
        storage[str(count)] = results
        notes.append(f"**N = {count:,}** (distinct keys {len(built['kexue']):,}, trie nodes "
                     f"{built['kexue'].num_nodes:,}):")  # fmt: skip
        notes.append("")
        notes.append("| structure | build s | MiB | bytes per sequence |")
        notes.append("|---|---:|---:|---:|")
        for name, value in results.items():
            if value is None:
                notes.append(f"| {name} | not installed | | |")
                continue
            build = "" if value["seconds"] is None else f"{value['seconds']:.1f}"
            notes.append(f"| {name} | {build} | {value['bytes'] / 2**20:.1f} | "
                         f"{value['bytes_per_sequence']:.0f} |")  # fmt: skip
        notes.append("")
        if index == 0:  # latencies on the first (smallest) workload, as spec 04 §8
            lookups, allowed_sizes = lookup_rows(built, keys, settings)
            extra["mean_allowed_set_size_by_depth"] = allowed_sizes
            rows += lookups
            rows += mask_rows(built, keys, settings)
            generated, validity = generate_rows(built, keys, settings)
            rows += generated
            extra["generate_valid_keys"] = validity
            notes.append("Mean allowed-set size by depth (N = "
                         f"{count:,}): {allowed_sizes}; generate outputs that are stored keys: "
                         f"{validity}.")  # fmt: skip
            notes.append("")
        del built, keys
        gc.collect()
    extra["storage"] = storage
    json_path, md_path = write_results(NAME, rows, settings, extra, notes)
    print(md_path.read_text(), f"\nwritten: {json_path} {md_path}", sep="")
    return {"rows": [dataclasses.asdict(row) for row in rows], **extra}


if __name__ == "__main__":
    main()
