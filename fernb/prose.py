"""Numbers and claims for the book's text, computed from the run records.

A page that quotes a result computes it in a code cell and hands it to its text with
:func:`quote` (myst-nb's ``glue``): the Markdown reads ``{glue:text}`key``` (or, from another
page, ``{glue:text}`page.ipynb::key:s```: there the format is required, myst-nb otherwise
misreads the ``::``), so no number of ours is typed by hand. What the text
says in words (who is first, which difference is clear) is checked with :func:`claim`, which
stops the page, and with it the book's build, when a new record no longer supports it.
:func:`number`, :func:`interval`, :func:`mean_std`, :func:`span`, :func:`ranking`,
:func:`seeds`, :func:`count_in_words` and :func:`enumeration` write numbers and lists the way
the book's text does.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from fernb.results import RUN_NOTEBOOK_VARIABLE

__all__ = [
    "claim",
    "count_in_words",
    "enumeration",
    "interval",
    "mean_std",
    "number",
    "quote",
    "ranking",
    "seeds",
    "span",
]

#: Counts the text writes as words (:func:`count_in_words`).
SMALL_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


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


def number(value: float, decimals: int = 1, signed: bool = False) -> str:
    """``value`` at ``decimals``, with ``+`` before a positive one where ``signed``; a value
    that rounds to zero is written ``0.0``, never ``-0.0`` (nor ``+0.0``)."""
    text = f"{value:{'+' if signed else ''}.{decimals}f}"
    return f"{0:.{decimals}f}" if float(text) == 0 else text


def interval(row: pd.Series, scale: float = 100.0, decimals: int = 1, signed: bool = False) -> str:
    """A row of :func:`fernb.metrics.paired_differences` as the text quotes it, the mean
    difference and its confidence interval times ``scale`` (points): ``"3.8 (1.3 to 6.4)"``
    (``"+3.8 (1.3 to 6.4)"`` where ``signed``); the difference alone where there is no
    interval (one pair). Numbers are written by :func:`number`."""
    centre, low, high = (scale * float(row[k]) for k in ("difference", "ci_low", "ci_high"))
    written = number(centre, decimals, signed)
    if not np.isfinite(low):
        return written
    return f"{written} ({number(low, decimals)} to {number(high, decimals)})"


def mean_std(mean: float, std: float, decimals: int = 1) -> str:
    """``"mean ± std"``, or the mean alone where the standard deviation is undefined (one
    run)."""
    return f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if np.isfinite(std) else "")


def span(values: Iterable[float], decimals: int = 1) -> str:
    """The range of ``values``: ``"low to high"``, or the one value where all are equal at
    ``decimals``."""
    values = list(values)
    low, high = f"{min(values):.{decimals}f}", f"{max(values):.{decimals}f}"
    return low if low == high else f"{low} to {high}"


def ranking(scores: pd.Series, decimals: int = 1) -> str:
    """``scores`` highest first with their values, as the text orders methods:
    ``"Capsnet (83.2) > VGG16 (80.1)"``; missing scores are left out."""
    ranked = scores.dropna().sort_values(ascending=False)
    return " > ".join(f"{name} ({value:.{decimals}f})" for name, value in ranked.items())


def seeds(numbers: Iterable[int]) -> str:
    """Seeds as the text names them: ``"seed 0"``, ``"seeds 0 and 1"``, ``"seeds 0, 1 and 2"``."""
    numbers = sorted(numbers)
    return f"seed{'s' * (len(numbers) > 1)} {enumeration(numbers)}"


def count_in_words(count: int) -> str:
    """A count as the text writes it: words up to ten (``"no"``, ``"one"``, ...), digits
    above."""
    return SMALL_COUNTS[count] if 0 <= count < len(SMALL_COUNTS) else str(count)


def enumeration(items: Iterable[object]) -> str:
    """Items as a sentence lists them: ``"a"``, ``"a and b"``, ``"a, b and c"``."""
    words = [str(item) for item in items]
    if len(words) < 2:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
