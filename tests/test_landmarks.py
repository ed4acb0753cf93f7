"""Landmarks: dlib accuracy on SynthFACS, the fallback box, the cache, the other backends."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fernb.data import FaceData
from fernb.data.synthetic import SynthConfig, generate
from fernb.face import landmarks as module
from fernb.face.landmarks import (
    Landmarks,
    dataset_landmarks,
    detect_landmarks,
    fan_weights_path,
    normalised_mean_error,
)


@pytest.fixture(scope="module")
def faces() -> FaceData:
    return generate(SynthConfig(size=48, n_subjects=4, samples_per_subject=3, difficulty=0.0))


def _blank(n: int, size: int = 48) -> np.ndarray:
    return np.full((n, size, size), 128, np.uint8)


def test_normalised_mean_error_by_hand() -> None:
    truth = np.zeros((68, 2))
    truth[45] = (10.0, 0.0)  # outer eye corners 10 px apart
    assert normalised_mean_error(truth + np.array([3.0, 4.0]), truth) == pytest.approx(0.5)


@pytest.mark.parametrize(("size", "difficulty"), [(48, 0.5), (96, 0.5)])
def test_dlib_finds_synthfacs_landmarks(size: int, difficulty: float) -> None:
    """Measured on 200 faces at 48 px, x4: mean NME 0.054, 95th percentile 0.072."""
    data = generate(
        SynthConfig(size=size, n_subjects=4, samples_per_subject=2, difficulty=difficulty)
    )
    found = detect_landmarks(data.images, "dlib")
    assert found.points.shape == (8, 68, 2) and found.points.dtype == np.float32
    error = normalised_mean_error(found.points, data.landmarks)
    assert error.mean() < 0.1 and error.max() < 0.25


def test_undetected_faces_fall_back_to_the_whole_image_and_are_counted(faces: FaceData) -> None:
    images = np.concatenate([faces.images[:3], _blank(2)])
    found = detect_landmarks(images, "dlib")
    np.testing.assert_array_equal(found.detected, [True, True, True, False, False])
    assert found.fallbacks == 2 and "2 (40.0%) without a detected face" in found.summary()
    # the predictor's mean shape in the box of the whole image (inset 8 px at 192 px)
    fallback = found.points[3:]
    np.testing.assert_allclose(fallback.mean(axis=1)[:, 0], 23.5, atol=1.0)
    assert (np.ptp(fallback[..., 0], axis=1) > 30).all()


def test_the_fallback_box_fits_pre_cropped_faces(faces: FaceData) -> None:
    """No upsampling: dlib's HOG detector (80 px windows) finds nothing in 48 px faces."""
    found = detect_landmarks(faces.images, "dlib", upsample_to=48)
    assert found.fallbacks == len(faces)
    assert normalised_mean_error(found.points, faces.landmarks).mean() < 0.15  # measured 0.057


def test_given_backend_returns_the_dataset_landmarks(faces: FaceData) -> None:
    given = dataset_landmarks(faces, "given")
    np.testing.assert_array_equal(given.points, faces.landmarks)
    assert given.detected.all() and given.backend == "given"
    without = replace(faces, landmarks=None, name="bare")
    with pytest.raises(ValueError, match="'bare' has no landmarks"):
        dataset_landmarks(without, "given")


def test_bad_arguments_are_named(faces: FaceData) -> None:
    with pytest.raises(ValueError, match="unknown landmark backend 'openface'"):
        dataset_landmarks(faces, "openface")
    with pytest.raises(ValueError, match=r"'given' backend reads FaceData\.landmarks"):
        detect_landmarks(faces.images, "given")
    with pytest.raises(ValueError, match="uint8"):
        detect_landmarks(faces.images.astype(np.float32), "dlib")


class _CountingDetector:
    """Stands in for detect_landmarks: counts calls, returns the true points."""

    def __init__(self, data: FaceData) -> None:
        self.data, self.calls = data, 0

    def __call__(self, images: np.ndarray, backend: str, **options) -> Landmarks:
        self.calls += 1
        return Landmarks(self.data.landmarks, np.arange(len(images)) % 2 == 0, backend)


def test_cache_is_written_once_and_read_back(
    faces: FaceData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = _CountingDetector(faces)
    monkeypatch.setattr(module, "detect_landmarks", detector)
    first = dataset_landmarks(faces, "dlib", tmp_path)
    (path,) = tmp_path.iterdir()
    assert path.name.startswith("landmarks-synthetic-dlib-") and path.suffix == ".npz"
    again = dataset_landmarks(faces, "dlib", tmp_path)
    assert detector.calls == 1
    np.testing.assert_array_equal(again.points, first.points)
    np.testing.assert_array_equal(again.detected, first.detected)
    dataset_landmarks(faces, "dlib", tmp_path, upsample_to=96)  # other options: other file
    changed = faces.subset(np.arange(len(faces)))
    changed.images[0, 0, 0] ^= 1  # other images: other file
    dataset_landmarks(changed, "dlib", tmp_path)
    assert detector.calls == 3 and len(list(tmp_path.iterdir())) == 3


def test_unusable_cache_is_recomputed_with_a_warning(
    faces: FaceData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = _CountingDetector(faces)
    monkeypatch.setattr(module, "detect_landmarks", detector)
    dataset_landmarks(faces, "dlib", tmp_path)
    (path,) = tmp_path.iterdir()
    path.write_bytes(b"not an npz file")
    with pytest.warns(UserWarning, match="unusable landmark cache"):
        recomputed = dataset_landmarks(faces, "dlib", tmp_path)
    np.testing.assert_array_equal(recomputed.points, faces.landmarks)
    dataset_landmarks(faces, "dlib", tmp_path, upsample_to=96)  # a file with another key
    other = next(p for p in tmp_path.iterdir() if p != path)
    os.replace(other, path)
    with pytest.warns(UserWarning, match="holds key"):
        dataset_landmarks(faces, "dlib", tmp_path)
    assert detector.calls == 4
    dataset_landmarks(faces, "dlib", tmp_path)  # the overwritten file is good again
    assert detector.calls == 4 and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_missing_fan_weights_raise_naming_the_path(
    faces: FaceData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "2DFAN4-11f355bf06.pth.tar"
    assert fan_weights_path() == expected
    with pytest.raises(FileNotFoundError, match=str(expected)):
        detect_landmarks(faces.images[:1], "face_alignment")
    assert not expected.exists()  # nothing was downloaded


def test_face_alignment_gets_the_boxes_and_its_points_are_mapped_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAN itself is replaced: this checks fernb's plumbing, not FAN's accuracy."""
    import face_alignment

    seen: dict = {}

    class FakeFAN:
        def __init__(self, landmarks_type, **options) -> None:
            seen["options"] = options

        def get_landmarks_from_image(self, image, detected_faces):
            seen["image"], seen["boxes"] = image, detected_faces
            left, top = detected_faces[0][:2]
            return [np.tile([float(left), float(top)], (68, 1))]

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    fan_weights_path().parent.mkdir(parents=True)
    fan_weights_path().touch()
    monkeypatch.setattr(face_alignment, "FaceAlignment", FakeFAN)
    found = detect_landmarks(_blank(1), "face_alignment")
    assert seen["options"]["face_detector"] == "dlib" and seen["options"]["compile"] is False
    assert seen["image"].shape == (192, 192, 3) and seen["boxes"] == [(8, 8, 183, 183)]
    np.testing.assert_allclose(found.points, (8 + 0.5) / 4 - 0.5)
    assert found.backend == "face_alignment" and found.fallbacks == 1
