"""The book's structure, its notebooks' conventions, and the build check."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml

from fernb.book import missing_pages, toc_documents
from fernb.cli import main
from fernb.results import read_records

CHAPTER_FOLDERS = ["e2capsnet", "au_capsules", "lbp_attention", "capsule_lstm", "feature_attention"]


def _source_notebooks(repo_root: Path) -> list[Path]:
    book = repo_root / "book"
    return sorted(p for p in book.rglob("*.ipynb") if "runs" not in p.relative_to(book).parts)


def notebook_kernel(path: Path) -> str:
    return json.loads(path.read_text())["metadata"]["kernelspec"]["name"]


def test_every_toc_entry_has_a_source_file(repo_root: Path) -> None:
    docs = toc_documents(repo_root)
    missing = [
        doc
        for doc in docs
        if not any((repo_root / f"{doc}{ext}").is_file() for ext in (".md", ".ipynb"))
    ]
    assert not missing


def test_every_page_of_the_book_is_in_the_toc(repo_root: Path) -> None:
    """A page left out of _toc.yml is silently not built (only_build_toc_files)."""
    pages = [p for p in _source_notebooks(repo_root)] + sorted((repo_root / "book").rglob("*.md"))
    listed = set(toc_documents(repo_root))
    unlisted = [
        p for p in pages if p.relative_to(repo_root).with_suffix("").as_posix() not in listed
    ]
    assert not unlisted


def test_every_run_record_names_its_executed_notebook(repo_root: Path) -> None:
    """Every number in the book comes from a run kept under book/runs/ (RunRecord.notebook)."""
    records = read_records(repo_root / "book" / "results")
    assert not records.empty
    missing = records[records["notebook"].isna()]["path"].tolist()
    assert not missing, f"records that name no executed notebook: {missing}"
    gone = [n for n in set(records["notebook"]) if not (repo_root / n).is_file()]
    assert not gone, f"records name executed notebooks that are not there: {gone}"
    assert all(n.startswith("book/runs/") for n in records["notebook"])


def test_toc_has_the_planned_parts_in_order(repo_root: Path) -> None:
    toc = yaml.safe_load((repo_root / "_toc.yml").read_text())
    captions = [part["caption"] for part in toc["parts"]]
    assert captions[:2] == ["Introduction", "Data"]
    assert captions[-1] == "Results"
    assert len(captions) == 2 + len(CHAPTER_FOLDERS) + 1
    folders = [Path(doc).parts[1] for doc in toc_documents(repo_root) if len(Path(doc).parts) > 2]
    for folder in CHAPTER_FOLDERS:
        assert folder in folders, f"no page of book/{folder}/ in _toc.yml"


def test_config_executes_and_excludes_recorded_runs(repo_root: Path) -> None:
    config = yaml.safe_load((repo_root / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "cache"
    assert config["execute"]["timeout"] > 0
    assert "book/runs/**" in config["execute"]["exclude_patterns"]
    assert "book/runs/**" in config["exclude_patterns"]
    assert config["bibtex_bibfiles"] == ["references.bib"]
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True


def test_intro_cites_only_keys_of_the_bibliography(repo_root: Path) -> None:
    bib_keys = set(re.findall(r"^@\w+\{([^,]+),", (repo_root / "references.bib").read_text(), re.M))
    cited = set()
    for page in (repo_root / "book").rglob("*.md"):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            cited.update(key.strip() for key in group.split(","))
    assert cited, "no citations found: the pattern or the pages changed"
    assert cited <= bib_keys, f"cited but not in references.bib: {sorted(cited - bib_keys)}"
    five_papers = {
        "cao2020e2capsnet",
        "rashid2018aucapsules",
        "li2020attention",
        "liu2021capsulelstm",
        "meen2021featureattention",
    }
    assert five_papers <= cited


def test_source_notebooks_are_stored_without_outputs(repo_root: Path) -> None:
    notebooks = _source_notebooks(repo_root)
    assert notebooks, "the book has no notebooks"
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path}: outputs stored"


MARKDOWN_WIDTH = 100  # ruff's line length, for the notebooks' text too


def test_source_notebook_text_is_wrapped(repo_root: Path) -> None:
    long_lines = [
        f"{path.relative_to(repo_root)} cell {k}: {line[:40]}..."
        for path in _source_notebooks(repo_root)
        for k, cell in enumerate(nbformat.read(path, as_version=4).cells)
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if len(line) > MARKDOWN_WIDTH and not line.startswith(("|", "#"))  # tables, headings
    ]
    assert not long_lines, "markdown lines over 100 characters:\n" + "\n".join(long_lines)


def _parameters_cells(path: Path) -> list:
    """The cells of the notebook at ``path`` tagged ``parameters``."""
    cells = nbformat.read(path, as_version=4).cells
    return [c for c in cells if "parameters" in c.metadata.get("tags", [])]


def test_source_notebooks_have_one_parameters_cell_first(repo_root: Path) -> None:
    for path in _source_notebooks(repo_root):
        code_cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        assert len(_parameters_cells(path)) == 1, f"{path}: expected one cell tagged 'parameters'"
        assert "parameters" in code_cells[0].metadata.get("tags", []), (
            f"{path}: the parameters cell must be the first code cell"
        )
        assert notebook_kernel(path) == "python3", f"{path}: kernelspec must be the venv's python3"


def test_papermill_reads_every_parameter_of_every_notebook(repo_root: Path) -> None:
    """``fernb run -p NAME`` refuses a name papermill does not list, and papermill skips an
    assignment whose comment it cannot parse (an '=' in it, for one)."""
    for path in _source_notebooks(repo_root):
        (cell,) = _parameters_cells(path)
        assigned = {
            target.id
            for node in ast.parse(cell.source).body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        listed = set(papermill.inspect_notebook(str(path)))
        assert assigned == listed, f"{path}: papermill misses {sorted(assigned - listed)}"


def test_toc_documents_follow_reading_order(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text(
        textwrap.dedent(
            """\
            format: jb-book
            root: intro
            parts:
              - caption: A
                chapters:
                  - file: a/one.md
                    sections:
                      - file: a/two
              - caption: B
                chapters:
                  - file: b/three.ipynb
                  - url: https://example.org
            """
        )
    )
    assert toc_documents(tmp_path) == ["intro", "a/one", "a/two", "b/three"]


def test_toc_without_root_or_with_glob_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "_toc.yml").write_text("format: jb-book\nchapters: []\n")
    with pytest.raises(ValueError, match="root"):
        toc_documents(tmp_path)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - glob: a/*\n")
    with pytest.raises(ValueError, match="glob"):
        toc_documents(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"_toc\.yml"):
        toc_documents(tmp_path / "nowhere")


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-page book (a markdown root and an executed notebook), built with jupyter-book."""
    root = tmp_path_factory.mktemp("tiny_book")
    (root / "_config.yml").write_text(
        "title: tiny\nauthor: tests\nonly_build_toc_files: true\n"
        "execute:\n  execute_notebooks: force\n"
        "sphinx:\n  config:\n    nb_execution_raise_on_error: true\n"
    )
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: pages/nb\n")
    (root / "intro.md").write_text("# Tiny\n\nA page.\n")
    (root / "pages").mkdir()
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print(6 * 7)")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    notebook.cells.insert(0, nbformat.v4.new_markdown_cell("# A notebook"))
    nbformat.write(notebook, root / "pages" / "nb.ipynb")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    subprocess.run(
        [str(jupyter_book), "build", "--warningiserror", str(root)], check=True, capture_output=True
    )
    return root


def test_built_tiny_book_has_every_page(tiny_book: Path) -> None:
    assert missing_pages(tiny_book) == []
    html = (tiny_book / "_build" / "html" / "pages" / "nb.html").read_text()
    assert "42" in html  # the notebook was executed during the build


def test_missing_page_is_reported_and_fails_the_check(tiny_book: Path, capsys) -> None:
    page = tiny_book / "_build" / "html" / "pages" / "nb.html"
    saved = page.read_bytes()
    page.unlink()
    try:
        assert missing_pages(tiny_book) == [page]
        assert main(["book", "check", str(tiny_book)]) == 1
        assert "nb.html" in capsys.readouterr().err
    finally:
        page.write_bytes(saved)
    assert main(["book", "check", str(tiny_book)]) == 0
