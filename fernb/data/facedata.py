"""The one data contract: every loader returns a :class:`FaceData`.

A ``FaceData`` holds whole datasets as NumPy arrays (these datasets are small: FER2013 is
35,887 images of 48 x 48), so training code can move them to the device in one copy and
augment there. Labels index ``classes``, whose names belong to the canonical emotion label
space :data:`EMOTIONS`; each loader documents how its dataset's own labels map into it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

__all__ = [
    "EMOTIONS",
    "SPLITS",
    "DatasetFormatError",
    "FaceData",
    "FaceDataset",
    "read_image",
    "require_dir",
]

#: The canonical emotion label space. Every dataset's labels are mapped to these names.
EMOTIONS: tuple[str, ...] = (
    "neutral",
    "anger",
    "contempt",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
)

#: Values of ``FaceData.split``; ``""`` where the dataset has no official split.
SPLITS: tuple[str, ...] = ("train", "val", "test", "")


class DatasetFormatError(ValueError):
    """A dataset file or folder is not in the layout its loader expects.

    The message names the offending file (and line, for text formats) and the layout that
    was expected.
    """


def require_dir(path: Path | str, expected: str) -> Path:
    """Return ``path`` as a ``Path`` if it is a folder; else raise naming the expected layout."""
    path = Path(path)
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{path} {what}; expected {expected}")
    return path


def read_image(path: Path | str, mode: str = "L") -> np.ndarray:
    """Read an image file as uint8 (``mode="L"``: H x W; ``"RGB"``: H x W x 3).

    Palette and 16-bit images are converted. A file that cannot be decoded raises
    :class:`DatasetFormatError` naming it.
    """
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I"):
                scaled = np.asarray(image, dtype=np.float64)
                scaled *= 255.0 / max(float(scaled.max()), 1.0)
                image = Image.fromarray(scaled.round().astype(np.uint8))
            return np.asarray(image.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DatasetFormatError(f"{path}: cannot decode this image ({error})") from error


def _optional_length(name: str, value: np.ndarray | None, n: int) -> None:
    if value is not None and len(value) != n:
        raise ValueError(f"FaceData.{name} has {len(value)} rows, images has {n}")


@dataclass(eq=False)
class FaceData:
    """A face dataset in memory.

    Attributes:
        images: uint8, N x H x W (grayscale) or N x H x W x 3 (RGB).
        labels: int64, N, indices into ``classes`` (-1 where an image has no emotion label).
        classes: class names, each one of :data:`EMOTIONS`.
        subjects: str, N, the person in each image (subject-independent splits use it).
        split: str, N, one of ``"train"``, ``"val"``, ``"test"``, or ``""``.
        aus: float32, N x K, action-unit intensity (FACS 0-5) or occurrence (0/1); NaN where
            unknown.
        au_names: the K action units, e.g. ``"AU12"``.
        landmarks: float32, N x 68 x 2, (x, y) pixel coordinates in the iBUG 68-point order.
        sequence: str, N, the video or sequence each image comes from.
        frame: int64, N, the frame index within ``sequence``.
        name: dataset name as registered in :func:`fernb.data.load`.
        info: what the loader wants a reader to know: the mapping of the dataset's own
            labels into ``classes``, counted fallbacks (for example images without a face),
            options it was loaded with; ``info["provenance"]`` (see :attr:`provenance`) where
            the name alone does not say what made the data.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    subjects: np.ndarray
    split: np.ndarray
    aus: np.ndarray | None = None
    au_names: list[str] | None = None
    landmarks: np.ndarray | None = None
    sequence: np.ndarray | None = None
    frame: np.ndarray | None = None
    name: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != np.uint8 or self.images.ndim not in (3, 4):
            raise ValueError(
                f"FaceData.images must be uint8 N x H x W (x 3), got {self.images.dtype} "
                f"with shape {self.images.shape}"
            )
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.subjects = np.asarray(self.subjects, dtype=str)
        self.split = np.asarray(self.split, dtype=str)
        for name in ("labels", "subjects", "split"):
            _optional_length(name, getattr(self, name), n)
        unknown = set(self.classes) - set(EMOTIONS)
        if unknown:
            raise ValueError(f"FaceData.classes outside the canonical EMOTIONS: {sorted(unknown)}")
        if n and (self.labels.min() < -1 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"FaceData.labels must lie in [-1, {len(self.classes)})")
        bad_splits = set(np.unique(self.split)) - set(SPLITS)
        if bad_splits:
            raise ValueError(f"FaceData.split has values outside {SPLITS}: {sorted(bad_splits)}")
        if self.aus is not None:
            self.aus = np.asarray(self.aus, dtype=np.float32)
            _optional_length("aus", self.aus, n)
            if self.au_names is None or len(self.au_names) != self.aus.shape[1]:
                raise ValueError("FaceData.au_names must name every column of aus")
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32)
            if self.landmarks.shape[1:] != (68, 2):
                raise ValueError(
                    f"FaceData.landmarks must be N x 68 x 2, got {self.landmarks.shape}"
                )
            _optional_length("landmarks", self.landmarks, n)
        if self.sequence is not None:
            self.sequence = np.asarray(self.sequence, dtype=str)
            _optional_length("sequence", self.sequence, n)
        if self.frame is not None:
            self.frame = np.asarray(self.frame, dtype=np.int64)
            _optional_length("frame", self.frame, n)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the images."""
        return self.images.shape[1], self.images.shape[2]

    @property
    def channels(self) -> int:
        """1 for grayscale, 3 for RGB."""
        return 1 if self.images.ndim == 3 else 3

    @property
    def provenance(self) -> dict | None:
        """What made this data beyond its ``name``, for run records
        (:attr:`fernb.results.RunRecord.data_options`): a generator's configuration and
        version for generated data; ``None`` for a dataset read from files, which its name
        and official layout already pin down."""
        return self.info.get("provenance")

    def subset(self, index: Sequence[int] | np.ndarray) -> FaceData:
        """Return the rows ``index`` (integer positions or a boolean mask) as a new FaceData."""
        index = np.asarray(index)
        per_row = {
            f.name: getattr(self, f.name)[index]
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }
        return replace(self, **per_row)

    def indices(self, split: str) -> np.ndarray:
        """Positions of the images of an official split."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return np.flatnonzero(self.split == split)

    def canonical_labels(self) -> np.ndarray:
        """Labels as indices into :data:`EMOTIONS` (-1 stays -1)."""
        lookup = np.array([EMOTIONS.index(c) for c in self.classes] + [-1], dtype=np.int64)
        return lookup[self.labels]

    def counts(self) -> pd.DataFrame:
        """Number of images per class (rows) and split (columns), with totals."""
        names = np.array([*self.classes, "(none)"])[self.labels]
        table = pd.crosstab(
            pd.Categorical(names, categories=[*self.classes, "(none)"]),
            pd.Series(np.where(self.split == "", "all", self.split), name="split"),
            margins=True,
            margins_name="total",
            dropna=False,
        )
        table.index.name = "class"
        return table.loc[(table["total"] > 0)]

    def tensors(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """Images as float N x C x H x W in [0, 1] and labels as int64, on ``device``."""
        images = torch.from_numpy(self.images).to(device)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        return images.float().div_(255.0), torch.from_numpy(self.labels).to(device)

    def dataset(
        self, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> FaceDataset:
        """A torch ``Dataset`` view of these images."""
        return FaceDataset(self, transform)


class FaceDataset(torch.utils.data.Dataset):
    """Torch view of a :class:`FaceData`: items are dicts of tensors.

    Each item has ``image`` (float C x H x W in [0, 1], after ``transform`` if given) and
    ``label``; plus ``aus`` and ``landmarks`` where the dataset has them.
    """

    def __init__(
        self, data: FaceData, transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = torch.from_numpy(self.data.images[i])
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
        image = image.float() / 255.0
        if self.transform is not None:
            image = self.transform(image)
        item = {"image": image, "label": torch.tensor(self.data.labels[i])}
        if self.data.aus is not None:
            item["aus"] = torch.from_numpy(self.data.aus[i])
        if self.data.landmarks is not None:
            item["landmarks"] = torch.from_numpy(self.data.landmarks[i])
        return item
