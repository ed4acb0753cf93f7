"""The MMI loader on a small session tree with videos this test writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from fernb.data import DatasetFormatError
from fernb.data.mmi import find_face, load_mmi, read_video
from fernb.data.synthetic import load_synthetic
from fernb.face.crop import crop_square

HEIGHT, WIDTH = 240, 320
FACE_AT = (150, 60, 128)  # x, y, side of the pasted 128 x 128 synthetic face


def _face() -> np.ndarray:
    return load_synthetic(size=128, n_subjects=1, samples_per_subject=1, difficulty=0.0).images[0]


def _write_video(path: Path, n_frames: int, face: np.ndarray | None) -> None:
    """Frame i is flat gray 20 + 6 i (so its index can be read back), with ``face`` pasted."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for i in range(n_frames):
        frame = np.full((HEIGHT, WIDTH), 20 + 6 * i, np.uint8)
        if face is not None:
            x, y, side = FACE_AT
            frame[y : y + side, x : x + side] = face
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def _session(
    sessions: Path,
    session: str,
    name: str,
    emotion: str | None,
    n_frames: int = 30,
    view: str = "0",
    face: np.ndarray | None = None,
) -> None:
    folder = sessions / session
    folder.mkdir(parents=True)
    _write_video(folder / f"{name}.avi", n_frames, face)
    tags = '<Metatag Name="Gender" Value="Female"/>'
    if emotion is not None:
        tags += f'<Metatag Name="Emotion" Value="{emotion}"/>'
    (folder / f"{name}.xml").write_text(f'<?xml version="1.0"?>\n<Metatags>{tags}</Metatags>\n')
    (folder / "session.xml").write_text(
        f'<?xml version="1.0"?>\n<session sessionId="{session}">'
        f'<track id="0" view="{view}" filename="{name}.avi"/></session>\n'
    )


@pytest.fixture(scope="module")
def mmi_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mmi")
    sessions = root / "Sessions"
    _session(sessions, "1", "S001-001", "4")  # happiness
    _session(sessions, "2", "S002-003", "1", n_frames=20)  # anger
    _session(sessions, "3", "S002-004", None)  # coded for AUs only
    _session(sessions, "4", "S003-001", "7")  # not one of the six emotions
    _session(sessions, "5", "S003-002", "6", n_frames=10)  # shorter than 16 frames
    _session(sessions, "6", "S004-001", "2", view="1")  # another view
    (sessions / "7").mkdir()  # a session of still images
    (sessions / "7" / "S005-001.png").write_bytes(b"")
    (sessions / "readme.txt").write_text("not a session")
    return root


def test_reads_the_labelled_videos_as_middle_frame_clips(mmi_root: Path) -> None:
    data = load_mmi(mmi_root, frames=16, size=48, detector="none")
    assert data.classes == ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert data.images.shape == (3 * 16, 48, 48) and data.images.dtype == np.uint8
    assert list(dict.fromkeys(data.sequence)) == ["S001-001", "S002-003", "S004-001"]
    assert list(dict.fromkeys(data.subjects)) == ["S001", "S002", "S004"]
    labels = {s: data.classes[data.labels[data.sequence == s][0]] for s in set(data.sequence)}
    assert labels == {"S001-001": "happiness", "S002-003": "anger", "S004-001": "disgust"}
    # 30 frames: the middle 16 are 7..22; 20 frames: 2..17
    assert data.frame[data.sequence == "S001-001"].tolist() == list(range(7, 23))
    assert data.frame[data.sequence == "S002-003"].tolist() == list(range(2, 18))
    # the pixels are those frames (frame i is gray 20 + 6 i, up to the codec's rounding)
    means = data.images[data.sequence == "S001-001"].mean(axis=(1, 2))
    np.testing.assert_allclose(means, 20 + 6 * np.arange(7, 23), atol=2)
    assert (data.split == "").all()
    assert data.info["videos_without_emotion"] == 1
    assert data.info["videos_with_emotion_7"] == 1
    assert data.info["videos_shorter_than_frames"] == 1
    assert data.info["sessions_without_video"] == 1
    assert data.info["views"] == {"0": 3, "1": 1}
    assert data.info["label_map"]["happiness"] == "4"


def test_views_keep_only_the_sessions_asked_for(mmi_root: Path) -> None:
    data = load_mmi(mmi_root, frames=8, detector="none", views=["0"])
    assert set(data.sequence) == {"S001-001", "S002-003", "S003-002"}
    assert data.info["videos_of_other_views"] == 1


@pytest.mark.parametrize("detector", ["opencv", "dlib"])
def test_the_detected_face_is_cropped_for_the_whole_clip(tmp_path: Path, detector: str) -> None:
    face = _face()
    _session(tmp_path / "Sessions", "7", "S010-001", "5", n_frames=20, face=face)
    data = load_mmi(tmp_path / "Sessions", frames=4, size=48, detector=detector)
    x, y, w, h = data.info["face_boxes"]["S010-001"]
    fx, fy, side = FACE_AT
    overlap = max(0, min(x + w, fx + side) - max(x, fx)) * max(
        0, min(y + h, fy + side) - max(y, fy)
    )
    assert overlap / (w * h + side * side - overlap) > 0.4  # intersection over union
    assert data.info["clips_without_face"] == 0
    # every frame is cut at that box: compare with the frames as written (before the codec)
    middle = np.arange(8, 12)  # the middle 4 of 20 frames
    written = np.full((4, HEIGHT, WIDTH), 20 + 6 * middle[:, None, None], np.uint8)
    written[:, fy : fy + side, fx : fx + side] = face
    expected = crop_square(written, (x, y, w, h), 48).astype(float)
    assert np.abs(data.images[:4].astype(float) - expected).mean() < 4


def test_no_face_falls_back_to_the_centre_square_and_is_counted(tmp_path: Path) -> None:
    _session(tmp_path / "Sessions", "8", "S011-001", "3", n_frames=6)
    data = load_mmi(tmp_path, frames=6, size=24, detector="opencv")
    assert data.info["face_boxes"] == {"S011-001": None}
    assert data.info["clips_without_face"] == 1
    assert data.images.shape == (6, 24, 24)


def test_crop_square_keeps_the_centre_and_stays_inside() -> None:
    frames = np.arange(2 * 10 * 20, dtype=np.uint8).reshape(2, 10, 20)
    inside = crop_square(frames, (6, 2, 4, 4), size=4)  # box x 6..10, y 2..6: no resizing
    np.testing.assert_array_equal(inside, frames[:, 2:6, 6:10])
    grown = crop_square(frames, (6, 2, 4, 4), size=6, margin=0.5)  # 6 x 6 around (8, 4)
    np.testing.assert_array_equal(grown, frames[:, 1:7, 5:11])
    edge = crop_square(frames, (17, 7, 4, 4), size=4)  # pushed back inside the frame
    np.testing.assert_array_equal(edge, frames[:, 6:10, 16:20])
    centre = crop_square(frames, None, size=10)  # the centre 10 x 10 square
    np.testing.assert_array_equal(centre, frames[:, :, 5:15])


def test_find_face_is_none_without_a_detector_or_a_face() -> None:
    flat = np.full((3, 60, 80), 128, np.uint8)
    assert find_face(flat, "none") is None
    assert find_face(flat, "opencv") is None
    with pytest.raises(ValueError, match="detector must be one of"):
        find_face(flat, "mtcnn")


def test_layout_errors_name_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"Sessions/<session>/<name>\.avi"):
        load_mmi(tmp_path / "missing")
    (tmp_path / "Sessions").mkdir()
    with pytest.raises(DatasetFormatError, match="no emotion-labelled video"):
        load_mmi(tmp_path)
    _session(tmp_path / "Sessions", "9", "clip_a", "4", n_frames=4)
    with pytest.raises(DatasetFormatError, match="expected a name like S001-002"):
        load_mmi(tmp_path, frames=2, detector="none")
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video")
    with pytest.raises(DatasetFormatError, match="reads no frame"):
        read_video(broken)
    with pytest.raises(ValueError, match="detector must be one of"):
        load_mmi(tmp_path, detector="haar")
