"""A parametric FACS face: identities, a neutral 68-point shape, action-unit motions and
EMFACS emotion prototypes. SynthFACS (:mod:`fernb.data.synthetic`) draws faces from it.

Coordinates are *face units*: x to the image's right, y down, the origin between the eyes
at about the height of the upper nose; the jaw spans about x = -0.8 ... 0.8 and the chin
lies near y = 0.95. Landmarks follow the iBUG 68-point scheme
(jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67; Sagonas et al. 2013);
"left" below means the image's left, which is the subject's right.

An action unit (AU) moves the landmarks it moves on a real face (Ekman and Friesen 1978),
linearly in its intensity I on the FACS scale 0 (absent) to 5 (maximum, "E"):

    L = L0 + sum_au (I_au / 5) * D_au

where ``L0`` is the identity's neutral shape and ``D_au`` the AU's displacement at full
intensity (:data:`AU_MOTIONS`). Intensities are given per side of the face, so unilateral
actions (contempt's one-sided AU12 + AU14) exist; points on the midline take the mean of
both sides. The texture cues of AUs (furrows, wrinkles, cheek bulges) are drawn by
:mod:`fernb.face.render`.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields
from typing import ClassVar

import numpy as np

from fernb.data.augment import FLIP_68

__all__ = [
    "AU_DESCRIPTIONS",
    "AU_MOTIONS",
    "AU_NAMES",
    "PROTOTYPES",
    "Identity",
    "au_index",
    "express",
    "neutral_landmarks",
]

#: Action units SynthFACS animates, with their FACS names.
AU_DESCRIPTIONS: dict[str, str] = {
    "AU1": "inner brow raiser",
    "AU2": "outer brow raiser",
    "AU4": "brow lowerer",
    "AU5": "upper lid raiser",
    "AU6": "cheek raiser",
    "AU7": "lid tightener",
    "AU9": "nose wrinkler",
    "AU10": "upper lip raiser",
    "AU12": "lip corner puller",
    "AU14": "dimpler",
    "AU15": "lip corner depressor",
    "AU16": "lower lip depressor",
    "AU17": "chin raiser",
    "AU20": "lip stretcher",
    "AU23": "lip tightener",
    "AU25": "lips part",
    "AU26": "jaw drop",
}

#: The AU order of every intensity vector in fernb.
AU_NAMES: tuple[str, ...] = tuple(AU_DESCRIPTIONS)

#: Displacement (dx, dy) in face units at intensity 5, for the left and midline landmarks
#: that each AU moves; the right side mirrors the left (dx -> -dx).
AU_MOTIONS: dict[str, dict[int, tuple[float, float]]] = {
    "AU1": {21: (0.0, -0.10), 20: (0.0, -0.075), 19: (0.0, -0.04), 18: (0.0, -0.015)},
    "AU2": {
        17: (0.0, -0.09), 18: (0.0, -0.085), 19: (0.0, -0.06), 20: (0.0, -0.03),
        21: (0.0, -0.01),
    },
    "AU4": {
        21: (0.05, 0.06), 20: (0.035, 0.055), 19: (0.02, 0.045), 18: (0.01, 0.035),
        17: (0.0, 0.025), 37: (0.0, 0.012), 38: (0.0, 0.018),
    },
    "AU5": {37: (0.0, -0.04), 38: (0.0, -0.04)},
    "AU6": {40: (0.0, -0.025), 41: (0.0, -0.03), 36: (0.005, -0.01)},
    "AU7": {40: (0.0, -0.03), 41: (0.0, -0.025), 37: (0.0, 0.012), 38: (0.0, 0.01)},
    "AU9": {
        31: (0.01, -0.04), 32: (0.0, -0.035), 33: (0.0, -0.03), 30: (0.0, -0.02),
        29: (0.0, -0.01), 21: (0.015, 0.03), 20: (0.01, 0.02), 50: (0.0, -0.025),
        51: (0.0, -0.03), 61: (0.0, -0.02), 62: (0.0, -0.02),
    },
    "AU10": {
        48: (0.0, -0.01), 49: (0.0, -0.04), 50: (0.0, -0.06), 51: (0.0, -0.055),
        60: (0.0, -0.01), 61: (0.0, -0.045), 62: (0.0, -0.05),
    },
    "AU12": {
        48: (-0.07, -0.11), 60: (-0.06, -0.095), 49: (-0.03, -0.045), 59: (-0.045, -0.06),
        61: (-0.02, -0.03), 67: (-0.02, -0.04), 50: (-0.01, -0.01), 58: (-0.015, -0.02),
    },
    "AU14": {48: (0.025, -0.01), 60: (0.02, -0.005), 49: (0.01, 0.0), 59: (0.01, 0.0)},
    "AU15": {
        48: (0.0, 0.07), 60: (0.0, 0.06), 59: (0.0, 0.03), 49: (0.0, 0.02), 67: (0.0, 0.02),
        61: (0.0, 0.02),
    },
    "AU16": {
        57: (0.0, 0.06), 58: (0.0, 0.055), 59: (0.0, 0.035), 66: (0.0, 0.06),
        67: (0.0, 0.045),
    },
    "AU17": {
        57: (0.0, -0.04), 58: (0.0, -0.035), 59: (0.0, -0.02), 66: (0.0, -0.02),
        67: (0.0, -0.015), 51: (0.0, -0.01), 62: (0.0, -0.01), 8: (0.0, -0.03),
        7: (0.0, -0.02),
    },
    "AU20": {
        48: (-0.07, 0.015), 60: (-0.06, 0.01), 49: (-0.03, 0.005), 59: (-0.03, 0.0),
        61: (-0.02, 0.0), 67: (-0.02, 0.0), 50: (0.0, 0.01), 51: (0.0, 0.01),
        58: (0.0, -0.01), 57: (0.0, -0.01),
    },
    "AU23": {
        48: (0.02, 0.0), 60: (0.015, 0.0), 49: (0.005, 0.015), 50: (0.0, 0.02),
        51: (0.0, 0.02), 59: (0.005, -0.02), 58: (0.0, -0.025), 57: (0.0, -0.025),
    },
    "AU25": {
        61: (0.0, -0.015), 62: (0.0, -0.018), 66: (0.0, 0.06), 67: (0.0, 0.05),
        57: (0.0, 0.045), 58: (0.0, 0.042), 59: (0.0, 0.022),
    },
    "AU26": {
        57: (0.0, 0.16), 58: (0.0, 0.15), 59: (0.0, 0.09), 66: (0.0, 0.16),
        67: (0.0, 0.13), 48: (0.01, 0.03), 60: (0.01, 0.03), 62: (0.0, -0.01),
        8: (0.0, 0.16), 7: (0.0, 0.145), 6: (0.0, 0.12), 5: (0.0, 0.08), 4: (0.0, 0.04),
        3: (0.0, 0.015),
    },
}  # fmt: skip

#: EMFACS-style emotion prototypes (Friesen and Ekman 1983): emotion -> {AU: weight};
#: a sample's AU intensity is its apex intensity times the weight. Disgust uses AU9 or
#: (in :func:`fernb.data.synthetic`) its alternative AU10; contempt is unilateral.
PROTOTYPES: dict[str, dict[str, float]] = {
    "neutral": {},
    "anger": {"AU4": 1.0, "AU5": 0.8, "AU7": 1.0, "AU23": 1.0},
    "contempt": {"AU12": 0.8, "AU14": 1.0},
    "disgust": {"AU9": 1.0, "AU15": 0.7, "AU16": 0.8},
    "fear": {
        "AU1": 1.0, "AU2": 0.8, "AU4": 0.8, "AU5": 1.0, "AU7": 0.6, "AU20": 1.0, "AU26": 0.8,
    },
    "happiness": {"AU6": 0.8, "AU12": 1.0},
    "sadness": {"AU1": 1.0, "AU4": 0.8, "AU15": 1.0},
    "surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 0.9, "AU26": 1.0},
}  # fmt: skip


def au_index(names: str | list[str] | tuple[str, ...]) -> int | list[int]:
    """Column(s) of :data:`AU_NAMES` for AU name(s) such as ``"AU12"``."""
    if isinstance(names, str):
        return AU_NAMES.index(names)
    return [AU_NAMES.index(name) for name in names]


def _motion_matrix() -> np.ndarray:
    """D: K x 68 x 2 displacements at intensity 5, both sides mirrored in."""
    motions = np.zeros((len(AU_NAMES), 68, 2))
    for k, name in enumerate(AU_NAMES):
        for point, (dx, dy) in AU_MOTIONS[name].items():
            mirror = FLIP_68[point]
            motions[k, point] = (0.0 if mirror == point else dx, dy)
            if mirror != point:
                motions[k, mirror] = (-dx, dy)
    return motions


_MOTIONS = _motion_matrix()


def _side_weights() -> np.ndarray:
    """Weight of the left side's intensity for each landmark (1 left, 0 right, 0.5 midline)."""
    weights = np.full(68, 0.5)
    base = neutral_landmarks(Identity())
    paired = FLIP_68 != np.arange(68)
    weights[paired] = (base[paired, 0] < base[FLIP_68[paired], 0]).astype(float)
    return weights


@dataclass(frozen=True)
class Identity:
    """The shape and tone of one synthetic person (lengths in face units, tones in [0, 1]).

    The defaults are the average face; :meth:`sample` draws a person.
    """

    face_width: float = 0.80  # half-width of the jaw at its top (points 0 and 16)
    chin: float = 0.95  # y of the chin (point 8)
    jaw_top: float = -0.20  # y of points 0 and 16
    jaw_roundness: float = 0.75  # exponent of the jaw curve: lower is squarer
    eye_y: float = -0.15
    eye_spacing: float = 0.37  # |x| of each eye's centre
    eye_width: float = 0.16  # half-width of an eye
    eye_open: float = 0.062  # half-height of an open eye
    brow_height: float = 0.19  # brow above the eye centre
    brow_thickness: float = 0.045
    brow_arch: float = 0.04
    nose_length: float = 0.23  # y of the nose tip (point 30)
    nose_width: float = 0.12  # half-width of the nostrils
    mouth_y: float = 0.55
    mouth_width: float = 0.25  # half-width of the mouth
    upper_lip: float = 0.055
    lower_lip: float = 0.07
    skin: float = 0.68
    lips: float = 0.16  # how much darker than the skin
    hair: float = 0.22
    hairline: float = -0.78
    iris: float = 0.3
    background: float = 0.45

    #: (low, high) of the uniform draw of each field in :meth:`sample`.
    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "face_width": (0.74, 0.86), "chin": (0.88, 1.0), "jaw_top": (-0.26, -0.14),
        "jaw_roundness": (0.55, 0.95), "eye_y": (-0.2, -0.1), "eye_spacing": (0.33, 0.41),
        "eye_width": (0.14, 0.18), "eye_open": (0.05, 0.075), "brow_height": (0.16, 0.22),
        "brow_thickness": (0.032, 0.06), "brow_arch": (0.015, 0.06),
        "nose_length": (0.18, 0.28), "nose_width": (0.1, 0.15), "mouth_y": (0.5, 0.6),
        "mouth_width": (0.21, 0.29), "upper_lip": (0.04, 0.07), "lower_lip": (0.05, 0.09),
        "skin": (0.5, 0.85), "lips": (0.08, 0.25), "hair": (0.05, 0.45),
        "hairline": (-0.92, -0.62), "iris": (0.1, 0.45), "background": (0.1, 0.95),
    }  # fmt: skip

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        """Draw every field uniformly from :attr:`RANGES`."""
        return cls(*(rng.uniform(*cls.RANGES[f.name]) for f in fields(cls)))

    def as_array(self) -> np.ndarray:
        """The fields as a float vector, in declaration order."""
        return np.array(astuple(self))


def neutral_landmarks(identity: Identity) -> np.ndarray:
    """The identity's neutral 68-point shape, 68 x 2 in face units."""
    p = identity
    points = np.zeros((68, 2))
    # Jaw: 0 (left, at jaw_top) round the chin (8) to 16 (right).
    phi = np.linspace(0.0, np.pi, 17)
    points[0:17, 0] = -p.face_width * np.cos(phi) * (1 - 0.12 * np.sin(phi) ** 4)
    points[0:17, 1] = p.jaw_top + (p.chin - p.jaw_top) * np.sin(phi) ** p.jaw_roundness
    # Brows: left 17 (outer) to 21 (inner); the right brow mirrors it.
    t = np.linspace(0.0, 1.0, 5)
    brow_x = -(p.eye_spacing + 1.35 * p.eye_width) + t * 1.05 * p.eye_width * 2.2
    brow_y = p.eye_y - p.brow_height - p.brow_arch * np.sin(np.pi * (0.25 + 0.7 * t)) + 0.01 * t
    points[17:22] = np.column_stack([brow_x, brow_y])
    # Nose: bridge 27-30 on the midline, nostril base 31-35.
    points[27:31] = np.column_stack([np.zeros(4), np.linspace(p.eye_y, p.nose_length, 4)])
    base_y = p.nose_length + 0.07
    points[31:36] = np.column_stack(
        [np.linspace(-1, 1, 5) * p.nose_width, base_y + np.array([-0.02, 0.0, 0.012, 0.0, -0.02])]
    )
    # Left eye: 36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid.
    cx, w, h = -p.eye_spacing, p.eye_width, p.eye_open
    points[36:42] = [
        (cx - w, p.eye_y + 0.008),
        (cx - w / 3, p.eye_y - h),
        (cx + w / 3, p.eye_y - h * 0.95),
        (cx + w, p.eye_y + 0.004),
        (cx + w / 3, p.eye_y + h * 0.8),
        (cx - w / 3, p.eye_y + h * 0.8),
    ]
    # Mouth, outer 48-59 and inner 60-67, closed.
    m, y, up, low = p.mouth_width, p.mouth_y, p.upper_lip, p.lower_lip
    points[48:55] = np.column_stack(
        [
            m * np.array([-1, -0.55, -0.2, 0, 0.2, 0.55, 1]),
            y - up * np.array([0, 0.8, 1.05, 0.85, 1.05, 0.8, 0]),
        ]
    )
    points[55:60] = np.column_stack(
        [m * np.array([0.55, 0.2, 0, -0.2, -0.55]), y + low * np.array([0.75, 1, 1.02, 1, 0.75])]
    )
    points[60:68] = np.column_stack(
        [
            m * np.array([-0.85, -0.3, 0, 0.3, 0.85, 0.3, 0, -0.3]),
            y + np.array([0, -0.004, -0.002, -0.004, 0, 0.004, 0.005, 0.004]),
        ]
    )
    # The right brow and eye mirror the left ones.
    for left in [*range(17, 22), *range(36, 42)]:
        points[FLIP_68[left]] = (-points[left, 0], points[left, 1])
    return points


#: Pairs (upper, lower) that must not cross: eyelids, inner lips, and lips vs. mouth.
_ORDERED_PAIRS = np.array(
    [
        (37, 41), (38, 40), (44, 46), (43, 47),
        (61, 67), (62, 66), (63, 65),
        (50, 61), (51, 62), (52, 63), (67, 58), (66, 57), (65, 56),
    ]
)  # fmt: skip


def express(neutral: np.ndarray, intensities: np.ndarray) -> np.ndarray:
    """Move a neutral shape by AU intensities.

    Args:
        neutral: 68 x 2 neutral landmarks (face units).
        intensities: FACS intensities in [0, 5] in :data:`AU_NAMES` order: shape (K,) for
            both sides of the face alike, or (2, K) for the (left, right) sides.

    Returns:
        68 x 2 landmarks. Where the motions would push a lower eyelid above its upper lid, or
        a lower lip above the upper one, both points meet halfway (the eye or mouth closes).
    """
    intensities = np.asarray(intensities, dtype=float)
    left, right = (intensities, intensities) if intensities.ndim == 1 else intensities
    if left.shape != (len(AU_NAMES),) or right.shape != (len(AU_NAMES),):
        raise ValueError(f"expected {len(AU_NAMES)} intensities per side, got {intensities.shape}")
    per_point = np.outer(left, _SIDE) + np.outer(right, 1 - _SIDE)  # K x 68
    points = neutral + np.einsum("kp,kpd->pd", per_point / 5.0, _MOTIONS)
    upper, lower = _ORDERED_PAIRS.T
    crossed = points[upper, 1] > points[lower, 1]
    middle = (points[upper[crossed], 1] + points[lower[crossed], 1]) / 2
    points[upper[crossed], 1] = middle
    points[lower[crossed], 1] = middle
    return points


_SIDE = _side_weights()
