"""Numbers and claims for the book's text: formats by hand, glue read back from a kernel."""

from __future__ import annotations

import nbformat
import numpy as np
import pandas as pd
import pytest
from nbclient import NotebookClient

from fernb.prose import (
    claim,
    count_in_words,
    enumeration,
    interval,
    mean_std,
    number,
    ranking,
    seeds,
    span,
)
from fernb.results import RUN_NOTEBOOK_VARIABLE


def test_interval_is_points_with_the_confidence_interval() -> None:
    row = pd.Series({"difference": 0.03838, "ci_low": 0.01263, "ci_high": 0.06412})
    assert interval(row) == "3.8 (1.3 to 6.4)"
    assert interval(row, scale=1.0, decimals=3) == "0.038 (0.013 to 0.064)"
    one_pair = pd.Series({"difference": -0.025, "ci_low": np.nan, "ci_high": np.nan})
    assert interval(one_pair) == "-2.5"
    assert interval(row, signed=True) == "+3.8 (1.3 to 6.4)"
    assert interval(one_pair, signed=True) == "-2.5"


def test_a_bound_that_rounds_to_zero_has_no_sign() -> None:
    row = pd.Series({"difference": 0.0213, "ci_low": -0.0004, "ci_high": 0.0418})
    assert interval(row) == "2.1 (0.0 to 4.2)"
    assert number(-0.0004, decimals=2) == "0.00"
    assert number(0.0001, signed=True) == "0.0"
    assert number(1.25, decimals=1, signed=True) == "+1.2"  # round half to even, as format does
    assert number(-3.96) == "-4.0"


def test_mean_std_drops_an_undefined_deviation() -> None:
    assert mean_std(83.66, 6.04) == "83.7 ± 6.0"
    assert mean_std(0.5, 0.0123, decimals=3) == "0.500 ± 0.012"
    assert mean_std(48.9, np.nan) == "48.9"


def test_ranking_orders_highest_first_and_leaves_out_missing() -> None:
    scores = pd.Series({"VGG16": 80.14, "Capsnet": 83.21, "RCCnet": np.nan, "AVGGnet": 79.0})
    assert ranking(scores) == "Capsnet (83.2) > VGG16 (80.1) > AVGGnet (79.0)"
    assert ranking(scores, decimals=0) == "Capsnet (83) > VGG16 (80) > AVGGnet (79)"


def test_seeds_and_counts_in_words() -> None:
    assert seeds([0]) == "seed 0"
    assert seeds({2, 0, 1}) == "seeds 0, 1 and 2"
    assert count_in_words(0) == "no"
    assert count_in_words(8) == "eight"
    assert count_in_words(10) == "ten"
    assert count_in_words(11) == "11"


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
