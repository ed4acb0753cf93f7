"""Batched augmentation keeps images, landmarks and maps consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from fernb.data.augment import FLIP_68, Augmentation, _affine, ten_crop, ten_crop_predict


def _blob_images(points: torch.Tensor, size: int = 48, sigma: float = 1.5) -> torch.Tensor:
    """One Gaussian blob per image, centred on points[i] (x, y) in pixel coordinates."""
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    d2 = (xs - points[:, 0, None, None]) ** 2 + (ys - points[:, 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))[:, None]


def _centroid(images: torch.Tensor) -> torch.Tensor:
    size = images.shape[-1]
    weights = images[:, 0].clamp(min=0)
    grid = torch.arange(float(size))
    total = weights.sum(dim=(1, 2))
    return torch.stack(
        [(weights.sum(1) * grid).sum(1) / total, (weights.sum(2) * grid).sum(1) / total], 1
    )


def test_flip_permutation_mirrors_the_68_point_scheme() -> None:
    np.testing.assert_array_equal(FLIP_68[FLIP_68], np.arange(68))  # an involution
    for left, right in [(0, 16), (17, 26), (21, 22), (36, 45), (39, 42), (31, 35), (48, 54)]:
        assert FLIP_68[left] == right and FLIP_68[right] == left
    for centre in [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]:
        assert FLIP_68[centre] == centre


def test_flip_is_exact_and_swaps_landmark_sides() -> None:
    images = torch.rand(4, 1, 6, 8)
    maps = torch.rand(4, 2, 6, 8)
    landmarks = torch.rand(4, 68, 2) * 5
    out = Augmentation(flip=1.0)(images, landmarks, maps)
    assert torch.equal(out.images, images.flip(-1))
    assert torch.equal(out.maps, maps.flip(-1))
    expected = landmarks[:, FLIP_68].clone()
    expected[..., 0] = 8 - 1 - expected[..., 0]
    torch.testing.assert_close(out.landmarks, expected)
    unchanged = Augmentation(flip=0.0)(images, landmarks, maps)
    assert torch.equal(unchanged.images, images) and torch.equal(unchanged.landmarks, landmarks)


def test_rotation_by_90_degrees_matches_rot90() -> None:
    images = torch.rand(2, 3, 9, 9)
    quarter = torch.tensor([[0.0, -1.0], [1.0, 0.0]]).expand(2, 2, 2)
    points = torch.tensor([[[5.0, 4.0]], [[1.0, 2.0]]])  # (x, y); the centre is (4, 4)
    rotated, moved, _ = _affine(images, points, None, quarter, torch.zeros(2, 2))
    # In y-down pixel coordinates the matrix turns +x into +y: clockwise on screen.
    torch.testing.assert_close(rotated, torch.rot90(images, k=-1, dims=(-2, -1)))
    expected = torch.stack([4 - (points[..., 1] - 4), 4 + (points[..., 0] - 4)], dim=-1)
    torch.testing.assert_close(moved, expected)


def test_landmarks_follow_the_pixels_through_a_random_affine() -> None:
    generator = torch.Generator().manual_seed(0)
    points = 16 + 16 * torch.rand(64, 2, generator=generator)
    images = _blob_images(points)
    augment = Augmentation(flip=0.5, rotation=20, shift=0.1, scale=0.15, shear=10)
    landmarks = points[:, None, :].expand(-1, 68, -1).clone()
    out = augment(images, landmarks, maps=images.clone(), generator=generator)
    found = _centroid(out.images)
    # all 68 copies of the point moved together; compare with where the blob went
    torch.testing.assert_close(out.landmarks[:, 0], found, atol=0.35, rtol=0)
    torch.testing.assert_close(out.maps, out.images)  # maps take the same warp as images


def test_random_crop_is_exact_and_shifts_landmarks() -> None:
    n, size = 16, 5
    images = torch.arange(n * 12 * 10, dtype=torch.float32).view(n, 1, 12, 10)
    landmarks = torch.tensor([3.0, 7.0]).expand(n, 68, 2).clone()
    out = Augmentation(crop=size, flip=0.0)(
        images, landmarks, generator=torch.Generator().manual_seed(1)
    )
    assert out.images.shape == (n, 1, size, size)
    for i in range(n):
        offset = int(out.images[i, 0, 0, 0] - images[i, 0, 0, 0])
        top, left = divmod(offset, 10)
        assert torch.equal(out.images[i], images[i, :, top : top + size, left : left + size])
        torch.testing.assert_close(out.landmarks[i, 0], torch.tensor([3.0 - left, 7.0 - top]))
    with pytest.raises(ValueError, match="larger"):
        Augmentation(crop=13)(images)


def test_brightness_shifts_and_contrast_keeps_the_mean() -> None:
    images = 0.4 + 0.2 * torch.rand(8, 1, 6, 6)
    bright = Augmentation(flip=0.0, brightness=0.1)(images).images
    shift = bright - images
    torch.testing.assert_close(shift, shift[:, :, :1, :1].expand_as(shift))
    assert shift.abs().max() <= 0.1
    contrasted = Augmentation(flip=0.0, contrast=0.3)(images).images
    torch.testing.assert_close(contrasted.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)))


def test_same_generator_seed_gives_the_same_batch() -> None:
    images = torch.rand(4, 1, 20, 20)
    augment = Augmentation(crop=16, rotation=10, shift=0.1, brightness=0.1)
    first = augment(images, generator=torch.Generator().manual_seed(5)).images
    second = augment(images, generator=torch.Generator().manual_seed(5)).images
    assert torch.equal(first, second)


def test_ten_crop_matches_torchvision() -> None:
    images = torch.rand(3, 1, 48, 48)
    ours = ten_crop(images, 44)
    for i in range(3):
        reference = TF.ten_crop(images[i], [44, 44])
        for j in range(10):
            assert torch.equal(ours[j, i], reference[j])


def test_ten_crop_predict_is_the_mean_over_the_crops() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(44 * 44, 7))
    images = torch.rand(5, 1, 48, 48)
    crops = ten_crop(images, 44)
    expected = sum(model(crops[j]) for j in range(10)) / 10
    torch.testing.assert_close(ten_crop_predict(model, images, 44), expected)


def test_rotation_range_is_respected() -> None:
    # a point at distance r from the centre keeps its distance under rotation alone
    points = torch.tensor([[30.0, 23.5]]).expand(32, 68, 2).clone()
    out = Augmentation(flip=0.0, rotation=30)(
        torch.zeros(32, 1, 48, 48), points, generator=torch.Generator().manual_seed(2)
    )
    offset = out.landmarks[:, 0] - 23.5
    torch.testing.assert_close(offset.norm(dim=1), torch.full((32,), 6.5))
    angles = torch.rad2deg(torch.atan2(offset[:, 1], offset[:, 0])).abs()
    assert angles.max() <= 30 + 1e-4 and angles.max() > 15
