"""Official splits, subject-independent k-fold, per-image k-fold and validation hold-out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fernb.data import FaceData
from fernb.data.splits import (
    LeakageWarning,
    holdout_subjects,
    image_kfold,
    official_split,
    subject_kfold,
)


def _data(n_subjects: int = 30, per_subject: int = 6, split: str = "") -> FaceData:
    rng = np.random.default_rng(0)
    n = n_subjects * per_subject
    return FaceData(
        images=np.zeros((n, 4, 4), np.uint8),
        labels=rng.integers(0, 3, n),
        classes=["anger", "happiness", "surprise"],
        subjects=np.repeat([f"S{i:03d}" for i in range(n_subjects)], per_subject),
        split=np.full(n, split),
        name="toy",
    )


@pytest.mark.parametrize("k", [3, 5, 10])
def test_subject_kfold_partitions_images_and_subjects(k: int) -> None:
    data = _data()
    folds = subject_kfold(data, k, seed=1)
    assert len(folds) == k
    test_counts = np.zeros(len(data), int)
    subject_fold: dict[str, int] = {}
    for fold, (train, test) in enumerate(folds):
        test_counts[test] += 1
        assert np.intersect1d(train, test).size == 0
        assert np.union1d(train, test).size == len(data)
        assert not set(data.subjects[train]) & set(data.subjects[test])
        for subject in set(data.subjects[test]):
            assert subject_fold.setdefault(subject, fold) == fold, f"{subject} in two test folds"
    np.testing.assert_array_equal(test_counts, 1)  # every image in exactly one test fold


def test_subject_kfold_is_stratified() -> None:
    data = _data(n_subjects=60, per_subject=1)
    overall = np.bincount(data.labels, minlength=3) / len(data)
    for _, test in subject_kfold(data, 5):
        share = np.bincount(data.labels[test], minlength=3) / len(test)
        assert np.abs(share - overall).max() < 0.1


def test_subject_kfold_depends_on_the_seed_only() -> None:
    data = _data()
    first, again, other = (subject_kfold(data, 5, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, other, strict=True))


def test_too_many_folds_is_an_error() -> None:
    with pytest.raises(ValueError, match="4 subjects"):
        subject_kfold(_data(n_subjects=4), 5)
    with pytest.raises(ValueError, match="at least 2"):
        subject_kfold(_data(), 1)


def test_image_kfold_warns_about_leakage_across_subjects() -> None:
    with pytest.warns(LeakageWarning, match="subject"):
        folds = image_kfold(_data(), 5)
    counts = np.bincount(np.concatenate([test for _, test in folds]))
    np.testing.assert_array_equal(counts, 1)


def test_image_kfold_is_silent_with_one_image_per_subject() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", LeakageWarning)
        image_kfold(_data(n_subjects=40, per_subject=1), 4)


def test_holdout_subjects_splits_a_training_fold_by_subject() -> None:
    data = _data()
    train_fold, _ = subject_kfold(data, 5)[0]
    train, val = holdout_subjects(data, train_fold, fraction=0.2, seed=3)
    np.testing.assert_array_equal(np.union1d(train, val), train_fold)
    assert not set(data.subjects[train]) & set(data.subjects[val])
    assert 0.1 < len(val) / len(train_fold) < 0.3


def test_official_split_returns_the_dataset_split() -> None:
    data = _data(n_subjects=3, per_subject=2)
    data.split = np.array(["train", "train", "val", "test", "test", "train"])
    split = official_split(data)
    assert {k: v.tolist() for k, v in split.items()} == {
        "train": [0, 1, 5],
        "val": [2],
        "test": [3, 4],
    }
    with pytest.raises(ValueError, match="no official split"):
        official_split(_data())
