"""What an executed notebook showed: the numbers a run record does not keep.

A run record (:mod:`fernb.results`) holds a run's metrics; its executed notebook under
``book/runs/`` also holds what the run printed and displayed (the epoch it kept, counts of
faces without landmarks, statistics of a figure). A page that quotes such a number reads it
back from the notebook the record names: :func:`printed` gives a cell's printed text and
:func:`displayed_table` the first table it displayed (:func:`displayed_rows` its raw rows),
each found by the start of the cell's code. A notebook whose cell is missing, or shows no
such output, is an error naming it.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd

__all__ = ["cell_outputs", "displayed_rows", "displayed_table", "printed"]


def cell_outputs(notebook: Path | str, code: str) -> list[dict]:
    """The outputs of the one code cell of ``notebook`` whose source starts with ``code``."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    found = [
        cell
        for cell in cells
        if cell["cell_type"] == "code" and "".join(cell["source"]).startswith(code)
    ]
    if len(found) != 1:
        raise ValueError(
            f"{notebook}: expected one code cell starting with {code!r}, found {len(found)}"
        )
    return found[0].get("outputs", [])


def printed(notebook: Path | str, code: str) -> str:
    """What the cell starting with ``code`` printed (its stream outputs, joined)."""
    return "".join(
        "".join(output["text"])
        for output in cell_outputs(notebook, code)
        if output["output_type"] == "stream"
    )


class _TableCells(HTMLParser):
    """The cells of the first HTML table fed, row by row, as text."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: str | None = None
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self.tables += 1
        elif self.tables == 1 and tag == "tr":
            self.rows.append([])
        elif self.tables == 1 and tag in ("th", "td"):
            self.cell = ""

    def handle_endtag(self, tag: str) -> None:
        if self.cell is not None and tag in ("th", "td"):
            self.rows[-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell += data


def _value(cell: str) -> float | str:
    """A cell as a number where it reads as one (``"None"`` and ``"NaN"`` as NaN)."""
    try:
        return float(cell)
    except ValueError:
        return float("nan") if cell == "None" else cell


def displayed_rows(notebook: Path | str, code: str) -> list[list[str]]:
    """The rows of the first table that the cell starting with ``code`` displayed, each a
    list of its cells' text, header rows included (a table whose header spans several rows,
    such as a DataFrame with two column levels, is read this way)."""
    html = next(
        (
            "".join(output["data"]["text/html"])
            for output in cell_outputs(notebook, code)
            if "text/html" in output.get("data", {})
            and "<table" in "".join(output["data"]["text/html"])
        ),
        None,
    )
    if html is None:
        raise ValueError(f"{notebook}: the cell starting with {code!r} displayed no table")
    parser = _TableCells()
    parser.feed(html)
    return parser.rows


def displayed_table(notebook: Path | str, code: str) -> pd.DataFrame:
    """The first table that the cell starting with ``code`` displayed (a DataFrame as the
    notebook showed it: its HTML), numbers as floats, indexed by its first column (named as
    shown; ``"index"`` where the table's index has no name)."""
    header, *rows = displayed_rows(notebook, code)
    index = "index"
    if rows and not any(rows[0][1:]):  # a named index: its name alone on a second header row
        index = rows.pop(0)[0]
    table = pd.DataFrame([[_value(c) for c in row] for row in rows], columns=[index, *header[1:]])
    return table.set_index(index)
