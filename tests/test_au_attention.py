"""AU-aware attention maps: centres, Eq. 1 weights, flips, borders, the released code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fernb.data.augment import FLIP_68
from fernb.data.synthetic import SynthConfig, generate
from fernb.face.au_attention import AU_REGIONS, attention_map, au_centers, paint_centres

#: A schematic face on a 100 x 100 image, integer coordinates: grid = pixels, r = 12.
SCHEMATIC = {
    18: (30, 28), 25: (70, 28), 19: (35, 27), 24: (65, 27), 21: (44, 30), 22: (56, 30),
    38: (42, 37), 43: (58, 37), 39: (44, 40), 42: (56, 40), 41: (40, 43), 46: (60, 43),
    48: (38, 70), 54: (62, 70), 49: (42, 67), 53: (58, 67), 51: (50, 66), 57: (50, 76),
    61: (46, 69), 63: (54, 69), 56: (54, 75), 58: (46, 75),
}  # fmt: skip

#: Its 20 AU centres, worked out by hand from the table of the spec (r/2 = 6, r/3 = 4).
SCHEMATIC_CENTRES = [
    (44, 24), (56, 24), (30, 24), (70, 24), (35, 31), (65, 31), (40, 55), (60, 55),
    (42, 37), (58, 37), (42, 67), (58, 67), (38, 70), (62, 70), (50, 66), (50, 76),
    (46, 69), (54, 69), (54, 81), (46, 81),
]  # fmt: skip


def _schematic() -> np.ndarray:
    landmarks = np.full((68, 2), 50.0)
    for index, point in SCHEMATIC.items():
        landmarks[index] = point
    return landmarks


def _flip(landmarks: np.ndarray, width: int) -> np.ndarray:
    mirrored = landmarks[..., FLIP_68, :].copy()
    mirrored[..., 0] = width - 1 - mirrored[..., 0]
    return mirrored


def _loop_map(centres: np.ndarray, quirks: bool) -> np.ndarray:
    """The map painted pixel by pixel, as the module docstring describes it (map_size 100)."""
    painted = np.zeros((100, 100))
    for x, y in centres:
        if quirks:
            cx, cy = (int(np.trunc(v)) % 256 for v in (x, y))
            if cx < 7 or cy < 7:  # the released loop's `break` on its first pixel
                continue
            window = range(-7, 7)
        else:
            cx, cy = int(np.floor(x)), int(np.floor(y))
            window = range(-7, 8)
        for dx in window:
            for dy in window:
                if 0 <= cx + dx < 100 and 0 <= cy + dy < 100:
                    weight = 1 - 0.07 * (abs(dx) + abs(dy))
                    painted[cy + dy, cx + dx] = max(painted[cy + dy, cx + dx], weight)
    return painted


def test_au_centers_of_the_schematic_face() -> None:
    centres = au_centers(_schematic(), (100, 100))
    assert centres.shape == (20, 2) and len(AU_REGIONS) == 10
    np.testing.assert_allclose(centres, SCHEMATIC_CENTRES, atol=1e-12)


def test_au_centers_rescale_to_the_100_grid() -> None:
    landmarks = _schematic() * np.array([2.0, 0.5])  # a 200 wide, 50 high image
    np.testing.assert_allclose(au_centers(landmarks, (50, 200)), SCHEMATIC_CENTRES, atol=1e-12)


def test_hand_computed_weights() -> None:
    attention = attention_map(_schematic(), 100)
    assert attention.shape == (100, 100) and attention.dtype == np.float32
    expected = {
        (44, 24): 1.0,  # a centre
        (40, 73): 0.65,  # (dx, dy) = (2, 3) from the lip corner (38, 70)
        (34, 28): 0.72,  # 0.44 from (30, 24), 0.72 from (35, 31): the maximum
        (22, 24): 0.0,  # dx = -8 from (30, 24): outside its 15 x 15 area
        (37, 17): 0.02,  # the corner (-7, -7) of (44, 24)'s area
        (50, 50): 0.0,  # far from every centre
    }
    for (x, y), weight in expected.items():
        assert attention[y, x] == pytest.approx(weight, abs=1e-6), (x, y)


def test_values_lie_in_0_1_and_follow_eq_1() -> None:
    landmarks = np.random.default_rng(0).uniform(-20, 120, (16, 68, 2))
    attention = attention_map(landmarks, 100)
    assert attention.min() >= 0.0 and attention.max() <= 1.0
    levels = np.round((1 - attention[attention > 0]) / 0.07, 4)
    np.testing.assert_array_equal(levels, np.round(levels))  # 1 - 0.07 k, k = 0 ... 14


def test_matches_a_pixel_loop_on_random_faces() -> None:
    landmarks = np.random.default_rng(1).uniform(-30, 130, (6, 68, 2))
    centres = au_centers(landmarks, 100)
    for quirks in (False, True):
        attention = attention_map(landmarks, 100, released_code_quirks=quirks)
        for face in range(len(landmarks)):
            np.testing.assert_allclose(attention[face], _loop_map(centres[face], quirks), atol=1e-6)


def test_flipping_the_landmarks_flips_the_map() -> None:
    """Integer x on a 100 wide image: floor commutes with x -> 99 - x (module docstring)."""
    faces = generate(SynthConfig(size=100, n_subjects=2, samples_per_subject=3))
    landmarks = np.concatenate([_schematic()[None], np.round(faces.landmarks)])
    attention = attention_map(landmarks, 100)
    flipped = attention_map(_flip(landmarks, 100), 100)
    np.testing.assert_array_equal(flipped, attention[..., ::-1])
    assert (attention != attention[..., ::-1]).any()  # the test faces are not symmetric
    # off-integer x on the grid: the mirrored landmarks' map is one column to the left
    unrounded = attention_map(faces.landmarks, 100)[..., ::-1]
    flipped = attention_map(_flip(faces.landmarks, 100), 100)
    np.testing.assert_array_equal(flipped[..., :-1], unrounded[..., 1:])


def test_pixels_outside_the_map_are_skipped() -> None:
    centres = np.array([[2.5, 50.5], [98.0, 99.0]])
    attention = paint_centres(centres)
    assert attention[50, 0] == pytest.approx(1 - 0.07 * 2)
    assert attention[50, 9] == pytest.approx(1 - 0.07 * 7)
    assert attention[50, 10] == 0.0
    assert attention[99, 98] == 1.0 and attention[92, 91] == pytest.approx(0.02)
    assert not attention[:40, :].any() and not attention[:, 20:85].any()  # nothing wraps


def test_released_code_quirks_differ_where_documented() -> None:
    centres = np.array([[50.5, 50.5]])
    corrected = paint_centres(centres)
    released = paint_centres(centres, released_code_quirks=True)
    differ = corrected != released
    assert differ[57, 43:58].all() and differ[43:58, 57].all()  # dy = +7 row, dx = +7 column
    assert differ.sum() == 29 and not released[57, :].any() and not released[:, 57].any()
    # a window that starts above row 0 or left of column 0 paints nothing at all
    for near_border in ([6.9, 50.0], [50.0, 3.0], [-3.5, 50.0]):
        assert paint_centres(np.array([near_border])).any()
        assert not paint_centres(np.array([near_border]), released_code_quirks=True).any()
    # uint8 wrap: x = -200 truncates to -200 and lands on column 56
    wrapped = paint_centres(np.array([[-200.0, 50.0]]), released_code_quirks=True)
    assert wrapped[50, 56] == 1.0
    with pytest.raises(ValueError, match="100"):
        paint_centres(centres, 224, released_code_quirks=True)


def test_batch_equals_per_sample_and_torch_equals_numpy() -> None:
    landmarks = np.random.default_rng(2).uniform(0, 48, (2, 3, 68, 2)).astype(np.float32)
    batch = attention_map(landmarks, 48)
    assert batch.shape == (2, 3, 100, 100)
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(batch[i, j], attention_map(landmarks[i, j], 48))
    tensor = attention_map(torch.from_numpy(landmarks), (48, 48))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    np.testing.assert_array_equal(tensor.numpy(), batch)


def test_larger_maps_keep_the_areas_on_the_face() -> None:
    centre = np.array([[30.25, 24.75]])  # pixel (60, 49) of a 200 map
    attention = paint_centres(centre, 200)
    assert attention.shape == (200, 200) and attention[49, 60] == 1.0
    assert attention[52, 62] == pytest.approx(1 - 0.07 * 5 / 2)
    assert attention[49, 74] > 0 and attention[49, 75] == 0  # reach 7 grid units = 14 px


def test_missing_landmarks_paint_nothing() -> None:
    centres = np.array([[np.nan, 40.0], [30.0, -np.inf], [50.0, 50.0]])
    for quirks in (False, True):
        attention = paint_centres(centres, released_code_quirks=quirks)
        alone = paint_centres(centres[2:], released_code_quirks=quirks)
        np.testing.assert_array_equal(attention, alone)
