"""AU-aware attention maps of E2-Capsnet (Cao et al.), after EAC-Net (Li et al. 2017).

A face's 68 landmarks (iBUG order, 0-based) are rescaled to a 100 x 100 grid,
``(x / W * 100, y / H * 100)``. With the unit ``r = |x39 - x42|`` (the inner eye corners),
ten landmark pairs give 20 action-unit (AU) centres (:data:`AU_REGIONS`), some shifted
vertically by a fraction of ``r``. Each centre paints the weights of E2-Capsnet's Eq. 1,

    W_a = 1 - 0.07 d_m,    d_m = |dx| + |dy|    (Manhattan distance to the centre),

on its 15 x 15 area |dx|, |dy| <= 7; overlapping areas take the maximum and the rest of
the map is 0. The paper feeds this map (resized to 224 x 224) to stages 3 and 4 of its
VGG16 backbone.

Conventions (pixel centres at integer coordinates, as everywhere in fernb): a centre at
grid coordinates (x, y) sits on map pixel ``(floor(x), floor(y))``, i.e. map pixel j holds
grid coordinates [j, j + 1). Mirroring the landmarks (x -> W - 1 - x, indices swapped by
:data:`fernb.data.augment.FLIP_68`) moves a centre from grid x to 100 - 100 / W - x, while
mirroring the map sends column j to 99 - j: the map of mirrored landmarks is the mirrored
map shifted left by ceil(100 / W - 1 + frac(x)) columns, which is 0 only for W = 100 and
integer x (1 for other x at W = 100; 2 or 3 at W = 48). Augment maps together with their
images (:class:`fernb.data.augment.Augmentation` takes ``maps=``) rather than recomputing
them from mirrored landmarks.

``released_code_quirks=True`` reproduces the map generator that E2-Capsnet copied from
EAC-Net (``get_map`` in ``get_attention_map_dlib.py``, run under NumPy 1), which differs
from the paper's text in three ways:

1. the centre is cast with ``astype('uint8')``: truncated towards zero, then wrapped
   modulo 256, so a centre at x = -3.5 lands at column 253 (off the map) and one at
   x = -200 at column 56;
2. the window is ``range(c - 7, c + 7)``: half-open, 14 x 14, without the row and column
   at dx = +7 and dy = +7;
3. a pixel outside the map ends its loop (``break``) instead of being skipped: a centre
   whose window starts left of column 0 or above row 0 (integer centre x < 7 or y < 7)
   paints nothing at all; at the right and bottom edges the effect equals skipping.

(The same code run under NumPy >= 2 computes ``px - pt[0]`` in uint8, NEP 50, and paints a
scrambled pattern; NumPy 1, which the authors used, promoted to int64 as reproduced here.)
Not reproduced: the release keeps dlib's landmarks as integers and writes ``x / W * 100``
back into an integer array, so its grid coordinates and the ruler ``r`` are truncated before
the shifts; :func:`au_centers` keeps them as floats in both modes, so a quirks map's centres
can sit one grid pixel from the release's.

References: Cao, Yao, An, "E2-Capsule neural networks for facial expression recognition
using AU-aware attention", IET Image Processing 2020 (Eq. 1); Li, Abtahi, Zhu, Yin,
"EAC-Net: A region-based deep enhancing and cropping approach for facial action unit
detection", FG 2017.
"""

from __future__ import annotations

from fractions import Fraction
from typing import NamedTuple, TypeVar

import numpy as np
import torch

__all__ = ["AU_REGIONS", "AURegion", "attention_map", "au_centers", "paint_centres"]

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

GRID = 100  # side of the grid the centres live on
REACH = 7  # half side of an AU area on the grid
SLOPE = 0.07  # weight lost per grid unit of Manhattan distance


class AURegion(NamedTuple):
    """Two landmarks whose positions, shifted down by ``shift`` x r, are two AU centres."""

    first: int
    second: int
    shift: Fraction
    aus: str


#: The ten AU regions of EAC-Net, in the order of :func:`au_centers`.
AU_REGIONS: tuple[AURegion, ...] = (
    AURegion(21, 22, Fraction(-1, 2), "AU1 inner brow raiser"),
    AURegion(18, 25, Fraction(-1, 3), "AU2 outer brow raiser"),
    AURegion(19, 24, Fraction(1, 3), "AU4 brow lowerer"),
    AURegion(41, 46, Fraction(1), "AU6 cheek raiser"),
    AURegion(38, 43, Fraction(0), "AU7 lid tightener"),
    AURegion(49, 53, Fraction(0), "AU10 upper lip raiser"),
    AURegion(48, 54, Fraction(0), "AU12, AU14, AU15 lip corners"),
    AURegion(51, 57, Fraction(0), "AU17 chin raiser"),
    AURegion(61, 63, Fraction(0), "AU23, AU24 lip tightener and pressor"),
    AURegion(56, 58, Fraction(1, 2), "AU23 lip tightener, chin"),
)

_INDEX = torch.tensor([[region.first, region.second] for region in AU_REGIONS]).flatten()
_SHIFT = [(region.shift.numerator, region.shift.denominator) for region in AU_REGIONS]


def _as_tensor(values: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values
    return torch.from_numpy(np.ascontiguousarray(values))


def _like(result: torch.Tensor, template: ArrayLike) -> ArrayLike:
    return result if isinstance(template, torch.Tensor) else result.cpu().numpy()


def _height_width(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if np.ndim(image_size) == 0:
        return int(image_size), int(image_size)
    height, width = image_size
    return height, width


def au_centers(landmarks: ArrayLike, image_size: int | tuple[int, int]) -> ArrayLike:
    """The 20 AU centres of each face on the 100 x 100 grid.

    Landmarks are rescaled to ``(x * 100 / W, y * 100 / H)``; with ``r = |x39 - x42|``, the
    region ``(a, b, s)`` of :data:`AU_REGIONS` gives the centres ``p_a + (0, s r)`` and
    ``p_b + (0, s r)``, in that order (EAC-Net's ``get_au_tg_dlib``).

    Args:
        landmarks: (..., 68, 2) pixel coordinates (x, y), NumPy array or torch tensor.
        image_size: (height, width) of the images, or one int for square images.

    Returns:
        (..., 20, 2) float64 grid coordinates, of the same kind (and device) as the input.
    """
    points = _as_tensor(landmarks).to(torch.float64)
    if points.shape[-2:] != (68, 2):
        raise ValueError(f"landmarks must be (..., 68, 2), got {tuple(points.shape)}")
    height, width = _height_width(image_size)
    scale = torch.tensor([GRID / width, GRID / height], dtype=torch.float64)
    grid = points * scale.to(points.device)
    ruler = (grid[..., 39, 0] - grid[..., 42, 0]).abs()
    shifts = torch.stack([ruler * num / den for num, den in _SHIFT], dim=-1)  # (..., 10)
    centres = grid[..., _INDEX.to(points.device), :]
    centres[..., 1] += shifts.repeat_interleave(2, dim=-1)
    return _like(centres, landmarks)


def paint_centres(
    centres: ArrayLike, map_size: int = GRID, *, released_code_quirks: bool = False
) -> ArrayLike:
    """Attention map of AU centres given on the 100 x 100 grid (Cao et al., Eq. 1).

    Each centre sits on the map pixel ``c = floor(p * map_size / 100)`` and paints

        w = 1 - 0.07 (|dx| + |dy|) * 100 / map_size

    on every pixel ``c + (dx, dy)`` with ``|dx|, |dy| <= floor(7 * map_size / 100)``:
    distances are measured on the 100 grid, so ``map_size`` sets the resolution and leaves
    the areas' extent on the face unchanged (at 100: the paper's 15 x 15 areas, 1 at the
    centre, 0.65 at (dx, dy) = (2, 3), 0.02 at the corners). A fixed 15 x 15 window at
    every ``map_size`` would agree at 100 and shrink the areas on the face at larger maps
    (a 224 map would paint areas of 7% of the face instead of 15%); the paper draws only the
    100 grid. Overlaps take the maximum;
    pixels outside the map are skipped; centres with a NaN or infinite coordinate paint
    nothing.

    Args:
        centres: (..., K, 2) grid coordinates (x, y), NumPy array or torch tensor.
        map_size: side of the square map in pixels.
        released_code_quirks: paint as the released EAC-Net / E2-Capsnet code does (see the
            module docstring); only on the 100 grid.

    Returns:
        (..., map_size, map_size) float32 in [0, 1], of the same kind (and device) as
        ``centres``; row index y, column index x.
    """
    points = _as_tensor(centres).to(torch.float64)
    if points.shape[-1] != 2:
        raise ValueError(f"centres must be (..., K, 2), got {tuple(points.shape)}")
    if released_code_quirks and map_size != GRID:
        raise ValueError("released_code_quirks draws on the 100 x 100 grid only (map_size=100)")
    missing = ~points.isfinite().all(dim=-1, keepdim=True)
    if released_code_quirks:
        # uint8 cast: truncate, wrap to 0..255; a window starting before 0 paints nothing
        pixels = torch.remainder(torch.trunc(points.nan_to_num(0.0)), 256).long()
        low, high = -REACH, REACH - 1
        painted = ~missing[..., 0] & (pixels >= REACH).all(dim=-1)
    else:
        off_map = float(2 * map_size + REACH)  # keeps the integer cast in range
        scaled = (points * map_size / GRID).nan_to_num(-off_map).clamp(-off_map, off_map)
        pixels = torch.floor(scaled).long()
        low, high = -(REACH * map_size // GRID), REACH * map_size // GRID
        painted = ~missing[..., 0]
    offsets = torch.arange(map_size, device=points.device) - pixels[..., None]  # (..., K, 2, M)
    inside = (offsets >= low) & (offsets <= high) & painted[..., None, None]
    far = float(2 * map_size + 2 * REACH)  # any distance this large weighs < 0
    steps = torch.where(inside, offsets.abs().to(torch.float32), far)
    painted_map = torch.zeros((*points.shape[:-2], map_size, map_size), device=points.device)
    for centre in range(points.shape[-2]):  # running maximum: memory stays (..., M, M)
        distance = steps[..., centre, 0, None, :] + steps[..., centre, 1, :, None]
        painted_map = torch.maximum(painted_map, 1.0 - (SLOPE * GRID / map_size) * distance)
    return _like(painted_map, centres)


def attention_map(
    landmarks: ArrayLike,
    image_size: int | tuple[int, int],
    map_size: int = GRID,
    *,
    released_code_quirks: bool = False,
) -> ArrayLike:
    """E2-Capsnet's AU-aware attention map of each face: :func:`paint_centres` of
    :func:`au_centers`.

    Args:
        landmarks: (..., 68, 2) pixel coordinates (x, y), NumPy array or torch tensor.
        image_size: (height, width) of the images, or one int for square images.
        map_size: side of the square map (the paper draws at 100 and resizes to 224).
        released_code_quirks: reproduce the released code's half-open 14 x 14 window,
            uint8 wrap of the centres and ``break`` at the borders (module docstring).

    Returns:
        (..., map_size, map_size) float32 in [0, 1], NumPy in, NumPy out; torch in, torch
        out on the same device.

    Examples:
        >>> from fernb.data import load
        >>> faces = load("synthetic", n_subjects=1, samples_per_subject=4)
        >>> attention_map(faces.landmarks, faces.image_size).shape
        (4, 100, 100)
    """
    centres = au_centers(landmarks, image_size)
    return paint_centres(centres, map_size, released_code_quirks=released_code_quirks)
