"""FER2013: 35,887 grayscale 48 x 48 faces collected from the web.

Goodfellow et al., "Challenges in Representation Learning: A report on three machine
learning contests", ICONIP 2013 (the Kaggle "Facial Expression Recognition Challenge").

Two editions are read; for the same pixels in the same order they give the same arrays:

* the Kaggle CSV ``fer2013.csv``: header ``emotion,pixels,Usage`` (column order free), one
  row per image, ``pixels`` the 2,304 values 0-255 of the image in row-major order,
  separated by spaces;
* the image-folder edition ``train/<class>/Training_<id>.jpg`` and
  ``test/<class>/PublicTest_<id>.jpg``, ``test/<class>/PrivateTest_<id>.jpg``, class folders
  ``angry disgust fear happy neutral sad surprise``.

Label mapping (the dataset's order is kept: ``labels`` equals the CSV code):

====  ========  ========  =========
code  CSV name  folder    class
====  ========  ========  =========
0     Angry     angry     anger
1     Disgust   disgust   disgust
2     Fear      fear      fear
3     Happy     happy     happiness
4     Sad       sad       sadness
5     Surprise  surprise  surprise
6     Neutral   neutral   neutral
====  ========  ========  =========

Split: ``Usage`` (CSV) or the file-name prefix (folders): Training -> ``train`` (28,709
images), PublicTest -> ``val`` (3,589), PrivateTest -> ``test`` (3,589).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from fernb.data._layout import class_files, line_error, read_images
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir

__all__ = ["load_fer2013"]

SIDE = 48
EXPECTED = (
    "train/<class>/Training_<id>.jpg and test/<class>/{PublicTest,PrivateTest}_<id>.jpg, "
    "or fer2013.csv with columns emotion,pixels,Usage"
)
#: (CSV name, folder name, canonical class), in the order of the CSV codes 0-6.
CLASSES = (
    ("Angry", "angry", "anger"),
    ("Disgust", "disgust", "disgust"),
    ("Fear", "fear", "fear"),
    ("Happy", "happy", "happiness"),
    ("Sad", "sad", "sadness"),
    ("Surprise", "surprise", "surprise"),
    ("Neutral", "neutral", "neutral"),
)
USAGES = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FOLDER_USAGES = {"train": ("Training",), "test": ("PublicTest", "PrivateTest")}
NAME = re.compile(r"(Training|PublicTest|PrivateTest)_(\d+)")


def load_fer2013(root: Path | str) -> FaceData:
    """Load FER2013 from either edition (see the module docstring).

    ``root`` is the CSV file, a folder holding ``fer2013.csv`` or the ``train/`` and
    ``test/`` folders (these win when both are there), or a folder holding one of those in
    a ``fer2013/`` folder. FER2013 has no subject ids: ``subjects`` holds a per-image id,
    ``"fer00000"`` onwards in the order of the images (CSV row order; in the folder edition
    Training, PublicTest, PrivateTest, each by the number in the file name, then by class
    code). Those numbers are not unique (in the common copy two pairs of different Training
    images share one), so they are not used as ids. A subject-independent split of FER2013
    is therefore a per-image split.
    """
    source = _locate(Path(root))
    if source.is_file():
        images, labels, split, info = _from_csv(source)
    else:
        images, labels, split, info = _from_folders(source)
    info.update(source=str(source), options={}, subjects="per-image ids (no subject ids)")
    return FaceData(
        images=images,
        labels=labels,
        classes=[name for *_, name in CLASSES],
        subjects=np.array([f"fer{i:05d}" for i in range(len(images))]),
        split=split,
        name="fer2013",
        info=info,
    )


def _locate(root: Path) -> Path:
    """The CSV file or the folder holding ``train/`` and ``test/``."""
    if root.is_file():
        return root
    require_dir(root, EXPECTED)
    for folder in (root, root / "fer2013"):
        if (folder / "train").is_dir() and (folder / "test").is_dir():
            return folder
        if (folder / "fer2013.csv").is_file():
            return folder / "fer2013.csv"
    raise DatasetFormatError(f"{root}: not a FER2013 folder; expected {EXPECTED}")


def _from_folders(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    codes = {name: code for code, (_, name, _) in enumerate(CLASSES)}
    order = list(USAGES)
    items: list[tuple[int, int, int, Path]] = []
    skipped = []
    for split_dir, usages in FOLDER_USAGES.items():
        files, ignored = class_files(folder / split_dir, codes, (".jpg", ".png"), EXPECTED)
        skipped += ignored
        for path, name in files:
            usage = order.index(_usage(path, usages))
            items.append((usage, int(path.stem.split("_")[1]), codes[name], path))
    items.sort()
    paths = [path for *_, path in items]
    images, _ = read_images(paths, f"{folder}/{EXPECTED}")
    if images.shape[1:] != (SIDE, SIDE):
        raise DatasetFormatError(f"{paths[0]}: expected {SIDE} x {SIDE} images")
    labels = np.array([code for _, _, code, _ in items])
    split = np.array([USAGES[order[usage]] for usage, *_ in items])
    info = {
        "label_map": {name: folder_name for _, folder_name, name in CLASSES},
        "edition": "image folders",
        "skipped_files": [str(path) for path in skipped],
    }
    return images, labels, split, info


def _usage(path: Path, usages: tuple[str, ...]) -> str:
    """The Usage a file name starts with; it must be one the folder holds."""
    match = NAME.fullmatch(path.stem)
    if match is None or match[1] not in usages:
        raise DatasetFormatError(
            f"{path}: expected a name like {' or '.join(f'{u}_<id>' for u in usages)} "
            f"in {path.parent.parent.name}/<class>/"
        )
    return match[1]


def _from_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    codes = {str(code): code for code in range(len(CLASSES))}
    images, labels, split = [], [], []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if not {"emotion", "pixels", "Usage"} <= set(header):
            raise line_error(path, 1, f"expected the header emotion,pixels,Usage, got {header}")
        emotion, pixels, usage = (header.index(c) for c in ("emotion", "pixels", "Usage"))
        for row in reader:
            if not row:
                continue
            line = reader.line_num
            if len(row) != len(header):
                raise line_error(path, line, f"{len(row)} fields; expected {len(header)}")
            code, use = row[emotion].strip(), row[usage].strip()
            if code not in codes:
                raise line_error(path, line, f"unknown emotion code {code!r}; expected 0-6")
            if use not in USAGES:
                raise line_error(path, line, f"unknown Usage {use!r}; expected {list(USAGES)}")
            images.append(_pixels(row[pixels], path, line))
            labels.append(codes[code])
            split.append(USAGES[use])
    if not images:
        raise DatasetFormatError(f"{path}: no image rows; expected {EXPECTED}")
    info = {
        "label_map": {name: f"{code} {own}" for code, (own, _, name) in enumerate(CLASSES)},
        "edition": "csv",
    }
    return np.stack(images), np.array(labels), np.array(split), info


def _pixels(text: str, path: Path, line: int) -> np.ndarray:
    """One row's ``pixels`` field as a 48 x 48 uint8 image."""
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")
    except ValueError:
        bad = next(t for t in text.split() if not (t.isascii() and t.isdigit()))
        raise line_error(path, line, f"pixel {bad!r} is not an integer 0-255") from None
    if values.size != SIDE * SIDE:
        raise line_error(
            path, line, f"{values.size} pixels; expected {SIDE * SIDE} ({SIDE} x {SIDE})"
        )
    if values.min() < 0 or values.max() > 255:
        raise line_error(path, line, "pixel values outside 0-255")
    return values.astype(np.uint8).reshape(SIDE, SIDE)
