"""Command line of fernb: ``python -m fernb COMMAND``."""

from __future__ import annotations

import argparse
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

    env = commands.add_parser("env", help="print versions, device and commit as JSON")
    env.set_defaults(handler=_env)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = _parser().parse_args(argv)
    return args.handler(args)
