"""Face vs non-face images: the training data of Meen et al.'s face-classification network.

Meen, Yoshioka and Inoue (paper 004) train a VGG19 to tell faces from non-faces and use its
features as attention for emotion recognition. They built the data from face datasets
(VGGFace2, CK, CK+, Caltech 256 faces) and object and scene datasets (Caltech 101/256,
Places) that are not available here. This module builds the same kind of data offline:

- **faces**: whatever faces the caller passes (the emotion dataset's *training* images,
  SynthFACS faces), plus the 100 faces of scikit-image's ``lfw_subset`` (25 x 25 LFW crops);
- **non-faces**: the 100 background crops of ``lfw_subset``; square patches cut at random
  positions and scales from scikit-image's bundled natural images (:data:`NATURAL_IMAGES`,
  which leaves out ``astronaut`` and ``camera`` because they show human faces); generated
  textures (:data:`TEXTURES`: smoothed noise, gratings, checkerboards, blobs, gradients).

Every image is gray uint8, resized to ``size`` x ``size`` with anti-aliasing. Each source is
split on its own into train / val / test (70 / 15 / 15 by default), so every split holds
every source. The LFW crops of both classes are upsampled from 25 pixels, so blur alone does
not tell them apart; the other sources differ in more than faceness (a network can learn
"looks like FER2013" instead of "is a face"), which the per-source test accuracy exposes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import skimage.data
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

__all__ = [
    "CLASSES",
    "NATURAL_IMAGES",
    "TEXTURES",
    "FaceNonFace",
    "lfw_subset",
    "make_face_nonface",
    "natural_patches",
    "resize_gray",
    "textures",
]

#: Label names: 0 non-face, 1 face.
CLASSES: tuple[str, str] = ("non-face", "face")
#: scikit-image's bundled images used for non-face patches (no human faces among them).
NATURAL_IMAGES: tuple[str, ...] = (
    "brick",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "colorwheel",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)
#: Kinds of generated texture, drawn in turn.
TEXTURES: tuple[str, ...] = ("noise", "grating", "checker", "blobs", "gradient")


@dataclass
class FaceNonFace:
    """Face and non-face images with their source and split.

    Attributes:
        images: uint8, N x S x S gray.
        labels: int64, N; 1 face, 0 non-face (:data:`CLASSES`).
        sources: str, N; where each image comes from, e.g. ``"lfw-face"``, ``"texture"``.
        split: str, N; ``"train"``, ``"val"`` or ``"test"``.
    """

    images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    split: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise ValueError(
                f"images must be uint8 N x S x S, got {self.images.dtype} {self.images.shape}"
            )
        for name in ("labels", "sources", "split"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} has {len(getattr(self, name))} rows, images has {n}")

    def __len__(self) -> int:
        return len(self.images)

    def tensors(self, split: str) -> dict[str, torch.Tensor]:
        """One split as ``fernb.train`` wants it: ``image`` uint8 N x 1 x S x S, ``label``."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {split!r}")
        index = np.flatnonzero(self.split == split)
        return {
            "image": torch.from_numpy(self.images[index]).unsqueeze(1),
            "label": torch.from_numpy(self.labels[index]),
        }

    def counts(self) -> pd.DataFrame:
        """Images per source (rows) and split (columns), with each source's class."""
        table = pd.crosstab(
            pd.Series(self.sources, name="source"), pd.Series(self.split, name="split")
        )
        table = table.reindex(columns=["train", "val", "test"], fill_value=0)
        first = pd.Series(self.labels, index=self.sources).groupby(level=0).first()
        table.insert(0, "class", [CLASSES[first[source]] for source in table.index])
        return table


def resize_gray(images: np.ndarray, size: int) -> np.ndarray:
    """N x H x W (uint8 or floats in [0, 1]) to uint8 N x size x size, anti-aliased bilinear."""
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected N x H x W gray images, got shape {images.shape}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    batch = torch.from_numpy(images.astype(np.float32) / scale)[:, None]
    if batch.shape[-2:] != (size, size):
        batch = F.interpolate(
            batch, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return (batch[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def lfw_subset(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(faces, non-faces) of scikit-image's ``lfw_subset``: 100 each, uint8 size x size."""
    images = skimage.data.lfw_subset()
    return resize_gray(images[:100], size), resize_gray(images[100:], size)


def _gray(image: np.ndarray, shorter_side: int) -> torch.Tensor:
    """A bundled image as a 1 x 1 x H x W gray tensor in [0, 1], its shorter side at most
    ``shorter_side`` (RGB(A) by ITU-R 601 luma; bool as 0/1)."""
    image = np.asarray(image)
    values = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    if values.ndim == 3:
        values = values[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(values))[None, None]
    factor = shorter_side / min(values.shape)
    if factor < 1:
        tensor = F.interpolate(tensor, scale_factor=factor, mode="bilinear", antialias=True)
    return tensor


def natural_patches(
    n: int, size: int, rng: np.random.Generator, names: tuple[str, ...] = NATURAL_IMAGES
) -> np.ndarray:
    """``n`` square patches of scikit-image's bundled images, uint8 n x size x size.

    Each image is first shrunk so that its shorter side is at most ``8 * size``. Each patch
    comes from an image drawn uniformly from ``names``; its side is drawn from U(1/8, 1/2) of
    that image's shorter side (at least ``size / 2``) and its position uniformly; it is then
    resized to ``size`` and mirrored with probability 1/2.
    """
    sources = [_gray(getattr(skimage.data, name)(), 8 * size) for name in names]
    patches = torch.empty((n, 1, size, size))
    for i in range(n):
        image = sources[rng.integers(len(sources))]
        height, width = image.shape[-2:]
        short = min(height, width)
        side = int(rng.integers(max(size // 2, short // 8), short // 2 + 1))
        top, left = int(rng.integers(height - side + 1)), int(rng.integers(width - side + 1))
        patch = image[..., top : top + side, left : left + side]
        patch = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True)
        patches[i] = patch[0].flip(-1) if rng.random() < 0.5 else patch[0]
    return (patches[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One generated texture, floats of any range (stretched by :func:`textures`)."""
    y, x = np.mgrid[:size, :size].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    along = x * np.cos(angle) + y * np.sin(angle)
    if kind == "noise":
        return gaussian_filter(rng.standard_normal((size, size)), rng.uniform(0.5, 4.0))
    if kind == "grating":
        return np.sin(2 * np.pi * rng.uniform(1 / 24, 1 / 3) * along + rng.uniform(0, 2 * np.pi))
    if kind == "checker":
        across = -x * np.sin(angle) + y * np.cos(angle)
        period = rng.uniform(4, 16)
        return np.sign(np.sin(np.pi * along / period) * np.sin(np.pi * across / period))
    if kind == "blobs":
        blobs = skimage.data.binary_blobs(
            size,
            blob_size_fraction=rng.uniform(0.05, 0.3),
            volume_fraction=rng.uniform(0.2, 0.6),
            rng=int(rng.integers(2**31)),
        )
        return gaussian_filter(blobs.astype(np.float32), rng.uniform(0.0, 1.5))
    if kind == "gradient":
        return along / size + 0.05 * rng.standard_normal((size, size))
    raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURES}")


def textures(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` generated textures (the kinds of :data:`TEXTURES` in turn), uint8 n x size x size.

    Each is stretched linearly to a random range [low, high] with low ~ U(0, 0.4) and
    high ~ U(0.6, 1), so contrast and brightness vary as in photographs.
    """
    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        values = _texture(TEXTURES[i % len(TEXTURES)], size, rng).astype(np.float64)
        span = values.max() - values.min()
        unit = (values - values.min()) / span if span > 0 else np.zeros_like(values)
        low, high = rng.uniform(0, 0.4), rng.uniform(0.6, 1.0)
        out[i] = np.round((low + (high - low) * unit) * 255).astype(np.uint8)
    return out


def make_face_nonface(
    faces: Mapping[str, np.ndarray],
    n_patches: int,
    n_textures: int,
    size: int = 48,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> FaceNonFace:
    """Build the face / non-face dataset.

    Args:
        faces: source name -> gray face images (N x H x W, uint8), e.g.
            ``{"fer2013": train_faces}``; resized to ``size``. The LFW faces are always added
            as ``"lfw-face"``. Pass only training images of an emotion dataset, so that no
            emotion test face is seen by the face network.
        n_patches: non-face patches of the bundled natural images (``"natural-patch"``).
        n_textures: generated textures (``"texture"``). The 100 LFW non-faces are always
            added as ``"lfw-nonface"``.
        size: side of the square images.
        fractions: train, val and test shares, applied to each source separately.
        seed: seeds patches, textures and splits.
    """
    if len(fractions) != 3 or min(fractions) <= 0 or not np.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three positive shares summing to 1, got {fractions}")
    if n_patches < 0 or n_textures < 0:
        raise ValueError(f"n_patches and n_textures must be >= 0, got {n_patches}, {n_textures}")
    reserved = {"lfw-face", "lfw-nonface", "natural-patch", "texture"} & set(faces)
    if reserved:
        raise ValueError(f"face source names {sorted(reserved)} are reserved for non-faces/LFW")
    rng = np.random.default_rng(seed)
    lfw_faces, lfw_nonfaces = lfw_subset(size)
    parts: list[tuple[str, int, np.ndarray]] = [
        *((name, 1, resize_gray(images, size)) for name, images in faces.items()),
        ("lfw-face", 1, lfw_faces),
        ("lfw-nonface", 0, lfw_nonfaces),
        ("natural-patch", 0, natural_patches(n_patches, size, rng)),
        ("texture", 0, textures(n_textures, size, rng)),
    ]
    images, labels, sources, split = [], [], [], []
    for name, label, part in parts:
        n = len(part)
        cut = np.round(np.cumsum(fractions)[:2] * n).astype(int)
        names = np.empty(n, dtype=object)
        order = rng.permutation(n)
        names[order[: cut[0]]], names[order[cut[0] : cut[1]]] = "train", "val"
        names[order[cut[1] :]] = "test"
        images.append(part)
        labels.append(np.full(n, label, dtype=np.int64))
        sources.append(np.full(n, name))
        split.append(names.astype(str))
    return FaceNonFace(
        images=np.concatenate(images),
        labels=np.concatenate(labels),
        sources=np.concatenate(sources),
        split=np.concatenate(split),
    )
