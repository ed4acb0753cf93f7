"""The scoreboard: paper numbers beside recorded runs, with hand-checked gaps and statuses."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fernb.results import PaperNumber, RunRecord, read_records, write_record
from fernb.scoreboard import scoreboard, status_counts


def _paper(paper: str, variant: str, dataset: str, value: float, **more) -> dict:
    fields = {
        "paper": paper,
        "experiment": "benchmark",
        "variant": variant,
        "dataset": dataset,
        "metric": "accuracy",
        "value": value,
        "source": "Table 9",
        "protocol": "theirs",
        **more,
    }
    return PaperNumber(**fields).__dict__


PAPERS = pd.DataFrame(
    [
        _paper("lbp_attention", "full", "ckplus", 90.0),  # CK+48 holds the same images
        _paper("lbp_attention", "no_lbp", "ckplus", 80.0),
        _paper("lbp_attention", "no_attention", "ckplus", 70.0),
        _paper("lbp_attention", "full", "fer2013", 75.0),  # here, not run yet
        _paper("e2capsnet", "e2capsnet", "rafdb", 85.0, selection="test"),  # not here
        _paper("e2capsnet", "e2capsnet", "emotionet", 55.0),  # not here, no stand-in
    ]
)


def _write(root: Path, paper: str, variant: str, dataset: str, accuracies, **more) -> None:
    for fold, accuracy in enumerate(accuracies):
        fields = {
            "paper": paper,
            "experiment": "benchmark",
            "variant": variant,
            "dataset": dataset,
            "protocol": "5-fold by person",
            "fold": fold,
            "seed": 0,
            "epochs": 12,
            "selection": "val",
            "metrics": {"accuracy": accuracy},
            "device": "cpu",
            "wall_time_s": 1.0,
            "notebook": f"book/runs/{paper}/run.ipynb",
            **more,
        }
        record = RunRecord(**fields)
        write_record(record, root=root, name=f"{record.name}_{record.protocol[:1]}")


@pytest.fixture
def board(tmp_path: Path) -> pd.DataFrame:
    _write(tmp_path, "lbp_attention", "full", "ckplus48", [0.895, 0.905])  # mean 90.0
    _write(tmp_path, "lbp_attention", "no_lbp", "ckplus48", [0.70, 0.76])  # 73.0: missed
    _write(tmp_path, "lbp_attention", "no_attention", "ckplus48", [0.80, 0.82])  # 81: above
    _write(tmp_path, "e2capsnet", "e2capsnet", "ckplus48", [0.6, 0.8])  # stand-in, 70
    _write(
        tmp_path,
        "e2capsnet",
        "e2capsnet",
        "ckplus48",
        [0.9, 0.9],
        selection="test",
    )
    _write(tmp_path, "e2capsnet", "e2capsnet", "synthetic", [0.99])  # not a stand-in
    return scoreboard(read_records(tmp_path), papers=PAPERS)


def _row(board: pd.DataFrame, paper: str, variant: str, dataset: str) -> pd.Series:
    found = board.query("paper == @paper and variant == @variant and dataset == @dataset")
    assert len(found) == 1, found
    return found.iloc[0]


def test_runs_on_the_same_images_are_compared_with_a_hand_computed_gap(board) -> None:
    full = _row(board, "lbp_attention", "full", "ckplus")
    assert full["ours"] == pytest.approx(90.0)
    assert full["ours_std"] == pytest.approx(100 * pd.Series([0.895, 0.905]).std())
    assert full["gap"] == pytest.approx(0.0)
    assert (full["status"], full["ours_dataset"], full["n"]) == ("reproduced", "ckplus48", 2)
    assert full["compared"]
    missed = _row(board, "lbp_attention", "no_lbp", "ckplus")
    assert (missed["gap"], missed["status"]) == (pytest.approx(-7.0), "missed")
    above = _row(board, "lbp_attention", "no_attention", "ckplus")
    assert (above["gap"], above["status"]) == (pytest.approx(11.0), "above")


def test_tolerance_is_in_points_either_side(tmp_path: Path) -> None:
    _write(tmp_path, "lbp_attention", "full", "ckplus48", [0.889])  # 88.9: 1.1 below 90
    records = read_records(tmp_path)
    assert _row(scoreboard(records, PAPERS), "lbp_attention", "full", "ckplus")["status"] == (
        "missed"
    )
    loose = scoreboard(records, PAPERS, tolerance=1.2)
    assert _row(loose, "lbp_attention", "full", "ckplus")["status"] == "reproduced"


def test_cells_without_runs_are_owed_or_not_runnable(board) -> None:
    owed = _row(board, "lbp_attention", "full", "fer2013")
    assert owed["status"] == "owed" and pd.isna(owed["ours"]) and pd.isna(owed["gap"])
    emotionet = _row(board, "e2capsnet", "e2capsnet", "emotionet")
    assert emotionet["status"] == "not runnable here"


def test_a_stand_in_is_shown_but_never_compared(board) -> None:
    rafdb = _row(board, "e2capsnet", "e2capsnet", "rafdb")
    assert rafdb["status"] == "not runnable here"
    assert rafdb["ours_dataset"] == "ckplus48" and not rafdb["compared"]
    assert rafdb["ours"] == pytest.approx(70.0) and pd.isna(rafdb["gap"])
    assert rafdb["ours_test_selected"] == pytest.approx(90.0)
    assert rafdb["tried"] == "2 runs of 12 epochs on cpu; 5-fold by person"
    assert rafdb["notebooks"] == ["book/runs/e2capsnet/run.ipynb"]
    assert len(rafdb["records"]) == 2 and all(Path(p).is_file() for p in rafdb["records"])
    # the CK+48 runs of the LBP chapter are its Table 5 cells: never a stand-in elsewhere
    assert pd.isna(_row(board, "lbp_attention", "full", "fer2013")["ours_dataset"])


def test_every_paper_number_appears_once_per_protocol_of_ours(board, tmp_path: Path) -> None:
    assert len(board) == len(PAPERS)
    _write(tmp_path, "lbp_attention", "full", "ckplus48", [0.5], protocol="per-image folds")
    twice = scoreboard(read_records(tmp_path), PAPERS)
    assert len(twice) == len(PAPERS) + 1
    assert sorted(twice.query("dataset == 'ckplus' and variant == 'full'")["protocol"]) == [
        "5-fold by person",
        "per-image folds",
    ]


def test_status_counts_tally_the_rows(board) -> None:
    counts = status_counts(board)
    assert counts.loc["lbp_attention"].to_dict() == {
        "reproduced": 1,
        "missed": 1,
        "above": 1,
        "owed": 1,
        "not runnable here": 0,
    }
    assert counts.loc["e2capsnet", "not runnable here"] == 2
    assert counts.to_numpy().sum() == len(board)


def test_without_any_record_every_number_is_listed(tmp_path: Path) -> None:
    empty = scoreboard(read_records(tmp_path), PAPERS)
    assert len(empty) == len(PAPERS) and empty["ours"].isna().all()
    assert set(empty["status"]) == {"owed", "not runnable here"}
    assert empty.query("dataset == 'ckplus'")["status"].eq("owed").all()


def test_a_run_the_paper_prints_twice_fills_both_rows_and_says_so(tmp_path: Path) -> None:
    papers = pd.DataFrame(
        [
            _paper("lbp_attention", "full", "fer2013", 75.0),
            _paper("lbp_attention", "full", "fer2013", 75.0, experiment="lbp", source="Table 1"),
            _paper("lbp_attention", "lbp_uniform", "fer2013", 70.0, experiment="lbp"),
        ]
    )
    _write(tmp_path, "lbp_attention", "full", "fer2013", [0.5, 0.6])
    board = scoreboard(read_records(tmp_path), papers=papers).set_index(["source", "variant"])
    table4, table1 = board.loc[("Table 9", "full")], board.loc[("Table 1", "full")]
    assert table1["ours"] == pytest.approx(55.0) and table1["gap"] == pytest.approx(-20.0)
    assert table1["records"] == table4["records"] and table1["status"] == "missed"
    assert "the same runs as experiment benchmark" in table1["tried"]
    assert "same runs" not in table4["tried"]
    assert board.loc[("Table 9", "lbp_uniform"), "status"] == "owed"


def test_a_table_with_one_fold_of_a_shared_network_takes_the_other_folds(tmp_path: Path) -> None:
    """Liu et al.'s full loss (Table 4.1) is their Table 4.2 network; MMI is not here, so
    both rows show CK+48 runs. Table 4.2 recorded fold 0 itself; folds 1-2 come from 4.1."""
    liu = {"metric": "accuracy", "protocol": "theirs"}
    papers = pd.DataFrame(
        [
            _paper("capsule_lstm", "full", "mmi", 72.0, experiment="loss", source="4.1", **liu),
            _paper("capsule_lstm", "full", "mmi", 72.0, source="4.2", **liu),
        ]
    )
    _write(tmp_path, "capsule_lstm", "full", "ckplus48", [0.5, 0.6, 0.9], experiment="loss")
    _write(tmp_path, "capsule_lstm", "full", "ckplus48", [0.5])  # the benchmark's fold 0
    board = scoreboard(read_records(tmp_path), papers=papers).set_index("source")
    for source in ("4.1", "4.2"):
        assert board.loc[source, "n"] == 3
        assert board.loc[source, "ours"] == pytest.approx(100 * (0.5 + 0.6 + 0.9) / 3)
        assert board.loc[source, "status"] == "not runnable here"
    assert "2 of them recorded for experiment loss" in board.loc["4.2", "tried"]
    assert "experiment" not in board.loc["4.1", "tried"]
    assert len(board.loc["4.2", "records"]) == 3
