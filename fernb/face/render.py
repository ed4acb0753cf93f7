"""Draw a grayscale face from its landmarks and action-unit intensities.

The face is a stack of anti-aliased polygons and strokes (OpenCV's ``LINE_AA`` rasteriser
with sub-pixel coordinates), each blended over what is below it: background, neck, hair,
skin, brows, eyes, nose, lips and mouth, then the texture cues of action units that
texture-based models (LBP, CNNs) rely on:

=========  =====================================================
AU         cue
=========  =====================================================
AU1, AU2   horizontal forehead wrinkles, central (1) or lateral (2)
AU4        vertical furrows between the brows
AU6        cheek bulge, a crease under the eye, crow's feet
AU9        horizontal wrinkles across the nose bridge
AU10, AU12 a deeper nasolabial fold
AU14       dimples beside the lip corners
AU17       a chin boss crease under the lower lip
=========  =====================================================

Geometry is in face units (see :mod:`fernb.face.facs`); a :class:`Pose` places the face in
the image, with pixel centres at integer coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fernb.face.facs import AU_NAMES, Identity

__all__ = ["FACE_ORIGIN", "FACE_SCALE", "Pose", "pose_matrix", "render_face"]

#: Pixels per face unit, as a fraction of the image size, at pose scale 1.
FACE_SCALE = 0.5
#: Where the face origin lies in the image, as fractions of (width, height), at no shift.
FACE_ORIGIN = (0.5, 0.42)

_SHIFT = 4  # sub-pixel bits of OpenCV's drawing functions
_AU = {name: k for k, name in enumerate(AU_NAMES)}


@dataclass(frozen=True)
class Pose:
    """In-plane placement of the face: rotation (degrees, counter-clockwise on screen),
    scale (1 = the face spans about 80% of the image width), shift (fractions of the size)."""

    rotation: float = 0.0
    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0


def pose_matrix(pose: Pose, size: int) -> np.ndarray:
    """The 2 x 3 affine map from face units to pixel coordinates of a ``size`` image.

    p_pixel = o + s * size * R(-rotation) p_face, with o the face origin in pixels.
    """
    angle = np.deg2rad(pose.rotation)
    s = FACE_SCALE * pose.scale * size
    linear = s * np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    origin = (
        (FACE_ORIGIN[0] + pose.shift_x) * size - 0.5,
        (FACE_ORIGIN[1] + pose.shift_y) * size - 0.5,
    )
    return np.column_stack([linear, origin])


class _Canvas:
    """A face-unit drawing surface over a uint8 image.

    Opaque shapes are drawn straight onto ``image`` (OpenCV blends their anti-aliased
    edges); shapes that must be clipped by others are drawn as coverage masks and blended
    in floating point by :func:`render_face`.
    """

    def __init__(self, size: int, matrix: np.ndarray, background: float) -> None:
        self.image = np.full((size, size), round(255 * background), np.uint8)
        self._linear = np.ascontiguousarray(matrix[:, :2].T)
        self._offset = matrix[:, 2].copy()
        self._linear_fixed = self._linear * (1 << _SHIFT)
        self._offset_fixed = self._offset * (1 << _SHIFT)
        self.px_per_unit = float(np.hypot(*matrix[:, 0]))
        self.line = max(1, round(size / 80))

    def pixels(self, points: np.ndarray) -> np.ndarray:
        """Face units to pixel coordinates."""
        return points @ self._linear + self._offset

    def _fixed(self, shapes: list[np.ndarray]) -> list[np.ndarray]:
        """Shapes in OpenCV's fixed-point pixel coordinates."""
        return [
            np.rint(s @ self._linear_fixed + self._offset_fixed).astype(np.int32) for s in shapes
        ]

    def mask(self) -> np.ndarray:
        return np.zeros(self.image.shape, np.uint8)

    def fill(self, shapes: list[np.ndarray], tone: float, target: np.ndarray | None = None) -> None:
        """Fill closed polygons with ``tone`` in [0, 1] (on ``target``, default the image)."""
        target = self.image if target is None else target
        cv2.fillPoly(target, self._fixed(shapes), round(255 * tone), cv2.LINE_AA, _SHIFT)

    def stroke(
        self, shapes: list[np.ndarray], tone: float, target: np.ndarray | None = None
    ) -> None:
        """Draw open polylines one line width wide."""
        target = self.image if target is None else target
        lines = self._fixed(shapes)
        cv2.polylines(target, lines, False, round(255 * tone), self.line, cv2.LINE_AA, _SHIFT)

    def discs(self, centres: np.ndarray, radius: float, tone: float, target: np.ndarray) -> None:
        """Draw filled discs (radius in face units) in ``tone`` onto ``target``."""
        radius_px = max(1, round(radius * self.px_per_unit * (1 << _SHIFT)))
        for x, y in self._fixed([centres])[0].tolist():
            cv2.circle(target, (x, y), radius_px, round(255 * tone), -1, cv2.LINE_AA, _SHIFT)


def _blend(image: np.ndarray, coverage: np.ndarray, tone: float | np.ndarray) -> None:
    """image <- image + (coverage / 255) * (tone - image), in place (float image in [0, 1])."""
    image += (coverage * np.float32(1 / 255)) * (tone - image)


def _blob(image: np.ndarray, centre_px: np.ndarray, sigma_px: float, delta: float) -> None:
    """Add a Gaussian bump of height ``delta`` centred at ``centre_px`` (separable)."""
    grid = np.arange(image.shape[0], dtype=np.float32)
    across = np.exp(-((grid - centre_px[0]) ** 2) / (2 * sigma_px**2))
    down = np.exp(-((grid - centre_px[1]) ** 2) / (2 * sigma_px**2))
    image += np.float32(delta) * np.outer(down, across)


_T = np.linspace(0, 1, 7)[:, None]
_BEZIER = np.hstack([(1 - _T) ** 2, 2 * _T * (1 - _T), _T**2])  # 7 x 3


def _arc(start: np.ndarray, middle: np.ndarray, end: np.ndarray) -> np.ndarray:
    """A quadratic Bezier curve (7 points) from ``start`` to ``end`` bent towards ``middle``."""
    return _BEZIER @ np.array([start, middle, end])


_PHI = np.linspace(0, np.pi, 15)[1:-1]
_DOME = np.column_stack([np.cos(_PHI), np.sin(_PHI) ** 0.6])  # unit arc over the head


def _head_outline(jaw: np.ndarray, width: float, top: float, bottom: float) -> np.ndarray:
    """The jaw (17 points) closed by an arc over the head from point 16 back to point 0."""
    return np.concatenate([jaw, _DOME * (width, top - bottom) + (0, bottom)])


def render_face(
    identity: Identity,
    landmarks: np.ndarray,
    intensities: np.ndarray,
    size: int,
    pose: Pose = Pose(),
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one face.

    Args:
        identity: the person (tones, hairline, part sizes).
        landmarks: 68 x 2 landmarks in face units, already moved by the AUs
            (:func:`fernb.face.facs.express`).
        intensities: (2, K) AU intensities of the (left, right) side, :data:`AU_NAMES`
            order; they set the strength of the texture cues.
        size: side of the square image in pixels.
        pose: where the face lies in the image.

    Returns:
        The image (float32, size x size, values in [0, 1]) and the landmarks in pixels.
    """
    p, lm = identity, landmarks
    u = np.clip(np.asarray(intensities, dtype=float), 0, 5) / 5.0  # (2, K)
    canvas = _Canvas(size, pose_matrix(pose, size), p.background)
    dark = p.skin * 0.35
    eyes = [lm[36:42], lm[42:48]]
    opening = [lm[60:68]]

    # Opaque layers, back to front.
    jaw = lm[0:17]
    x, top, w = jaw[8, 0], jaw[4, 1], 0.55 * p.face_width
    canvas.fill(
        [np.array([(x - w, top), (x + w, top), (x + 1.1 * w, 3), (x - 1.1 * w, 3)])], p.skin * 0.8
    )
    canvas.fill([_head_outline(jaw, p.face_width * 1.05, -1.3, p.jaw_top)], p.hair)
    skin_outline = [_head_outline(jaw, p.face_width * 0.99, p.hairline, p.jaw_top)]
    canvas.fill(skin_outline, p.skin)
    canvas.fill(_brows(lm, p.brow_thickness), p.hair * 0.8)
    canvas.fill(eyes, min(0.95, p.skin + 0.25))
    canvas.fill([lm[48:55], lm[54:60]], p.skin - p.lips)  # lips, drawn over by the mouth
    canvas.fill(opening, 0.1)

    # Layers clipped by others: irises and pupils by the eyes, teeth by the mouth opening;
    # drawn on a copy, then blended back through the clipping shapes.
    inner = canvas.image.copy()
    centres = np.array([(eye[0] + eye[3]) / 2 for eye in eyes])
    canvas.discs(centres, 1.1 * p.eye_open, p.iris, inner)
    canvas.discs(centres, 0.45 * p.eye_open, 0.04, inner)
    if np.max(lm[[65, 66, 67], 1] - lm[[63, 62, 61], 1]) > 0.005:  # the mouth is open
        upper, lower = lm[60:65], lm[[64, 65, 66, 67, 60]]
        for edge, depth, tone in ((upper, 0.035, 0.85), (lower, -0.025, 0.75)):
            canvas.fill([np.concatenate([edge, edge[::-1] + _vec(0, depth)])], tone, inner)
    clip = canvas.mask()
    canvas.fill([*eyes, *opening], 1.0, clip)
    image = canvas.image.astype(np.float32) * np.float32(1 / 255)
    _blend(image, clip, inner * np.float32(1 / 255))

    # Lines: lids, nose, lip seam, and the AU cues, all in one ink layer on the skin.
    ink = canvas.mask()
    _draw_features(canvas, lm, ink)
    _draw_cues(canvas, lm, u, ink)
    skin = canvas.mask()
    canvas.fill(skin_outline, 1.0, skin)
    _blend(image, ink * (skin * np.float32(1 / 255)), dark)
    for centre, sigma, delta in _bumps(lm, u):
        _blob(image, canvas.pixels(centre), sigma * canvas.px_per_unit, delta)
    return np.clip(image, 0, 1), canvas.pixels(lm).astype(np.float32)


def _brows(lm: np.ndarray, thickness: float) -> list[np.ndarray]:
    """Each brow as a polygon around its five landmarks, thinner at the outer end."""
    taper = thickness * np.array([0.55, 0.85, 1.0, 1.0, 0.9])[:, None] * _vec(0, 0.5)
    return [
        np.concatenate([brow - taper, (brow + taper)[::-1]])
        for brow in (lm[17:22], lm[22:27][::-1])
    ]


def _vec(x: float, y: float) -> np.ndarray:
    return np.array([x, y])


def _draw_features(canvas: _Canvas, lm: np.ndarray, ink: np.ndarray) -> None:
    """Eyelids and lashes, the sides and base of the nose, nostrils, the lip seam."""
    lids = [lm[[36, 37, 38, 39]], lm[[42, 43, 44, 45]]]
    canvas.stroke(lids, 0.9, ink)
    canvas.stroke([lm[[39, 40, 41, 36]], lm[[45, 46, 47, 42]]], 0.35, ink)
    sides = [
        _arc(lm[28] + _vec(0.05 * s, 0), lm[29] + _vec(0.07 * s, 0), lm[wing])
        for s, wing in ((-1.0, 31), (1.0, 35))
    ]
    canvas.stroke(sides, 0.2, ink)
    canvas.stroke([lm[31:36]], 0.35, ink)
    nostrils = np.array([0.55 * lm[w] + 0.45 * lm[m] for w, m in ((31, 32), (35, 34))])
    canvas.discs(nostrils - _vec(0, 0.012), 0.022, 1.0, ink)
    canvas.stroke([lm[60:65]], 0.6, ink)


#: Landmarks of each side's features: (left, right).
_SIDES = {
    "outer_eye": (36, 45), "lower_lid": ([41, 40], [46, 47]), "inner_brow": (21, 22),
    "middle_brow": (19, 24), "outer_brow": (17, 26), "corner": (48, 54), "wing": (31, 35),
}  # fmt: skip

_NOSE_WRINKLE = _arc(_vec(-0.07, 0), _vec(0, -0.01), _vec(0.07, 0))
_CHIN_CREASE = _arc(_vec(-0.09, 0.09), _vec(0, 0.06), _vec(0.09, 0.09))
_LIFTS = [_vec(0, 0.07 * k + 0.02) for k in (1, 2)]  # the two forehead wrinkles above a brow
_CROWS_FEET = (-0.45, 0.0, 0.45)  # slopes of the three lines at an outer eye corner


def _draw_cues(canvas: _Canvas, lm: np.ndarray, u: np.ndarray, ink: np.ndarray) -> None:
    """Wrinkles and furrows of the AUs, each as dark as its intensity (u = I / 5, per side).

    Only the cues of active AUs are built: most faces show two to four AUs.
    """
    for side, s in enumerate((-1.0, 1.0)):
        v = u[side]
        at = {name: lm[pair[side]] for name, pair in _SIDES.items()}
        brow, middle, outer = at["inner_brow"], at["middle_brow"], at["outer_brow"]
        if v[_AU["AU4"]] > 0:
            furrow = np.array([(0.3 * brow[0], brow[1] - 0.02), (0.2 * brow[0], brow[1] + 0.09)])
            canvas.stroke([furrow], 0.7 * v[_AU["AU4"]], ink)
        if v[_AU["AU1"]] > 0:
            central = _arc(_vec(0, brow[1]), _vec(s * 0.1, brow[1] - 0.02), _vec(s * 0.22, brow[1]))
            canvas.stroke([central - lift for lift in _LIFTS], 0.55 * v[_AU["AU1"]], ink)
        if v[_AU["AU2"]] > 0:
            lateral = _arc(middle, (middle + outer) / 2 - _vec(0, 0.02), outer + _vec(0, 0.01))
            canvas.stroke([lateral - lift for lift in _LIFTS], 0.55 * v[_AU["AU2"]], ink)
        if v[_AU["AU6"]] > 0:
            corner = at["outer_eye"] + _vec(s * 0.03, 0)
            feet = [np.array([corner, corner + _vec(s * 0.08, 0.08 * k)]) for k in _CROWS_FEET]
            canvas.stroke([*feet, at["lower_lid"] + _vec(0, 0.035)], 0.6 * v[_AU["AU6"]], ink)
        mouth, wing = at["corner"], at["wing"]
        fold = 0.12 + max(v[_AU["AU12"]], 0.7 * v[_AU["AU10"]], 0.4 * v[_AU["AU9"]])
        bend = _vec(mouth[0] + s * 0.06, (wing[1] + mouth[1]) / 2)
        nasolabial = _arc(wing + _vec(s * 0.03, -0.03), bend, mouth + _vec(s * 0.05, 0.07))
        canvas.stroke([nasolabial], 0.6 * fold, ink)
        if v[_AU["AU14"]] > 0:
            dimple = _arc(_vec(0.035 * s, -0.025), _vec(0.05 * s, 0), _vec(0.035 * s, 0.03))
            canvas.stroke([mouth + dimple], 0.75 * v[_AU["AU14"]], ink)
    both = u.mean(axis=0)
    if both[_AU["AU9"]] > 0:
        wrinkles = [lm[28] + _vec(0, k * 0.035) + _NOSE_WRINKLE for k in (-1, 0, 1)]
        canvas.stroke(wrinkles, 0.65 * both[_AU["AU9"]], ink)
    if both[_AU["AU17"]] > 0:
        canvas.stroke([lm[57] + _CHIN_CREASE], 0.55 * both[_AU["AU17"]], ink)


def _bumps(lm: np.ndarray, u: np.ndarray) -> list[tuple[np.ndarray, float, float]]:
    """Raised skin as (centre, sigma, height): the cheeks of AU6, the chin boss of AU17."""
    bumps = [
        (lm[lids].mean(axis=0) + _vec(0, 0.12), 0.07, 0.07 * u[side, _AU["AU6"]])
        for side, lids in enumerate(([40, 41], [46, 47]))
    ]
    bumps.append((lm[57] + _vec(0, 0.14), 0.05, 0.05 * u[:, _AU["AU17"]].mean()))
    return [bump for bump in bumps if bump[2] > 0]
