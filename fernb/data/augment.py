"""Batched data augmentation on tensors, run on the training device.

One call transforms a whole batch (N x C x H x W floats in [0, 1]) with per-sample random
parameters: no per-image PIL loop in the training step. Landmarks (N x 68 x 2 pixel
coordinates) and spatial maps (N x M x H x W, e.g. AU attention maps) go through the same
geometric transform as their images, and a horizontal flip also swaps the left and right
landmark indices (:data:`FLIP_68`), so a flipped face's point 36 is still its outer right
eye corner.

Geometry, in pixel coordinates with the image centre c = ((W-1)/2, (H-1)/2): a point p of
the input moves to q = c + A (p - c) + t, with A = R(rotation) Sh(shear) s F (F mirrors x
when flipped) and t the shift. Images are resampled bilinearly, reading border pixels
beyond the edge (Keras' ``fill_mode="nearest"``, which the papers' augmentation used).
Random crops and plain flips are exact (no resampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FLIP_68", "Augmentation", "Augmented", "ten_crop", "ten_crop_predict"]


def _mirror_pairs(*pairs: tuple[int, int]) -> np.ndarray:
    order = np.arange(68)
    for left, right in pairs:
        order[left], order[right] = right, left
    return order


#: Landmark permutation of the iBUG 68-point scheme under a horizontal flip.
FLIP_68: np.ndarray = _mirror_pairs(
    *[(i, 16 - i) for i in range(8)],  # jaw
    *[(17 + i, 26 - i) for i in range(5)],  # brows
    (31, 35), (32, 34),  # nostrils
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),  # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),  # outer lips
    (60, 64), (61, 63), (65, 67),  # inner lips
)  # fmt: skip


class Augmented(NamedTuple):
    """An augmented batch; ``landmarks`` and ``maps`` are None when none were given."""

    images: torch.Tensor
    landmarks: torch.Tensor | None
    maps: torch.Tensor | None


@dataclass(frozen=True)
class Augmentation:
    """Random training augmentation of a batch.

    Attributes:
        crop: side of a random square crop taken first (None: no crop).
        flip: probability of a horizontal flip.
        rotation: rotation angle drawn from U(-rotation, rotation), degrees.
        shift: translation drawn from U(-shift, shift) x image size, per axis.
        scale: zoom factor drawn from U(1 - scale, 1 + scale).
        shear: shear angle drawn from U(-shear, shear), degrees.
        brightness: added to every pixel, drawn from U(-brightness, brightness).
        contrast: deviations from the image mean scaled by U(1 - contrast, 1 + contrast).
    """

    crop: int | None = None
    flip: float = 0.5
    rotation: float = 0.0
    shift: float = 0.0
    scale: float = 0.0
    shear: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0

    def __call__(
        self,
        images: torch.Tensor,
        landmarks: torch.Tensor | None = None,
        maps: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Augmented:
        """Augment ``images`` (and the matching ``landmarks`` and ``maps``) of one batch."""
        if self.crop is not None:
            images, landmarks, maps = _random_crop(images, landmarks, maps, self.crop, generator)
        n, _, height, width = images.shape
        flips = _uniform(n, 0.0, 1.0, generator) < self.flip
        if self._resamples():
            matrix, shift = self._sample_affine(flips, height, width, generator)
            images, landmarks, maps = _affine(images, landmarks, maps, matrix, shift)
        else:
            images, landmarks, maps = _flip(images, landmarks, maps, flips.to(images.device))
        if landmarks is not None:
            index = torch.where(flips[:, None], torch.from_numpy(FLIP_68), torch.arange(68))
            landmarks = torch.gather(
                landmarks, 1, index[..., None].expand(-1, -1, 2).to(landmarks.device)
            )
        images = self._photometric(images, generator)
        return Augmented(images, landmarks, maps)

    def _resamples(self) -> bool:
        return any((self.rotation, self.shift, self.scale, self.shear))

    def _sample_affine(
        self, flips: torch.Tensor, height: int, width: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample A (N x 2 x 2) and t (N x 2, pixels) of q = c + A (p - c) + t."""
        n = len(flips)
        angle = torch.deg2rad(_uniform(n, -self.rotation, self.rotation, generator))
        shear = torch.deg2rad(_uniform(n, -self.shear, self.shear, generator))
        zoom = _uniform(n, 1 - self.scale, 1 + self.scale, generator)
        shift = torch.stack(
            [
                _uniform(n, -self.shift, self.shift, generator) * width,
                _uniform(n, -self.shift, self.shift, generator) * height,
            ],
            dim=1,
        )
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotate = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
        shear_matrix = torch.zeros(n, 2, 2)
        shear_matrix[:, 0, 0] = 1
        shear_matrix[:, 0, 1] = torch.tan(shear)
        shear_matrix[:, 1, 1] = 1
        mirror = torch.ones(n, 2)
        mirror[flips, 0] = -1
        matrix = rotate @ shear_matrix @ torch.diag_embed(mirror * zoom[:, None])
        return matrix, shift

    def _photometric(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not (self.brightness or self.contrast):
            return images
        n = len(images)
        factor = _uniform(n, 1 - self.contrast, 1 + self.contrast, generator).to(images)
        offset = _uniform(n, -self.brightness, self.brightness, generator).to(images)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        adjusted = (images - mean) * factor.view(n, 1, 1, 1) + mean + offset.view(n, 1, 1, 1)
        return adjusted.clamp_(0.0, 1.0)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    """n draws from U(low, high) on the CPU (parameters are tiny; the pixels stay put)."""
    return low + (high - low) * torch.rand(n, generator=generator)


def _random_crop(
    images: torch.Tensor,
    landmarks: torch.Tensor | None,
    maps: torch.Tensor | None,
    size: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    n, _, height, width = images.shape
    if size > min(height, width):
        raise ValueError(f"crop {size} is larger than the {height} x {width} images")
    top = torch.randint(0, height - size + 1, (n,), generator=generator)
    left = torch.randint(0, width - size + 1, (n,), generator=generator)
    cropped = [_crop(t, top, left, size) if t is not None else None for t in (images, maps)]
    if landmarks is not None:
        landmarks = landmarks - torch.stack([left, top], 1)[:, None, :].to(landmarks)
    return cropped[0], landmarks, cropped[1]


def _crop(batch: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: int) -> torch.Tensor:
    """Per-sample crops batch[i, :, top_i:top_i+size, left_i:left_i+size], gathered at once."""
    steps = torch.arange(size)
    rows = (top[:, None] + steps).to(batch.device)  # N x size
    cols = (left[:, None] + steps).to(batch.device)
    samples = torch.arange(len(batch), device=batch.device)[:, None, None]
    return batch[samples, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _flip(
    images: torch.Tensor,
    landmarks: torch.Tensor | None,
    maps: torch.Tensor | None,
    flips: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    mask = flips.view(-1, 1, 1, 1)
    images = torch.where(mask, images.flip(-1), images)
    if maps is not None:
        maps = torch.where(mask, maps.flip(-1), maps)
    if landmarks is not None:
        width = images.shape[-1]
        mirrored = landmarks.clone()
        mirrored[..., 0] = width - 1 - landmarks[..., 0]
        landmarks = torch.where(flips.view(-1, 1, 1).to(landmarks.device), mirrored, landmarks)
    return images, landmarks, maps


def _affine(
    images: torch.Tensor,
    landmarks: torch.Tensor | None,
    maps: torch.Tensor | None,
    matrix: torch.Tensor,
    shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Resample images and maps so that input point p lands on q = c + A (p - c) + t."""
    channels, height, width = images.shape[1:]
    half = torch.tensor([(width - 1) / 2, (height - 1) / 2])
    inverse = torch.linalg.inv(matrix)
    # grid_sample (align_corners=True) reads, for output q_n = (q - c) / half, the input at
    # p_n = D^-1 A^-1 D q_n - D^-1 A^-1 t, with D = diag(half).
    linear = inverse * half[None, None, :] / half[None, :, None]
    offset = -(inverse @ shift[..., None]).squeeze(-1) / half
    theta = torch.cat([linear, offset[..., None]], dim=2).to(images)
    stacked = images if maps is None else torch.cat([images, maps.to(images)], dim=1)
    grid = F.affine_grid(theta, list(stacked.shape), align_corners=True)
    warped = F.grid_sample(
        stacked, grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    images, maps = (warped, None) if maps is None else warped.split([channels, maps.shape[1]], 1)
    if landmarks is not None:
        centre = half.to(landmarks)
        moved = (landmarks - centre) @ matrix.transpose(1, 2).to(landmarks)
        landmarks = moved + centre + shift[:, None, :].to(landmarks)
    return images, landmarks, maps


def ten_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The ten crops of test-time averaging, as a 10 x N x C x size x size tensor.

    Order as ``torchvision.transforms.functional.ten_crop``: top-left, top-right,
    bottom-left, bottom-right and centre crops, then the same five of the mirrored image.
    """
    height, width = images.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"crop {size} is larger than the {height} x {width} images")
    top = round((height - size) / 2)
    left = round((width - size) / 2)
    corners = [(0, 0), (0, width - size), (height - size, 0), (height - size, width - size)]
    crops = [images[..., y : y + size, x : x + size] for y, x in [*corners, (top, left)]]
    mirrored = images.flip(-1)
    crops += [mirrored[..., y : y + size, x : x + size] for y, x in [*corners, (top, left)]]
    return torch.stack(crops)


@torch.no_grad()
def ten_crop_predict(model: torch.nn.Module, images: torch.Tensor, size: int) -> torch.Tensor:
    """The model's outputs averaged over the ten crops of each image (N x K).

    All 10 N crops go through the model as one batch; split ``images`` if that is too large.
    """
    crops = ten_crop(images, size)
    outputs = model(crops.flatten(0, 1))
    return outputs.view(10, len(images), *outputs.shape[1:]).mean(dim=0)
