"""Reading back what an executed notebook printed and displayed."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from fernb.executed import displayed_rows, displayed_table, printed


def _executed(path: Path, frame: pd.DataFrame) -> Path:
    """A notebook as papermill leaves it: one cell printed, one displayed ``frame``."""
    notebook = nbformat.v4.new_notebook()
    counts = nbformat.v4.new_code_cell("print(counts)")
    counts.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="dlib: 981 images, 3 "),
        nbformat.v4.new_output("stream", name="stdout", text="without a face\n"),
    ]
    shown = nbformat.v4.new_code_cell("rows, records = train()\nrows")
    shown.outputs = [
        nbformat.v4.new_output(
            "execute_result",
            data={"text/plain": str(frame), "text/html": frame._repr_html_()},
            execution_count=2,
        )
    ]
    notebook.cells = [nbformat.v4.new_markdown_cell("# A run"), counts, shown]
    nbformat.write(notebook, path)
    return path


def test_a_displayed_dataframe_reads_back_as_it_was(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"fold": [0.0, 1.0, None], "test accuracy": [0.8125, 0.75, 0.5], "kept": ["12", "4", "9"]},
        index=pd.Index(["full", "no_lbp", "official"], name="variant"),
    )
    path = _executed(tmp_path / "run.ipynb", frame)
    table = displayed_table(path, "rows, records")
    expected = frame.assign(kept=frame["kept"].astype(float))
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert np.isnan(table.loc["official", "fold"])


def test_printed_joins_the_streams_of_one_cell(tmp_path: Path) -> None:
    path = _executed(tmp_path / "run.ipynb", pd.DataFrame({"a": [1]}))
    assert printed(path, "print(counts)") == "dlib: 981 images, 3 without a face\n"


def test_a_missing_cell_or_table_names_the_notebook(tmp_path: Path) -> None:
    path = _executed(tmp_path / "run.ipynb", pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match=r"run\.ipynb: expected one code cell starting with 'x'"):
        printed(path, "x")
    with pytest.raises(ValueError, match=r"run\.ipynb: the cell starting with 'print' displayed"):
        displayed_table(path, "print")


def test_a_table_with_two_column_levels_reads_back_row_by_row(tmp_path: Path) -> None:
    columns = pd.MultiIndex.from_product([["f1", "auc"], ["ours", "cnn"]])
    frame = pd.DataFrame([[44.8, 56.9, 53.2, 92.5]], index=["AU1"], columns=columns)
    rows = displayed_rows(_executed(tmp_path / "run.ipynb", frame), "rows, records")
    assert rows[-1] == ["AU1", "44.8", "56.9", "53.2", "92.5"]
    assert ["ours", "cnn", "ours", "cnn"] == rows[1][-4:]
