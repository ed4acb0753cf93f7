"""SynthFACS: procedural grayscale faces with exact action-unit ground truth.

The default dataset of every notebook: no download, about a thousand faces per second on one
CPU core, and the exact intensity of every action unit (AU), which no real dataset here
has. Each image is drawn from a person (:class:`fernb.face.facs.Identity`), an expression
(AU intensities on the FACS 0-5 scale) and nuisances (pose, lighting, blur, noise,
occlusion):

1. Emotion -> AUs, after the EMFACS prototypes of :data:`fernb.face.facs.PROTOTYPES`:
   every AU of the prototype gets ``A * weight * U(0.8, 1.1)``, with the sample's apex
   intensity ``A ~ U(3 - 2d, 5)``; with probability ``0.35 d`` each prototype AU is dropped
   (one always stays), and each other AU appears with probability ``0.08 d`` at
   ``U(0.5, 2.5)``. Disgust takes AU9 or AU10 (EMFACS lists both); contempt acts on one
   side of the face only. So classes overlap, more as the difficulty ``d`` grows.
2. AUs -> landmarks (:func:`fernb.face.facs.express`) -> image
   (:func:`fernb.face.render.render_face`).
3. Nuisances, scaled by ``d`` in [0, 1]: rotation U(-15d, 15d) degrees, scale
   exp(U(-0.12d, 0.12d)), shift U(-0.06d, 0.06d) of the size, a linear lighting gradient of
   strength U(0, 0.5d), Gaussian blur of sigma U(0, d) pixels at 48 px, Gaussian noise of
   sigma U(0, 0.05d), and with probability 0.35d an occluder (dark glasses or a patch).

Sequences (``sequences=True``) hold ``frames`` images per sample that go from neutral to
the apex (intensity ramp ``smoothstep``) with a slight head motion, like CK+ and MMI clips.

Every random draw comes from a generator seeded by (``seed``, subject, sample), so a
dataset is byte-identical for a given configuration, and adding subjects or samples leaves
the existing ones unchanged; the image size changes only the rendering.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import cv2
import numpy as np

from fernb.data.facedata import EMOTIONS, FaceData
from fernb.face.facs import AU_NAMES, PROTOTYPES, Identity, au_index, express, neutral_landmarks
from fernb.face.render import Pose, pose_matrix, render_face
from fernb.utils import atomic_file

__all__ = [
    "GENERATOR_VERSION",
    "Nuisance",
    "SynthConfig",
    "generate",
    "load_synthetic",
    "sample_expression",
    "sample_identity",
    "sample_nuisance",
    "synthesize",
]

#: Bumped whenever a change alters the images or labels a configuration produces; caches
#: written by another version are not reused.
GENERATOR_VERSION = 1

_IDENTITY, _SAMPLE = 0, 1  # random streams


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *keys])


@dataclass(frozen=True)
class SynthConfig:
    """Options of :func:`load_synthetic` (all of them are part of the cache key).

    Attributes:
        size: side of the square images in pixels.
        n_subjects: number of synthetic people.
        samples_per_subject: expressions per person; emotions cycle through ``classes``, so
            a multiple of ``len(classes)`` gives balanced classes.
        classes: the emotions to draw, names from :data:`fernb.data.EMOTIONS`.
        sequences: if True, each sample is a clip of ``frames`` images, neutral to apex.
        frames: frames per clip.
        difficulty: 0 (frontal, clean, strong prototypical expressions) to 1 (pose,
            lighting, blur, noise, occlusion, weak and mixed expressions).
        seed: the dataset's seed.
    """

    size: int = 48
    n_subjects: int = 20
    samples_per_subject: int = 16
    classes: tuple[str, ...] = EMOTIONS
    sequences: bool = False
    frames: int = 16
    difficulty: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        unknown = set(self.classes) - set(EMOTIONS)
        if unknown or not self.classes:
            raise ValueError(f"classes must be names from {EMOTIONS}, got {self.classes}")
        if not 0 <= self.difficulty <= 1:
            raise ValueError(f"difficulty must be in [0, 1], got {self.difficulty}")
        for name in ("size", "n_subjects", "samples_per_subject", "frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.sequences and self.frames < 2:
            raise ValueError("a sequence needs at least 2 frames")

    def key(self) -> str:
        """A short hash of the configuration and :data:`GENERATOR_VERSION` (cache file name)."""
        text = json.dumps({"version": GENERATOR_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Nuisance:
    """What a sample's photo adds to its face: pose, lighting, blur, noise, occlusion.

    ``light`` is (strength, angle in radians) of a linear gradient; ``blur`` and ``noise``
    are sigmas (pixels at 48 px, and fractions of the intensity range); ``occluder`` is None,
    ``"glasses"`` or ``"patch"``, with ``patch`` = (centre x, centre y, width, height) as
    fractions of the size and ``occluder_tone`` its gray level.
    """

    pose: Pose = field(default_factory=Pose)
    light: tuple[float, float] = (0.0, 0.0)
    blur: float = 0.0
    noise: float = 0.0
    occluder: str | None = None
    patch: tuple[float, float, float, float] = (0.5, 0.5, 0.0, 0.0)
    occluder_tone: float = 0.0


def sample_identity(seed: int, subject: int) -> Identity:
    """The person ``subject`` of the dataset with seed ``seed``."""
    return Identity.sample(_rng(seed, _IDENTITY, subject))


def sample_expression(emotion: str, rng: np.random.Generator, difficulty: float) -> np.ndarray:
    """Apex AU intensities (2 x K: left and right side) of one sample of ``emotion``."""
    d = difficulty
    weights = dict(PROTOTYPES[emotion])
    if emotion == "disgust" and rng.random() < 0.5:
        weights["AU10"] = weights.pop("AU9")
    present = [au for au in weights if rng.random() >= 0.35 * d]
    if weights and not present:
        present = [max(weights, key=weights.get)]
    apex = rng.uniform(3.0 - 2.0 * d, 5.0)
    intensities = np.zeros(len(AU_NAMES))
    for au in present:
        intensities[au_index(au)] = apex * weights[au] * rng.uniform(0.8, 1.1)
    others = [k for k, au in enumerate(AU_NAMES) if au not in weights]
    extra = rng.random(len(others)) < 0.08 * d
    intensities[np.array(others)[extra]] = rng.uniform(0.5, 2.5, extra.sum())
    sides = np.array([intensities, intensities]).clip(0, 5)
    if emotion == "contempt":
        sides[rng.integers(2), au_index(["AU12", "AU14"])] = 0.0
    return sides


def sample_nuisance(rng: np.random.Generator, difficulty: float) -> Nuisance:
    """Pose and photometric nuisances of one sample (none at difficulty 0)."""
    d = difficulty
    pose = Pose(
        rotation=rng.uniform(-15, 15) * d,
        scale=float(np.exp(rng.uniform(-0.12, 0.12) * d)),
        shift_x=rng.uniform(-0.06, 0.06) * d,
        shift_y=rng.uniform(-0.06, 0.06) * d,
    )
    occluder = None
    if rng.random() < 0.35 * d:
        occluder = "glasses" if rng.random() < 0.5 else "patch"
    return Nuisance(
        pose=pose,
        light=(rng.uniform(0, 0.5) * d, rng.uniform(0, 2 * np.pi)),
        blur=rng.uniform(0, 1) * d,
        noise=rng.uniform(0, 0.05) * d,
        occluder=occluder,
        patch=(rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.8), *rng.uniform(0.2, 0.4, 2)),
        occluder_tone=rng.uniform(0, 1) if occluder == "patch" else 0.05,
    )


#: The dark-glasses occluder around both eyes, in face units relative to the eye line.
_GLASSES = np.array(
    [(-0.66, -0.1), (0.66, -0.1), (0.62, 0.1), (0.08, 0.08), (-0.08, 0.08), (-0.62, 0.1)]
)


def _photograph(
    image: np.ndarray,
    identity: Identity,
    nuisance: Nuisance,
    rng: np.random.Generator,
) -> np.ndarray:
    """Apply occlusion, lighting, blur and noise to a rendered face; return uint8."""
    size = image.shape[0]
    if nuisance.occluder is not None:
        mask = np.zeros((size, size), np.uint8)
        if nuisance.occluder == "glasses":
            matrix = pose_matrix(nuisance.pose, size)
            outline = (_GLASSES + np.array([0.0, identity.eye_y])) @ matrix[:, :2].T + matrix[:, 2]
        else:
            cx, cy, w, h = np.array(nuisance.patch) * size
            outline = np.array([(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2),
                                (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)])  # fmt: skip
        cv2.fillPoly(mask, [np.rint(outline * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        image += (mask * np.float32(1 / 255)) * (np.float32(nuisance.occluder_tone) - image)
    strength, angle = nuisance.light
    if strength > 0:
        ramp = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / size
        image *= 1 + strength * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    if nuisance.blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), nuisance.blur * size / 48)
    if nuisance.noise > 0:
        image += nuisance.noise * rng.standard_normal(image.shape, dtype=np.float32)
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)


def synthesize(
    identity: Identity,
    intensities: np.ndarray,
    size: int = 48,
    nuisance: Nuisance = Nuisance(),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One face: ``identity`` making the expression ``intensities``, photographed.

    Args:
        identity: the person.
        intensities: AU intensities in [0, 5], (K,) or (2, K) per side, in
            :data:`fernb.face.facs.AU_NAMES` order.
        size: image side in pixels.
        nuisance: pose and photometric nuisances (default: none).
        rng: draws the pixel noise (needed only when ``nuisance.noise > 0``).

    Returns:
        The image (uint8, size x size) and its 68 landmarks in pixels (float32, 68 x 2).
    """
    sides = np.broadcast_to(np.asarray(intensities, dtype=float), (2, len(AU_NAMES)))
    landmarks = express(neutral_landmarks(identity), sides)
    image, pixels = render_face(identity, landmarks, sides, size, nuisance.pose)
    if nuisance.noise > 0 and rng is None:
        raise ValueError("nuisance.noise > 0 needs an rng")
    return _photograph(image, identity, nuisance, rng), pixels


def _ramp(frames: int) -> np.ndarray:
    """Expression strength per frame: neutral for the first ~15%, smoothstep to the apex."""
    t = np.clip((np.linspace(0, 1, frames) - 0.15) / 0.75, 0, 1)
    return t * t * (3 - 2 * t)


def generate(config: SynthConfig) -> FaceData:
    """Draw the dataset described by ``config`` (see the module docstring)."""
    frames = config.frames if config.sequences else 1
    n = config.n_subjects * config.samples_per_subject * frames
    images = np.empty((n, config.size, config.size), np.uint8)
    landmarks = np.empty((n, 68, 2), np.float32)
    aus = np.empty((n, len(AU_NAMES)), np.float32)
    labels, subjects, sequences, frame_index = [], [], [], []
    ramp = _ramp(frames) if config.sequences else np.ones(1)
    row = 0
    for subject in range(config.n_subjects):
        identity = sample_identity(config.seed, subject)
        neutral = neutral_landmarks(identity)
        offset = _rng(config.seed, _IDENTITY, subject).integers(len(config.classes))
        for sample in range(config.samples_per_subject):
            label = (sample + offset) % len(config.classes)
            rng = _rng(config.seed, _SAMPLE, subject, sample)
            apex = sample_expression(config.classes[label], rng, config.difficulty)
            nuisance = sample_nuisance(rng, config.difficulty)
            drift = rng.uniform(-1, 1, 3) * np.array([3.0, 0.02, 0.02]) * config.difficulty
            for t, strength in enumerate(ramp):
                sides = strength * apex
                late = 1 - strength  # the head settles as the expression reaches its apex
                pose = replace(
                    nuisance.pose,
                    rotation=nuisance.pose.rotation + late * drift[0],
                    shift_x=nuisance.pose.shift_x + late * drift[1],
                    shift_y=nuisance.pose.shift_y + late * drift[2],
                )
                face, landmarks[row] = render_face(
                    identity, express(neutral, sides), sides, config.size, pose
                )
                images[row] = _photograph(face, identity, replace(nuisance, pose=pose), rng)
                aus[row] = sides.max(axis=0)
                labels.append(label)
                subjects.append(f"P{subject:03d}")
                sequences.append(f"P{subject:03d}_{sample:03d}")
                frame_index.append(t)
                row += 1
    return FaceData(
        images=images,
        labels=np.array(labels),
        classes=list(config.classes),
        subjects=np.array(subjects),
        split=np.full(n, ""),
        aus=aus,
        au_names=list(AU_NAMES),
        landmarks=landmarks,
        sequence=np.array(sequences) if config.sequences else None,
        frame=np.array(frame_index) if config.sequences else None,
        name="synthetic",
        info=_info(config),
    )


def _info(config: SynthConfig) -> dict:
    return {
        # as JSON data (classes a list), the form a run record keeps
        "provenance": {
            **asdict(config),
            "classes": list(config.classes),
            "generator_version": GENERATOR_VERSION,
        },
        "label_map": {name: name for name in config.classes},
    }


_ARRAYS = ("images", "labels", "subjects", "aus", "landmarks", "sequence", "frame")


def load_synthetic(root: Path | str | None = None, **options) -> FaceData:
    """Load SynthFACS with the options of :class:`SynthConfig`.

    With ``root``, the dataset is cached there as ``synthfacs-<key>.npz`` (written
    atomically) and read back on the next call with the same options and generator version.
    """
    valid = {f.name for f in fields(SynthConfig)}
    unknown = set(options) - valid
    if unknown:
        raise TypeError(f"unknown synthetic option(s) {sorted(unknown)}; valid: {sorted(valid)}")
    config = SynthConfig(**options)
    if root is None:
        return generate(config)
    path = Path(root) / f"synthfacs-{config.key()}.npz"
    if path.exists():
        with np.load(path) as stored:
            arrays = {name: stored[name] for name in _ARRAYS if name in stored}
        return FaceData(
            classes=list(config.classes),
            split=np.full(len(arrays["images"]), ""),
            au_names=list(AU_NAMES),
            name="synthetic",
            info={**_info(config), "cache": str(path)},
            **arrays,
        )
    data = generate(config)
    arrays = {name: getattr(data, name) for name in _ARRAYS if getattr(data, name) is not None}
    with atomic_file(path) as handle:
        np.savez(handle, **arrays)
    data.info["cache"] = str(path)
    return data
