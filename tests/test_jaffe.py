"""JAFFE loader: official TIFF folder, palette TIFFs, file-name parsing, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fernb.data import DatasetFormatError, load
from fernb.data.jaffe import load_jaffe

CLASSES = ["anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
GRAY = {"KA.AN1.39": 30, "KA.HA2.45": 60, "NM.NE1.92": 90}


def _palette_pixels() -> np.ndarray:
    return np.arange(64, dtype=np.uint8).reshape(8, 8) * 3


def _write_jaffe(folder: Path) -> Path:
    """Three gray TIFFs, one palette TIFF (KL.SU1.164, gray palette) and a README."""
    folder.mkdir(parents=True)
    for stem, value in GRAY.items():
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(folder / f"{stem}.tiff")
    indices = np.arange(64, dtype=np.uint8).reshape(8, 8)
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([v for i in range(256) for v in (i * 3 % 256,) * 3])
    palette.save(folder / "KL.SU1.164.tiff")
    (folder / "README").write_text("The Japanese Female Facial Expression (JAFFE) Database\n")
    return folder


def test_palette_fixture_is_a_palette_tiff(tmp_path: Path) -> None:
    with Image.open(_write_jaffe(tmp_path / "jaffe") / "KL.SU1.164.tiff") as image:
        assert image.mode == "P"


@pytest.mark.parametrize("inner", [False, True])
def test_jaffe_subjects_labels_and_pixels(tmp_path: Path, inner: bool) -> None:
    folder = _write_jaffe(tmp_path / "jaffe")
    data = load_jaffe(folder if inner else tmp_path)
    assert data.name == "jaffe"
    assert data.classes == CLASSES
    assert data.subjects.tolist() == ["KA", "KA", "KL", "NM"]
    assert [data.classes[i] for i in data.labels] == ["anger", "happiness", "surprise", "neutral"]
    assert data.images.shape == (4, 8, 8) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(
        data.images[[0, 1, 3]], [np.full((8, 8), v) for v in (30, 60, 90)]
    )
    np.testing.assert_array_equal(data.images[2], _palette_pixels())
    assert set(data.split) == {""}
    assert data.info["skipped_files"] == [str(folder / "README")]
    assert data.info["label_map"] == dict(
        zip(CLASSES, ["AN", "DI", "FE", "HA", "NE", "SA", "SU"], strict=True)
    )


def test_jaffe_through_the_registry(tmp_path: Path) -> None:
    _write_jaffe(tmp_path / "jaffe")
    assert len(load("jaffe", tmp_path)) == 4


@pytest.mark.parametrize("name", ["KA.XX1.39.tiff", "photo.tiff", "KA.AN.39.tiff"])
def test_misnamed_tiff_is_named(tmp_path: Path, name: str) -> None:
    folder = _write_jaffe(tmp_path / "jaffe")
    Image.new("L", (8, 8)).save(folder / name)
    with pytest.raises(DatasetFormatError, match=rf"{name}: not a JAFFE image name; expected"):
        load_jaffe(folder)


def test_jaffe_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected jaffe/<subject>"):
        load_jaffe(tmp_path / "nowhere")
    (tmp_path / "empty" / "jaffe").mkdir(parents=True)
    (tmp_path / "empty" / "jaffe" / "README").write_text("no images\n")
    with pytest.raises(DatasetFormatError, match=r"no images found"):
        load_jaffe(tmp_path / "empty")
    folder = _write_jaffe(tmp_path / "jaffe")
    Image.new("L", (9, 8)).save(folder / "YM.SA3.57.tiff")
    with pytest.raises(DatasetFormatError, match=r"YM.SA3.57.tiff: image is 8 x 9 but"):
        load_jaffe(folder)
    (folder / "YM.SA3.57.tiff").write_bytes(b"not a tiff")
    with pytest.raises(DatasetFormatError, match=r"YM.SA3.57.tiff: cannot decode"):
        load_jaffe(folder)
