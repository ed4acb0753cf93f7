"""Face vs non-face data of the face-classification network (Meen et al.)."""

from __future__ import annotations

import numpy as np
import pytest

from fernb.data import FaceData
from fernb.data.face_nonface import (
    TEXTURES,
    lfw_subset,
    make_face_nonface,
    natural_patches,
    resize_gray,
    textures,
)
from fernb.models.feature_attention import PRESETS, EmotionData, face_training_data


@pytest.fixture(scope="module")
def dataset():
    faces = np.random.default_rng(0).integers(0, 256, (40, 32, 32)).astype(np.uint8)
    return make_face_nonface({"mine": faces}, n_patches=20, n_textures=20, size=24, seed=3)


def test_sources_labels_and_per_source_splits(dataset) -> None:
    assert dataset.images.shape == (40 + 100 + 100 + 20 + 20, 24, 24)
    assert dataset.images.dtype == np.uint8
    expected_label = {"mine": 1, "lfw-face": 1, "lfw-nonface": 0, "natural-patch": 0, "texture": 0}
    for source, label in expected_label.items():
        assert set(dataset.labels[dataset.sources == source]) == {label}
    counts = dataset.counts()
    # 70 / 15 / 15 of each source, rounded on the cumulative shares
    assert counts.loc["lfw-face", ["train", "val", "test"]].tolist() == [70, 15, 15]
    assert counts.loc["mine", ["train", "val", "test"]].tolist() == [28, 6, 6]
    assert counts.loc["texture", ["train", "val", "test"]].tolist() == [14, 3, 3]
    assert counts.loc["mine", "class"] == "face" and counts.loc["texture", "class"] == "non-face"


def test_tensors_hold_one_split(dataset) -> None:
    val = dataset.tensors("val")
    n_val = int((dataset.split == "val").sum())
    assert val["image"].shape == (n_val, 1, 24, 24) and val["label"].shape == (n_val,)
    np.testing.assert_array_equal(
        val["image"][:, 0].numpy(), dataset.images[dataset.split == "val"]
    )
    with pytest.raises(ValueError, match="train, val or test"):
        dataset.tensors("all")


def test_same_seed_same_data() -> None:
    faces = np.zeros((10, 48, 48), dtype=np.uint8)
    first = make_face_nonface({"f": faces}, 5, 5, size=16, seed=1)
    again = make_face_nonface({"f": faces}, 5, 5, size=16, seed=1)
    other = make_face_nonface({"f": faces}, 5, 5, size=16, seed=2)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.split, again.split)
    assert not np.array_equal(first.images, other.images)


def test_bad_arguments_are_refused() -> None:
    faces = np.zeros((4, 16, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="summing to 1"):
        make_face_nonface({"f": faces}, 1, 1, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="reserved"):
        make_face_nonface({"texture": faces}, 1, 1)
    with pytest.raises(ValueError, match=">= 0"):
        make_face_nonface({"f": faces}, -1, 1)


def test_resize_gray() -> None:
    constant = np.full((2, 7, 9), 77, dtype=np.uint8)
    np.testing.assert_array_equal(resize_gray(constant, 5), np.full((2, 5, 5), 77))
    floats = np.full((1, 4, 4), 0.5)
    np.testing.assert_array_equal(resize_gray(floats, 4), np.full((1, 4, 4), 128))  # 127.5 up
    ramp = np.tile(np.arange(8, dtype=np.uint8) * 30, (1, 8, 1))
    small = resize_gray(ramp, 4)
    assert (np.diff(small[0].astype(int), axis=1) > 0).all()  # a left-right ramp stays one
    with pytest.raises(ValueError, match="N x H x W"):
        resize_gray(np.zeros((4, 4), dtype=np.uint8), 2)


def test_lfw_subset_faces_and_nonfaces() -> None:
    faces, nonfaces = lfw_subset(25)
    assert faces.shape == nonfaces.shape == (100, 25, 25)
    assert faces.dtype == np.uint8
    # the faces are centred crops of faces, alike on average; backgrounds are not
    mean_face = faces.mean(0).ravel()
    textured = [b for b in nonfaces if b.std() > 0]  # one background crop is flat
    face_fit = np.mean([np.corrcoef(f.ravel(), mean_face)[0, 1] for f in faces])
    background_fit = np.mean([np.corrcoef(b.ravel(), mean_face)[0, 1] for b in textured])
    assert face_fit > 0.4 > 0.1 > background_fit


def test_natural_patches_and_textures() -> None:
    rng = np.random.default_rng(0)
    patches = natural_patches(6, 32, rng, names=("brick", "coins"))
    assert patches.shape == (6, 32, 32) and patches.dtype == np.uint8
    assert all(p.std() > 0 for p in patches)
    generated = textures(2 * len(TEXTURES), 32, np.random.default_rng(1))
    assert generated.shape == (10, 32, 32)
    # every texture is stretched to [low, high], low <= 0.4 * 255 and high >= 0.6 * 255
    assert (generated.reshape(10, -1).min(1) <= 102).all()
    assert (generated.reshape(10, -1).max(1) >= 153).all()
    np.testing.assert_array_equal(generated, textures(10, 32, np.random.default_rng(1)))


def test_face_network_positives_are_emotion_training_faces_only() -> None:
    rng = np.random.default_rng(0)
    n = 30
    images = rng.integers(0, 256, (n, 48, 48)).astype(np.uint8)
    data = FaceData(images, np.zeros(n), ["anger"], np.arange(n), np.full(n, ""), name="mine")
    index = np.arange(n)
    emotion = EmotionData(data, {"train": index[:20], "val": index[20:25], "test": index[25:]}, "")
    preset = PRESETS["default"]
    faces = face_training_data(emotion, preset, seed=0)
    positives = faces.images[faces.sources == "mine"]
    assert len(positives) == min(preset.face_images, 20)
    train_bytes = {image.tobytes() for image in images[:20]}
    assert all(image.tobytes() in train_bytes for image in positives)
    # non-faces: LFW backgrounds plus half as many patches and textures each as positives
    assert (faces.sources == "natural-patch").sum() == (len(positives) + 100) // 2
    assert (faces.labels == 0).sum() == 100 + 2 * ((len(positives) + 100) // 2)
