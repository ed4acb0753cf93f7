"""Numbers and claims for the book's text, computed from the run records.

A page that quotes a result computes it in a code cell and hands it to its text with
:func:`quote` (myst-nb's ``glue``): the Markdown reads ``{glue:text}`key``` (or, from another
page, ``{glue:text}`page.ipynb::key:s```: there the format is required, myst-nb otherwise
misreads the ``::``), so no number of ours is typed by hand. What the text
says in words (who is first, which difference is clear) is checked with :func:`claim`, which
stops the page, and with it the book's build, when a new record no longer supports it.
:func:`interval`, :func:`span` and :func:`enumeration` write numbers and lists the way the
book's text does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from fernb.results import RUN_NOTEBOOK_VARIABLE

__all__ = ["claim", "enumeration", "interval", "quote", "span"]


def quote(key: str, value: object) -> None:
    """Hand ``value`` to the page's text under ``key`` (``myst_nb.glue``), showing nothing in
    the notebook; a string is pasted without its quotes."""
    from myst_nb import glue  # the book's extra: only pages import this module's quote

    glue(key, value, display=False)


def claim(holds: bool, text: str) -> None:
    """Raise ``AssertionError`` naming ``text``, a statement of the page, when the records
    no longer support it (``holds`` is false). Inside a recorded run (``fernb run``, which
    sets :data:`~fernb.results.RUN_NOTEBOOK_VARIABLE`) it warns instead: the run's new
    records may outdate the text, and the book's build, not the run, stops on that."""
    if holds:
        return
    message = f"the text says {text!r}; the records no longer do: update the text"
    if os.environ.get(RUN_NOTEBOOK_VARIABLE):
        warnings.warn(message, stacklevel=2)
    else:
        raise AssertionError(message)


def interval(row: pd.Series, scale: float = 100.0, decimals: int = 1) -> str:
    """A row of :func:`fernb.metrics.paired_differences` as the text quotes it, the mean
    difference and its confidence interval times ``scale`` (points): ``"3.8 (1.3 to 6.4)"``;
    the difference alone where there is no interval (one pair)."""
    centre, low, high = (scale * float(row[k]) for k in ("difference", "ci_low", "ci_high"))
    if not np.isfinite(low):
        return f"{centre:.{decimals}f}"
    return f"{centre:.{decimals}f} ({low:.{decimals}f} to {high:.{decimals}f})"


def span(values: Iterable[float], decimals: int = 1) -> str:
    """The range of ``values``: ``"low to high"``, or the one value where all are equal at
    ``decimals``."""
    values = list(values)
    low, high = f"{min(values):.{decimals}f}", f"{max(values):.{decimals}f}"
    return low if low == high else f"{low} to {high}"


def enumeration(items: Iterable[object]) -> str:
    """Items as a sentence lists them: ``"a"``, ``"a and b"``, ``"a, b and c"``."""
    words = [str(item) for item in items]
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
