"""DISFA: the Denver Intensity of Spontaneous Facial Action database.

Mavadati et al., "DISFA: A spontaneous facial action intensity database", IEEE
Transactions on Affective Computing 4(2), 2013. 27 adults filmed by two cameras while
watching video clips: one video of 4,845 frames (1024 x 768, 20 fps) per subject and
camera, and the intensity (0-5) of 12 AUs in every frame. AU papers (Rashid & Lee among
them) report the 8 AUs of :data:`DISFA_AUS`, with an AU present from intensity 2, in 3
subject-independent folds.

Official layout (``root`` is the folder holding these)::

    ActionUnit_Labels/SN001/SN001_au1.txt     lines "frame,intensity", frames from 1
    Videos_LeftCamera/LeftVideoSN001_comp.avi     the left camera's video
    Video_RightCamera/RightVideoSN001_Comp.avi    the right camera's (names as released:
                                                  folder and file case are matched loosely)

Frame ``f`` of a label file is the ``f``-th frame of the video. There are no emotion
labels (``labels`` is -1, ``classes`` empty). ``sequence`` is the subject, ``frame`` the
frame number. The paper trained on faces detected and aligned with FAN; this loader
returns whole frames (resize them with ``size``).
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from fernb.data._layout import line_error, square, visible
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir

__all__ = ["DISFA_AUS", "load_disfa"]

#: The 8 AUs that DISFA papers report (Rashid & Lee, Tables 2-3).
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
EXPECTED = (
    "ActionUnit_Labels/SN<id>/SN<id>_au<AU>.txt and "
    "Video(s)_<Left|Right>Camera/<Left|Right>VideoSN<id>_comp.avi"
)
SUBJECT = re.compile(r"SN\d{3}")


def load_disfa(
    root: Path | str,
    aus: tuple[int, ...] = DISFA_AUS,
    camera: str = "left",
    present_at: float | None = 2.0,
    step: int = 1,
    size: int | tuple[int, int] | None = None,
    grayscale: bool = True,
) -> FaceData:
    """Load DISFA's labelled frames from ``root``.

    Options:
        aus: the AU numbers to read (one label file each); ``au_names`` are ``"AU1"``...
        camera: ``"left"`` or ``"right"``.
        present_at: ``aus`` holds occurrence, 1 where the intensity is at least this (the
            usual 2), else 0; None keeps the intensities 0-5.
        step: keep every ``step``-th labelled frame (a subject has 4,845).
        size: (H, W) or an int (square) to resize the frames to.
        grayscale: 8-bit gray (N x H x W) or RGB (N x H x W x 3).

    Labelled frames beyond the end of a video (the videos and label files of some
    subjects differ by a frame) are left out and counted in ``info["frames_without_video"]``.
    A malformed label file raises :class:`DatasetFormatError` naming file and line.
    """
    if camera not in ("left", "right"):
        raise ValueError(f"camera must be 'left' or 'right', got {camera!r}")
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    root = require_dir(root, EXPECTED)
    labels_dir = require_dir(root / "ActionUnit_Labels", EXPECTED)
    subjects = [p.name for p in visible(labels_dir) if p.is_dir() and SUBJECT.fullmatch(p.name)]
    if not subjects:
        raise DatasetFormatError(f"{labels_dir}: no SN<id> folders; expected {EXPECTED}")
    videos = _video_folder(root, camera)
    images, values, ids, frames, beyond = [], [], [], [], {}
    for subject in subjects:
        intensity = _subject_labels(labels_dir / subject, subject, aus)
        wanted = sorted(intensity)[::step]
        read = _read_frames(_video_file(videos, camera, subject), set(wanted), size, grayscale)
        kept = [frame for frame in wanted if frame in read]
        if len(kept) < len(wanted):
            beyond[subject] = len(wanted) - len(kept)
        images += [read[frame] for frame in kept]
        values += [intensity[frame] for frame in kept]
        ids += [subject] * len(kept)
        frames += kept
    if not images:
        raise DatasetFormatError(f"{root}: no labelled frame could be read from the videos")
    if len({image.shape for image in images}) > 1:
        raise DatasetFormatError(
            f"{videos}: videos differ in frame size; pass size=(H, W) to resize them to one size"
        )
    aus_array = np.array(values, dtype=np.float32)
    if present_at is not None:
        aus_array = (aus_array >= present_at).astype(np.float32)
    return FaceData(
        images=np.stack(images),
        labels=np.full(len(images), -1),
        classes=[],
        subjects=np.array(ids),
        split=np.full(len(images), ""),
        aus=aus_array,
        au_names=[f"AU{au}" for au in aus],
        sequence=np.array(ids),
        frame=np.array(frames),
        name="disfa",
        info={
            "options": {
                "aus": list(aus), "camera": camera, "present_at": present_at, "step": step,
                "size": size, "grayscale": grayscale,
            },
            "frames_without_video": beyond,
            "labels": "none: DISFA codes AUs only",
        },
    )  # fmt: skip


def _subject_labels(folder: Path, subject: str, aus: tuple[int, ...]) -> dict[int, list[float]]:
    """{frame: [intensity of each AU]} of one subject; every AU file must list the same frames."""
    per_au = []
    for au in aus:
        path = folder / f"{subject}_au{au}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; expected {EXPECTED}")
        per_au.append(_label_file(path))
    frames = set(per_au[0])
    for au, labels in zip(aus[1:], per_au[1:], strict=True):
        if set(labels) != frames:
            raise DatasetFormatError(
                f"{folder / f'{subject}_au{au}.txt'}: labels {len(labels)} frames, but "
                f"{subject}_au{aus[0]}.txt labels {len(frames)}; the files must agree"
            )
    return {frame: [labels[frame] for labels in per_au] for frame in sorted(frames)}


def _label_file(path: Path) -> dict[int, float]:
    """{frame: intensity} of a label file of lines ``frame,intensity``."""
    labels: dict[int, float] = {}
    for line, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in tuple("012345"):
            raise line_error(path, line, f"expected 'frame,intensity' (0-5), got {text!r}")
        frame = int(parts[0])
        if frame < 1 or frame in labels:
            raise line_error(path, line, f"frame {frame} is below 1 or listed twice")
        labels[frame] = float(parts[1])
    if not labels:
        raise DatasetFormatError(f"{path}: no labels; expected lines like '1,0'")
    return labels


def _video_folder(root: Path, camera: str) -> Path:
    """``Videos_LeftCamera`` / ``Video_RightCamera`` (any case, Video or Videos)."""
    pattern = re.compile(rf"videos?_{camera}camera", re.IGNORECASE)
    for path in visible(root):
        if path.is_dir() and pattern.fullmatch(path.name):
            return path
    raise FileNotFoundError(f"{root}: no Video(s)_{camera.capitalize()}Camera folder; {EXPECTED}")


def _video_file(folder: Path, camera: str, subject: str) -> Path:
    """``LeftVideoSN001_comp.avi`` (any case) in ``folder``."""
    wanted = f"{camera}video{subject}_comp.avi"
    for path in visible(folder):
        if path.name.lower() == wanted.lower():
            return path
    raise FileNotFoundError(f"{folder / wanted}: no such video (case ignored); {EXPECTED}")


def _read_frames(
    path: Path, wanted: set[int], size: int | tuple[int, int] | None, grayscale: bool
) -> dict[int, np.ndarray]:
    """The frames of ``path`` numbered (from 1) in ``wanted``, as uint8 arrays."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DatasetFormatError(f"{path}: cannot open this video")
    shape = square(size)
    frames: dict[int, np.ndarray] = {}
    number = 0
    try:
        while len(frames) < len(wanted):
            ok, image = capture.read()
            if not ok:
                break
            number += 1
            if number not in wanted:
                continue
            code = cv2.COLOR_BGR2GRAY if grayscale else cv2.COLOR_BGR2RGB
            image = cv2.cvtColor(image, code)
            if shape is not None and image.shape[:2] != shape:
                image = cv2.resize(image, shape[::-1], interpolation=cv2.INTER_AREA)
            frames[number] = image
    finally:
        capture.release()
    return frames
