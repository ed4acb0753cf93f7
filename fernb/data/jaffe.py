"""JAFFE: the Japanese Female Facial Expression database.

Lyons, Akamatsu, Kamachi and Gyoba, "Coding Facial Expressions with Gabor Wavelets",
FG 1998. 213 grayscale 256 x 256 images of 10 Japanese women posing 7 expressions.

Official layout: one folder ``jaffe/`` of TIFF files named ``<subject>.<expression><repetition>
.<image id>.tiff``, e.g. ``KA.AN1.39.tiff`` (subject KA, anger, first take, image 39), plus
non-image files (a README) that are ignored. Some of the TIFFs are palette images; they are
read as 8-bit gray.

Label mapping (the order of the codes below is kept):

====  =========
code  class
====  =========
AN    anger
DI    disgust
FE    fear
HA    happiness
NE    neutral
SA    sadness
SU    surprise
====  =========

No official split (``split`` is ``""``): use subject-independent folds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fernb.data._layout import descend, read_images, table, visible
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir

__all__ = ["load_jaffe"]

CODES = (
    ("AN", "anger"),
    ("DI", "disgust"),
    ("FE", "fear"),
    ("HA", "happiness"),
    ("NE", "neutral"),
    ("SA", "sadness"),
    ("SU", "surprise"),
)
EXPECTED = "jaffe/<subject>.<expression><repetition>.<id>.tiff such as jaffe/KA.AN1.39.tiff"
NAME = re.compile(r"([A-Z]{2})\.([A-Z]{2})(\d+)\.(\d+)")


def load_jaffe(root: Path | str) -> FaceData:
    """Load JAFFE from ``root`` (the ``jaffe`` folder or the folder holding it).

    Subjects are the two-letter codes (``"KA"``). Files that are not TIFFs are skipped and
    listed in ``info["skipped_files"]``; a TIFF whose name does not follow the pattern
    raises :class:`DatasetFormatError` naming it.
    """
    folder = descend(require_dir(root, EXPECTED), "jaffe")
    codes = [code for code, _ in CODES]
    items, skipped = [], []
    for path in visible(folder):
        if path.suffix.lower() not in (".tiff", ".tif"):
            skipped.append(str(path))
            continue
        match = NAME.fullmatch(path.stem)
        if match is None or match[2] not in codes:
            raise DatasetFormatError(f"{path}: not a JAFFE image name; expected {EXPECTED}")
        items.append((match[1], codes.index(match[2]), path))
    images, _ = read_images([path for *_, path in items], f"{folder}: {EXPECTED}")
    classes, label_map = table(CODES)
    return FaceData(
        images=images,
        labels=np.array([label for _, label, _ in items]),
        classes=classes,
        subjects=np.array([subject for subject, _, _ in items]),
        split=np.full(len(items), ""),
        name="jaffe",
        info={"label_map": label_map, "options": {}, "skipped_files": skipped},
    )
