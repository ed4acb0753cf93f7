"""t-SNE maps and the embedding and confusion plots."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import seaborn as sns
import torch
from matplotlib.colors import to_rgba
from scipy.spatial.distance import cdist

from fernb.analysis.embedding import plot_confusion, plot_embedding, tsne

CLASSES = ["anger", "happiness", "surprise", "fear"]


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    """Three far-apart Gaussian blobs of 40 points in 20-D."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    centres = rng.normal(size=(3, 20)) * 30
    return centres[labels] + rng.normal(size=(120, 20)), labels


@pytest.fixture(scope="module")
def blob_map(blobs) -> np.ndarray:
    return tsne(blobs[0], seed=0)


def test_tsne_is_n_by_2_and_deterministic_for_a_seed(blobs, blob_map) -> None:
    features, _ = blobs
    assert blob_map.shape == (120, 2) and np.isfinite(blob_map).all()
    np.testing.assert_array_equal(tsne(torch.from_numpy(features), seed=0), blob_map)
    assert not np.allclose(tsne(features, seed=1), blob_map)


def test_well_separated_clusters_stay_separated(blobs, blob_map) -> None:
    _, labels = blobs
    distances = cdist(blob_map, blob_map)
    np.fill_diagonal(distances, np.inf)
    nearest = labels[distances.argmin(axis=1)]
    assert (nearest == labels).mean() == 1.0  # 1-NN in the 2-D map recovers every blob


def test_tsne_lowers_a_perplexity_too_large_for_the_data() -> None:
    features = np.random.default_rng(1).normal(size=(13, 5))
    with pytest.warns(UserWarning, match="using 4.00"):
        assert tsne(features, perplexity=30).shape == (13, 2)


def test_plot_embedding_draws_every_point_in_its_class_colour() -> None:
    rng = np.random.default_rng(2)
    points = rng.normal(size=(50, 2))
    labels = rng.integers(0, 3, 50)  # "fear" (3) has no points but keeps its legend entry
    ax = plot_embedding(points, labels, CLASSES)
    dots = ax.collections[0]
    np.testing.assert_allclose(dots.get_offsets(), points)
    palette = np.array([to_rgba(c) for c in sns.color_palette("colorblind", len(CLASSES))])
    np.testing.assert_allclose(dots.get_facecolors(), palette[labels])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == CLASSES
    plt.close(ax.figure)


def test_plot_confusion_draws_and_labels_every_cell() -> None:
    matrix = np.array([[8, 2, 0], [1, 3, 0], [0, 5, 5]])
    classes = CLASSES[:3]
    ax = plot_confusion(matrix, classes)
    cells = ax.collections[0].get_array()
    assert cells.size == 9
    shares = np.array([float(t.get_text()) for t in ax.texts]).reshape(3, 3)
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=0.015)  # printed to 2 decimals
    np.testing.assert_allclose(shares, [[0.8, 0.2, 0], [0.25, 0.75, 0], [0, 0.5, 0.5]])
    assert [t.get_text() for t in ax.get_yticklabels()] == classes
    plt.close(ax.figure)

    ax = plot_confusion(matrix, classes, normalise=False)
    assert [int(t.get_text()) for t in ax.texts] == matrix.ravel().tolist()
    plt.close(ax.figure)
