"""RAF-DB basic loader: CRLF label file, aligned and original images, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fernb.data import DatasetFormatError, load
from fernb.data.rafdb import load_rafdb

CLASSES = ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
# Label-file order, not sorted: the loader keeps it.
LINES = ["train_00001.jpg 5", "train_00002.jpg 1", "test_0001.jpg 7", "train_00003.jpg 4"]
ORIGINAL_SIZES = [(12, 16), (20, 14), (9, 9), (16, 12)]  # (H, W)


def _colour(k: int) -> tuple[int, int, int]:
    return (40 * k + 20, 200 - 30 * k, 90)


def _write_rafdb(root: Path) -> Path:
    """``root/basic`` with CRLF labels, 10 x 10 aligned JPEGs and original JPEGs."""
    basic = root / "basic"
    (basic / "EmoLabel").mkdir(parents=True)
    (basic / "EmoLabel" / "list_patition_label.txt").write_bytes(
        "".join(f"{line}\r\n" for line in LINES).encode() + b"\r\n"
    )
    for folder in ("aligned", "original"):
        (basic / "Image" / folder).mkdir(parents=True)
    for k, line in enumerate(LINES):
        stem = line.split(".")[0]
        Image.new("RGB", (10, 10), _colour(k)).save(basic / "Image/aligned" / f"{stem}_aligned.jpg")
        height, width = ORIGINAL_SIZES[k]
        Image.new("RGB", (width, height), _colour(k)).save(basic / "Image/original" / f"{stem}.jpg")
    return basic


def _decoded(paths: list[Path], mode: str) -> np.ndarray:
    return np.stack([np.asarray(Image.open(path).convert(mode)) for path in paths])


def _aligned(basic: Path) -> list[Path]:
    return [basic / "Image/aligned" / f"{line.split('.')[0]}_aligned.jpg" for line in LINES]


@pytest.mark.parametrize("inner", [False, True])
def test_rafdb_labels_splits_and_pixels(tmp_path: Path, inner: bool) -> None:
    basic = _write_rafdb(tmp_path)
    data = load_rafdb(basic if inner else tmp_path)
    assert data.name == "rafdb"
    assert data.classes == CLASSES
    assert data.labels.tolist() == [4, 0, 6, 3]
    assert [data.classes[i] for i in data.labels] == ["sadness", "surprise", "neutral", "happiness"]
    assert data.split.tolist() == ["train", "train", "test", "train"]
    assert data.subjects.tolist() == ["train_00001", "train_00002", "test_0001", "train_00003"]
    assert data.images.shape == (4, 10, 10, 3) and data.images.dtype == np.uint8
    np.testing.assert_array_equal(data.images, _decoded(_aligned(basic), "RGB"))
    assert data.info["label_map"]["surprise"] == "1 Surprise"
    assert data.info["missing_images"] == []


def test_rafdb_grayscale_original_resized(tmp_path: Path) -> None:
    basic = _write_rafdb(tmp_path)
    gray = load("rafdb", tmp_path, grayscale=True)
    np.testing.assert_array_equal(gray.images, _decoded(_aligned(basic), "L"))
    with pytest.raises(ValueError, match=r"original RAF-DB images differ in size: pass size="):
        load_rafdb(tmp_path, aligned=False)
    original = load_rafdb(tmp_path, aligned=False, size=(6, 8))
    assert original.images.shape == (4, 6, 8, 3)
    assert original.labels.tolist() == [4, 0, 6, 3]
    # flat-colour pictures stay (nearly) flat after decoding and resizing
    colours = np.array([_colour(k) for k in range(4)])
    assert np.abs(original.images.astype(int) - colours[:, None, None]).max() <= 3
    assert load_rafdb(tmp_path, aligned=False, size=5).images.shape == (4, 5, 5, 3)


def test_missing_image_is_named_or_skipped(tmp_path: Path) -> None:
    basic = _write_rafdb(tmp_path)
    (basic / "Image/aligned/train_00002_aligned.jpg").unlink()
    with pytest.raises(DatasetFormatError, match=r"train_00002_aligned.jpg: listed in .* missing"):
        load_rafdb(basic)
    data = load_rafdb(basic, missing="skip")
    assert data.subjects.tolist() == ["train_00001", "test_0001", "train_00003"]
    assert data.labels.tolist() == [4, 6, 3]
    assert data.info["missing_images"] == ["train_00002"]
    with pytest.raises(ValueError, match=r"missing must be 'error' or 'skip'"):
        load_rafdb(basic, missing="ignore")


@pytest.mark.parametrize(
    "line",
    [
        "train_00004.jpg 8",
        "train_00004.jpg",
        "train_00004.png 3",
        "val_0001.jpg 3",
        "train_00002.jpg 2",
    ],
    ids=["label", "no-label", "suffix", "prefix", "twice"],
)
def test_malformed_label_line_names_file_and_line(tmp_path: Path, line: str) -> None:
    basic = _write_rafdb(tmp_path)
    labels = basic / "EmoLabel" / "list_patition_label.txt"
    labels.write_bytes(f"train_00001.jpg 5\r\ntrain_00002.jpg 1\r\n{line}\r\n".encode())
    with pytest.raises(DatasetFormatError, match=r"list_patition_label.txt:3: "):
        load_rafdb(basic)


def test_rafdb_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected EmoLabel/"):
        load_rafdb(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"list_patition_label.txt does not exist"):
        load_rafdb(tmp_path)
    basic = _write_rafdb(tmp_path)
    (basic / "EmoLabel" / "list_patition_label.txt").write_bytes(b"\r\n")
    with pytest.raises(DatasetFormatError, match=r"list_patition_label.txt: no labels"):
        load_rafdb(basic)
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("test_0001.jpg 7\n")
    (basic / "Image/aligned/test_0001_aligned.jpg").write_bytes(b"\xff\xd8 cut short")
    with pytest.raises(DatasetFormatError, match=r"test_0001_aligned.jpg: cannot decode"):
        load_rafdb(basic)
