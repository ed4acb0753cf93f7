"""Shared figures draw what they are given."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from fernb.analysis.figures import face_grid


def test_face_grid_lays_out_images_titles_and_landmarks() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 12, 12), dtype=np.uint8)
    landmarks = rng.uniform(0, 12, (5, 68, 2)).astype(np.float32)
    fig = face_grid(images, columns=3, titles=list("abcde"), landmarks=landmarks)
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x 3 columns, the last cell empty
    assert [ax.get_title() for ax in axes[:5]] == list("abcde")
    for ax, points in zip(axes[:5], landmarks, strict=True):
        np.testing.assert_allclose(ax.collections[0].get_offsets(), points)
        np.testing.assert_array_equal(ax.images[0].get_array(), images[axes.index(ax)])
    assert not axes[5].images
    plt.close(fig)


def test_face_grid_labels_rows() -> None:
    fig = face_grid(np.zeros((4, 8, 8)), columns=2, row_labels=["happy", "sad"])
    assert [fig.axes[i].get_ylabel() for i in (0, 2)] == ["happy", "sad"]
    plt.close(fig)


def test_face_grid_titles_columns_and_checks_title_count() -> None:
    fig = face_grid(np.zeros((4, 8, 8)), columns=2, column_titles=["I = 0", "I = 5"])
    assert [ax.get_title() for ax in fig.axes] == ["I = 0", "I = 5", "", ""]
    plt.close(fig)
    with pytest.raises(ValueError, match="3 titles for 4 images"):
        face_grid(np.zeros((4, 8, 8)), columns=2, titles=["a", "b", "c"])
