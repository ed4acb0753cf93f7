"""CK+ (the extended Cohn-Kanade dataset) and its 48 x 48 edition CK+48.

Lucey et al., "The Extended Cohn-Kanade Dataset (CK+): A complete dataset for action unit
and emotion-specified expression", CVPR Workshops 2010. 593 posed sequences of 123 subjects,
each from a neutral face to the peak of an expression; all are FACS-coded at the peak, 327
carry a validated emotion label.

CK+48 (:func:`load_ckplus48`), the edition most papers download: the last 3 frames of the
327 labelled sequences, face-cropped to 48 x 48 grayscale::

    CK+48/<class>/S<subject>_<sequence>_<frame>.png      e.g. CK+48/anger/S010_004_00000017.png

The official release (:func:`load_ckplus`)::

    cohn-kanade-images/S005/001/S005_001_00000001.png    frames; 8-bit gray or RGB PNGs
    Emotion/S005/001/S005_001_00000011_emotion.txt       one number, the code below
    FACS/S005/001/S005_001_00000011_facs.txt             rows "AU intensity" (peak frame)
    Landmarks/S005/001/S005_001_00000001_landmarks.txt   68 rows "x y", pixels of the frame

Label mapping (the dataset's order is kept; in :func:`load_ckplus` the label is the code):

====  ============  =========
code  CK+48 folder  class
====  ============  =========
0     (none)        neutral
1     anger         anger
2     contempt      contempt
3     disgust       disgust
4     fear          fear
5     happy         happiness
6     sadness       sadness
7     surprise      surprise
====  ============  =========

Neither edition has an official split (``split`` is ``""``): use subject-independent folds.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fernb.data._layout import (
    class_files,
    descend,
    line_error,
    read_images,
    square,
    table,
    visible,
)
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir
from fernb.face.crop import cut_square, landmark_box, square_around

__all__ = ["load_ckplus", "load_ckplus48"]

#: (CK+ code name, CK+48 folder, canonical class) in the order of the CK+ codes 0-7.
CODES = (
    ("neutral", "", "neutral"),
    ("anger", "anger", "anger"),
    ("contempt", "contempt", "contempt"),
    ("disgust", "disgust", "disgust"),
    ("fear", "fear", "fear"),
    ("happy", "happy", "happiness"),
    ("sadness", "sadness", "sadness"),
    ("surprise", "surprise", "surprise"),
)
CK48_FOLDERS = [folder for _, folder, _ in CODES[1:]]
CK48_EXPECTED = "CK+48/<class>/S<subject>_<sequence>_<frame>.png"
CK_EXPECTED = "cohn-kanade-images/S<subject>/<sequence>/S<subject>_<sequence>_<frame>.png"
AU_COLUMNS = ["subject", "sequence", "emotion", "AU.combination"]
NAME = re.compile(r"S(\d+)_(\d+)_(\d+)")
#: :func:`load_ckplus`' face crops: the landmarks' box grown by this share of its side.
CROP_MARGIN = 0.2


def _frame_id(path: Path) -> tuple[str, str, int]:
    """(subject, sequence, frame) of a CK+ frame file such as ``S005_001_00000011.png``."""
    match = NAME.fullmatch(path.stem)
    if match is None:
        raise DatasetFormatError(f"{path}: expected a name like S005_001_00000011{path.suffix}")
    subject = f"S{int(match[1]):03d}"
    return subject, f"{subject}_{int(match[2]):03d}", int(match[3])


def load_ckplus48(root: Path | str, au_labels: Path | str | None = None) -> FaceData:
    """Load CK+48 from ``root`` (the ``CK+48`` folder or the folder holding it).

    Subjects are like ``"S005"``, sequences ``"S005_001"``, ``frame`` the frame number.

    ``au_labels``: a per-sequence CSV with columns ``subject,sequence,emotion,
    AU.combination,AU1,...`` (AU columns 0/1), joined on (subject, sequence): ``aus`` is the
    0/1 presence of the CSV's AU columns (``au_names`` from its header), NaN for images whose
    sequence has no row (counted in ``info``). A row whose emotion disagrees with the class
    folder of its images raises :class:`DatasetFormatError` naming file and line; AUs that
    ``AU.combination`` lists but no column holds are reported in
    ``info["au_combination_without_column"]``.
    """
    folder = descend(require_dir(root, CK48_EXPECTED), "CK+48")
    files, skipped = class_files(folder, CK48_FOLDERS, (".png",), CK48_EXPECTED)
    items = sorted((*_frame_id(path), path, CK48_FOLDERS.index(name)) for path, name in files)
    paths = [path for *_, path, _ in items]
    images, _ = read_images(paths, f"{folder}/{CK48_EXPECTED}")
    sequences = [sequence for _, sequence, *_ in items]
    labels = [label for *_, label in items]
    classes, label_map = table([(own, name) for _, own, name in CODES[1:]])
    info = {
        "label_map": label_map,
        "options": {"au_labels": None if au_labels is None else str(au_labels)},
        "skipped_files": [str(path) for path in skipped],
    }
    aus, au_names = None, None
    if au_labels is not None:
        aus, au_names = _join_aus(Path(au_labels), sequences, labels, paths, info)
    return FaceData(
        images=images,
        labels=np.array(labels),
        classes=classes,
        subjects=np.array([subject for subject, *_ in items]),
        split=np.full(len(items), ""),
        aus=aus,
        au_names=au_names,
        sequence=np.array(sequences),
        frame=np.array([frame for _, _, frame, *_ in items]),
        name="ckplus48",
        info=info,
    )


def _join_aus(
    path: Path, sequences: list[str], labels: list[int], paths: list[Path], info: dict
) -> tuple[np.ndarray, list[str]]:
    """AU presence per image from the per-sequence CSV ``path``, checking its emotions.

    What did not join is counted in ``info``.
    """
    au_names, rows, unlisted = _read_au_table(path)
    aus = np.full((len(sequences), len(au_names)), np.nan, dtype=np.float32)
    without: list[str] = []
    for i, sequence in enumerate(sequences):
        if sequence not in rows:
            without.append(sequence)
            continue
        line, emotion, presence = rows[sequence]
        folder = CK48_FOLDERS[labels[i]]
        if emotion != folder:
            raise line_error(
                path, line, f"emotion {emotion!r} for {sequence}, but {paths[i]} is in {folder}/"
            )
        aus[i] = presence
    info.update(
        au_combination_without_column=unlisted,
        images_without_au_row=len(without),
        sequences_without_au_row=sorted(set(without)),
        au_rows_without_images=sorted(set(rows) - set(sequences)),
    )
    return aus, au_names


def _read_au_table(path: Path) -> tuple[list[str], dict, dict[str, list[str]]]:
    """AU names, {sequence: (line, emotion, 0/1 row)} and the AUs listed without a column."""
    rows: dict[str, tuple[int, str, np.ndarray]] = {}
    unlisted: dict[str, list[str]] = {}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        au_names = header[len(AU_COLUMNS) :]
        if header[: len(AU_COLUMNS)] != AU_COLUMNS or not au_names:
            raise line_error(path, 1, f"expected the header {','.join(AU_COLUMNS)},AU1,...")
        for row in reader:
            line = reader.line_num
            if len(row) != len(header):
                raise line_error(path, line, f"{len(row)} fields; expected {len(header)}")
            sequence = _sequence_id(row[0], row[1], path, line)
            if sequence in rows:
                raise line_error(path, line, f"{sequence} again (line {rows[sequence][0]})")
            if row[2] not in CK48_FOLDERS:
                raise line_error(path, line, f"unknown emotion {row[2]!r}; expected {CK48_FOLDERS}")
            if any(value not in ("0", "1") for value in row[len(AU_COLUMNS) :]):
                raise line_error(path, line, "AU columns must hold 0 or 1")
            rows[sequence] = (line, row[2], np.array(row[len(AU_COLUMNS) :], dtype=np.float32))
            extra = [f"AU{au}" for au in row[3].split("_") if au and f"AU{au}" not in au_names]
            if extra:
                unlisted[sequence] = extra
    return au_names, rows, unlisted


def _sequence_id(subject: str, sequence: str, path: Path, line: int) -> str:
    """``"S005_001"`` from the CSV fields ``S005`` and ``001``."""
    if not (re.fullmatch(r"S\d+", subject) and sequence.isdigit()):
        raise line_error(path, line, "expected subject like S005 and sequence like 001")
    return f"S{int(subject[1:]):03d}_{int(sequence):03d}"


def load_ckplus(
    root: Path | str,
    frames: str = "last",
    neutral_first: bool = False,
    labelled_only: bool = True,
    size: int | tuple[int, int] | None = None,
    au_coding: str = "intensity",
    crop: bool = False,
) -> FaceData:
    """Load the official CK+ release from ``root`` (the folder holding cohn-kanade-images/).

    Options:
        frames: ``"last"`` (the peak frame, where Emotion and FACS are coded), ``"last3"``
            (the 3 last frames, as CK+48), any ``"last<N>"``, or ``"all"``. Every returned
            frame carries its sequence's emotion and peak FACS coding.
        neutral_first: also return each labelled sequence's first frame, labelled neutral
            (code 0) with every AU 0 (CK+ sequences start at a neutral face).
        labelled_only: only sequences with an Emotion file; else unlabelled ones too (-1).
        size: (H, W) or an int (square) to resize every image to; landmarks are scaled with
            them, keeping pixel centres (x' = (x + 0.5) W'/W - 0.5). Without it, images of
            different sizes (the release has 640 x 490, 640 x 480 and 720 x 480) raise
            :class:`DatasetFormatError`.
        au_coding: ``"intensity"``: FACS intensity 1-5, 0 for an AU not coded, NaN for an AU
            coded present without intensity (written as intensity 0 in CK+);
            ``"presence"``: 1 for every coded AU, 0 otherwise. NaN rows for sequences
            without a FACS file. ``au_names`` are sorted by AU number.
        crop: cut the face out before resizing to ``size`` (an int or a square): one square
            per sequence around the 68 landmarks of all its returned frames, grown by
            :data:`CROP_MARGIN` of its side (:func:`fernb.face.crop.square_around`), so the
            face does not jitter; needs every frame's Landmarks file, else
            :class:`DatasetFormatError` names the first missing one. Landmarks are moved into
            the crop.

    Images are read as 8-bit gray. ``landmarks`` is None (and ``info["landmarks"]`` says
    why) unless every returned frame has a Landmarks file.
    """
    root = require_dir(root, CK_EXPECTED)
    take, size = _frame_count(frames), square(size)
    if au_coding not in ("intensity", "presence"):
        raise ValueError(f"au_coding must be 'intensity' or 'presence', got {au_coding!r}")
    sequences = _sequences(require_dir(root / "cohn-kanade-images", CK_EXPECTED))
    picked, onsets, counts = _pick_frames(root, sequences, take, neutral_first, labelled_only)
    paths = [path for path, _ in picked]
    if crop:
        images, shapes, landmarks, landmark_note = _face_crops(root, paths, size)
    else:
        images, shapes = read_images(paths, f"{root}/{CK_EXPECTED}", "L", size)
        landmarks, landmark_note = _landmarks(root / "Landmarks", paths, shapes, size)
    ids = [_frame_id(path) for path in paths]
    classes, label_map = table(
        [(f"{code} {own}", name) for code, (own, _, name) in enumerate(CODES)]
    )
    aus, au_names, facs_info = _facs(root / "FACS", paths, onsets, au_coding)
    return FaceData(
        images=images,
        labels=np.array([label for _, label in picked]),
        classes=classes,
        subjects=np.array([subject for subject, _, _ in ids]),
        split=np.full(len(ids), ""),
        aus=aus,
        au_names=au_names,
        landmarks=landmarks,
        sequence=np.array([sequence for _, sequence, _ in ids]),
        frame=np.array([frame for _, _, frame in ids]),
        name="ckplus",
        info={
            "label_map": label_map,
            "options": {
                "frames": frames,
                "neutral_first": neutral_first,
                "labelled_only": labelled_only,
                "size": size,
                "au_coding": au_coding,
                "crop": crop,
            },
            **counts,
            "image_sizes": dict(Counter(f"{h} x {w}" for h, w in shapes)),
            "landmarks": landmark_note,
            **facs_info,
        },
    )


def _face_crops(
    root: Path, paths: Sequence[Path], size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Face crops of ``paths`` (one square per sequence around its landmarks), the frames'
    sizes as read, the landmarks in the crops, and the landmarks note of ``info``."""
    if size is None or size[0] != size[1]:
        raise ValueError(f"crop=True needs a square size (an int), got size={size}")
    images, shapes, points = [], [], []
    for folder, group in itertools.groupby(paths, key=lambda path: path.parent):
        frames = list(group)
        pixels, read = read_images(frames, f"{root}/{CK_EXPECTED}", "L")
        found, note = _landmarks(root / "Landmarks", frames, read, None)
        if found is None:
            raise DatasetFormatError(f"{folder}: crop=True needs every frame's landmarks; {note}")
        left, top, side = square_around(landmark_box(found), *pixels.shape[1:], CROP_MARGIN)
        images.append(cut_square(pixels, (left, top, side), size[0]))
        points.append(_rescaled(found - [left, top], size[0] / side))
        shapes.append(read)
    note = "from Landmarks/, moved into the face crops"
    return np.concatenate(images), np.concatenate(shapes), np.concatenate(points), note


def _frame_count(frames: str) -> int | None:
    """How many last frames ``frames`` asks for; None for all."""
    if frames == "all":
        return None
    match = re.fullmatch(r"last([1-9]\d*)?", frames)
    if match is None:
        raise ValueError(
            f"frames must be 'all', 'last' or 'last<N>' (e.g. 'last3'), got {frames!r}"
        )
    return int(match[1] or 1)


def _sequences(images_dir: Path) -> dict[Path, list[Path]]:
    """Each sequence folder of the image tree and its frames, in frame order."""
    sequences = {}
    for subject in visible(images_dir):
        for folder in visible(subject) if subject.is_dir() else ():
            frames = [path for path in visible(folder) if path.suffix.lower() == ".png"]
            if frames:
                sequences[folder] = sorted(frames, key=lambda path: _frame_id(path)[2])
    return sequences


def _pick_frames(
    root: Path,
    sequences: dict[Path, list[Path]],
    take: int | None,
    neutral_first: bool,
    labelled_only: bool,
) -> tuple[list[tuple[Path, int]], set[Path], dict[str, int]]:
    """The (frame, label) pairs the options select, the neutral onsets added, and counts."""
    picked: list[tuple[Path, int]] = []
    onsets: set[Path] = set()
    labelled = 0
    for folder, frames in sequences.items():
        emotion = _sidecar(root / "Emotion", folder, "_emotion.txt")
        labelled += emotion is not None
        if labelled_only and emotion is None:
            continue
        chosen = dict.fromkeys(frames if take is None else frames[-take:], _emotion(emotion))
        if neutral_first and emotion is not None:
            chosen[frames[0]] = 0
            onsets.add(frames[0])
        picked += sorted(chosen.items(), key=lambda item: _frame_id(item[0])[2])
    if labelled_only and not labelled:
        raise DatasetFormatError(
            f"{root}: no sequence has an Emotion/S<subject>/<sequence>/*_emotion.txt file; "
            "pass labelled_only=False to load unlabelled sequences"
        )
    return picked, onsets, {"sequences": len(sequences), "labelled_sequences": labelled}


def _sidecar(tree: Path, folder: Path, suffix: str) -> Path | None:
    """The one ``*suffix`` file of a sequence in an Emotion or FACS tree, if any."""
    found = sorted(_mirror(tree, folder).glob(f"*{suffix}"))
    if len(found) > 1:
        raise DatasetFormatError(f"{found[1]}: a second {suffix} file of one sequence")
    return found[0] if found else None


def _numbers(path: Path, columns: int) -> np.ndarray:
    """The rows of a whitespace-separated number file, each of ``columns`` numbers."""
    rows = []
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            row = [float(value) for value in text.split()]
        except ValueError:
            row = []
        if len(row) != columns:
            raise line_error(path, line, f"expected {columns} numbers, got {text.strip()!r}")
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, columns)


def _emotion(path: Path | None) -> int:
    """The CK+ code (0-7) of an Emotion file; -1 without one."""
    if path is None:
        return -1
    values = _numbers(path, 1).ravel()
    if len(values) != 1 or values[0] not in range(len(CODES)):
        raise DatasetFormatError(f"{path}: expected one emotion code 0-{len(CODES) - 1}")
    return int(values[0])


def _mirror(tree: Path, folder: Path) -> Path:
    """The folder of the sequence ``folder`` (``.../S005/001``) in another tree."""
    return tree / folder.parent.name / folder.name


def _landmarks(
    tree: Path, paths: Sequence[Path], shapes: np.ndarray, size: tuple[int, int] | None
) -> tuple[np.ndarray | None, str]:
    """The 68 points of each frame (scaled to ``size``), or None and why."""
    files = [_mirror(tree, path.parent) / f"{path.stem}_landmarks.txt" for path in paths]
    missing = [file for file in files if not file.is_file()]
    if missing:
        return None, f"none: {len(missing)} of {len(files)} frames have no file, e.g. {missing[0]}"
    points = np.stack([_points(file) for file in files])
    if size is None:
        return points, "from Landmarks/"
    scale = np.array(size[::-1]) / shapes[:, ::-1]
    return _rescaled(points, scale[:, None, :]), "from Landmarks/, scaled to size"


def _rescaled(points: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """Points of an image resized by ``scale``, keeping pixel centres: (x + 0.5) s - 0.5."""
    return (points + 0.5) * scale - 0.5


def _points(path: Path) -> np.ndarray:
    """The 68 x 2 points of a Landmarks file."""
    points = _numbers(path, 2)
    if len(points) != 68:
        raise DatasetFormatError(f"{path}: {len(points)} landmark rows; expected 68 rows 'x y'")
    return points


def _facs(
    tree: Path, paths: Sequence[Path], onsets: set[Path], coding: str
) -> tuple[np.ndarray | None, list[str] | None, dict]:
    """AU values of each frame from its sequence's FACS file, AU names, and notes for info."""
    if not tree.is_dir():
        return None, None, {"facs": f"none: no {tree} folder"}
    coded = {
        folder: _facs_file(file) if (file := _sidecar(tree, folder, "_facs.txt")) else None
        for folder in dict.fromkeys(path.parent for path in paths)
    }
    numbers = sorted({au for codes in coded.values() if codes for au in codes})
    aus = np.zeros((len(paths), len(numbers)), dtype=np.float32)
    for i, path in enumerate(paths):
        codes = coded[path.parent]
        if path in onsets:
            continue
        if codes is None:
            aus[i] = np.nan
        else:
            for au, intensity in codes.items():
                value = 1.0 if coding == "presence" else intensity or np.nan
                aus[i, numbers.index(au)] = value
    without = [f"{folder.parent.name}/{folder.name}" for folder, c in coded.items() if c is None]
    unknown = sum(list(codes.values()).count(0) for codes in coded.values() if codes)
    return (
        aus,
        [f"AU{au}" for au in numbers],
        {
            "facs": "from FACS/",
            "sequences_without_facs": without,
            "facs_intensity_unknown": unknown,
        },
    )


def _facs_file(path: Path) -> dict[int, int]:
    """{AU number: intensity} of a FACS file; intensity 0 means coded without intensity."""
    codes: dict[int, int] = {}
    for au, intensity in _numbers(path, 2):
        if au < 1 or au != int(au) or intensity not in range(6) or int(au) in codes:
            raise DatasetFormatError(
                f"{path}: row '{au:g} {intensity:g}'; expected rows 'AU intensity' with each "
                "AU number once and whole intensities 0-5"
            )
        codes[int(au)] = int(intensity)
    return codes
