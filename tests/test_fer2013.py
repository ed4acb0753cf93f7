"""FER2013 loader: CSV and image-folder editions, their agreement, and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fernb.data import DatasetFormatError, load
from fernb.data.fer2013 import load_fer2013

# (split folder, class folder, file stem): two Training images share the number 7, as two
# pairs of different images do in the real image-folder edition.
FILES = [
    ("train", "angry", "Training_30"),
    ("train", "angry", "Training_7"),
    ("train", "happy", "Training_12"),
    ("train", "neutral", "Training_7"),
    ("test", "sad", "PublicTest_5"),
    ("test", "surprise", "PrivateTest_2"),
    ("test", "disgust", "PublicTest_1"),
    ("test", "fear", "PrivateTest_9"),
]
# Expected order: Training, PublicTest, PrivateTest; by number, then by class code.
ORDER = [1, 3, 2, 0, 6, 4, 5, 7]
LABELS = [0, 6, 3, 0, 1, 4, 5, 2]
SPLITS = ["train"] * 4 + ["val"] * 2 + ["test"] * 2
USAGES = {"train": "Training", "val": "PublicTest", "test": "PrivateTest"}
CLASSES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]


def _pixels(k: int) -> np.ndarray:
    return ((np.arange(48 * 48).reshape(48, 48) * (k + 1) + 40 * k) % 256).astype(np.uint8)


def _write_folders(folder: Path) -> np.ndarray:
    """The image-folder edition of FILES; returns the images as PIL decodes them, in ORDER."""
    decoded = []
    for k, (split, name, stem) in enumerate(FILES):
        path = folder / split / name / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_pixels(k)).save(path, quality=90)
        decoded.append(np.asarray(Image.open(path).convert("L")))
    return np.stack(decoded)[ORDER]


def _write_csv(
    path: Path,
    images: np.ndarray,
    labels: list[int],
    usages: list[str],
    header: tuple[str, ...] = ("emotion", "pixels", "Usage"),
) -> None:
    """A Kaggle-format CSV of ``images`` with the columns in the order of ``header``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for image, label, usage in zip(images, labels, usages, strict=True):
            pixels = " ".join(map(str, image.ravel()))
            fields = {"emotion": label, "pixels": pixels, "Usage": usage}
            writer.writerow([fields[name.strip()] for name in header])


def test_folder_edition_orders_labels_and_splits(tmp_path: Path) -> None:
    decoded = _write_folders(tmp_path)
    data = load_fer2013(tmp_path)
    assert data.name == "fer2013"
    assert data.classes == CLASSES
    assert data.labels.tolist() == LABELS
    assert data.split.tolist() == SPLITS
    assert data.subjects.tolist() == [f"fer{i:05d}" for i in range(8)]
    assert data.images.dtype == np.uint8 and data.images.shape == (8, 48, 48)
    np.testing.assert_array_equal(data.images, decoded)
    assert data.info["label_map"]["happiness"] == "happy"
    assert data.info["edition"] == "image folders"


@pytest.mark.parametrize(
    "header", [("emotion", "pixels", "Usage"), ("emotion", " Usage", " pixels")]
)
def test_csv_edition_gives_the_pixels_written(tmp_path: Path, header: tuple[str, ...]) -> None:
    images = np.stack([_pixels(k) for k in range(3)])
    path = tmp_path / "fer2013.csv"
    _write_csv(path, images, [6, 0, 3], ["PrivateTest", "Training", "PublicTest"], header)
    data = load_fer2013(path)
    np.testing.assert_array_equal(data.images, images)
    assert data.labels.tolist() == [6, 0, 3]
    assert [data.classes[i] for i in data.labels] == ["neutral", "anger", "happiness"]
    assert data.split.tolist() == ["test", "train", "val"]
    assert data.info["label_map"]["neutral"] == "6 Neutral"


@pytest.mark.parametrize("where", ["file", "folder", "nested"])
def test_csv_and_folder_editions_agree(tmp_path: Path, where: str) -> None:
    decoded = _write_folders(tmp_path / "images" / "fer2013")
    csv_path = tmp_path / "kaggle" / "fer2013" / "fer2013.csv"
    _write_csv(csv_path, decoded, LABELS, [USAGES[s] for s in SPLITS])
    root = {"file": csv_path, "folder": csv_path.parent, "nested": csv_path.parent.parent}[where]
    from_csv = load("fer2013", root)
    from_folders = load("fer2013", tmp_path / "images")  # the folder holding fer2013/
    for field in ("images", "labels", "subjects", "split"):
        np.testing.assert_array_equal(getattr(from_csv, field), getattr(from_folders, field))
    assert from_csv.classes == from_folders.classes == CLASSES


def test_missing_root_names_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; expected train/<class>"):
        load_fer2013(tmp_path / "nowhere")


def test_wrong_layout_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetFormatError, match=r"not a FER2013 folder; expected train/"):
        load_fer2013(tmp_path)


def test_unknown_class_folder_is_named(tmp_path: Path) -> None:
    _write_folders(tmp_path)
    (tmp_path / "train" / "happiness").mkdir()
    with pytest.raises(DatasetFormatError, match=r"unknown class folder 'happiness'"):
        load_fer2013(tmp_path)


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("train/angry/img_1.jpg", r"img_1.jpg: expected a name like Training_<id>"),
        ("test/sad/Training_3.jpg", r"Training_3.jpg: expected a name like PublicTest_<id> or Pri"),
    ],
)
def test_misnamed_image_is_named(tmp_path: Path, relative: str, message: str) -> None:
    _write_folders(tmp_path)
    Image.fromarray(_pixels(0)).save(tmp_path / relative, format="JPEG")
    with pytest.raises(DatasetFormatError, match=message):
        load_fer2013(tmp_path)


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    _write_folders(tmp_path)
    (tmp_path / "test" / "fear" / "PrivateTest_9.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetFormatError, match=r"PrivateTest_9.jpg: cannot decode"):
        load_fer2013(tmp_path)


def test_images_must_be_48_by_48(tmp_path: Path) -> None:
    for split, name, stem in (("train", "angry", "Training_1"), ("test", "sad", "PublicTest_2")):
        (tmp_path / split / name).mkdir(parents=True)
        Image.new("L", (40, 40)).save(tmp_path / split / name / f"{stem}.jpg")
    with pytest.raises(DatasetFormatError, match=r"expected 48 x 48 images"):
        load_fer2013(tmp_path)


def test_empty_image_folders_are_an_error(tmp_path: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / split / "angry").mkdir(parents=True)
    with pytest.raises(DatasetFormatError, match=r"no images found"):
        load_fer2013(tmp_path)


def _bad_csv(path: Path, second_row: str) -> None:
    good = "0," + " ".join(["7"] * 2304) + ",Training"
    path.write_text(f"emotion,pixels,Usage\n{good}\n{second_row}\n{good}\n")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1," + " ".join(["7"] * 2303) + ",Training", r"2303 pixels; expected 2304 \(48 x 48\)"),
        ("1," + " ".join(["7"] * 2305) + ",Training", r"2305 pixels; expected 2304"),
        ("1," + " ".join(["7"] * 2303) + " 7.5,Training", r"pixel '7.5' is not an integer"),
        ("1," + " ".join(["7"] * 2303) + " 256,Training", r"pixel values outside 0-255"),
        ("7," + " ".join(["7"] * 2304) + ",Training", r"unknown emotion code '7'; expected 0-6"),
        ("1," + " ".join(["7"] * 2304) + ",Validation", r"unknown Usage 'Validation'"),
        ("1," + " ".join(["7"] * 2304), r"2 fields; expected 3"),
    ],
    ids=["short", "long", "float", "range", "code", "usage", "fields"],
)
def test_bad_csv_row_names_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "fer2013.csv"
    _bad_csv(path, row)
    with pytest.raises(DatasetFormatError, match=rf"fer2013.csv:3: {message}"):
        load_fer2013(path)


def test_bad_csv_header_and_empty_csv(tmp_path: Path) -> None:
    path = tmp_path / "fer2013.csv"
    path.write_text("label,pixels,Usage\n")
    with pytest.raises(DatasetFormatError, match=r"fer2013.csv:1: expected the header"):
        load_fer2013(path)
    path.write_text("emotion,pixels,Usage\n")
    with pytest.raises(DatasetFormatError, match=r"fer2013.csv: no image rows"):
        load_fer2013(tmp_path)
