"""Oulu-CASIA loader on fixture trees in the official OriginalImg / Cropped layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fernb.data import DatasetFormatError
from fernb.data.oulu_casia import load_oulu_casia

CLASSES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
#: (subject, expression) -> frame file names; the gray level of a frame is 10 x its number.
SEQUENCES = {
    ("P001", "Anger"): ["000", "001", "002", "003", "004"],
    ("P001", "Happiness"): ["000", "001", "002"],
    ("P002", "Surprise"): ["8", "9", "10", "11"],  # numeric, not lexicographic, order
    ("P002", "Fear"): ["000", "001"],  # shorter than three frames
}


def _frame(path: Path, number: int, shape: tuple[int, int] = (12, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*shape, 3), 10 * number, np.uint8)).save(path, quality=95)


def _write_oulu(root: Path, edition: str = "OriginalImg") -> Path:
    """The sequences above under VL/Strong, plus decoys elsewhere and non-image files."""
    top = root / edition
    for (subject, expression), names in SEQUENCES.items():
        for name in names:
            _frame(top / "VL" / "Strong" / subject / expression / f"{name}.jpeg", int(name))
    _frame(top / "NI" / "Strong" / "P001" / "Anger" / "000.jpeg", 20)
    _frame(top / "VL" / "Weak" / "P003" / "Sadness" / "000.jpeg", 20)
    (top / "VL" / "Strong" / "P001" / "Anger" / "Thumbs.db").write_bytes(b"\0")
    (top / "VL" / "Strong" / "P002" / "Disgust").mkdir()  # an empty sequence
    return top


def _levels(data) -> list[int]:
    return [round(float(image.mean()) / 10) for image in data.images]


@pytest.mark.parametrize("inner", [False, True])
def test_last_three_frames_of_vl_strong(tmp_path: Path, inner: bool) -> None:
    top = _write_oulu(tmp_path)
    data = load_oulu_casia(top if inner else tmp_path)
    assert data.name == "oulu_casia" and data.classes == CLASSES
    assert data.images.shape == (11, 12, 16) and data.images.dtype == np.uint8
    assert (
        data.sequence.tolist()
        == ["P001_Anger"] * 3 + ["P001_Happiness"] * 3 + ["P002_Fear"] * 2 + ["P002_Surprise"] * 3
    )
    assert data.frame.tolist() == [2, 3, 4, 0, 1, 2, 0, 1, 9, 10, 11]
    assert _levels(data) == data.frame.tolist()  # the pixels are those frames' (JPEG +-2)
    assert [data.classes[k] for k in data.labels] == (
        ["anger"] * 3 + ["happiness"] * 3 + ["fear"] * 2 + ["surprise"] * 3
    )
    assert data.subjects.tolist() == ["P001"] * 6 + ["P002"] * 5
    assert set(data.split) == {""}
    assert data.info["short_sequences"] == ["P002_Fear"]
    assert data.info["empty_sequences"] == ["P002_Disgust"]
    assert data.info["skipped_files"] == [str(top / "VL/Strong/P001/Anger/Thumbs.db")]
    assert data.info["label_map"]["happiness"] == "Happiness"


def test_all_frames_other_camera_and_color(tmp_path: Path) -> None:
    _write_oulu(tmp_path)
    every = load_oulu_casia(tmp_path, frames=None)
    assert len(every) == sum(len(names) for names in SEQUENCES.values())
    assert every.info["short_sequences"] == []
    infrared = load_oulu_casia(tmp_path, camera="NI", color=True)
    assert infrared.images.shape == (1, 12, 16, 3) and infrared.sequence.tolist() == ["P001_Anger"]
    assert abs(int(infrared.images.mean()) - 200) <= 2
    weak = load_oulu_casia(tmp_path, illumination="Weak", frames=1)
    assert weak.sequence.tolist() == ["P003_Sadness"]


def test_cropped_edition_needs_a_size(tmp_path: Path) -> None:
    top = _write_oulu(tmp_path, "Cropped")
    _frame(top / "VL" / "Strong" / "P001" / "Anger" / "005.jpeg", 5, shape=(30, 20))
    with pytest.raises(DatasetFormatError, match=r"pass size=\(H, W\)"):
        load_oulu_casia(tmp_path, edition="Cropped")
    data = load_oulu_casia(tmp_path, edition="Cropped", size=24)
    assert data.images.shape[1:] == (24, 24)
    assert data.frame[:3].tolist() == [3, 4, 5]
    with pytest.raises(
        FileNotFoundError, match=r"/VL/Strong does not exist; expected root to be the Orig"
    ):
        load_oulu_casia(tmp_path)  # the OriginalImg edition is not there


def test_bad_options_are_named(tmp_path: Path) -> None:
    _write_oulu(tmp_path)
    for option, value in (("camera", "IR"), ("illumination", "Bright"), ("edition", "Raw")):
        with pytest.raises(ValueError, match=rf"{option} must be one of .* got '{value}'"):
            load_oulu_casia(tmp_path, **{option: value})
    with pytest.raises(ValueError, match="frames must be at least 1"):
        load_oulu_casia(tmp_path, frames=0)
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected <edition>/<camera>/"):
        load_oulu_casia(tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("VL/Strong/P001/Contempt/000.jpeg", r"Contempt: unknown expression folder"),
        ("VL/Strong/subject7/Anger/000.jpeg", r"subject7: not a subject folder P<digits>"),
        ("VL/Strong/P001/Anger/last.jpeg", r"last.jpeg: frame files are numbered"),
    ],
)
def test_layout_errors_name_the_path(tmp_path: Path, relative: str, message: str) -> None:
    top = _write_oulu(tmp_path)
    _frame(top / relative, 1)
    with pytest.raises(DatasetFormatError, match=message):
        load_oulu_casia(tmp_path)
