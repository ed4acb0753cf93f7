"""The FACS face model: neutral shape, AU motions, EMFACS prototypes, rendering."""

from __future__ import annotations

import numpy as np
import pytest

from fernb.data.augment import FLIP_68
from fernb.face.facs import (
    AU_MOTIONS,
    AU_NAMES,
    PROTOTYPES,
    Identity,
    au_index,
    express,
    neutral_landmarks,
)
from fernb.face.render import FACE_ORIGIN, FACE_SCALE, Pose, pose_matrix, render_face

NEUTRAL = neutral_landmarks(Identity())


def _au(**intensity: float) -> np.ndarray:
    vector = np.zeros(len(AU_NAMES))
    for name, value in intensity.items():
        vector[au_index(name)] = value
    return vector


def _mirrored(points: np.ndarray) -> np.ndarray:
    return points[FLIP_68] * [-1, 1]


def test_every_au_and_prototype_is_known() -> None:
    assert set(AU_MOTIONS) == set(AU_NAMES)
    for required in (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 25, 26):
        assert f"AU{required}" in AU_NAMES
    assert all(set(aus) <= set(AU_NAMES) for aus in PROTOTYPES.values())
    assert set(PROTOTYPES["happiness"]) == {"AU6", "AU12"}
    assert set(PROTOTYPES["surprise"]) == {"AU1", "AU2", "AU5", "AU26"}


def test_neutral_shape_is_symmetric_and_ordered() -> None:
    np.testing.assert_allclose(_mirrored(NEUTRAL), NEUTRAL, atol=1e-12)
    x, y = NEUTRAL.T
    assert x[0] < x[8] < x[16] and y[8] == y.max()  # jaw: left to right, chin lowest
    assert y[17:27].max() < y[36:48].min()  # brows above eyes
    assert y[36:48].max() < y[30] < y[48:68].min()  # eyes, nose tip, mouth
    assert x[36] < x[39] < x[42] < x[45]  # eye corners left to right


def test_au12_pulls_the_lip_corners_up_and_out() -> None:
    smile = express(NEUTRAL, _au(AU12=5))
    assert smile[48, 1] < NEUTRAL[48, 1] and smile[54, 1] < NEUTRAL[54, 1]
    assert smile[48, 0] < NEUTRAL[48, 0] and smile[54, 0] > NEUTRAL[54, 0]
    np.testing.assert_array_equal(smile[17:48], NEUTRAL[17:48])  # brows, nose, eyes stay


def test_au4_lowers_the_brows_and_draws_them_together() -> None:
    frown = express(NEUTRAL, _au(AU4=5))
    assert (frown[17:27, 1] > NEUTRAL[17:27, 1]).all()
    assert frown[22, 0] - frown[21, 0] < NEUTRAL[22, 0] - NEUTRAL[21, 0]


def test_au1_raises_the_inner_brow_more_than_the_outer_and_au2_the_reverse() -> None:
    inner = NEUTRAL[[21, 17], 1] - express(NEUTRAL, _au(AU1=5))[[21, 17], 1]
    outer = NEUTRAL[[21, 17], 1] - express(NEUTRAL, _au(AU2=5))[[21, 17], 1]
    assert inner[0] > inner[1] >= 0
    assert outer[1] > outer[0] >= 0


def test_au5_opens_and_au7_narrows_the_eyes() -> None:
    def opening(points: np.ndarray) -> float:
        return float(points[[41, 40], 1].mean() - points[[37, 38], 1].mean())

    assert (
        opening(express(NEUTRAL, _au(AU5=5)))
        > opening(NEUTRAL)
        > opening(express(NEUTRAL, _au(AU7=5)))
    )


def test_au26_drops_the_jaw_and_opens_the_mouth() -> None:
    open_mouth = express(NEUTRAL, _au(AU26=5))
    assert open_mouth[8, 1] > NEUTRAL[8, 1]
    assert open_mouth[66, 1] - open_mouth[62, 1] > 0.1 + NEUTRAL[66, 1] - NEUTRAL[62, 1]


def test_motion_is_linear_in_intensity() -> None:
    half = express(NEUTRAL, _au(AU15=2.5)) - NEUTRAL
    full = express(NEUTRAL, _au(AU15=5)) - NEUTRAL
    np.testing.assert_allclose(2 * half, full, atol=1e-12)


def test_bilateral_expressions_stay_symmetric() -> None:
    rng = np.random.default_rng(0)
    shape = express(NEUTRAL, rng.uniform(0, 5, len(AU_NAMES)))
    np.testing.assert_allclose(_mirrored(shape), shape, atol=1e-12)


def test_a_unilateral_au_moves_one_side_only() -> None:
    left_only = express(NEUTRAL, np.array([_au(AU12=5), _au()]))
    assert left_only[48, 1] < NEUTRAL[48, 1]
    np.testing.assert_array_equal(left_only[54], NEUTRAL[54])


def test_lids_and_lips_never_cross() -> None:
    shut = express(NEUTRAL, _au(AU7=5, AU4=5, AU6=5, AU17=5, AU23=5))
    assert (shut[[41, 40, 46, 47], 1] >= shut[[37, 38, 44, 43], 1]).all()
    assert (shut[[67, 66, 65], 1] >= shut[[61, 62, 63], 1]).all()


def test_identity_sample_stays_in_its_ranges() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        person = Identity.sample(rng)
        for name, (low, high) in Identity.RANGES.items():
            assert low <= getattr(person, name) <= high


def test_pose_matrix_places_the_face() -> None:
    size = 48
    matrix = pose_matrix(Pose(), size)
    origin = np.array([FACE_ORIGIN[0] * size - 0.5, FACE_ORIGIN[1] * size - 0.5])
    np.testing.assert_allclose(matrix @ [0, 0, 1], origin)
    np.testing.assert_allclose(matrix @ [1, 0, 1], origin + np.array([FACE_SCALE * size, 0]))
    turned = pose_matrix(Pose(rotation=90, scale=2, shift_x=0.1), size)
    # counter-clockwise on screen (y down): the face's +x axis now points up
    np.testing.assert_allclose(
        turned @ [1, 0, 1], origin + np.array([0.1 * size, -2 * FACE_SCALE * size]), atol=1e-9
    )


def test_render_returns_the_posed_landmarks_and_a_valid_image() -> None:
    pose = Pose(rotation=10, scale=0.9, shift_x=0.05)
    image, pixels = render_face(Identity(), NEUTRAL, np.zeros((2, len(AU_NAMES))), 64, pose)
    matrix = pose_matrix(pose, 64)
    np.testing.assert_allclose(pixels, NEUTRAL @ matrix[:, :2].T + matrix[:, 2], atol=1e-4)
    assert image.shape == (64, 64) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1


def _rows_changed(**intensity: float) -> np.ndarray:
    """Rows of a 96 px face whose pixels change when the AUs are added."""
    sides = np.array([_au(**intensity)] * 2)
    base, pixels = render_face(Identity(), NEUTRAL, np.zeros_like(sides), 96)
    moved, _ = render_face(Identity(), express(NEUTRAL, sides), sides, 96)
    return np.flatnonzero(np.abs(moved - base).max(axis=1) > 1e-6), pixels


def test_mouth_aus_leave_the_upper_face_alone() -> None:
    rows, pixels = _rows_changed(AU12=5, AU15=3, AU20=4, AU23=4)
    assert rows.min() > pixels[27:36, 1].min()  # nothing above the nose changes


def test_brow_aus_leave_the_lower_face_alone() -> None:
    rows, pixels = _rows_changed(AU1=5, AU2=5, AU4=5)
    assert rows.max() < pixels[31:36, 1].max()  # nothing below the nose changes


@pytest.mark.parametrize(
    ("au", "region"),
    [("AU4", [21, 22, 27]), ("AU9", [27, 28, 29]), ("AU17", [57, 8])],
)
def test_texture_cues_darken_their_region(au: str, region: list[int]) -> None:
    """Furrows (AU4), nose wrinkles (AU9) and the chin crease (AU17) add dark lines where
    FACS says they appear, even where the landmarks barely move."""
    sides = np.array([_au(**{au: 5})] * 2)
    base, pixels = render_face(Identity(), NEUTRAL, np.zeros_like(sides), 96)
    cued, _ = render_face(Identity(), NEUTRAL, sides, 96)  # same shape, cues only
    (x0, y0), (x1, y1) = pixels[region].min(axis=0) - 4, pixels[region].max(axis=0) + 4
    window = np.s_[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1]
    assert (cued[window] - base[window]).min() < -0.1
    outside = np.ones_like(base, bool)
    outside[window] = False
    assert np.abs(cued - base)[outside].max() < np.abs(cued - base)[window].max()


def test_au6_raises_the_cheeks_and_draws_crows_feet_on_both_sides() -> None:
    """AU6 (cheek raiser) wrinkles the skin beside each outer eye corner (crow's feet) and
    raises the cheeks: every change lies between the brows and the bottom of the nose."""
    sides = np.array([_au(AU6=5)] * 2)
    base, pixels = render_face(Identity(), NEUTRAL, np.zeros_like(sides), 96)
    cued, _ = render_face(Identity(), NEUTRAL, sides, 96)  # same shape, cues only
    change = cued - base
    for corner, outward in ((36, -1), (45, 1)):  # the image's left and right outer corners
        x, y = pixels[corner]
        x0, x1 = sorted((int(x), int(x + outward * 10)))
        beside = change[int(y) - 6 : int(y) + 7, x0 : x1 + 1]
        assert beside.min() < -0.1, f"no crow's feet beside landmark {corner}"
    rows = np.flatnonzero(np.abs(change).max(axis=1) > 1e-6)
    assert rows.min() >= pixels[17:27, 1].min() and rows.max() <= pixels[31:36, 1].max() + 8
