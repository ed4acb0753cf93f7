"""Checks on the built book.

Jupyter Book can exit 0 having built nothing (a config it does not understand, a page it
skipped), so ``make book`` runs :func:`missing_pages` after the build and fails when any
page listed in ``_toc.yml`` has no HTML file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["missing_pages", "toc_documents"]


def _documents(entry: Any) -> Iterator[str]:
    """Yield the ``file`` entries of a ``_toc.yml`` subtree, depth first, in reading order."""
    if isinstance(entry, list):
        for item in entry:
            yield from _documents(item)
    elif isinstance(entry, dict):
        if "glob" in entry:
            raise ValueError(f"_toc.yml: glob entries are not supported (found {entry['glob']!r})")
        if "file" in entry:
            yield str(entry["file"])
        for key in ("parts", "chapters", "sections"):
            yield from _documents(entry.get(key, []))


def toc_documents(root: Path | str) -> list[str]:
    """Return the documents of the book at ``root`` in reading order, root page first.

    Paths are relative to ``root`` and carry no suffix, as ``_toc.yml`` writes them.
    """
    toc_path = Path(root) / "_toc.yml"
    if not toc_path.is_file():
        raise FileNotFoundError(f"{toc_path}: no table of contents (expected a jb-book _toc.yml)")
    toc = yaml.safe_load(toc_path.read_text())
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path}: expected a mapping with a 'root' entry (format: jb-book)")
    docs = [
        str(toc["root"]),
        *_documents(toc.get("parts", [])),
        *_documents(toc.get("chapters", [])),
    ]
    return [doc.removesuffix(".md").removesuffix(".ipynb") for doc in docs]


def missing_pages(root: Path | str, build_dir: Path | str | None = None) -> list[Path]:
    """Return the HTML pages that a build of the book at ``root`` should have made but did not.

    ``build_dir`` defaults to ``root/_build/html``; ``index.html`` (the redirect to the root
    page) is expected as well as one ``<document>.html`` per table-of-contents entry.
    """
    html = Path(build_dir) if build_dir is not None else Path(root) / "_build" / "html"
    expected = [html / "index.html"] + [html / f"{doc}.html" for doc in toc_documents(root)]
    return [page for page in expected if not page.is_file()]
