"""``kexue kbqa train | eval | ask`` — the model commands of the ``kbqa`` group (issue 7).

* ``train``: ``--data DIR`` (a KgCLUE-format directory: ``knowledge.tsv``, ``train.json``,
  ``dev.json``, as written by ``kexue kbqa build-kb``; default: its default output directory)
  or ``--synthetic`` (the CI-tier KB of spec
  05 §8.8, written to ``OUT/data``); progress bar; re-running the same command resumes a killed
  run from its last checkpoint.
* ``eval``: the official metric (spec 05 §1.3) on a split, plus the share of answered questions
  and the latency per question; ``--predictions FILE`` writes KgCLUE JSON lines.
* ``ask``: answers the questions given as arguments, or one question per line of stdin; prints
  one line per question: ``S（M） ||| P ||| O`` or ``no answer: <reason>``.

The model directory comes from ``--model`` or ``$KEXUE_KBQA_MODEL``; the KB from ``--kb`` or the
one recorded at training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["MODEL_COMMANDS", "MODEL_ENV", "add_model_commands", "run_model_command"]

MODEL_ENV = "KEXUE_KBQA_MODEL"
MODEL_COMMANDS = ("train", "eval", "ask")


def _decoding_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None, help=f"model directory (${MODEL_ENV})")
    parser.add_argument(
        "--kb", type=Path, default=None, help="knowledge file (S（M）\\tP\\tO lines)"
    )
    parser.add_argument("--beams", type=int, default=3, help="beam size (1 = greedy; default 3)")
    parser.add_argument(
        "--lookahead", choices=("none", "post", "code"), default="none",
        help="look-ahead rule of spec 04 §4 (default none)",
    )  # fmt: skip
    parser.add_argument(
        "--beam-mode", choices=("standard", "bert4keras"), default="standard",
        help="beam finishing rule (spec 04 §3.4)",
    )  # fmt: skip
    parser.add_argument(
        "--scoring", choices=("renormalized", "raw"), default="renormalized",
        help="beam scores (spec 04 §3.2)",
    )  # fmt: skip
    parser.add_argument(
        "--unconstrained", action="store_true",
        help="decode without the trie (ablation; non-keys give no answer)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64, help="questions per batch")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")


def add_model_commands(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train``, ``eval`` and ``ask`` under the ``kbqa`` group's subparsers."""
    train = actions.add_parser(
        "train",
        help="train the Seq2Seq KBQA model from scratch (resumable)",
        description="Train the UniLM-style Seq2Seq of spec 05 §8.5 on a KgCLUE-format dataset "
        "or the synthetic KB. Re-running the same command resumes from the last checkpoint.",
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--data", type=Path, default=None,
        help="dataset directory: knowledge.tsv, train.json, dev.json (default: the directory "
        "`kexue kbqa build-kb` writes, $KEXUE_CACHE/kbqa)",
    )  # fmt: skip
    source.add_argument("--synthetic", action="store_true", help="the synthetic KB of spec 05 §8.8")
    train.add_argument("--subjects", type=int, default=2000, help="synthetic subjects (2000)")
    train.add_argument("--out", type=Path, required=True, help="model directory")
    train.add_argument("--steps", type=int, default=None, help="training steps (default: epochs)")
    train.add_argument("--epochs", type=float, default=10.0, help="epochs when --steps is unset")
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument("--lr", type=float, default=5e-4)
    train.add_argument("--order", choices=("SPM", "SMP"), default="SPM", help="target order")
    train.add_argument("--d-model", type=int, default=128)
    train.add_argument("--layers", type=int, default=2)
    train.add_argument("--heads", type=int, default=4)
    train.add_argument("--ffn", type=int, default=512)
    train.add_argument("--dropout", type=float, default=0.1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=500)
    train.add_argument("--eval-every", type=int, default=0, help="dev accuracy every N steps")
    train.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    train.add_argument("--device", default="cpu", help="cpu | cuda | auto")

    evaluate = actions.add_parser(
        "eval",
        help="score a trained model on a split with the official KgCLUE metric",
        description="Answer every question of a split and report the KgCLUE metric (spec 05 "
        "§1.3), the share of answered questions and the latency per question.",
    )
    _decoding_options(evaluate)
    evaluate.add_argument("--data", type=Path, default=None, help="dataset directory")
    evaluate.add_argument("--split", default="dev", help="split file name without .json (dev)")
    evaluate.add_argument("--limit", type=int, default=None, help="first N questions only")
    evaluate.add_argument("--predictions", type=Path, default=None, help="write answers (JSONL)")
    evaluate.add_argument("--json", type=Path, default=None, help="write the metrics as JSON")

    ask = actions.add_parser(
        "ask",
        help="answer questions (arguments, or one per line on stdin)",
        description="Answer questions with a trained model: one output line per question, "
        "'S（M） ||| P ||| O' or 'no answer: <reason>'.",
    )
    _decoding_options(ask)
    ask.add_argument("questions", nargs="*", metavar="QUESTION", help="questions (default: stdin)")
    ask.add_argument("--verbose", action="store_true", help="also print the question and score")


def _model_dir(args: argparse.Namespace) -> Path:
    directory = args.model or (Path(os.environ[MODEL_ENV]) if os.environ.get(MODEL_ENV) else None)
    if directory is None:
        raise ValueError(
            f"no model: pass --model DIR or set ${MODEL_ENV}; train one with "
            "`kexue kbqa train --synthetic --out DIR`"
        )
    return Path(directory)


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def _answerer(args: argparse.Namespace) -> Any:
    from ._answer import KBQA
    from ._kgclue import read_knowledge

    triples = read_knowledge(args.kb) if args.kb is not None else None
    return KBQA.load(
        _model_dir(args),
        triples,
        device=args.device,
        num_beams=args.beams,
        lookahead=None if args.lookahead == "none" else args.lookahead,
        beam_mode=args.beam_mode,
        scoring=args.scoring,
        constrained=not args.unconstrained,
    )


def _train(args: argparse.Namespace) -> int:
    from ..utils import atomic_write_json, read_json
    from ._kgclue import read_kgclue, read_knowledge, write_kgclue, write_knowledge
    from ._model import KBQAModelConfig
    from ._train import META_FILE, KBQATrainingConfig, train_kbqa

    _set_threads(args.threads)
    out: Path = args.out
    if args.synthetic:
        from ._synthetic import synthetic_kb

        data = out / "data"
        triples, splits = synthetic_kb(args.seed, args.subjects)
        write_knowledge(
            data / "knowledge.tsv", triples, header=["kexue synthetic KB (spec 05 §8.8)"]
        )
        for name, rows in splits.items():
            write_kgclue(data / f"{name}.json", rows)
        knowledge: str = "data/knowledge.tsv"
        data_dir: str = "data"
    else:
        if args.data is None:
            from ._offline import default_dataset_dir

            args.data = default_dataset_dir()
        data = args.data
        if not (data / "knowledge.tsv").is_file() or not (data / "train.json").is_file():
            raise FileNotFoundError(
                f"{data} needs knowledge.tsv and train.json (KgCLUE format); build one with "
                "`kexue kbqa build-kb`, or use --synthetic"
            )
        knowledge = str((data / "knowledge.tsv").resolve())
        data_dir = str(data.resolve())
    triples = read_knowledge(data / "knowledge.tsv")
    train = [row for row in read_kgclue(data / "train.json") if row.answer is not None]
    dev_path = data / "dev.json"
    dev = (
        [row for row in read_kgclue(dev_path) if row.answer is not None]
        if dev_path.is_file()
        else []
    )
    config = KBQATrainingConfig(
        model=KBQAModelConfig(
            d_model=args.d_model, num_layers=args.layers, num_heads=args.heads,
            ffn_dim=args.ffn, dropout=args.dropout,
        ),
        order=args.order, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every,
        eval_every=args.eval_every,
    )  # fmt: skip
    result = train_kbqa(config, triples, train, dev, out, device=args.device)
    meta = read_json(out / META_FILE)
    meta.update({"knowledge": knowledge, "data_dir": data_dir})
    atomic_write_json(out / META_FILE, meta)
    last = result.history[-1] if result.history else {}
    print(
        f"trained {result.steps} steps in {result.seconds:.0f} s "
        f"({result.steps_per_second:.1f} steps/s, {result.tokens_per_second:.0f} tokens/s); "
        f"loss {last.get('loss', float('nan')):.4f}"
        + (f", dev accuracy {100 * last['dev_accuracy']:.1f}%" if "dev_accuracy" in last else "")
    )
    print(f"model: {out}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ..utils import atomic_open, atomic_write_json, read_json
    from ._kgclue import format_answer, read_kgclue
    from ._metric import evaluate
    from ._train import META_FILE

    _set_threads(args.threads)
    directory = _model_dir(args)
    qa = _answerer(args)
    data = args.data
    if data is None:
        meta_path = directory / META_FILE
        recorded = read_json(meta_path).get("data_dir") if meta_path.is_file() else None
        if not recorded:
            raise ValueError("no dataset recorded with the model: pass --data DIR")
        data = Path(recorded) if Path(recorded).is_absolute() else directory / recorded
    rows = [row for row in read_kgclue(data / f"{args.split}.json") if row.answer is not None]
    if args.limit is not None:
        rows = rows[: args.limit]
    if not rows:
        raise ValueError(f"{data / (args.split + '.json')} has no labelled questions")
    started = time.perf_counter()
    answers = qa.answer([row.question for row in rows], batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    golds = [row.answer for row in rows if row.answer is not None]
    metrics = evaluate([a.triple for a in answers], golds)
    metrics["answered"] = 100.0 * sum(a.answered for a in answers) / len(answers)
    metrics["ms_per_question"] = 1000.0 * seconds / len(answers)
    print(
        f"{args.split}: n={metrics['n']}  score {metrics['score']:.2f}  "
        f"O EM {metrics['O']['EM']:.2f} F1 {metrics['O']['F1']:.2f}  "
        f"S EM {metrics['S']['EM']:.2f}  P EM {metrics['P']['EM']:.2f}  "
        f"All EM {metrics['All']['EM']:.2f}  answered {metrics['answered']:.1f}%  "
        f"{metrics['ms_per_question']:.1f} ms/question"
    )
    if args.predictions is not None:
        with atomic_open(args.predictions, "w") as handle:
            for row, answer in zip(rows, answers, strict=True):
                record: dict[str, object] = {"id": row.id, "question": row.question}
                if answer.triple is not None:
                    record["answer"] = format_answer(answer.triple)
                else:
                    record["answer"] = " ||| ".join(("", "", ""))
                    record["reason"] = answer.reason
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    if args.json is not None:
        atomic_write_json(args.json, metrics)
    return 0


def _ask(args: argparse.Namespace) -> int:
    _set_threads(args.threads)
    questions = list(args.questions) or [line.rstrip("\r\n") for line in sys.stdin]
    if not questions:
        raise ValueError("no question: pass questions as arguments or one per line on stdin")
    qa = _answerer(args)
    for answer in qa.answer(questions, batch_size=args.batch_size):
        if args.verbose:
            print(f"{answer.question}\t{answer.score:.4f}\t{answer.format()}")
        else:
            print(answer.format())
    return 0


def run_model_command(args: argparse.Namespace) -> int:
    """Run ``kexue kbqa train|eval|ask`` (``args.kbqa_command``)."""
    command = args.kbqa_command
    if command == "train":
        return _train(args)
    if command == "eval":
        return _eval(args)
    if command == "ask":
        return _ask(args)
    raise ValueError(f"unknown kbqa command {command!r}")
