"""Numbers and claims for the book's text: formats by hand, glue read back from a kernel."""

from __future__ import annotations

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from fernb.prose import claim, enumeration, interval, span
from fernb.results import RUN_NOTEBOOK_VARIABLE


def test_interval_is_points_with_the_confidence_interval() -> None:
    row = pd.Series({"difference": 0.03838, "ci_low": 0.01263, "ci_high": 0.06412})
    assert interval(row) == "3.8 (1.3 to 6.4)"
    assert interval(row, scale=1.0, decimals=3) == "0.038 (0.013 to 0.064)"
    one_pair = pd.Series({"difference": -0.025, "ci_low": np.nan, "ci_high": np.nan})
    assert interval(one_pair) == "-2.5"


def test_span_is_low_to_high_or_one_value() -> None:
    assert span([2.83, 0.64, 1.2]) == "0.6 to 2.8"
    assert span(pd.Series([79.4, 90.8]), decimals=0) == "79 to 91"
    assert span([3.01, 2.96]) == "3.0"


def test_claim_passes_silently_and_names_the_statement_it_stops(monkeypatch) -> None:
    monkeypatch.delenv(RUN_NOTEBOOK_VARIABLE, raising=False)
    claim(True, "E2-Capsnet is first")
    with pytest.raises(AssertionError, match="the text says 'E2-Capsnet is first'"):
        claim(False, "E2-Capsnet is first")


def test_claim_only_warns_inside_a_recorded_run(monkeypatch) -> None:
    monkeypatch.setenv(RUN_NOTEBOOK_VARIABLE, "book/runs/x/training-ckplus48.ipynb")
    with pytest.warns(UserWarning, match="the text says 'one run is recorded'"):
        claim(False, "one run is recorded")


def test_quote_glues_a_value_that_myst_nb_reads_and_shows_nothing() -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("from fernb.prose import quote\nquote('lead', '3.8')")]
    )
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    (output,) = notebook.cells[0].outputs
    assert output["metadata"]["scrapbook"]["name"] == "lead"
    assert output["data"] == {"application/papermill.record/text/plain": "'3.8'"}


def test_enumeration_joins_with_commas_and_a_final_and() -> None:
    assert enumeration([]) == ""
    assert enumeration(["seed 0"]) == "seed 0"
    assert enumeration([0, 1]) == "0 and 1"
    assert enumeration(iter(["a", "b", "c"])) == "a, b and c"
