"""``python -m fernb run``: papermill runs of book notebooks, recorded under book/runs/.

The notebooks here are tiny and executed for real: papermill starts the "python3" kernel,
which jupyter_client runs with this process's interpreter (``sys.executable``), so the
tests also check that a run uses the project's environment.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

from fernb import utils
from fernb.cli import main
from fernb.results import RUN_NOTEBOOK_VARIABLE

ECHO = """\
import json
import sys
from pathlib import Path

Path(results_dir).mkdir(parents=True, exist_ok=True)
echo = {"seed": seed, "lr": lr, "name": name, "flag": flag, "overwrite": overwrite}
echo.update(python=sys.executable, cwd=str(Path.cwd()))
Path(results_dir, "echo.json").write_text(json.dumps(echo))
"""


@pytest.fixture(autouse=True)
def clean_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs start from a committed checkout, whatever state this one is in."""
    monkeypatch.setattr(utils, "git_commit", lambda: "0123abc")


def _notebook(path: Path, code: str = ECHO) -> Path:
    """A notebook with a parameters cell and one code cell."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    parameters = nbformat.v4.new_code_cell(
        'seed = 0\nlr = 0.1\nname = "synthetic"\nflag = False\n'
        "results_dir = None\noverwrite = False"
    )
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(code)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def _echo(book: Path) -> dict:
    return json.loads((book / "results" / "echo.json").read_text())


def test_run_executes_with_literal_parameters_and_records_the_notebook(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notebook = _notebook(tmp_path / "book" / "chapter" / "tiny.ipynb")
    argv = ["run", str(notebook), "-p", "seed", "3", "-p", "lr", "1e-4", "-p", "name", "fer2013"]
    assert main([*argv, "-p", "flag", "True"]) == 0

    output = tmp_path / "book/runs/chapter/tiny-flag-True_lr-0.0001_name-fer2013_seed-3.ipynb"
    assert capsys.readouterr().out.strip() == f"recorded {output}"
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]
    executed = nbformat.read(output, as_version=4)
    assert "injected-parameters" in executed.cells[1].metadata["tags"]
    echo = _echo(tmp_path / "book")
    assert echo.pop("python") in (sys.executable, str(Path(sys.executable).resolve()))
    assert echo == {
        "seed": 3,
        "lr": 1e-4,
        "name": "fer2013",
        "flag": True,
        "overwrite": False,
        "cwd": str(notebook.parent),
    }


def test_run_refuses_to_replace_a_recorded_run_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notebook = _notebook(tmp_path / "book" / "chapter" / "tiny.ipynb")
    recorded = tmp_path / "book" / "runs" / "chapter" / "tiny-baseline.ipynb"
    recorded.parent.mkdir(parents=True)
    recorded.write_text("an earlier run")
    results = tmp_path / "elsewhere"

    assert main(["run", str(notebook), "--tag", "baseline"]) == 1
    error = capsys.readouterr().err
    assert str(recorded) in error and "--force" in error
    assert recorded.read_text() == "an earlier run"

    command = ["run", str(notebook), "--tag", "baseline", "--results-dir", str(results)]
    assert main([*command, "--force"]) == 0
    injected = nbformat.read(recorded, as_version=4).metadata["papermill"]["parameters"]
    assert injected == {"results_dir": str(results), "overwrite": True}
    assert json.loads((results / "echo.json").read_text())["overwrite"] is True


def test_run_refuses_parameters_the_notebook_does_not_declare(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notebook = _notebook(tmp_path / "book" / "chapter" / "tiny.ipynb")
    assert main(["run", str(notebook), "-p", "epoch", "3"]) == 1
    assert "no parameter epoch" in capsys.readouterr().err
    assert not (tmp_path / "book" / "runs").exists()


def test_run_refuses_uncommitted_code_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = _notebook(tmp_path / "book" / "chapter" / "tiny.ipynb")
    monkeypatch.setattr(utils, "git_commit", lambda: "0123abc+dirty")
    assert main(["run", str(notebook), "--tag", "t"]) == 1
    error = capsys.readouterr().err
    assert "0123abc+dirty" in error and "--allow-dirty" in error
    assert not (tmp_path / "book" / "runs").exists()
    assert main(["run", str(notebook), "--tag", "t", "--allow-dirty"]) == 0
    assert (tmp_path / "book/runs/chapter/tiny-t.ipynb").is_file()
    monkeypatch.setattr(utils, "git_commit", lambda: None)  # not a git checkout: nothing to tell
    assert main(["run", str(notebook), "--tag", "u"]) == 0


def test_run_needs_an_existing_notebook_in_a_book(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    notebook = _notebook(tmp_path / "chapter" / "tiny.ipynb")
    assert main(["run", str(notebook)]) == 1
    assert "not in a book/ folder" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "book" / "missing.ipynb")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_failed_run_is_kept_aside(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    notebook = _notebook(tmp_path / "book" / "chapter" / "tiny.ipynb", code="1 / 0")
    assert main(["run", str(notebook)]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err
    runs = tmp_path / "book" / "runs" / "chapter"
    assert [p.name for p in runs.iterdir()] == ["tiny.failed.ipynb"]


RECORDING = """\
from fernb.results import RunRecord, write_record

record = RunRecord(
    paper="data", experiment="tiny", variant="v", dataset="synthetic", protocol="p",
    fold=None, seed=seed, epochs=1, selection="val", metrics={"accuracy": 0.5},
    device="cpu", wall_time_s=0.0,
)
write_record(record, root=results_dir)
"""


def test_records_of_a_run_name_its_executed_notebook(tmp_path: Path) -> None:
    notebook = _notebook(tmp_path / "book" / "chapter" / "tiny.ipynb", code=RECORDING)
    assert main(["run", str(notebook), "--tag", "t"]) == 0
    written = tmp_path / "book/results/data/tiny_v_synthetic_seed-0_val-selected.json"
    assert json.loads(written.read_text())["notebook"] == "book/runs/chapter/tiny-t.ipynb"
    assert (tmp_path / "book/runs/chapter/tiny-t.ipynb").is_file()
    assert RUN_NOTEBOOK_VARIABLE not in os.environ  # this process's environment is restored
