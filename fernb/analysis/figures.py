"""Figures the chapters share: grids of faces, with landmarks when there are any."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

__all__ = ["face_grid"]


def face_grid(
    images: np.ndarray,
    columns: int,
    titles: Sequence[str] | None = None,
    landmarks: np.ndarray | None = None,
    row_labels: Sequence[str] | None = None,
    cell_size: float = 1.3,
    column_titles: Sequence[str] | None = None,
) -> Figure:
    """Draw ``images`` (N x H x W gray or N x H x W x 3, uint8 or floats in [0, 1]) in a grid.

    ``landmarks`` (N x 68 x 2 pixel coordinates) are drawn as dots over their image;
    ``titles`` label each image, ``column_titles`` each column (above the first row) and
    ``row_labels`` each row.
    """
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    n = len(images)
    rows = -(-n // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(cell_size * columns, cell_size * rows), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
        if landmarks is not None:
            ax.scatter(landmarks[i, :, 0], landmarks[i, :, 1], s=2, c="tab:orange", linewidths=0)
        if titles is not None:
            ax.set_title(titles[i], fontsize="small")
    for column, title in enumerate(column_titles or []):
        axes[0, column].set_title(title, fontsize="small")
    for row, label in enumerate(row_labels or []):
        axes[row, 0].set_axis_on()
        axes[row, 0].set_xticks([])
        axes[row, 0].set_yticks([])
        axes[row, 0].set_ylabel(label, fontsize="small")
    fig.tight_layout()
    return fig
