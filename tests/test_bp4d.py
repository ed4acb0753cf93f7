"""BP4D loader on a fixture tree in the official layout (AU_OCC CSVs, Sequences frames)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fernb.data import DatasetFormatError
from fernb.data.bp4d import BP4D_AUS, load_bp4d

HEADER = "0,1,2,4,6,7,10,12,14,15,17,23,24,27\n"


def _row(frame: int, codes: dict[int, str]) -> str:
    aus = [1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24, 27]
    return ",".join([str(frame), *(codes.get(au, "0") for au in aus)])


def _write_bp4d(root: Path, rows: dict[str, list[str]] | None = None) -> Path:
    """Two subjects; F001_T1 codes frames 10-12, M002_T8 frames 5-6 (unpadded names)."""
    rows = rows or {
        "F001_T1": [_row(10, {1: "1", 12: "1"}), _row(11, {12: "9"}), _row(12, {24: "1"})],
        "M002_T8": [_row(5, {4: "1"}), _row(6, {})],
    }
    (root / "AUCoding" / "AU_OCC").mkdir(parents=True)
    for session, lines in rows.items():
        path = root / "AUCoding" / "AU_OCC" / f"{session}.csv"
        path.write_text(HEADER + "\n".join(lines) + "\n")
        subject, task = session.split("_")
        folder = root / "Sequences" / subject / task
        folder.mkdir(parents=True)
        for line in lines:
            frame = int(line.split(",")[0])
            name = f"{frame:04d}.jpg" if subject == "F001" else f"{frame}.jpg"
            Image.new("RGB", (8, 6), (frame * 10, 0, 0)).save(folder / name)
    return root


def test_bp4d_reads_occurrence_subjects_and_frames(tmp_path: Path) -> None:
    data = load_bp4d(_write_bp4d(tmp_path))
    assert data.name == "bp4d" and data.au_names == [f"AU{au}" for au in BP4D_AUS]
    assert data.subjects.tolist() == ["F001"] * 3 + ["M002"] * 2
    assert data.sequence.tolist() == ["F001_T1"] * 3 + ["M002_T8"] * 2
    assert data.frame.tolist() == [10, 11, 12, 5, 6]
    assert data.images.shape == (5, 6, 8) and (data.labels == -1).all() and data.classes == []
    au = {name: k for k, name in enumerate(data.au_names)}
    assert data.aus[0, au["AU1"]] == 1 and data.aus[0, au["AU12"]] == 1
    assert math.isnan(data.aus[1, au["AU12"]])  # 9: not coded
    assert data.aus[2, au["AU24"]] == 1 and data.aus[3, au["AU4"]] == 1
    assert np.nansum(data.aus) == 4
    gray = np.asarray(Image.open(tmp_path / "Sequences/F001/T1/0010.jpg").convert("L"))
    np.testing.assert_array_equal(data.images[0], gray)


def test_bp4d_options(tmp_path: Path) -> None:
    root = _write_bp4d(tmp_path)
    data = load_bp4d(root, aus=(27, 4), step=2, size=4, grayscale=False)
    assert data.au_names == ["AU27", "AU4"]
    assert data.frame.tolist() == [10, 12, 5]
    assert data.images.shape == (3, 4, 4, 3)


def test_bp4d_missing_frames(tmp_path: Path) -> None:
    root = _write_bp4d(tmp_path)
    (root / "Sequences/M002/T8/6.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"M002/T8/6\.jpg: coded in AU_OCC but missing"):
        load_bp4d(root)
    data = load_bp4d(root, missing="skip")
    assert data.info["missing_frames"] == ["M002/T8/6"] and len(data) == 4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (_row(7, {1: "3"}), r"F001_T1\.csv:2: AU codes must be 0, 1 or 9"),
        ("7,1,0", r"F001_T1\.csv:2: expected a frame number and 13 codes"),
    ],
)
def test_bp4d_malformed_rows_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    root = _write_bp4d(tmp_path, {"F001_T1": [line]})
    with pytest.raises(DatasetFormatError, match=message):
        load_bp4d(root)


def test_bp4d_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="AUCoding/AU_OCC"):
        load_bp4d(tmp_path)
    root = _write_bp4d(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"no column for AU \[99\]"):
        load_bp4d(root, aus=(1, 99))
    (root / "AUCoding/AU_OCC/notes.csv").write_text(HEADER)
    with pytest.raises(DatasetFormatError, match=r"expected a name like F001_T1\.csv"):
        load_bp4d(root)
