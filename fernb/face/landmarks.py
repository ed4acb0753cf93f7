"""68-point facial landmarks (iBUG order) from dlib, face-alignment (FAN) or the dataset.

Backends (:data:`BACKENDS`):

``"dlib"``
    dlib's HOG face detector and its 68-point shape predictor (Kazemi and Sullivan 2014),
    with the model file shipped in the ``face_recognition_models`` package: offline.
``"face_alignment"``
    Bulat and Tzimiropoulos' FAN (2DFAN-4), on the face boxes of dlib's detector. It needs
    the weights file ``$TORCH_HOME/hub/checkpoints/2DFAN4-11f355bf06.pth.tar``, which this
    module never downloads (:func:`fan_weights_path`).
``"given"``
    The dataset's own landmarks (``FaceData.landmarks``: annotations, or SynthFACS' exact
    ones).

Small pre-cropped faces (FER2013 and CK+48 are 48 x 48) are upsampled by an integer factor
to at least ``upsample_to`` pixels (bicubic) before detection, and the points are mapped
back, with pixel centres at integer coordinates: ``x = (x_up + 0.5) / s - 0.5``. Where the
detector finds no face, the whole upsampled image minus a margin (``margin`` x its side on
every edge) is the face box: such images are counted, not dropped
(:attr:`Landmarks.detected`). :func:`dataset_landmarks` caches the result on disk.

On SynthFACS 48 x 48 faces (difficulty 0.5, x4 to 192 px) dlib finds 88% of the faces and
its normalised mean error is 0.054 (0.060 on the fallback boxes), at ~100-150 images/s on
one CPU core (``benchmarks/landmarks_speed.py``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import warnings
import zipfile
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from fernb.data.facedata import FaceData
from fernb.utils import atomic_file

__all__ = [
    "BACKENDS",
    "CACHE_VERSION",
    "Landmarks",
    "dataset_landmarks",
    "detect_landmarks",
    "dlib_model_path",
    "fan_weights_path",
    "normalised_mean_error",
]

#: Landmark sources: two detectors and the dataset's own points.
BACKENDS: tuple[str, ...] = ("dlib", "face_alignment", "given")

#: Part of every cache key: bumped when a change alters the landmarks computed.
CACHE_VERSION = 1

_FAN_WEIGHTS = "2DFAN4-11f355bf06.pth.tar"


class Landmarks(NamedTuple):
    """Landmarks of N images.

    Attributes:
        points: float32, N x 68 x 2, (x, y) pixel coordinates of the original images.
        detected: bool, N; False where no face was detected and the whole image (minus a
            margin) served as the face box.
        backend: the backend that produced them.
    """

    points: np.ndarray
    detected: np.ndarray
    backend: str

    @property
    def fallbacks(self) -> int:
        """Number of images whose landmarks come from the whole-image fallback box."""
        return int((~self.detected).sum())

    def summary(self) -> str:
        """One line for a notebook, e.g. ``dlib: 300 images, 123 (41.0%) without a
        detected face (fallback box)``."""
        share = self.fallbacks / max(len(self.detected), 1)
        return (
            f"{self.backend}: {len(self.detected)} images, {self.fallbacks} ({share:.1%}) "
            "without a detected face (fallback box)"
        )


def dlib_model_path() -> Path:
    """dlib's 68-point shape predictor inside the ``face_recognition_models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the dlib backend needs the package face_recognition_models (pip install "
            "face-recognition-models==0.3.0), which holds shape_predictor_68_face_landmarks.dat"
        )
    models = Path(spec.submodule_search_locations[0]) / "models"
    return models / "shape_predictor_68_face_landmarks.dat"


def fan_weights_path() -> Path:
    """Where face-alignment reads its 2DFAN-4 weights: ``torch.hub.get_dir()/checkpoints``
    (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _FAN_WEIGHTS


def normalised_mean_error(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image normalised mean error of 68-point landmarks (300-W convention).

        NME = mean_i ||p_i - t_i|| / ||t_36 - t_45||

    with the true outer eye corners 36 and 45 as the inter-ocular distance (Sagonas et al.,
    "300 Faces in-the-wild challenge", 2016). Inputs are (..., 68, 2); returns (...).
    """
    predicted, truth = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    interocular = np.linalg.norm(truth[..., 36, :] - truth[..., 45, :], axis=-1)
    return np.linalg.norm(predicted - truth, axis=-1).mean(axis=-1) / interocular


@functools.cache
def _dlib_models() -> tuple:
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model_path()))


@functools.cache
def _fan_model(device: str, weights: Path):
    import face_alignment

    # on CUDA, face-alignment's dlib detector wants the CNN model: use the packaged one
    detector_file = dlib_model_path().with_name("mmod_human_face_detector.dat")
    detector_kwargs = {"path_to_detector": str(detector_file)} if "cuda" in device else {}
    return face_alignment.FaceAlignment(
        face_alignment.LandmarksType.TWO_D,
        device=device,
        face_detector="dlib",
        face_detector_kwargs=detector_kwargs,
        compile=False,
    )


def _require_fan_weights() -> Path:
    path = fan_weights_path()
    if not path.is_file():
        raise FileNotFoundError(
            f"the face_alignment backend needs FAN's weights at {path}, and fernb never "
            "downloads them: copy 2DFAN4-11f355bf06.pth.tar there (or point TORCH_HOME at "
            "the folder whose hub/checkpoints holds it), or use backend='dlib'"
        )
    return path


def _upsampled(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return np.ascontiguousarray(image)
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)


def _face_box(image: np.ndarray, margin: float) -> tuple[tuple[int, int, int, int], bool]:
    """(left, top, right, bottom) of the largest face dlib's HOG detector finds, and True;
    else the whole image minus ``margin`` x its side on each edge, and False."""
    detector, _ = _dlib_models()
    faces = detector(image, 0)
    if len(faces):
        face = max(faces, key=lambda rect: rect.area())
        return (face.left(), face.top(), face.right(), face.bottom()), True
    height, width = image.shape[:2]
    inset = round(margin * min(height, width))
    return (inset, inset, width - 1 - inset, height - 1 - inset), False


def _dlib_points(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    import dlib

    _, predictor = _dlib_models()
    shape = predictor(image, dlib.rectangle(*box))
    return np.array([(part.x, part.y) for part in shape.parts()], dtype=np.float64)


def _fan_points(fan, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    return np.asarray(fan.get_landmarks_from_image(rgb, detected_faces=[box])[0])[:, :2]


def detect_landmarks(
    images: np.ndarray,
    backend: str = "dlib",
    *,
    upsample_to: int = 192,
    margin: float = 0.04,
    device: str = "cpu",
) -> Landmarks:
    """Detect 68 landmarks in each image with ``"dlib"`` or ``"face_alignment"``.

    Each image is upsampled by ``s = ceil(upsample_to / min(H, W))`` (at least 1), faces
    are found by dlib's HOG detector (the largest one wins), the landmarks predicted in the
    face box, and mapped back by ``x = (x_up + 0.5) / s - 0.5``. Without a detection the
    box is the upsampled image inset by ``round(margin * side)`` pixels on each edge, and
    ``detected`` is False.

    Args:
        images: uint8, N x H x W (grayscale) or N x H x W x 3 (RGB).
        backend: ``"dlib"`` or ``"face_alignment"``.
        upsample_to: smallest side to upsample to (48 px faces: x4 to 192).
        margin: inset of the fallback box, as a fraction of the upsampled side.
        device: torch device of FAN (face_alignment only).

    Returns:
        :class:`Landmarks` with points in the original images' pixel coordinates.
    """
    if backend not in ("dlib", "face_alignment"):
        raise ValueError(
            f"detect_landmarks runs 'dlib' or 'face_alignment', got {backend!r}; the 'given' "
            "backend reads FaceData.landmarks (dataset_landmarks)"
        )
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise ValueError(f"images must be uint8 N x H x W (x 3), got {images.dtype} {images.shape}")
    fan = _fan_model(device, _require_fan_weights()) if backend == "face_alignment" else None
    factor = max(1, math.ceil(upsample_to / min(images.shape[1:3])))
    points = np.empty((len(images), 68, 2), np.float32)
    detected = np.empty(len(images), bool)
    for i, image in enumerate(images):
        large = _upsampled(image, factor)
        box, detected[i] = _face_box(large, margin)
        found = _dlib_points(large, box) if fan is None else _fan_points(fan, large, box)
        points[i] = (found + 0.5) / factor - 0.5
    return Landmarks(points, detected, backend)


def _cache_key(data: FaceData, backend: str, options: dict) -> str:
    digest = hashlib.sha256()
    header = {"version": CACHE_VERSION, "backend": backend, "options": options}
    header |= {"shape": data.images.shape, "dtype": str(data.images.dtype)}
    digest.update(json.dumps(header, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(data.images).data)
    return digest.hexdigest()[:16]


def _read_cache(path: Path, key: str, n: int, backend: str) -> Landmarks:
    """The landmarks stored at ``path``; ValueError if they are not those of ``key``."""
    with np.load(path) as stored:
        if str(stored["key"]) != key:
            raise ValueError(f"it holds key {stored['key']}, not {key}")
        landmarks = Landmarks(stored["points"], stored["detected"].astype(bool), backend)
    if landmarks.points.shape != (n, 68, 2) or landmarks.detected.shape != (n,):
        raise ValueError(f"it holds {landmarks.points.shape} points for {n} images")
    return landmarks


def _write_cache(path: Path, key: str, landmarks: Landmarks) -> None:
    with atomic_file(path) as handle:
        np.savez(handle, key=key, points=landmarks.points, detected=landmarks.detected)


def dataset_landmarks(
    data: FaceData,
    backend: str = "dlib",
    cache_dir: Path | str | None = None,
    *,
    upsample_to: int = 192,
    margin: float = 0.04,
    device: str = "cpu",
) -> Landmarks:
    """Landmarks of every image of ``data`` from ``backend``, cached in ``cache_dir``.

    ``"given"`` returns ``data.landmarks`` (all ``detected``). The detectors run
    :func:`detect_landmarks`; with ``cache_dir``, the result is stored as
    ``landmarks-<dataset>-<backend>-<key>.npz``, where the key hashes the images, the
    backend, the options (``device`` aside) and :data:`CACHE_VERSION`; the file is written
    atomically (temporary file, then ``os.replace``) and read back on the next call. A
    cache file that cannot be read or holds another key is recomputed and overwritten,
    with a warning.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown landmark backend {backend!r}; expected one of {BACKENDS}")
    if backend == "given":
        if data.landmarks is None:
            raise ValueError(f"dataset {data.name!r} has no landmarks; use 'dlib' instead")
        return Landmarks(data.landmarks, np.ones(len(data), bool), backend)
    options = {"upsample_to": upsample_to, "margin": margin}
    if cache_dir is None:
        return detect_landmarks(data.images, backend, device=device, **options)
    key = _cache_key(data, backend, options)
    path = Path(cache_dir) / f"landmarks-{data.name or 'unnamed'}-{backend}-{key}.npz"
    if path.exists():
        try:
            return _read_cache(path, key, len(data), backend)
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as error:
            warnings.warn(f"{path}: unusable landmark cache ({error}); recomputing", stacklevel=2)
    landmarks = detect_landmarks(data.images, backend, device=device, **options)
    _write_cache(path, key, landmarks)
    return landmarks
