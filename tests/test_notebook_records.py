"""The record-writing cells of the chapter notebooks, run as ``fernb run`` runs them.

``pytest --nbval`` executes each notebook as committed, with ``results_dir = None``, so the
cells that write run records are skipped there; a mistake in one would surface only at the
end of a long recorded run. Here every notebook that writes records is executed with
papermill on its default (synthetic) parameters and ``results_dir`` pointing at a temporary
folder, and the records it leaves must be readable and say which synthetic data they came
from (``data_options``: the generator's configuration, as the notebook drew it) and the
machine they were made on (``machine``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
import torch
from scipy import stats

from fernb.data.synthetic import GENERATOR_VERSION
from fernb.results import read_records

BOOK = Path(__file__).resolve().parents[1] / "book"
# Notebooks that declare results_dir only to read records others wrote.
READERS = {"au_capsules/results.ipynb"}


def _spearman_with_p_and_n(records: pd.DataFrame) -> None:
    """AU detection records Spearman's rho of each AU with its two-sided p and its n: the p
    of a rho over n images is the t test scipy.stats.spearmanr makes."""
    (capsules,) = [run for _, run in records.iterrows() if run["variant"].startswith("ours")]
    for key in ("spearman", "spearman_present"):
        rho, p, n = (
            capsules.filter(like=f"metrics.{key}{part}.").dropna().astype(float)
            for part in ("", "_p", "_n")
        )
        rho, p, n = (s.rename(lambda column: column.split(".")[-1]) for s in (rho, p, n))
        assert len(rho) > 0 and list(rho.index) == list(p.index) == list(n.index)
        t = rho * np.sqrt((n - 2) / ((1 - rho) * (1 + rho)))
        np.testing.assert_allclose(p, 2 * stats.t.sf(np.abs(t), n - 2), rtol=1e-6)


#: What some writers' records must hold beyond the common fields.
RECORD_CHECKS = {"au_capsules/au_detection.ipynb": _spearman_with_p_and_n}


WRITERS = sorted(
    str(path.relative_to(BOOK))
    for path in BOOK.glob("*/*.ipynb")
    if path.parent.name != "runs" and "results_dir" in papermill.inspect_notebook(str(path))
    if str(path.relative_to(BOOK)) not in READERS
)


def test_the_writers_are_found() -> None:
    """Guards the discovery: an empty list would make the test below vacuous."""
    assert {"data/difficulty.ipynb", "e2capsnet/ablation.ipynb", "results/protocol.ipynb"} <= set(
        WRITERS
    )
    assert len(WRITERS) >= 15


@pytest.mark.parametrize("notebook", WRITERS)
def test_a_recorded_default_run_writes_records_that_name_their_data_and_machine(
    notebook: str, tmp_path: Path
) -> None:
    source = BOOK / notebook
    results = tmp_path / "results"
    papermill.execute_notebook(
        source,
        tmp_path / source.name,
        parameters={"results_dir": str(results)},
        cwd=source.parent,
        kernel_name="python3",
        progress_bar=False,
    )
    records = read_records(results)
    assert len(records) > 0, f"{notebook} wrote no record"
    synthetic = records[records["dataset"] == "synthetic"]
    assert len(synthetic) == len(records), "the default run is on SynthFACS"
    assert (synthetic["data_options.generator_version"] == GENERATOR_VERSION).all()
    assert synthetic["data_options.n_subjects"].notna().all()
    assert (records["machine.torch"] == torch.__version__).all()
    on_cpu = records["device"].str.startswith("cpu")
    assert (records.loc[on_cpu, "machine.cpu_threads"] == 1).all(), "CPU runs pin one thread"
    RECORD_CHECKS.get(notebook, lambda _: None)(records)
