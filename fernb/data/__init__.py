"""Datasets: one contract (:class:`FaceData`), one entry point (:func:`load`).

>>> data = load("synthetic", n_subjects=4)            # doctest: +SKIP
>>> data = load("fer2013", root="/data/fer2013")      # doctest: +SKIP
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from fernb.data.facedata import (
    EMOTIONS,
    SPLITS,
    DatasetFormatError,
    FaceData,
    FaceDataset,
    read_image,
    require_dir,
)

__all__ = [
    "EMOTIONS",
    "LOADERS",
    "SPLITS",
    "DatasetFormatError",
    "FaceData",
    "FaceDataset",
    "load",
    "read_image",
    "require_dir",
]

#: Registered datasets: name -> "module:function". Loaders are imported on first use.
LOADERS: dict[str, str] = {
    "synthetic": "fernb.data.synthetic:load_synthetic",
    "fer2013": "fernb.data.fer2013:load_fer2013",
    "ckplus48": "fernb.data.ckplus:load_ckplus48",
    "ckplus": "fernb.data.ckplus:load_ckplus",
    "jaffe": "fernb.data.jaffe:load_jaffe",
    "rafdb": "fernb.data.rafdb:load_rafdb",
    "oulu_casia": "fernb.data.oulu_casia:load_oulu_casia",
    "mmi": "fernb.data.mmi:load_mmi",
    "bp4d": "fernb.data.bp4d:load_bp4d",
    "disfa": "fernb.data.disfa:load_disfa",
}


def load(name: str, root: Path | str | None = None, **options) -> FaceData:
    """Load dataset ``name`` from ``root`` (its folder in the official layout).

    ``root`` is required for every real dataset; for ``"synthetic"`` it is an optional
    cache folder. ``options`` go to the dataset's loader (see its docstring).
    """
    if name not in LOADERS:
        raise KeyError(f"unknown dataset {name!r}; registered: {', '.join(sorted(LOADERS))}")
    module_name, function_name = LOADERS[name].split(":")
    loader = getattr(import_module(module_name), function_name)
    if name != "synthetic" and root is None:
        raise ValueError(f"dataset {name!r} needs root=, the folder that holds it")
    return loader(root, **options)
