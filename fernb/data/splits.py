"""Train/validation/test splits.

Official splits come with the data (``FaceData.split``). Datasets without one are
evaluated by k-fold cross-validation; fernb's default is :func:`subject_kfold`, where no
person appears in both the training and the test fold. :func:`image_kfold` exists only to
match papers that split per image, and warns: CK+ style datasets hold several
near-identical frames of each sequence, which then fall on both sides of the split.

Model selection needs a validation split that is not the test set:
:func:`holdout_subjects` takes one from a training fold, again by subject.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedKFold

from fernb.data.facedata import FaceData

__all__ = ["LeakageWarning", "holdout_subjects", "image_kfold", "official_split", "subject_kfold"]

Fold = tuple[np.ndarray, np.ndarray]


class LeakageWarning(UserWarning):
    """A split lets images of one person (or one sequence) into both train and test."""


def official_split(data: FaceData) -> dict[str, np.ndarray]:
    """Positions of the train, val and test images of the dataset's official split."""
    if not (data.split != "").any():
        raise ValueError(f"dataset {data.name!r} has no official split; use subject_kfold")
    return {name: data.indices(name) for name in ("train", "val", "test")}


def subject_kfold(data: FaceData, k: int, seed: int = 0) -> list[Fold]:
    """Stratified, subject-independent k-fold cross-validation.

    Returns k pairs ``(train_idx, test_idx)``: every image is in exactly one test fold, no
    subject has images in two folds, and each fold's class proportions are as close to the
    whole dataset's as whole subjects allow (scikit-learn's ``StratifiedGroupKFold``).
    Images without a label (-1) are stratified as a class of their own.
    """
    _check_k(data, k, len(np.unique(data.subjects)), "subjects")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    positions = np.arange(len(data))
    return [
        (np.sort(train), np.sort(test))
        for train, test in splitter.split(positions, data.labels, groups=data.subjects)
    ]


def image_kfold(data: FaceData, k: int, seed: int = 0) -> list[Fold]:
    """Stratified k-fold over images, ignoring who is in them (to match papers that did so).

    Warns with :class:`LeakageWarning` when a subject lands in a training and a test fold.
    """
    _check_k(data, k, len(data), "images")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [
        (np.sort(train), np.sort(test))
        for train, test in splitter.split(np.arange(len(data)), data.labels)
    ]
    shared = {
        subject
        for train, test in folds
        for subject in np.intersect1d(data.subjects[train], data.subjects[test])
    }
    if shared:
        warnings.warn(
            f"image_kfold on {data.name or 'this dataset'}: {len(shared)} subject(s) have images "
            "in both a training and a test fold, so test accuracy is optimistic; "
            "subject_kfold avoids this",
            LeakageWarning,
            stacklevel=2,
        )
    return folds


def holdout_subjects(
    data: FaceData, indices: np.ndarray, fraction: float = 0.1, seed: int = 0
) -> Fold:
    """Split ``indices`` into (train, val) by subject, with about ``fraction`` of the images in val.

    Use it to select models inside a cross-validation training fold, never on its test fold.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    indices = np.asarray(indices)
    _check_k(data.subset(indices), 2, len(np.unique(data.subjects[indices])), "subjects")
    splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
    train, val = next(splitter.split(indices, groups=data.subjects[indices]))
    return np.sort(indices[train]), np.sort(indices[val])


def _check_k(data: FaceData, k: int, available: int, what: str) -> None:
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if available < k:
        raise ValueError(f"cannot make {k} folds from {available} {what} of {data.name or 'data'}")
