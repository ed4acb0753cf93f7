"""The MMI Facial Expression Database, read from its official download as face clips.

Pantic, Valstar, Rademaker, Maat, "Web-based database for facial expression analysis", ICME
2005; Valstar and Pantic, "Induced disgust, happiness and surprise: an addition to the MMI
facial expression database", LREC workshop 2010. Posed clips that go from a neutral face to
the apex of an expression and back. The download is one folder per session::

    Sessions/<session>/<name>.avi             the video, e.g. Sessions/2/S001-002.avi
    Sessions/<session>/<name>.xml             its metadata: <Metatag Name="Emotion" Value="4"/>
    Sessions/<session>/session.xml            the session: <track view="..." filename="..."/>
    Sessions/<session>/<name>-oao_aucs.xml    FACS onset/apex/offset coding (not read here)

Only videos whose metadata names an emotion 1-6 are returned; the others (most MMI sessions
are coded for action units only) are counted in ``info``. Emotion codes:

====  =========
code  class
====  =========
1     anger
2     disgust
3     fear
4     happiness
5     sadness
6     surprise
====  =========

Each clip is what Liu et al. (Capsule-LSTM, Sec. 4.1) feed their model: the middle
``frames`` frames of the video (MMI clips peak in their middle), the face cut out, gray,
``size`` x ``size``. The face box is found by a detector on each of those frames (OpenCV's
Haar cascade or dlib's HOG detector, on a copy at most 320 pixels wide) and the median box
of the clip crops all its frames, so the face does not jitter; a clip where no frame has a
face is cropped to the centre square of the video and counted. There is no official split
(``split`` is ``""``): use subject-independent folds (subjects are ``S001``...).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from fernb.data._layout import descend, table, visible
from fernb.data.facedata import DatasetFormatError, FaceData, require_dir
from fernb.face.crop import Box, crop_square

__all__ = ["DETECTORS", "MMI_EMOTIONS", "find_face", "load_mmi", "read_video"]

#: MMI's emotion codes 1-6 and their canonical classes.
MMI_EMOTIONS: dict[str, str] = {
    "1": "anger",
    "2": "disgust",
    "3": "fear",
    "4": "happiness",
    "5": "sadness",
    "6": "surprise",
}
#: Face detectors of :func:`find_face`; ``"none"`` takes the centre square of the frame.
DETECTORS: tuple[str, ...] = ("opencv", "dlib", "none")

EXPECTED = "Sessions/<session>/<name>.avi with <name>.xml holding <Metatag Name='Emotion'>"
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".wmv")
NAME = re.compile(r"(S\d+)-\d+")
_DETECT_WIDTH = 320


def read_video(path: Path) -> np.ndarray:
    """All frames of a video as uint8 gray, (n_frames, H, W).

    Raises:
        DatasetFormatError: the file cannot be opened or holds no frame.
    """
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while capture.isOpened():
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        capture.release()
    if not frames:
        raise DatasetFormatError(f"{path}: OpenCV reads no frame from this video")
    return np.stack(frames)


def _detector(name: str):
    """A function gray image -> list of boxes (x, y, w, h) for detector ``name``."""
    if name == "opencv":
        cascade = cv2.CascadeClassifier(
            str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml")
        )
        return lambda image: [tuple(box) for box in cascade.detectMultiScale(image, 1.1, 5)]
    if name == "dlib":
        import dlib

        hog = dlib.get_frontal_face_detector()
        return lambda image: [(r.left(), r.top(), r.width(), r.height()) for r in hog(image, 0)]
    raise ValueError(f"detector must be one of {DETECTORS}, got {name!r}")


def find_face(frames: np.ndarray, detector: str = "opencv") -> Box | None:
    """The median face box (x, y, w, h) over ``frames`` (n, H, W), or None if none has a face.

    Each frame is searched on a copy at most 320 pixels wide; its largest face counts.
    """
    if detector == "none":
        return None
    detect = _detector(detector)
    scale = min(1.0, _DETECT_WIDTH / frames.shape[2])
    boxes = []
    for frame in frames:
        small = frame if scale == 1 else cv2.resize(frame, None, fx=scale, fy=scale)
        found = detect(small)
        if found:
            boxes.append(max(found, key=lambda box: box[2] * box[3]))
    if not boxes:
        return None
    median = np.median(np.array(boxes, dtype=np.float64), axis=0) / scale
    return tuple(round(value) for value in median)


def _metatags(path: Path) -> dict[str, str]:
    """Name -> Value of the ``<Metatag>`` elements of an MMI metadata file."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise DatasetFormatError(f"{path}: not readable XML ({error})") from error
    return {tag.get("Name", ""): tag.get("Value", "") for tag in root.iter("Metatag")}


def _view(session: Path, video: Path) -> str | None:
    """The ``view`` code of the video's track in ``session.xml`` (None without the file)."""
    path = session / "session.xml"
    if not path.is_file():
        return None
    try:
        tracks = list(ET.parse(path).getroot().iter("track"))
    except ET.ParseError as error:
        raise DatasetFormatError(f"{path}: not readable XML ({error})") from error
    mine = [track for track in tracks if track.get("filename") == video.name] or tracks
    return mine[0].get("view") if mine else None


def load_mmi(
    root: Path | str,
    frames: int = 16,
    size: int = 48,
    detector: str = "opencv",
    margin: float = 0.0,
    views: Sequence[str] | None = None,
) -> FaceData:
    """Load the emotion-labelled MMI videos under ``root`` as clips of ``frames`` faces.

    Args:
        root: the ``Sessions`` folder or the download folder that holds it.
        frames: frames per clip, the middle ones of each video (16 in Liu et al.); videos
            with fewer frames are skipped and counted.
        size: side of the gray face crops.
        detector: ``"opencv"`` (Haar cascade), ``"dlib"`` (HOG) or ``"none"`` (centre
            square, for videos that show the face only).
        margin: grow the detected box by this share of its side before cropping.
        views: keep only sessions whose ``session.xml`` view code is one of these (None:
            all).

    Rows are clip by clip in session order, frames in video order; ``frame`` is the frame's
    index in its video, ``sequence`` the video's name (``S001-002``). ``info`` holds the
    label map, the options, ``face_boxes`` per clip (x, y, w, h in video pixels, None for
    the centre-square fallback) and the counts of what was skipped.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
    if frames < 1 or size < 1:
        raise ValueError(f"frames and size must be positive, got {frames} and {size}")
    sessions = descend(require_dir(root, EXPECTED), "Sessions")
    classes, label_map = table([(code, name) for code, name in MMI_EMOTIONS.items()])
    images, labels, subjects, sequences, frame_index = [], [], [], [], []
    skipped: Counter[str] = Counter()
    seen_views: Counter[str] = Counter()
    boxes: dict[str, list[int] | None] = {}
    for session in (entry for entry in visible(sessions) if entry.is_dir()):
        videos = [path for path in visible(session) if path.suffix.lower() in VIDEO_SUFFIXES]
        if not videos:
            skipped["sessions_without_video"] += 1  # e.g. MMI's still-image sessions
        for video in videos:
            meta = video.with_suffix(".xml")
            emotion = _metatags(meta).get("Emotion") if meta.is_file() else None
            if emotion is None:
                skipped["videos_without_emotion"] += 1
                continue
            if emotion not in MMI_EMOTIONS:
                skipped[f"videos_with_emotion_{emotion or 'empty'}"] += 1
                continue
            view = _view(session, video)
            seen_views[str(view)] += 1
            if views is not None and view not in views:
                skipped["videos_of_other_views"] += 1
                continue
            match = NAME.fullmatch(video.stem)
            if match is None:
                raise DatasetFormatError(f"{video}: expected a name like S001-002{video.suffix}")
            video_frames = read_video(video)
            if len(video_frames) < frames:
                skipped["videos_shorter_than_frames"] += 1
                continue
            start = (len(video_frames) - frames) // 2
            window = video_frames[start : start + frames]
            box = find_face(window, detector)
            boxes[video.stem] = None if box is None else list(box)
            images.append(crop_square(window, box, size, margin))
            labels += [classes.index(MMI_EMOTIONS[emotion])] * frames
            subjects += [match[1]] * frames
            sequences += [video.stem] * frames
            frame_index += range(start, start + frames)
    if not images:
        raise DatasetFormatError(
            f"{sessions}: no emotion-labelled video with at least {frames} frames; expected "
            f"{EXPECTED} (skipped: {dict(skipped) or 'nothing found'})"
        )
    return FaceData(
        images=np.concatenate(images),
        labels=np.array(labels),
        classes=classes,
        subjects=np.array(subjects),
        split=np.full(len(labels), ""),
        sequence=np.array(sequences),
        frame=np.array(frame_index),
        name="mmi",
        info={
            "label_map": label_map,
            "options": {
                "frames": frames,
                "size": size,
                "detector": detector,
                "margin": margin,
                "views": None if views is None else list(views),
            },
            "clips": len(boxes),
            "clips_without_face": sum(box is None for box in boxes.values())
            if detector != "none"
            else 0,
            "face_boxes": boxes,
            "views": dict(seen_views),
            **skipped,
        },
    )
