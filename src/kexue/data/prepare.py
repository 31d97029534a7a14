"""Data preparation: convert every available source into the checksummed cache (spec 11 §1).

Usage: ``python -m kexue.data.prepare [--all | NAME ...] [--force]`` (also ``kexue data prepare``).
Installs nothing: it reports what is missing and how to install it.
"""

from __future__ import annotations

import argparse
import sys

from ._errors import DatasetUnavailableError
from ._images import _SOURCE_FINDERS, DATASETS, build_cache, normalize_dataset_name

__all__ = ["main", "prepare"]


def prepare(names: list[str] | None = None, *, force: bool = False) -> dict[str, str]:
    """Build caches for ``names`` (default all cacheable); return ``{name: path or error}``."""
    selected = (
        sorted(_SOURCE_FINDERS) if names is None else [normalize_dataset_name(n) for n in names]
    )
    results: dict[str, str] = {}
    for name in selected:
        if name not in _SOURCE_FINDERS:
            results[name] = "loaded directly, nothing to prepare"
            continue
        try:
            results[name] = str(build_cache(name, force=force))
        except DatasetUnavailableError as error:
            results[name] = f"unavailable: {error}"
    return results


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog="python -m kexue.data.prepare",
        description="Convert offline dataset sources into kexue's checksummed .npz cache.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="prepare every dataset (the default)")
    group.add_argument(
        "names",
        nargs="*",
        default=[],
        metavar="NAME",
        help=f"datasets: {', '.join(sorted(DATASETS))}",
    )
    parser.add_argument("--force", action="store_true", help="rebuild caches that already exist")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a dataset is unavailable"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        results = prepare(None if args.all or not args.names else args.names, force=args.force)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    unavailable = 0
    for name, result in results.items():
        print(f"{name:<14} {result}")
        unavailable += result.startswith("unavailable")
    return 1 if (unavailable and args.strict) else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
