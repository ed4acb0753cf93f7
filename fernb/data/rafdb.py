"""RAF-DB basic: the Real-world Affective Faces database, single-label subset.

Li, Deng and Du, "Reliable Crowdsourcing and Deep Locality-Preserving Learning for
Expression Recognition in the Wild", CVPR 2017. 15,339 RGB face images from the web,
12,271 for training and 3,068 for testing.

Official layout of the ``basic`` folder (``root`` may be it or the folder holding it)::

    EmoLabel/list_patition_label.txt   lines "train_00001.jpg 5" / "test_0001.jpg 7" (CRLF)
    Image/aligned/train_00001_aligned.jpg   100 x 100, aligned faces
    Image/original/train_00001.jpg          the original pictures, of many sizes

Label mapping (the order of the codes is kept: label = code - 1):

====  =========  =========
code  RAF-DB     class
====  =========  =========
1     Surprise   surprise
2     Fear       fear
3     Disgust    disgust
4     Happiness  happiness
5     Sadness    sadness
6     Anger      anger
7     Neutral    neutral
====  =========  =========

Split: ``train`` / ``test`` from the file-name prefix. RAF-DB has no validation split:
model selection must hold part of ``train`` out (:func:`fernb.data.splits.holdout_subjects`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fernb.data._layout import descend, line_error, read_images, square, table
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir

__all__ = ["load_rafdb"]

CODES = (
    ("1 Surprise", "surprise"),
    ("2 Fear", "fear"),
    ("3 Disgust", "disgust"),
    ("4 Happiness", "happiness"),
    ("5 Sadness", "sadness"),
    ("6 Anger", "anger"),
    ("7 Neutral", "neutral"),
)
LABELS = Path("EmoLabel", "list_patition_label.txt")
EXPECTED = f"{LABELS} and Image/aligned/<name>_aligned.jpg (or Image/original/<name>.jpg)"
LINE = re.compile(r"((train|test)_\d+)\.jpg\s+([1-7])")


def load_rafdb(
    root: Path | str,
    aligned: bool = True,
    grayscale: bool = False,
    size: int | tuple[int, int] | None = None,
    missing: str = "error",
) -> FaceData:
    """Load RAF-DB basic from ``root``, in the order of the label file.

    Options:
        aligned: the 100 x 100 aligned faces (True) or the original pictures (False), which
            differ in size and so need ``size``.
        grayscale: 8-bit gray (N x H x W) instead of RGB (N x H x W x 3).
        size: (H, W) or an int (square) to resize every image to.
        missing: ``"error"``: a listed image that is not there raises
            :class:`DatasetFormatError` naming it; ``"skip"``: leave it out, listing it in
            ``info["missing_images"]``.

    RAF-DB has no subject ids: ``subjects`` holds the per-image name (``"train_00001"``).
    A malformed label line raises :class:`DatasetFormatError` naming file and line.
    """
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    if not aligned and size is None:
        raise ValueError("the original RAF-DB images differ in size: pass size=(H, W) or an int")
    folder = descend(require_dir(root, EXPECTED), "basic")
    entries = _read_labels(folder / LABELS)
    images_dir = require_dir(folder / "Image" / ("aligned" if aligned else "original"), EXPECTED)
    suffix = "_aligned.jpg" if aligned else ".jpg"
    paths = {name: images_dir / f"{name}{suffix}" for name in entries}
    absent = [name for name, path in paths.items() if not path.is_file()]
    if absent and missing == "error":
        raise DatasetFormatError(
            f"{paths[absent[0]]}: listed in {folder / LABELS} but missing "
            f"({len(absent)} listed images are); pass missing='skip' to leave them out"
        )
    names = [name for name in entries if name not in set(absent)] if absent else list(entries)
    images, _ = read_images(
        [paths[name] for name in names], EXPECTED, "L" if grayscale else "RGB", square(size)
    )
    classes, label_map = table(CODES)
    return FaceData(
        images=images,
        labels=np.array([entries[name] for name in names]),
        classes=classes,
        subjects=np.array(names),
        split=np.array([name.split("_")[0] for name in names]),
        name="rafdb",
        info={
            "label_map": label_map,
            "options": {
                "aligned": aligned,
                "grayscale": grayscale,
                "size": size,
                "missing": missing,
            },
            "missing_images": absent,
            "subjects": "per-image names (no subject ids)",
            "val": "none: hold part of train out for model selection",
        },
    )


def _read_labels(path: Path) -> dict[str, int]:
    """{image name without .jpg: label index} from ``list_patition_label.txt``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected {EXPECTED}")
    entries: dict[str, int] = {}
    with path.open(newline="") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            match = LINE.fullmatch(text.strip())
            if match is None:
                raise line_error(
                    path, line, f"expected 'train_00001.jpg 5' (label 1-7), got {text.strip()!r}"
                )
            if match[1] in entries:
                raise line_error(path, line, f"{match[1]}.jpg is listed twice")
            entries[match[1]] = int(match[3]) - 1
    if not entries:
        raise DatasetFormatError(f"{path}: no labels; expected lines like 'train_00001.jpg 5'")
    return entries
