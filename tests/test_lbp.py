"""Batched LBP: bit-exact agreement with scikit-image, the original 3 x 3 operator, inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from skimage import data
from skimage.feature import local_binary_pattern

from fernb.face.lbp import code_count, lbp, lbp_image

RADII = [(4, 1.0), (8, 1.0), (8, 2.0), (12, 1.5), (16, 2.0), (24, 3.0)]
SKIMAGE_METHOD = {"circular": "default", "uniform": "uniform"}


def _skimage(images: np.ndarray, P: int, R: float, method: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # skimage's float-image warning
        return np.stack([local_binary_pattern(i, P, R, SKIMAGE_METHOD[method]) for i in images])


def _test_images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    camera = data.camera()
    return {
        "random uint8": rng.integers(0, 256, (3, 31, 36), dtype=np.uint8),
        "few levels (ties)": rng.integers(0, 3, (3, 20, 20)).astype(np.uint8),
        "random float32": rng.random((2, 24, 24), dtype=np.float32),
        "camera crops": np.stack([camera[100 * i : 100 * i + 48, 150:198] for i in range(4)]),
        "lfw faces": data.lfw_subset()[:8],  # float64 in [0, 1]
        "flat": np.full((1, 9, 9), 7, np.uint8),
    }


@pytest.mark.parametrize("method", ["circular", "uniform"])
@pytest.mark.parametrize(("P", "R"), RADII)
def test_circular_variants_equal_skimage_exactly(method: str, P: int, R: float) -> None:
    for name, images in _test_images().items():
        ours = lbp(images, method, P, R)
        assert ours.dtype == torch.int64
        expected = _skimage(images, P, R, method)
        np.testing.assert_array_equal(ours.numpy(), expected, err_msg=name)


def test_radius_is_used_in_double_precision_like_skimage() -> None:
    # At this radius the 5-decimal offsets of point 1 differ between a float32 and a
    # float64 radius (0.65165 vs 0.65164 past the column); the centre lies in between.
    R = 2.3357788111427027
    image = np.zeros((1, 9, 12))
    image[0, 3:5, 5] = 1.0
    image[0, 5, 3] = 0.651645
    codes = lbp(image, "circular", 8, R)
    assert (codes[0, 5, 3] >> 1) & 1 == 1  # a float32 radius would give 0
    np.testing.assert_array_equal(codes.numpy(), _skimage(image, 8, R, "circular"))


def test_original_lbp_of_a_3x3_patch() -> None:
    patch = torch.tensor([[[9, 1, 7], [2, 5, 5], [6, 3, 8]]], dtype=torch.uint8)
    # bits from east, counter-clockwise: 5>=5, 7, 1, 9, 2, 6, 3, 8 -> 1, 1, 0, 1, 0, 1, 0, 1
    assert lbp(patch, "original")[0, 1, 1] == 1 + 2 + 8 + 32 + 128


def test_original_lbp_is_circular_lbp_with_corner_pixels_as_diagonals() -> None:
    images = _test_images()["camera crops"].astype(np.int64)
    codes = lbp(images, "original").numpy()
    axis_bits = 0b01010101
    circular = _skimage(images, 8, 1.0, "circular").astype(np.int64)
    np.testing.assert_array_equal(codes & axis_bits, circular & axis_bits)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))  # zeros beyond the border
    centre = padded[:, 1:-1, 1:-1]
    for bit, (dr, dc) in zip((1, 3, 5, 7), [(-1, 1), (-1, -1), (1, -1), (1, 1)], strict=True):
        corner = padded[:, 1 + dr : padded.shape[1] - 1 + dr, 1 + dc : padded.shape[2] - 1 + dc]
        np.testing.assert_array_equal((codes >> bit) & 1, corner >= centre)
    assert codes.max() < code_count("original") == 256


def test_batch_equals_image_by_image() -> None:
    # 60 images of 40 x 40 pixels run in two CPU blocks of 2^16 pixels or less.
    images = torch.randint(
        0, 256, (60, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    for method in ("original", "circular", "uniform"):
        batch = lbp(images, method, 8, 1.0)
        single = torch.cat([lbp(image[None], method, 8, 1.0) for image in images])
        torch.testing.assert_close(batch, single, rtol=0, atol=0)


def test_uint8_and_float_inputs_and_channel_axis_agree() -> None:
    images = torch.from_numpy(_test_images()["camera crops"])
    codes = lbp(images, "circular", 16, 2.0)
    for same in (images.float(), images.double()):
        torch.testing.assert_close(lbp(same, "circular", 16, 2.0), codes, rtol=0, atol=0)
    with_channel = lbp(images[:, None], "circular", 16, 2.0)
    assert with_channel.shape == (4, 1, 48, 48)
    torch.testing.assert_close(with_channel[:, 0], codes, rtol=0, atol=0)


@pytest.mark.parametrize(("method", "P", "top"), [("original", 8, 255), ("uniform", 8, 9)])
def test_lbp_image_scales_codes_to_unit_range(method: str, P: int, top: int) -> None:
    images = _test_images()["lfw faces"]
    scaled = lbp_image(images, method, P)
    assert scaled.shape == (8, 1, 25, 25)
    assert scaled.dtype == torch.float32
    assert 0 <= scaled.min() and scaled.max() <= 1
    torch.testing.assert_close(scaled[:, 0] * top, lbp(images, method, P).float())


def test_code_counts() -> None:
    assert code_count("original") == 256
    assert code_count("circular", 16) == 2**16
    assert code_count("uniform", 24) == 26


def test_invalid_arguments_are_refused() -> None:
    images = torch.zeros(2, 8, 8)
    with pytest.raises(ValueError, match="method"):
        lbp(images, "ror")
    with pytest.raises(ValueError, match="P=8, R=1"):
        lbp(images, "original", P=16, R=2)
    with pytest.raises(ValueError, match="N x H x W"):
        lbp(torch.zeros(8, 8), "circular")
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        lbp(torch.zeros(2, 3, 8, 8), "circular")
