"""Command line of fernb: ``python -m fernb COMMAND``."""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

__all__ = ["main"]

_RUN_HELP = """\
Execute NOTEBOOK with papermill in its own folder (as the book build does) and keep the
executed copy as book/runs/<chapter>/<stem>[-<tag>].ipynb, where <chapter> is the
notebook's folder under book/ and <tag> is --tag or built from the parameters
(-p dataset fer2013 -p seed 0 gives dataset-fer2013_seed-0). A run recorded already is
refused unless --force. The notebook is executed into <name>.partial.ipynb first and moved
into place when it succeeds; a failed run is kept as <name>.failed.ipynb.

Parameters must be declared in the notebook's parameters cell; values are parsed as Python
literals when they are one (3, 1e-4, True, [1, 2]), else kept as text. Two parameters are
filled in when the notebook declares them and -p does not set them: results_dir (the
absolute path of --results-dir, default book/results) and overwrite (--force). A notebook
writes its run records with fernb.results.write_record(record, root=results_dir,
overwrite=overwrite), and writes none when results_dir is None, its default in the book
build. Each record names the executed notebook it came from (its notebook field).

Each record also names the commit of the code it ran, so a run is refused while tracked
files of the fernb checkout have uncommitted changes (the record would say <commit>+dirty,
code that no commit holds): commit first, or pass --allow-dirty to record such a run anyway.
What runs leave (executed notebooks under book/runs, records and figures under
book/results) does not count, so one checkout can record run after run before committing
them. Do not change other tracked files until the notebook has imported fernb (its first
code cells).
"""


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


def _literal(text: str) -> object:
    """``text`` as a Python literal when it is one (``3``, ``1e-4``, ``True``), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _option(text: str) -> tuple[str, object]:
    """Parse ``key=value``; the value as a Python literal when it is one, else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, _literal(value)


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


def _book_folder(notebook: Path) -> Path:
    for folder in notebook.parents:
        if folder.name == "book":
            return folder
    raise ValueError(f"{notebook} is not in a book/ folder")


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(value)).strip("-")


def _run(args: argparse.Namespace) -> int:
    """Execute a book notebook with papermill; keep the executed copy under book/runs/."""
    import papermill

    from fernb.results import RUN_NOTEBOOK_VARIABLE
    from fernb.utils import git_commit

    notebook = args.notebook.resolve()
    if not notebook.is_file():
        print(f"{notebook} does not exist", file=sys.stderr)
        return 1
    try:
        book = _book_folder(notebook)
    except ValueError as error:
        print(f"{error}: run records are kept per chapter of a book", file=sys.stderr)
        return 1
    parameters = {name: _literal(value) for name, value in args.parameter}
    declared = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        print(
            f"{notebook.name} has no parameter {', '.join(unknown)}; its parameters cell "
            f"declares: {', '.join(declared) or 'nothing'}",
            file=sys.stderr,
        )
        return 1
    commit = git_commit()
    if commit is not None and commit.endswith("+dirty") and not args.allow_dirty:
        print(
            "the fernb checkout has uncommitted changes to tracked code (git status): its "
            f"records would name the code {commit}, which no commit holds. Commit them first, "
            "or pass --allow-dirty to record the run anyway.",
            file=sys.stderr,
        )
        return 1
    tag = args.tag or "_".join(f"{k}-{_slug(v)}" for k, v in sorted(parameters.items()))
    if tag and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", tag):
        print(f"--tag must be letters, digits and _ . + -, got {tag!r}", file=sys.stderr)
        return 1
    chapter_runs = book / "runs" / notebook.parent.relative_to(book)
    output = chapter_runs / f"{notebook.stem}{'-' + tag if tag else ''}.ipynb"
    if output.exists() and not args.force:
        print(
            f"{output} exists: this run is recorded already. Pass --force to replace it, "
            "or --tag to record another run.",
            file=sys.stderr,
        )
        return 1
    results_dir = (args.results_dir or book / "results").resolve()
    for name, value in {"results_dir": str(results_dir), "overwrite": args.force}.items():
        if name in declared and name not in parameters:
            parameters[name] = value
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial.ipynb")
    # The kernel inherits the environment: its records name the executed notebook.
    run_notebook = {RUN_NOTEBOOK_VARIABLE: output.relative_to(book.parent).as_posix()}
    try:
        with mock.patch.dict(os.environ, run_notebook):
            papermill.execute_notebook(
                notebook, partial, parameters=parameters, cwd=notebook.parent, progress_bar=False
            )
    except papermill.PapermillExecutionError as error:
        failed = output.with_suffix(".failed.ipynb")
        os.replace(partial, failed)
        print(
            f"{notebook.name} failed in cell [{error.exec_count}]: {error.ename}: "
            f"{error.evalue}\nThe executed notebook is at {failed}",
            file=sys.stderr,
        )
        return 1
    os.replace(partial, output)
    print(f"recorded {output}")
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

    run = commands.add_parser(
        "run",
        help="execute a book notebook with papermill, keep it under book/runs/",
        description=_RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("notebook", type=Path, help="a notebook under book/, e.g. book/data/x.ipynb")
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter, e.g. -p epochs 300 (repeatable; VALUE a Python literal or text)",
    )
    run.add_argument("--tag", help="name suffix of the executed notebook (default: from -p)")
    run.add_argument("--force", action="store_true", help="replace a run recorded already")
    run.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run although tracked files have uncommitted changes (records say +dirty)",
    )
    run.add_argument(
        "--results-dir", type=Path, default=None, help="for the records (default: book/results)"
    )
    run.set_defaults(handler=_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = _parser().parse_args(argv)
    return args.handler(args)
