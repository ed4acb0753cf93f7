"""Helpers shared by the real-dataset loaders (private).

Locating a dataset folder inside the folder its archive extracts to, walking class folders,
reading many image files into one array, and error messages that name a file and line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fernb.data.facedata import DatasetFormatError, read_image

__all__ = [
    "class_files",
    "descend",
    "line_error",
    "read_images",
    "square",
    "table",
    "visible",
]


def descend(root: Path, folder: str) -> Path:
    """``root/folder`` when ``root`` holds a folder of that name (the archive's top level)."""
    inner = root / folder
    return inner if inner.is_dir() else root


def visible(folder: Path) -> list[Path]:
    """The entries of ``folder`` whose names do not start with a dot, sorted by name."""
    return sorted(path for path in folder.iterdir() if not path.name.startswith("."))


def line_error(path: Path, line: int, message: str) -> DatasetFormatError:
    """A :class:`DatasetFormatError` naming ``path`` and ``line`` (1-based)."""
    return DatasetFormatError(f"{path}:{line}: {message}")


def class_files(
    folder: Path, classes: Iterable[str], suffixes: Sequence[str], expected: str
) -> tuple[list[tuple[Path, str]], list[Path]]:
    """Files of ``folder/<class>/`` as (path, class) pairs, and the files that were skipped.

    Every sub-folder must be one of ``classes`` (else :class:`DatasetFormatError` naming it
    and ``expected``); files whose suffix is not in ``suffixes`` (a README, a thumbnail
    cache) are returned as skipped, not read.
    """
    allowed = list(classes)
    found: list[tuple[Path, str]] = []
    skipped: list[Path] = []
    for entry in visible(folder):
        if not entry.is_dir():
            skipped.append(entry)
            continue
        if entry.name not in allowed:
            raise DatasetFormatError(
                f"{entry}: unknown class folder {entry.name!r}; expected {expected} "
                f"with classes {', '.join(allowed)}"
            )
        for path in visible(entry):
            if path.suffix.lower() in suffixes and path.is_file():
                found.append((path, entry.name))
            else:
                skipped.append(path)
    return found, skipped


def square(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """A ``size=`` option as (height, width): an int means a square."""
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(height), int(width)


def read_images(
    paths: Sequence[Path],
    expected: str,
    mode: str = "L",
    size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read ``paths`` into one uint8 array, and each image's size as read (N x 2, H and W).

    All images must have one size unless ``size`` (height, width) is given, in which case
    each is resized to it (bilinear, antialiased). No paths at all, or images of different
    sizes without ``size``, raise :class:`DatasetFormatError` (``expected`` says what layout
    was looked for).
    """
    if not paths:
        raise DatasetFormatError(f"no images found; expected {expected}")
    images, shapes = [], np.empty((len(paths), 2), dtype=np.int64)
    for i, path in enumerate(paths):
        image = read_image(path, mode)
        shapes[i] = image.shape[:2]
        if size is not None and image.shape[:2] != size:
            resized = Image.fromarray(image).resize(size[::-1], Image.Resampling.BILINEAR)
            image = np.asarray(resized)
        elif size is None and image.shape[:2] != tuple(shapes[0]):
            raise DatasetFormatError(
                f"{path}: image is {image.shape[0]} x {image.shape[1]} but {paths[0]} is "
                f"{shapes[0][0]} x {shapes[0][1]}; pass size=(H, W) to resize them to one size"
            )
        images.append(image)
    return np.stack(images), shapes


def table(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], dict[str, str]]:
    """``classes`` and ``info["label_map"]`` from (dataset's own label, canonical name) pairs."""
    return [name for _, name in pairs], {name: own for own, name in pairs}
