"""t-SNE maps of learned features and confusion-matrix heatmaps.

E2-Capsnet's Fig. 3 compares models by t-SNE maps of their features on EmotioNet;
:func:`tsne` and :func:`plot_embedding` draw the same kind of figure for any model's
penultimate features, and :func:`plot_confusion` the confusion matrices the papers discuss
(Capsule-LSTM's Fig. 4.3).

t-SNE comes from openTSNE (pinned with the book) rather than scikit-learn: its defaults
follow Kobak & Berens (Nat. Commun. 2019): PCA initialisation, which keeps the global layout
of the classes and, with a fixed ``random_state``, the same map on every run; a learning
rate scaled with N; and, beyond 10,000 points, FFT-accelerated gradients whose cost grows
linearly with N (Linderman et al., Nat. Methods 2019), where scikit-learn has Barnes-Hut
(N log N) only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import openTSNE
import pandas as pd
import seaborn as sns
import torch
from matplotlib.axes import Axes

from fernb.metrics import row_normalise

__all__ = ["plot_confusion", "plot_embedding", "tsne"]


def tsne(
    features: np.ndarray | torch.Tensor,
    seed: int = 0,
    perplexity: float = 30.0,
    n_jobs: int = 1,
) -> np.ndarray:
    """Embed N x D ``features`` in 2-D with openTSNE; the same ``seed`` gives the same map.

    Perplexity is the effective number of neighbours each point attends to (van der Maaten
    & Hinton, JMLR 2008); t-SNE needs ``3 * perplexity < N``, so a larger value is lowered to
    ``(N - 1) / 3`` with a warning. ``n_jobs`` threads (-1: all cores) give the same result.
    """
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    features = np.ascontiguousarray(features, dtype=np.float64).reshape(len(features), -1)
    if len(features) < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {len(features)}")
    largest = (len(features) - 1) / 3
    if perplexity > largest:
        warnings.warn(
            f"perplexity {perplexity} is too large for {len(features)} points; using {largest:.2f}",
            stacklevel=2,
        )
        perplexity = largest
    embedding = openTSNE.TSNE(perplexity=perplexity, random_state=seed, n_jobs=n_jobs)
    return np.asarray(embedding.fit(features))


def plot_embedding(
    points: np.ndarray,
    labels: np.ndarray | Sequence[int],
    classes: Sequence[str],
    ax: Axes | None = None,
) -> Axes:
    """Scatter 2-D ``points`` coloured by class (``labels`` index ``classes``).

    Every class gets its colour and legend entry, present or not, so maps of several models
    share one colour key. t-SNE axes have no units: ticks are hidden.
    """
    points = np.asarray(points)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise ValueError(f"expected N x 2 points and N labels, got {points.shape}, {labels.shape}")
    ax = ax if ax is not None else plt.figure().add_subplot()
    sns.scatterplot(
        x=points[:, 0],
        y=points[:, 1],
        hue=pd.Categorical.from_codes(labels, categories=list(classes)),
        hue_order=list(classes),
        palette=sns.color_palette("colorblind", len(classes)),
        s=12,
        linewidth=0,
        ax=ax,
    )
    ax.set(xticks=[], yticks=[], xlabel="t-SNE 1", ylabel="t-SNE 2")
    ax.legend(title="class", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return ax


def plot_confusion(
    matrix: np.ndarray,
    classes: Sequence[str],
    normalise: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of a C x C confusion matrix (rows: true class), the value written in each cell.

    With ``normalise`` the counts are divided by their row total
    (:func:`fernb.metrics.row_normalise`): the diagonal is each class's accuracy.
    """
    matrix = np.asarray(matrix)
    if matrix.shape != (len(classes), len(classes)):
        raise ValueError(f"matrix {matrix.shape} does not match {len(classes)} classes")
    values = row_normalise(matrix) if normalise else matrix
    ax = ax if ax is not None else plt.figure().add_subplot()
    sns.heatmap(
        values,
        annot=True,
        fmt=".2f" if normalise else ("d" if np.issubdtype(matrix.dtype, np.integer) else "g"),
        cmap="Blues",
        vmin=0,
        vmax=1 if normalise else None,
        square=True,
        xticklabels=list(classes),
        yticklabels=list(classes),
        cbar_kws={"label": "share of the true class" if normalise else "images"},
        ax=ax,
    )
    ax.set(xlabel="predicted", ylabel="true")
    return ax
