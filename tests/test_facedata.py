"""The data contract's views and entry points: FaceData, its torch Dataset, load, data check."""

from __future__ import annotations

from importlib import import_module
from inspect import signature

import numpy as np
import pytest
import torch

from fernb.cli import main
from fernb.data import EMOTIONS, LOADERS, FaceData, load


def _faces() -> FaceData:
    images = np.arange(3 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2) * 20
    return FaceData(
        images=images,
        labels=np.array([1, 0, 1]),
        classes=["happiness", "anger"],
        subjects=np.array(["a", "a", "b"]),
        split=np.array(["train", "test", "train"]),
        aus=np.array([[1.0, np.nan], [0.0, 2.0], [3.0, 0.0]], dtype=np.float32),
        au_names=["AU6", "AU12"],
    )


def test_dataset_items_are_the_images_in_unit_range_after_the_transform() -> None:
    data = _faces()
    view = data.dataset(transform=lambda image: image.flip(-1))
    assert len(view) == 3
    item = view[2]
    expected = torch.tensor(data.images[2], dtype=torch.float32).div(255).flip(-1)
    assert item["image"].shape == (1, 2, 2)
    torch.testing.assert_close(item["image"][0], expected)
    assert item["label"].item() == 1
    torch.testing.assert_close(item["aus"], torch.tensor([3.0, 0.0]))
    assert "landmarks" not in item  # the dataset has none
    batch = next(iter(torch.utils.data.DataLoader(view, batch_size=3)))
    assert batch["image"].shape == (3, 1, 2, 2) and batch["label"].tolist() == [1, 0, 1]


def test_colour_images_come_out_channels_first() -> None:
    data = _faces()
    colour = FaceData(
        images=np.stack([data.images, data.images // 2, data.images // 4], axis=-1),
        labels=data.labels,
        classes=data.classes,
        subjects=data.subjects,
        split=data.split,
    )
    image = colour.dataset()[1]["image"]
    assert image.shape == (3, 2, 2)
    torch.testing.assert_close(image[1] * 255, torch.tensor(data.images[1] // 2).float())


def test_canonical_labels_index_the_emotion_space() -> None:
    data = _faces()
    assert data.canonical_labels().tolist() == [
        EMOTIONS.index("anger"),
        EMOTIONS.index("happiness"),
        EMOTIONS.index("anger"),
    ]
    data.labels[1] = -1  # an unlabelled image stays unlabelled
    assert data.canonical_labels()[1] == -1


def test_every_registered_loader_takes_a_root_and_options() -> None:
    for name, target in LOADERS.items():
        module, function = target.split(":")
        loader = getattr(import_module(module), function)
        parameters = list(signature(loader).parameters)
        assert parameters[0] == "root", name
    assert {"oulu_casia", "mmi", "bp4d", "disfa"} <= set(LOADERS)


def test_load_names_what_it_needs() -> None:
    with pytest.raises(KeyError, match="unknown dataset 'affectnet'; registered: bp4d"):
        load("affectnet", "/nowhere")
    with pytest.raises(ValueError, match="'jaffe' needs root="):
        load("jaffe")
    with pytest.raises(FileNotFoundError, match="/nowhere"):
        load("oulu_casia", "/nowhere")


def test_data_check_prints_counts_per_split_and_class(capsys: pytest.CaptureFixture) -> None:
    argv = ["data", "check", "synthetic", "-o", "n_subjects=2", "-o", "samples_per_subject=8"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "synthetic: 16 images of 48 x 48, 2 subjects"
    assert printed[1].startswith("action units: AU1, AU2")
    data = load("synthetic", n_subjects=2, samples_per_subject=8)
    total = next(line for line in printed if line.startswith("total"))
    assert total.split()[-1] == str(len(data))
    for k, name in enumerate(data.classes):
        row = next(line for line in printed if line.split()[0] == name)
        assert row.split()[-1] == str(int((data.labels == k).sum()))
