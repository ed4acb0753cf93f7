"""Command line of fernb: ``python -m fernb COMMAND``."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _book_check(args: argparse.Namespace) -> int:
    from fernb.book import missing_pages, toc_documents

    missing = missing_pages(args.root, args.build_dir)
    if missing:
        print(f"The book build is incomplete: {len(missing)} page(s) missing:", file=sys.stderr)
        for page in missing:
            print(f"  {page}", file=sys.stderr)
        return 1
    print(f"The book build is complete: {len(toc_documents(args.root)) + 1} pages present.")
    return 0


def _option(text: str) -> tuple[str, object]:
    """Parse ``key=value``; the value as a Python literal when it is one, else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _data_check(args: argparse.Namespace) -> int:
    from fernb.data import load

    data = load(args.name, args.root, **dict(args.option))
    print(
        f"{args.name}: {len(data)} images of {data.image_size[0]} x {data.image_size[1]}, "
        f"{len(set(data.subjects))} subjects"
    )
    if data.sequence is not None:
        print(f"sequences: {len(set(data.sequence))}")
    if data.aus is not None:
        print(f"action units: {', '.join(data.au_names)}")
    print(data.counts().to_string())
    return 0


def _env(args: argparse.Namespace) -> int:
    from fernb.utils import environment_summary

    print(json.dumps(environment_summary(), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fernb", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    book = commands.add_parser("book", help="checks on the built book")
    book_commands = book.add_subparsers(dest="book_command", required=True)
    check = book_commands.add_parser("check", help="fail if a page of _toc.yml has no HTML")
    check.add_argument("root", nargs="?", type=Path, default=Path("."), help="book root")
    check.add_argument("--build-dir", type=Path, default=None, help="default: ROOT/_build/html")
    check.set_defaults(handler=_book_check)

    data = commands.add_parser("data", help="datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    data_check = data_commands.add_parser("check", help="load a dataset, print counts")
    data_check.add_argument("name", help="dataset name, e.g. fer2013, ckplus48, synthetic")
    data_check.add_argument("root", nargs="?", default=None, help="dataset folder")
    data_check.add_argument(
        "-o",
        "--option",
        type=_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option, e.g. -o au_labels=/data/ckplus_au.csv (repeatable)",
    )
    data_check.set_defaults(handler=_data_check)

    env = commands.add_parser("env", help="print versions, device and commit as JSON")
    env.set_defaults(handler=_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = _parser().parse_args(argv)
    return args.handler(args)
