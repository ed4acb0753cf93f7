"""Oulu-CASIA NIR&VIS facial expression database.

Zhao, Huang, Taini, Li and Pietikainen, "Facial expression recognition from near-infrared
videos", Image and Vision Computing 29(9), 607-619, 2011. 80 people pose six expressions,
each recorded as a sequence from neutral to apex by a near-infrared (``NI``) and a visible
light (``VL``) camera under three illuminations (``Strong``, ``Weak``, ``Dark``):
2 x 3 x 480 = 2,880 sequences.

Official layout (the ``OriginalImg`` archive: 320 x 240 frames; the ``Cropped`` archive has
the same tree of face crops of varying size)::

    OriginalImg/<camera>/<illumination>/P<subject>/<Expression>/<frame>.jpeg
    e.g. OriginalImg/VL/Strong/P001/Anger/000.jpeg

Frames are numbered from 000 in time order; the last frames are the apex. Most papers take
the last three frames of the 480 VL Strong sequences (1,440 images): :func:`load_oulu_casia`'s
defaults. Li et al. (2020) count 1,440 images without naming the subset; these defaults are
our reading of that count.

Label mapping (folder names; the order below is kept):

===========  =========
folder       class
===========  =========
Anger        anger
Disgust      disgust
Fear         fear
Happiness    happiness
Sadness      sadness
Surprise     surprise
===========  =========

No official split (``split`` is ``""``): use subject-independent folds.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fernb.data._layout import descend, read_images, square, table, visible
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir

__all__ = ["CAMERAS", "EDITIONS", "ILLUMINATIONS", "load_oulu_casia"]

FOLDERS = (
    ("Anger", "anger"),
    ("Disgust", "disgust"),
    ("Fear", "fear"),
    ("Happiness", "happiness"),
    ("Sadness", "sadness"),
    ("Surprise", "surprise"),
)
CAMERAS: tuple[str, ...] = ("VL", "NI")
ILLUMINATIONS: tuple[str, ...] = ("Strong", "Weak", "Dark")
EDITIONS: tuple[str, ...] = ("OriginalImg", "Cropped")
SUFFIXES = (".jpeg", ".jpg")
EXPECTED = "<edition>/<camera>/<illumination>/P<subject>/<Expression>/<frame>.jpeg"
SUBJECT = re.compile(r"P\d+")


def load_oulu_casia(
    root: Path | str,
    camera: str = "VL",
    illumination: str = "Strong",
    frames: int | None = 3,
    edition: str = "OriginalImg",
    size: int | tuple[int, int] | None = None,
    color: bool = False,
) -> FaceData:
    """Load one camera and illumination of Oulu-CASIA from ``root``.

    Args:
        root: the ``edition`` folder (``OriginalImg`` or ``Cropped``) or the folder holding it.
        camera: ``"VL"`` (visible light) or ``"NI"`` (near infrared).
        illumination: ``"Strong"``, ``"Weak"`` or ``"Dark"``.
        frames: the last ``frames`` frames of each sequence (None: all of them); shorter
            sequences give what they have and are listed in ``info["short_sequences"]``.
        edition: which archive's tree ``root`` holds or contains.
        size: resize every image to it, (height, width) or an int for a square; needed for
            the ``Cropped`` edition, whose crops differ in size.
        color: RGB images (N x H x W x 3) instead of gray.

    Subjects are like ``"P001"``, sequences ``"P001_Anger"``, ``frame`` the frame number.
    Unknown expression folders and subject folders not named ``P<digits>`` raise
    :class:`DatasetFormatError` naming them; files that are not JPEGs are skipped and listed
    in ``info["skipped_files"]``, sequences without frames in ``info["empty_sequences"]``.
    """
    for what, value, allowed in (
        ("camera", camera, CAMERAS),
        ("illumination", illumination, ILLUMINATIONS),
        ("edition", edition, EDITIONS),
    ):
        if value not in allowed:
            raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be at least 1 or None, got {frames}")
    top = descend(require_dir(root, EXPECTED), edition)
    folder = require_dir(
        top / camera / illumination,
        f"root to be the {edition} folder or the folder holding it: {EXPECTED}",
    )
    items, skipped, empty, short = _frames(folder, frames)
    images, _ = read_images(
        [path for *_, path in items], f"{folder}: {EXPECTED}", "RGB" if color else "L", square(size)
    )
    classes, label_map = table([(own, name) for own, name in FOLDERS])
    return FaceData(
        images=images,
        labels=np.array([label for _, label, _, _ in items]),
        classes=classes,
        subjects=np.array([subject for subject, *_ in items]),
        split=np.full(len(items), ""),
        sequence=np.array([f"{subject}_{FOLDERS[label][0]}" for subject, label, *_ in items]),
        frame=np.array([frame for _, _, frame, _ in items]),
        name="oulu_casia",
        info={
            "label_map": label_map,
            "options": {
                "camera": camera,
                "illumination": illumination,
                "frames": frames,
                "edition": edition,
                "size": size,
                "color": color,
            },
            "skipped_files": skipped,
            "empty_sequences": empty,
            "short_sequences": short,
        },
    )


def _frames(
    folder: Path, frames: int | None
) -> tuple[list[tuple[str, int, int, Path]], list[str], list[str], list[str]]:
    """(subject, label, frame, path) of the frames kept, and the skipped files, empty and
    short sequences, walking ``folder/P<subject>/<Expression>/``."""
    names = [own for own, _ in FOLDERS]
    items: list[tuple[str, int, int, Path]] = []
    skipped: list[str] = []
    empty: list[str] = []
    short: list[str] = []
    for subject in visible(folder):
        if not subject.is_dir():
            skipped.append(str(subject))
            continue
        if not SUBJECT.fullmatch(subject.name):
            raise DatasetFormatError(
                f"{subject}: not a subject folder P<digits>; expected {EXPECTED}"
            )
        for expression in visible(subject):
            if not expression.is_dir():
                skipped.append(str(expression))
                continue
            if expression.name not in names:
                raise DatasetFormatError(
                    f"{expression}: unknown expression folder; expected one of {', '.join(names)}"
                )
            sequence = _sequence(expression, skipped)
            if not sequence:
                empty.append(f"{subject.name}_{expression.name}")
                continue
            kept = sequence if frames is None else sequence[-frames:]
            if frames is not None and len(sequence) < frames:
                short.append(f"{subject.name}_{expression.name}")
            label = names.index(expression.name)
            items += [(subject.name, label, number, path) for number, path in kept]
    return items, skipped, empty, short


def _sequence(folder: Path, skipped: list[str]) -> list[tuple[int, Path]]:
    """The (frame number, path) of a sequence's JPEGs in time order; others go to ``skipped``."""
    sequence = []
    for path in visible(folder):
        if path.suffix.lower() not in SUFFIXES or not path.is_file():
            skipped.append(str(path))
            continue
        if not path.stem.isdigit():
            raise DatasetFormatError(f"{path}: frame files are numbered, e.g. 000.jpeg")
        sequence.append((int(path.stem), path))
    return sorted(sequence)
