"""Square face crops: one box per clip, so that the face does not jitter from frame to frame.

The box comes from a face detector (:func:`fernb.data.mmi.find_face`) or from landmarks
(:func:`landmark_box`); :func:`crop_square` cuts the same square from every frame of a clip.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["Box", "crop_square", "cut_square", "landmark_box", "square_around"]

Box = tuple[float, float, float, float]  # x, y, width, height in pixels


def landmark_box(points: np.ndarray) -> Box:
    """The smallest box (x, y, w, h) holding every point of ``points`` (..., 2: x, y)."""
    flat = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    (left, top), (right, bottom) = flat.min(axis=0), flat.max(axis=0)
    return float(left), float(top), float(right - left), float(bottom - top)


def square_around(
    box: Box | None, height: int, width: int, margin: float = 0.0
) -> tuple[int, int, int]:
    """(left, top, side) of the square around ``box`` in a ``height`` x ``width`` frame.

    The square's side is the box's longer side grown by ``margin`` times it; it keeps the
    box's centre and lies inside the frame (it is shifted, and shrunk to the frame's shorter
    side if need be). Without a box it is the frame's centre square.
    """
    if box is None:
        side, cx, cy = min(height, width), width / 2, height / 2
    else:
        x, y, w, h = box
        side, cx, cy = max(w, h) * (1 + margin), x + w / 2, y + h / 2
    side = round(min(side, height, width))
    left = round(min(max(cx - side / 2, 0), width - side))
    top = round(min(max(cy - side / 2, 0), height - side))
    return left, top, side


def cut_square(frames: np.ndarray, square: tuple[int, int, int], size: int) -> np.ndarray:
    """Cut ``square`` (left, top, side; :func:`square_around`) from every frame (n, H, W) and
    resize it to ``size`` x ``size`` (area interpolation). Returns (n, size, size)."""
    left, top, side = square
    crops = frames[:, top : top + side, left : left + side]
    return np.stack(
        [cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) for crop in crops]
    )


def crop_square(frames: np.ndarray, box: Box | None, size: int, margin: float = 0.0) -> np.ndarray:
    """:func:`cut_square` of the :func:`square_around` ``box`` in frames (n, H, W)."""
    return cut_square(frames, square_around(box, *frames.shape[1:3], margin), size)
