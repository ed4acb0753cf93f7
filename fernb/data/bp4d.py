"""BP4D-Spontaneous: 41 young adults in 8 emotion-eliciting tasks, AU occurrence per frame.

Zhang et al., "BP4D-Spontaneous: a high-resolution spontaneous 3D dynamic facial
expression database", Image and Vision Computing 32(10), 2014. 328 videos (subjects x
tasks T1-T8) of 1040 x 1392 RGB frames; FACS occurrence coding of the expressive segment
of each video, about 140,000 frames. AU papers (Rashid & Lee among them) use the 12 AUs of
:data:`BP4D_AUS` and 3 subject-independent folds.

Official layout (``root`` is the folder holding both)::

    AUCoding/AU_OCC/F001_T1.csv      header: frame column, then AU numbers (0,1,2,4,...);
                                     rows: frame number, then 0 / 1 per AU (9: not coded)
    Sequences/F001/T1/0001.jpg       the frames, named by frame number (4 digits; an
                                     unpadded 1.jpg is accepted too)

Frames are read only where the AU file codes them. There are no emotion labels (``labels``
is -1, ``classes`` empty): the task names T1-T8 are elicitation procedures, not validated
expressions. ``sequence`` is ``"F001_T1"``, ``frame`` the frame number. The paper detected
and aligned faces with FAN; to train on aligned crops, point ``images`` at a copy of
``Sequences`` that holds them in the same layout.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from fernb.data._layout import line_error, read_images, square, visible
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir

__all__ = ["BP4D_AUS", "load_bp4d"]

#: The 12 AUs that BP4D papers report (Rashid & Lee, Tables 1-2).
BP4D_AUS: tuple[int, ...] = (1, 2, 4, 6, 7, 10, 12, 14, 15, 17, 23, 24)
EXPECTED = "AUCoding/AU_OCC/<subject>_<task>.csv and Sequences/<subject>/<task>/<frame>.jpg"
SESSION = re.compile(r"([FM]\d{3})_(T\d)")
UNKNOWN = "9"


def load_bp4d(
    root: Path | str,
    aus: tuple[int, ...] = BP4D_AUS,
    images: Path | str = "Sequences",
    step: int = 1,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = True,
    missing: str = "error",
) -> FaceData:
    """Load BP4D's AU-coded frames from ``root``.

    Options:
        aus: the AU numbers to read (columns of the AU files); ``au_names`` are ``"AU1"``...
        images: the frame folder, relative to ``root`` or absolute (aligned copies).
        step: keep every ``step``-th coded frame of each video (BP4D has ~140,000).
        size: (H, W) or an int (square) to resize the frames to; without it all frames
            must have one size.
        grayscale: 8-bit gray (N x H x W) or RGB (N x H x W x 3).
        missing: a coded frame without an image: ``"error"`` raises
            :class:`DatasetFormatError` naming it, ``"skip"`` leaves it out (counted in
            ``info["missing_frames"]``).

    ``aus`` holds 0 / 1 occurrence, NaN where BP4D codes 9 (unknown). A malformed AU file
    raises :class:`DatasetFormatError` naming file and line.
    """
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    if missing not in ("error", "skip"):
        raise ValueError(f"missing must be 'error' or 'skip', got {missing!r}")
    root = require_dir(root, EXPECTED)
    coding = require_dir(root / "AUCoding" / "AU_OCC", EXPECTED)
    frames_dir = require_dir(root / images, EXPECTED)
    files = [path for path in visible(coding) if path.suffix.lower() == ".csv"]
    if not files:
        raise DatasetFormatError(f"{coding}: no <subject>_<task>.csv files; expected {EXPECTED}")
    rows, absent = [], []
    for path in files:
        match = SESSION.fullmatch(path.stem)
        if match is None:
            raise DatasetFormatError(f"{path}: expected a name like F001_T1.csv")
        subject, task = match[1], match[2]
        for frame, values in _read_occurrence(path, aus)[::step]:
            image = _frame_file(frames_dir / subject / task, frame)
            if image is None:
                absent.append(f"{subject}/{task}/{frame}")
                continue
            rows.append((subject, f"{subject}_{task}", frame, image, values))
    if absent and missing == "error":
        raise DatasetFormatError(
            f"{frames_dir / absent[0]}.jpg: coded in AU_OCC but missing ({len(absent)} coded "
            "frames are); pass missing='skip' to leave them out"
        )
    pictures, _ = read_images(
        [image for *_, image, _ in rows], f"{root}/{EXPECTED}", "L" if grayscale else "RGB",
        square(size),
    )  # fmt: skip
    return FaceData(
        images=pictures,
        labels=np.full(len(rows), -1),
        classes=[],
        subjects=np.array([subject for subject, *_ in rows]),
        split=np.full(len(rows), ""),
        aus=np.array([values for *_, values in rows], dtype=np.float32).reshape(-1, len(aus)),
        au_names=[f"AU{au}" for au in aus],
        sequence=np.array([sequence for _, sequence, *_ in rows]),
        frame=np.array([frame for _, _, frame, *_ in rows]),
        name="bp4d",
        info={
            "options": {
                "aus": list(aus), "images": str(images), "step": step, "size": size,
                "grayscale": grayscale, "missing": missing,
            },
            "missing_frames": absent,
            "labels": "none: BP4D tasks are elicitation procedures, not emotion labels",
        },
    )  # fmt: skip


def _read_occurrence(path: Path, aus: tuple[int, ...]) -> list[tuple[int, list[float]]]:
    """(frame, [occurrence of each AU]) rows of one AU_OCC file, 9 read as NaN."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader, [])]
        try:
            columns = [header.index(str(au)) for au in aus]
        except ValueError:
            absent = [au for au in aus if str(au) not in header]
            raise line_error(path, 1, f"no column for AU {absent}; header {header}") from None
        rows = []
        for row in reader:
            if not row or not "".join(row).strip():
                continue
            line = reader.line_num
            cells = [cell.strip() for cell in row]
            if len(cells) != len(header) or not cells[0].isdigit():
                raise line_error(path, line, f"expected a frame number and {len(header) - 1} codes")
            codes = [cells[c] for c in columns]
            if any(code not in ("0", "1", UNKNOWN) for code in codes):
                raise line_error(path, line, f"AU codes must be 0, 1 or 9, got {codes}")
            rows.append((int(cells[0]), [np.nan if c == UNKNOWN else float(c) for c in codes]))
    return rows


def _frame_file(folder: Path, frame: int) -> Path | None:
    """The image of ``frame`` in a video's folder (``0042.jpg`` or ``42.jpg``), if any."""
    for name in (f"{frame:04d}", str(frame)):
        for suffix in (".jpg", ".png"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    return None
