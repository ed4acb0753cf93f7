"""CK+48 and official CK+ loaders, on fixture trees in the official layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fernb.data import EMOTIONS, DatasetFormatError, load
from fernb.data.ckplus import load_ckplus, load_ckplus48

# ---------------------------------------------------------------- CK+48

CK48 = {"happy": ("S005_001", 9), "anger": ("S010_004", 17), "contempt": ("S138_008", 8)}
CK48_CLASSES = ["anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]


def _write_ck48(root: Path) -> None:
    """Three frames per sequence; a frame's pixels are all equal to its frame number."""
    for name, (sequence, first) in CK48.items():
        (root / "CK+48" / name).mkdir(parents=True)
        for frame in range(first, first + 3):
            image = np.full((6, 6), frame, np.uint8)
            Image.fromarray(image).save(root / "CK+48" / name / f"{sequence}_{frame:08d}.png")


AU_HEADER = "subject,sequence,emotion,AU.combination,AU1,AU2,AU4,AU12,AU25\n"
AU_ROWS = [
    "S005,001,happy,12_25,0,0,0,1,1",
    "S010,004,anger,4_28,0,0,1,0,0",
    "S999,001,fear,1.7,0,0,0,0,0",
]


def _write_au_csv(path: Path, rows: list[str] = AU_ROWS) -> Path:
    path.write_text(AU_HEADER + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("inner", [False, True])
def test_ckplus48_subjects_sequences_frames(tmp_path: Path, inner: bool) -> None:
    _write_ck48(tmp_path)
    data = load_ckplus48(tmp_path / "CK+48" if inner else tmp_path)
    assert data.name == "ckplus48"
    assert data.classes == CK48_CLASSES
    assert data.labels.tolist() == [4] * 3 + [0] * 3 + [1] * 3
    assert data.subjects.tolist() == ["S005"] * 3 + ["S010"] * 3 + ["S138"] * 3
    assert data.sequence.tolist() == ["S005_001"] * 3 + ["S010_004"] * 3 + ["S138_008"] * 3
    assert data.frame.tolist() == [9, 10, 11, 17, 18, 19, 8, 9, 10]
    np.testing.assert_array_equal(data.images[:, 0, 0], data.frame)
    assert data.images.shape == (9, 6, 6)
    assert set(data.split) == {""}
    assert data.aus is None
    assert data.provenance is None  # files: the name says what the data is
    assert data.info["label_map"]["happiness"] == "happy"


def test_ckplus48_joins_the_au_csv(tmp_path: Path) -> None:
    _write_ck48(tmp_path)
    csv_path = _write_au_csv(tmp_path / "aus.csv")
    data = load("ckplus48", tmp_path, au_labels=csv_path)
    assert data.au_names == ["AU1", "AU2", "AU4", "AU12", "AU25"]
    np.testing.assert_array_equal(data.aus[:3], [[0, 0, 0, 1, 1]] * 3)
    np.testing.assert_array_equal(data.aus[3:6], [[0, 0, 1, 0, 0]] * 3)
    assert np.isnan(data.aus[6:]).all()  # S138_008 has no row
    assert data.aus.dtype == np.float32
    assert data.info["au_combination_without_column"] == {
        "S010_004": ["AU28"],
        "S999_001": ["AU1.7"],
    }
    assert data.info["images_without_au_row"] == 3
    assert data.info["sequences_without_au_row"] == ["S138_008"]
    assert data.info["au_rows_without_images"] == ["S999_001"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["S005,001,sadness,12,0,0,0,1,0"], r"aus.csv:2: emotion 'sadness' for S005_001, but .*"),
        (["S005,001,happy,12,0,0,0,2,0"], r"aus.csv:2: AU columns must hold 0 or 1"),
        (["S005,001,happy,12,0,0,0,1"], r"aus.csv:2: 8 fields; expected 9"),
        (["S005,001,joy,12,0,0,0,1,0"], r"aus.csv:2: unknown emotion 'joy'"),
        (["S005,x1,happy,12,0,0,0,1,0"], r"aus.csv:2: expected subject like S005"),
        (AU_ROWS[:1] * 2, r"aus.csv:3: S005_001 again \(line 2\)"),
    ],
    ids=["emotion-disagrees", "au-value", "fields", "emotion-name", "sequence", "twice"],
)
def test_bad_au_csv_rows_name_file_and_line(tmp_path: Path, rows: list[str], message: str) -> None:
    _write_ck48(tmp_path)
    with pytest.raises(DatasetFormatError, match=message):
        load_ckplus48(tmp_path, au_labels=_write_au_csv(tmp_path / "aus.csv", rows))


def test_bad_au_csv_header(tmp_path: Path) -> None:
    _write_ck48(tmp_path)
    (tmp_path / "aus.csv").write_text("subject,sequence,emotion\n")
    with pytest.raises(DatasetFormatError, match=r"aus.csv:1: expected the header subject,"):
        load_ckplus48(tmp_path, au_labels=tmp_path / "aus.csv")


def test_ckplus48_bad_layouts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected CK\+48/<class>/"):
        load_ckplus48(tmp_path / "nowhere")
    (tmp_path / "CK+48").mkdir()
    with pytest.raises(DatasetFormatError, match=r"no images found; expected .*CK\+48/<class>"):
        load_ckplus48(tmp_path)
    _write_ck48(tmp_path / "more")
    (tmp_path / "more" / "CK+48" / "neutral").mkdir()
    with pytest.raises(DatasetFormatError, match=r"unknown class folder 'neutral'"):
        load_ckplus48(tmp_path / "more")


def test_ckplus48_bad_files_are_named(tmp_path: Path) -> None:
    _write_ck48(tmp_path)
    Image.new("L", (6, 6)).save(tmp_path / "CK+48" / "anger" / "S10-4-17.png")
    with pytest.raises(DatasetFormatError, match=r"S10-4-17.png: expected a name like S005_001"):
        load_ckplus48(tmp_path)
    (tmp_path / "CK+48" / "anger" / "S10-4-17.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "CK+48" / "anger" / "S10-4-17.png").rename(
        tmp_path / "CK+48" / "anger" / "S010_004_00000020.png"
    )
    with pytest.raises(DatasetFormatError, match=r"S010_004_00000020.png: cannot decode"):
        load_ckplus48(tmp_path)


# ---------------------------------------------------------------- official CK+


def _number_file(path: Path, rows: np.ndarray) -> None:
    """The CK+ text format: each number as %16.7e, e.g. '   3.0000000e+00'."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("".join(f"{v:16.7e}" for v in row) + "\n" for row in rows))


def _points(sequence: int, frame: int) -> np.ndarray:
    return np.stack([np.arange(68) * 0.5 + frame, np.arange(68) * 0.25 + sequence], axis=1)


# (subject, sequence): frames, (H, W), RGB PNGs?, emotion code, FACS rows
SEQUENCES = {
    ("S005", "001"): (4, (10, 12), False, 3, [[9, 4], [17, 2]]),
    ("S010", "002"): (5, (10, 12), True, 7, [[1, 0], [2, 0], [5, 1], [25, 3], [27, 3]]),
    ("S011", "001"): (3, (10, 12), False, None, [[12, 3]]),
}


def _pixel(subject: str, frame: int) -> int:
    return int(subject[1:]) * 10 + frame


def _write_ckplus(root: Path, sequences: dict = SEQUENCES) -> Path:
    for (subject, number), (frames, (h, w), rgb, emotion, facs) in sequences.items():
        folder = Path(subject, number)
        for frame in range(1, frames + 1):
            stem = f"{subject}_{number}_{frame:08d}"
            path = root / "cohn-kanade-images" / folder / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            gray = np.full((h, w), _pixel(subject, frame), np.uint8)
            Image.fromarray(np.stack([gray] * 3, axis=-1) if rgb else gray).save(path)
            points = _points(int(number), frame)
            _number_file(root / "Landmarks" / folder / f"{stem}_landmarks.txt", points)
        peak = f"{subject}_{number}_{frames:08d}"
        if emotion is not None:
            _number_file(root / "Emotion" / folder / f"{peak}_emotion.txt", [[emotion]])
        _number_file(root / "FACS" / folder / f"{peak}_facs.txt", np.array(facs))
    return root


def test_ckplus_number_format_matches_the_release() -> None:
    assert f"{3.0:16.7e}" == "   3.0000000e+00"
    assert f"{217.79878:16.7e}{217.08728:16.7e}" == "   2.1779878e+02   2.1708728e+02"


def test_ckplus_peak_frames_of_labelled_sequences(tmp_path: Path) -> None:
    data = load_ckplus(_write_ckplus(tmp_path))
    assert data.name == "ckplus"
    assert data.classes == list(EMOTIONS)
    assert data.labels.tolist() == [3, 7]
    assert [data.classes[i] for i in data.labels] == ["disgust", "surprise"]
    assert data.subjects.tolist() == ["S005", "S010"]
    assert data.sequence.tolist() == ["S005_001", "S010_002"]
    assert data.frame.tolist() == [4, 5]
    assert data.images.shape == (2, 10, 12)  # the RGB sequence is read as gray
    np.testing.assert_array_equal(data.images[:, 0, 0], [54, 105])
    np.testing.assert_allclose(data.landmarks, [_points(1, 4), _points(2, 5)], rtol=1e-6)
    assert data.au_names == ["AU1", "AU2", "AU5", "AU9", "AU17", "AU25", "AU27"]
    nan = np.nan
    np.testing.assert_array_equal(data.aus, [[0, 0, 0, 4, 2, 0, 0], [nan, nan, 1, 0, 0, 3, 3]])
    assert data.info["facs_intensity_unknown"] == 2
    assert data.info["label_map"]["happiness"] == "5 happy"
    assert (data.info["sequences"], data.info["labelled_sequences"]) == (3, 2)


def test_ckplus_last3_with_neutral_first(tmp_path: Path) -> None:
    data = load("ckplus", _write_ckplus(tmp_path), frames="last3", neutral_first=True)
    assert data.frame.tolist() == [1, 2, 3, 4, 1, 3, 4, 5]
    assert data.labels.tolist() == [0, 3, 3, 3, 0, 7, 7, 7]
    np.testing.assert_array_equal(data.aus[0], 0)  # the neutral onset has no AU
    np.testing.assert_array_equal(data.aus[1], [0, 0, 0, 4, 2, 0, 0])
    assert data.landmarks.shape == (8, 68, 2)


def test_ckplus_all_frames_relabels_the_onset_without_duplicating_it(tmp_path: Path) -> None:
    data = load_ckplus(_write_ckplus(tmp_path), frames="all", neutral_first=True)
    assert data.frame.tolist() == [1, 2, 3, 4, 1, 2, 3, 4, 5]
    assert data.labels.tolist() == [0, 3, 3, 3, 0, 7, 7, 7, 7]


def test_ckplus_unlabelled_sequences_and_presence_coding(tmp_path: Path) -> None:
    data = load_ckplus(
        _write_ckplus(tmp_path), frames="last", labelled_only=False, au_coding="presence"
    )
    assert data.sequence.tolist() == ["S005_001", "S010_002", "S011_001"]
    assert data.labels.tolist() == [3, 7, -1]
    assert data.au_names == ["AU1", "AU2", "AU5", "AU9", "AU12", "AU17", "AU25", "AU27"]
    np.testing.assert_array_equal(
        data.aus,
        [[0, 0, 0, 1, 0, 1, 0, 0], [1, 1, 1, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 0, 0, 0]],
    )


def test_ckplus_missing_landmarks_and_facs(tmp_path: Path) -> None:
    root = _write_ckplus(tmp_path)
    (root / "Landmarks" / "S010" / "002" / "S010_002_00000005_landmarks.txt").unlink()
    (root / "FACS" / "S005" / "001" / "S005_001_00000004_facs.txt").unlink()
    data = load_ckplus(root)
    assert data.landmarks is None
    assert data.info["landmarks"].startswith("none: 1 of 2 frames have no file")
    assert np.isnan(data.aus[0]).all()
    assert data.info["sequences_without_facs"] == ["S005/001"]
    assert data.au_names == ["AU1", "AU2", "AU5", "AU25", "AU27"]
    for tree in ("Landmarks", "FACS"):
        for path in sorted((root / tree).rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (root / tree).rmdir()
    data = load_ckplus(root)
    assert data.landmarks is None and data.aus is None and data.au_names is None
    assert data.info["facs"].startswith("none: no ")


def test_ckplus_sizes_must_agree_unless_resized(tmp_path: Path) -> None:
    root = _write_ckplus(tmp_path, {**SEQUENCES, ("S014", "001"): (3, (8, 12), False, 1, [])})
    with pytest.raises(DatasetFormatError, match=r"S014_001_00000003.png: image is 8 x 12 .*size="):
        load_ckplus(root)
    data = load_ckplus(root, size=(20, 24))
    assert data.images.shape == (3, 20, 24)
    assert data.info["image_sizes"] == {"10 x 12": 2, "8 x 12": 1}
    assert data.sequence.tolist() == ["S005_001", "S010_002", "S014_001"]
    np.testing.assert_array_equal(data.images[:, 10, 12], [54, 105, 143])  # flat images stay
    expected_x = _points(1, 4)[:, 0] * 2 + 0.5  # (x + 0.5) * 24 / 12 - 0.5
    expected_y = _points(1, 3)[:, 1] * 2.5 + 0.75  # (y + 0.5) * 20 / 8 - 0.5
    np.testing.assert_allclose(data.landmarks[0, :, 0], expected_x, rtol=1e-6)
    np.testing.assert_allclose(data.landmarks[2, :, 1], expected_y, rtol=1e-6)
    assert load_ckplus(root, size=16).images.shape == (3, 16, 16)


def _write_face_sequence(root: Path, subject: str, shape: tuple[int, int], face_x: int) -> None:
    """Two frames of a horizontal ramp (pixel = its x), the 68 landmarks on the edge of the
    box x face_x..face_x + 10, y 10..20, and an Emotion file."""
    folder = Path(subject, "001")
    ramp = np.tile(np.arange(shape[1], dtype=np.uint8), (shape[0], 1))
    edge = np.linspace(0, 10, 17)
    box = np.concatenate(
        [
            np.c_[edge, 0 * edge],
            np.c_[edge, 0 * edge + 10],
            np.c_[0 * edge, edge],
            np.c_[0 * edge + 10, edge],
        ]
    )
    for frame in (1, 2):
        stem = f"{subject}_001_{frame:08d}"
        path = root / "cohn-kanade-images" / folder / f"{stem}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ramp).save(path)
        _number_file(
            root / "Landmarks" / folder / f"{stem}_landmarks.txt", box + np.array([face_x, 10])
        )
    _number_file(root / "Emotion" / folder / f"{subject}_001_00000002_emotion.txt", [[5]])


def test_ckplus_face_crops_one_square_per_sequence_around_its_landmarks(tmp_path: Path) -> None:
    _write_face_sequence(tmp_path, "S020", (40, 60), face_x=20)
    _write_face_sequence(tmp_path, "S021", (48, 50), face_x=30)  # another frame size
    data = load_ckplus(tmp_path, frames="all", size=12, crop=True)
    assert data.images.shape == (4, 12, 12)
    # a 10 x 10 box grown by 20%: the 12 x 12 square from x = face_x - 1, y = 9, unresized
    np.testing.assert_array_equal(data.images[0, 5], np.arange(19, 31))
    np.testing.assert_array_equal(data.images[3, 5], np.arange(29, 41))
    landmarks = np.loadtxt(tmp_path / "Landmarks/S020/001/S020_001_00000001_landmarks.txt")
    np.testing.assert_allclose(data.landmarks[0], landmarks - [19, 9], atol=1e-6)
    assert data.info["image_sizes"] == {"40 x 60": 2, "48 x 50": 2}
    larger = load_ckplus(tmp_path, frames="all", size=24, crop=True)  # twice the pixels
    np.testing.assert_allclose(larger.landmarks[0], (landmarks - [19, 9] + 0.5) * 2 - 0.5)
    with pytest.raises(ValueError, match="square size"):
        load_ckplus(tmp_path, crop=True)
    (tmp_path / "Landmarks/S021/001/S021_001_00000002_landmarks.txt").unlink()
    with pytest.raises(DatasetFormatError, match=r"S021/001: crop=True needs .*no file"):
        load_ckplus(tmp_path, crop=True, size=12)


@pytest.mark.parametrize(
    ("relative", "text", "message"),
    [
        (
            "Emotion/S005/001/S005_001_00000004_emotion.txt",
            "three\n",
            r"_emotion.txt:1: expected 1",
        ),
        ("Emotion/S005/001/S005_001_00000004_emotion.txt", "   9.0\n", r"one emotion code 0-7"),
        ("FACS/S005/001/S005_001_00000004_facs.txt", "9 4\n17\n", r"_facs.txt:2: expected 2"),
        ("FACS/S005/001/S005_001_00000004_facs.txt", "9 4\n17 6\n", r"row '17 6'; expected"),
        ("Landmarks/S005/001/S005_001_00000004_landmarks.txt", "1 2\n", r"1 landmark rows"),
    ],
    ids=["emotion-text", "emotion-code", "facs-row", "facs-intensity", "landmarks"],
)
def test_ckplus_malformed_text_files_are_named(
    tmp_path: Path, relative: str, text: str, message: str
) -> None:
    root = _write_ckplus(tmp_path)
    (root / relative).write_text(text)
    with pytest.raises(DatasetFormatError, match=message):
        load_ckplus(root)


def test_ckplus_bad_layouts_and_options(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"expected cohn-kanade-images/S<subject>"):
        load_ckplus(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"cohn-kanade-images does not exist"):
        load_ckplus(tmp_path)
    root = _write_ckplus(tmp_path / "ck", {("S011", "001"): SEQUENCES[("S011", "001")]})
    with pytest.raises(DatasetFormatError, match=r"no sequence has an Emotion/.*labelled_only="):
        load_ckplus(root)
    with pytest.raises(ValueError, match=r"frames must be 'all', 'last' or 'last<N>'"):
        load_ckplus(root, frames="first")
    with pytest.raises(ValueError, match=r"au_coding must be"):
        load_ckplus(root, au_coding="binary")
    (root / "cohn-kanade-images" / "S011" / "001" / "S011_001_00000002.png").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match=r"S011_001_00000002.png: cannot decode"):
        load_ckplus(root, labelled_only=False, frames="all")
