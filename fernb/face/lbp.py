"""Local binary patterns of whole batches, in torch (CPU or GPU).

The three LBP variants of Li et al.'s attention CNN (their Table 1), computed for a batch
of gray images at once. Each pixel with value g_c is compared with P neighbours g_p:

    LBP_{P,R} = sum_{p=0}^{P-1} s(g_p - g_c) 2^p,   s(x) = 1 if x >= 0 else 0.

- ``"circular"`` (Ojala et al. 2002): P points on a circle of radius R, neighbour p at
  (row, col) = (r_c - R sin(2 pi p / P), c_c + R cos(2 pi p / P)), i.e. p = 0 to the
  right and p increasing counter-clockwise on screen, bilinearly interpolated; 2^P codes.
- ``"uniform"``: the rotation-invariant uniform patterns LBP^{riu2}_{P,R} (Ojala et al.
  2002) of the same samples; P + 2 codes.
- ``"original"`` (Ojala et al. 1996): the 8 pixels of the 3 x 3 neighbourhood, without
  interpolation; 256 codes.

Both circular variants equal ``skimage.feature.local_binary_pattern`` (methods
``"default"`` and ``"uniform"``) exactly, border and rounding included: scikit-image rounds
the offsets to 5 decimals, interpolates in float64 and reads 0 outside the image. The
original operator follows the same conventions (bit p at angle 2 pi p / 8, zeros outside
the image), so it differs from ``"circular"`` at P = 8, R = 1 only in the four diagonal
bits: the corner pixel instead of a bilinear sample at distance 1. The paper's ablation
thereby compares the sampling only. (Other codes number the bits differently, e.g.
clockwise from the top-left corner; any fixed order is the same operator, with the 256
codes renamed.) As in the paper's Eq. (2), a neighbour equal to the centre gives a 1.

Li et al. feed LBP images, not histograms, to the second VGG stream; :func:`lbp_image`
scales the codes to [0, 1] for it (the paper does not say how it scaled them).

Zero padding means that border pixels see black neighbours: feed raw intensities (uint8
or [0, 1] floats), not zero-mean ones, whose border bits would flip. Any dtype gives the
codes of its values in float64, so uint8 images and their float copies agree exactly;
rescaled copies (x / 255) can differ where an interpolated sample ties with the centre up
to rounding, as in scikit-image.

References: T. Ojala, M. Pietikainen, D. Harwood, "A comparative study of texture
measures with classification based on featured distributions", Pattern Recognition 29(1),
51-59, 1996. T. Ojala, M. Pietikainen, T. Maenpaa, "Multiresolution gray-scale and
rotation invariant texture classification with local binary patterns", IEEE TPAMI 24(7),
971-987, 2002.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["LBP_METHODS", "Method", "code_count", "lbp", "lbp_image"]

Method = Literal["original", "circular", "uniform"]
LBP_METHODS: tuple[str, ...] = ("original", "circular", "uniform")

#: (row, col) offsets of the 3 x 3 neighbours, bit p at angle 2 pi p / 8 (east first,
#: counter-clockwise on screen).
_SQUARE_OFFSETS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))


def code_count(method: Method, P: int = 8) -> int:
    """Number of distinct codes: 2^P (256 for ``"original"``), P + 2 for ``"uniform"``."""
    _check_method(method)
    if method == "uniform":
        return P + 2
    return 256 if method == "original" else 2**P


def lbp(
    images: torch.Tensor | np.ndarray, method: Method, P: int = 8, R: float = 1.0
) -> torch.Tensor:
    """LBP codes of a batch of gray images.

    Args:
        images: N x H x W or N x 1 x H x W, uint8 or floats (compared in float64).
        method: ``"original"`` (P = 8, R = 1 only), ``"circular"`` or ``"uniform"``.
        P: number of neighbours on the circle.
        R: radius of the circle, pixels.

    Returns:
        int64 codes of the input's shape, on its device: 0 to 2^P - 1, or for
        ``"uniform"`` the number of ones of a uniform pattern (0 to P) and P + 1 for the
        others. A pattern is uniform when U <= 2, with U the number of 0/1 changes around
        the circle, U = |s(g_{P-1} - g_c) - s(g_0 - g_c)|
        + sum_{p=1}^{P-1} |s(g_p - g_c) - s(g_{p-1} - g_c)|.
    """
    _check_method(method)
    batch = torch.as_tensor(images)
    if not (batch.ndim == 3 or (batch.ndim == 4 and batch.shape[1] == 1)):
        raise ValueError(
            f"lbp needs N x H x W or N x 1 x H x W images, got shape {tuple(batch.shape)}"
        )
    if method == "original" and (P, R) != (8, 1):
        raise ValueError(f"the original LBP has P=8, R=1, got P={P}, R={R}")
    gray = batch.reshape(-1, *batch.shape[-2:]).to(torch.float64)
    # On the CPU, blocks of about 2^16 pixels stay in cache through the P passes.
    block = len(gray) if gray.device.type != "cpu" else max(1, 2**16 // gray[0].numel())
    codes = torch.cat([_codes(part, method, P, R) for part in gray.split(block)])
    return codes.reshape(batch.shape)


def lbp_image(
    images: torch.Tensor | np.ndarray, method: Method = "circular", P: int = 8, R: float = 1.0
) -> torch.Tensor:
    """LBP codes scaled to [0, 1], N x 1 x H x W float32: the input of the LBP stream.

    code / (:func:`code_count` - 1), so the images of Li et al.'s Fig. 7 (code 255 white
    for P = 8), ready for a CNN like any gray image.
    """
    codes = lbp(images, method, P, R)
    scaled = codes.to(torch.float32) / (code_count(method, P) - 1)
    return scaled.reshape(-1, 1, *codes.shape[-2:])


def _check_method(method: str) -> None:
    if method not in LBP_METHODS:
        raise ValueError(f"method must be one of {LBP_METHODS}, got {method!r}")


def _codes(gray: torch.Tensor, method: Method, P: int, R: float) -> torch.Tensor:
    """LBP codes of N x H x W float64 images."""
    if method == "original":
        neighbours = _square_neighbours(gray)
    else:
        neighbours = _circle_neighbours(gray, P, R)
    # s(g_p - g_c) as g_p >= g_c: for finite doubles a - b >= 0 exactly when a >= b.
    bits = (neighbour >= gray for neighbour in neighbours)
    return _riu2_code(bits, P) if method == "uniform" else _binary_code(bits)


def _square_neighbours(gray: torch.Tensor) -> Iterator[torch.Tensor]:
    """The 8 neighbours of every pixel (zeros beyond the border), in bit order."""
    height, width = gray.shape[-2:]
    padded = F.pad(gray, (1, 1, 1, 1))
    for dr, dc in _SQUARE_OFFSETS:
        yield padded[:, 1 + dr : 1 + dr + height, 1 + dc : 1 + dc + width]


def _circle_offsets(P: int, R: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) offsets of the P circle points, rounded to 5 decimals as in scikit-image."""
    angles = 2 * np.pi * np.arange(P, dtype=np.float64) / P
    return np.round(-R * np.sin(angles), 5), np.round(R * np.cos(angles), 5)


def _binary_code(bits: Iterator[torch.Tensor]) -> torch.Tensor:
    """sum_p bit_p 2^p."""
    code = next(bits).long()
    for p, bit in enumerate(bits, start=1):
        code.add_(bit, alpha=1 << p)
    return code


def _riu2_code(bits: Iterator[torch.Tensor], P: int) -> torch.Tensor:
    """Number of ones where the circular pattern has at most 2 changes, P + 1 elsewhere."""
    first = previous = next(bits)
    ones = first.to(torch.int16)  # counts up to P: small integers keep the loop fast
    changes = torch.zeros_like(ones)
    for bit in bits:
        ones.add_(bit)
        changes.add_(bit ^ previous)
        previous = bit
    changes.add_(previous ^ first)
    return torch.where(changes <= 2, ones, P + 1).long()


def _circle_neighbours(gray: torch.Tensor, P: int, R: float) -> Iterator[torch.Tensor]:
    """Bilinear samples of the P circle points around every pixel (zeros beyond the border).

    The arithmetic is scikit-image's, operation by operation, so that the float64 samples
    and hence the comparisons with the centre agree bit for bit: at position r = row + dr_p
    it reads rows floor(r) and ceil(r) with weights 1 - (r - floor(r)) and r - floor(r)
    (the same along columns). Weights differ from row to row by rounding, so they are
    computed per row and per column. Along an axis where the offset is an integer, the
    weight is 0 and the sample is the pixel itself, exactly: that axis is not interpolated.
    """
    height, width = gray.shape[-2:]
    row_offsets, col_offsets = _circle_offsets(P, R)
    pad = int(np.ceil(np.abs(np.concatenate([row_offsets, col_offsets])).max()))
    padded = F.pad(gray, (pad, pad, pad, pad))
    for row_offset, col_offset in zip(row_offsets, col_offsets, strict=True):
        rows, row_weights = _bracket(height, row_offset, pad, gray.device)
        cols, col_weights = _bracket(width, col_offset, pad, gray.device)
        top = _lerp(padded[:, rows[0], cols[0]], padded[:, rows[0], cols[1]], col_weights)
        if row_weights is None:
            yield top
        else:
            bottom = _lerp(padded[:, rows[1], cols[0]], padded[:, rows[1], cols[1]], col_weights)
            yield _lerp(top, bottom, row_weights[:, None])


def _bracket(
    size: int, offset: float, pad: int, device: torch.device
) -> tuple[tuple[slice, slice], torch.Tensor | None]:
    """Slices of the padded image at floor and ceil of i + offset, i < size, and the weights
    i + offset - floor(i + offset) (None when the offset is an integer).

    floor(i + offset) = i + floor(offset) for all images smaller than 1e10 pixels a side, as
    a non-integer offset has at least 1e-5 to the next integer.
    """
    positions = np.arange(size, dtype=np.float64) + offset
    weights = positions - np.floor(positions)
    start = int(np.floor(offset)) + pad
    below = slice(start, start + size)
    if not weights.any():
        return (below, below), None
    above = slice(start + 1, start + 1 + size)
    return (below, above), torch.as_tensor(weights, device=device)


def _lerp(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """(1 - weight) * a + weight * b, or a when there is no weight (the exact result)."""
    if weight is None:
        return a
    return torch.mul(1 - weight, a).add_(torch.mul(weight, b))
