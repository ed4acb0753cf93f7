"""Rashid and Lee's capsule networks for action units and expressions, and their CNN twin.

"Facial action unit detection with capsules" (Rashid & Lee, Sec. 3.1) proposes two
capsule networks, one family here (:class:`AUCapsNet`, configured by :class:`Architecture`):

- ``"ours"``: 96 x 96 gray input; conv 5x5 64 -> max-pool -> ReLU, conv 5x5 128 ->
  max-pool -> ReLU (padding 2, as the receptive fields of the authors' code say: a 24 x 24
  map); primary capsules 32 x 8D (kernel 7, stride 3: a 6 x 6 grid, 1152 capsules); fully
  connected class capsules n x 32D with 3 routing iterations; reconstruction by fully
  connected layers 512-1024-1024 reshaped to 32 x 32 and bilinearly upsampled to 96 x 96.
- ``"ours_vgg"``: VGG16's convolutions without the last max-pool (14 x 14 x 512 at 224 x
  224), spatial dropout 0.5, primary capsules 32 x 8D (kernel 3, stride 2: 6 x 6),
  class capsules 32D; reconstruction 512-1024-9408 = 3 x 56 x 56 upsampled to 224.

:class:`AUConvNet` is the plain CNN of equal size the chapter compares with: the same
convolutions, the primary-capsule convolution as a plain conv + ReLU, then a fully
connected layer of n x 32 units (exactly as many weights as the routing layer's W_ij)
and a linear classifier.

Both take ``model(images, targets=None)``; the capsule network returns a
:class:`fernb.tasks.CapsuleOutput` whose reconstruction is decoded from the ground-truth
capsules when ``targets`` are given (every present AU for multi-label, the target class for
expressions), else from the capsules it predicts (length > 0.5 for multi-label, the longest
otherwise). For single-label expressions ``length_softmax=True`` turns the lengths into a
softmax over classes (Sec. 3: "a softmax operation is applied across all ||v_c||"), which
the margin loss then reads.

:class:`Recipe` and :func:`recipe` hold the two presets of the chapter: ``"paper"`` (the
sizes above and the paper's training schedules) and ``"cpu"`` (a slimmed network for a
2-core CPU).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fernb.data import load
from fernb.data.augment import Augmentation
from fernb.data.facedata import FaceData
from fernb.data.splits import holdout_subjects
from fernb.nn.capsules import (
    FCUpsampleDecoder,
    PrimaryCapsules,
    RoutingCapsules,
    inverse_frequency_weights,
    mask_capsules,
    reconstruction_loss,
)
from fernb.nn.vgg import ImageNetNormalisation, StagedVGG, scaled_channels
from fernb.tasks import CapsuleOutput, CapsuleTask, MultiLabelTask, au_targets
from fernb.train import (
    Batch,
    Classification,
    EpochScores,
    FitResult,
    TrainConfig,
    evaluate,
    fit,
    tensors,
)
from fernb.utils import seed_everything

__all__ = [
    "ARCHITECTURES",
    "FRAME_DATASETS",
    "PRESETS",
    "AUCapsNet",
    "AUConvNet",
    "Architecture",
    "FoldRun",
    "Recipe",
    "au_scores_from_record",
    "au_table",
    "balanced_reconstruction_weight",
    "build_model",
    "capsule_lengths",
    "collate",
    "cross_validate",
    "load_data",
    "make_task",
    "occurrence",
    "one_step",
    "recipe",
    "resize_images",
    "select_aus",
    "variant_name",
]

Backbone = Literal["khorrami", "vgg16"]
Head = Literal["capsules", "cnn"]
TaskKind = Literal["au", "emotion"]


@dataclass(frozen=True)
class Architecture:
    """The sizes of one network of the family.

    Attributes:
        backbone: ``"khorrami"`` (two 5x5 convolutions, the 96 x 96 model) or ``"vgg16"``.
        input_size: side of the square input images.
        in_channels: 1 (gray) or 3 (RGB).
        width: multiplier of the convolution channels (1: the paper's).
        spatial_dropout: channel dropout after the last convolution (``nn.Dropout2d``).
        primary_types, primary_dim: primary capsule types and their dimension (32 x 8D).
        primary_kernel, primary_stride: the primary capsules' convolution.
        class_dim: dimension of the class capsules (32).
        routing_iterations: dynamic routing iterations (3).
        decoder_hidden: the decoder's hidden layer sizes (512, 1024).
        decoder_base: side of the decoder's image before upsampling (32 or 56).
        decoder_channels: channels of the reconstruction (= ``in_channels``).
        imagenet: start the VGG16 convolutions from torchvision's ImageNet weights (local
            hub cache only; ``"ours_vgg"`` in the paper).
    """

    backbone: Backbone = "khorrami"
    input_size: int = 96
    in_channels: int = 1
    width: float = 1.0
    spatial_dropout: float = 0.0
    primary_types: int = 32
    primary_dim: int = 8
    primary_kernel: int = 7
    primary_stride: int = 3
    class_dim: int = 32
    routing_iterations: int = 3
    decoder_hidden: tuple[int, ...] = (512, 1024)
    decoder_base: int = 32
    decoder_channels: int = 1
    imagenet: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in ("khorrami", "vgg16"):
            raise ValueError(f"backbone must be 'khorrami' or 'vgg16', got {self.backbone!r}")
        if self.in_channels not in (1, 3) or self.decoder_channels not in (1, 3):
            raise ValueError("in_channels and decoder_channels must be 1 (gray) or 3 (RGB)")
        if not 0 <= self.spatial_dropout < 1:
            raise ValueError(f"spatial_dropout must be in [0, 1), got {self.spatial_dropout}")
        if self.width <= 0 or self.input_size < 1:
            raise ValueError("width and input_size must be positive")
        object.__setattr__(self, "decoder_hidden", tuple(self.decoder_hidden))


#: The paper's two networks (Sec. 3.1). "Ours-VGG" fine-tunes VGG16's ImageNet weights, so
#: building it needs them in the local torch hub cache (fernb never downloads them); the
#: narrowed ``cpu`` preset cannot use them and starts from random weights.
ARCHITECTURES: dict[str, Architecture] = {
    "ours": Architecture(),
    "ours_vgg": Architecture(
        backbone="vgg16",
        input_size=224,
        in_channels=3,
        spatial_dropout=0.5,
        primary_kernel=3,
        primary_stride=2,
        decoder_base=56,
        decoder_channels=3,
        imagenet=True,
    ),
}


def _khorrami(architecture: Architecture) -> nn.Sequential:
    """conv 5x5 (64) -> max-pool 2 -> ReLU -> conv 5x5 (128) -> max-pool 2 -> ReLU."""
    first = scaled_channels(64, architecture.width)
    second = scaled_channels(128, architecture.width)
    return nn.Sequential(
        nn.Conv2d(architecture.in_channels, first, 5, padding=2),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Conv2d(first, second, 5, padding=2),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
    )


def _vgg16(architecture: Architecture) -> nn.Sequential:
    """VGG16's convolutions, stages 1-5, without the last max-pool (stride 16); with ImageNet
    weights, the images are first normalised by ImageNet's statistics, as the weights expect
    (:class:`fernb.nn.vgg.ImageNetNormalisation`; the decoder still redraws them in [0, 1])."""
    vgg = StagedVGG(
        16,
        width=architecture.width,
        in_channels=architecture.in_channels,
        imagenet=architecture.imagenet,
    )
    stages = list(vgg.stages.values())
    layers = [*stages[:-1], stages[-1][:-1]]
    if architecture.imagenet:
        layers.insert(0, ImageNetNormalisation(architecture.in_channels))
    return nn.Sequential(*layers)


_BACKBONES = {"khorrami": _khorrami, "vgg16": _vgg16}


class _AUNet(nn.Module):
    """The shared trunk: backbone convolutions and spatial dropout, and their output size."""

    def __init__(self, architecture: Architecture, n_classes: int) -> None:
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        self.architecture = architecture
        self.n_classes = n_classes
        backbone = _BACKBONES[architecture.backbone](architecture)
        self.features = nn.Sequential(*backbone, nn.Dropout2d(architecture.spatial_dropout))
        side = architecture.input_size
        with torch.no_grad():
            probe = torch.zeros(1, architecture.in_channels, side, side)
            _, channels, height, width = backbone(probe).shape
        self.feature_shape = (channels, height, width)
        kernel, stride = architecture.primary_kernel, architecture.primary_stride
        if min(height, width) < kernel:
            raise ValueError(
                f"input_size {side} gives a {height} x {width} feature map, smaller than the "
                f"primary kernel {kernel}; use a larger input_size"
            )
        self.grid = ((height - kernel) // stride + 1, (width - kernel) // stride + 1)

    def _check_input(self, images: torch.Tensor) -> None:
        side, channels = self.architecture.input_size, self.architecture.in_channels
        if images.dim() != 4 or tuple(images.shape[1:]) != (channels, side, side):
            raise ValueError(
                f"expected images (N, {channels}, {side}, {side}), got {tuple(images.shape)}"
            )


class AUCapsNet(_AUNet):
    """Capsule network for AU detection (multi-label) or expressions (single-label).

    Args:
        architecture: the sizes (:data:`ARCHITECTURES` or a modified copy).
        n_classes: action units or expression classes (one class capsule each).
        multi_label: AUs: reconstruct from every capsule longer than ``mask_threshold``
            when no targets are given; expressions: from the longest capsule.
        length_softmax: scores are softmax(|v|) over classes (single-label only).
        mask_threshold: the length at which a class counts as present (0.5).
    """

    def __init__(
        self,
        architecture: Architecture,
        n_classes: int,
        multi_label: bool = False,
        length_softmax: bool = False,
        mask_threshold: float = 0.5,
    ) -> None:
        super().__init__(architecture, n_classes)
        if multi_label and length_softmax:
            raise ValueError("length_softmax is for single-label classes, not multi-label AUs")
        self.multi_label = multi_label
        self.length_softmax = length_softmax
        self.mask_threshold = mask_threshold
        a = architecture
        self.primary = PrimaryCapsules(
            self.feature_shape[0], a.primary_types, a.primary_dim, a.primary_kernel,
            a.primary_stride,
        )  # fmt: skip
        n_primary = self.primary.num_capsules(*self.feature_shape[1:])
        self.classes = RoutingCapsules(
            n_primary, a.primary_dim, n_classes, a.class_dim, a.routing_iterations
        )
        self.decoder = FCUpsampleDecoder(
            n_classes * a.class_dim,
            out_size=a.input_size,
            channels=a.decoder_channels,
            base_size=a.decoder_base,
            hidden=a.decoder_hidden,
        )

    def primary_capsules(self, images: torch.Tensor) -> torch.Tensor:
        """Primary capsules as a map: (N, types, grid_h, grid_w, dim)."""
        self._check_input(images)
        u = self.primary(self.features(images))
        return u.view(len(images), self.primary.capsule_types, *self.grid, -1)

    def class_capsules(self, images: torch.Tensor) -> torch.Tensor:
        """Class capsules v: (N, n_classes, class_dim)."""
        capsules = self.primary_capsules(images)
        return self.classes(capsules.flatten(1, 3))

    def mask(self, capsules: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Zero the capsules the decoder must not see (see the module docstring)."""
        if targets is not None:
            return mask_capsules(capsules, targets, "target")
        mode = "present" if self.multi_label else "predicted"
        return mask_capsules(capsules, mode=mode, threshold=self.mask_threshold)

    def decode(self, capsules: torch.Tensor) -> torch.Tensor:
        """Images (N, decoder_channels, input_size, input_size) from (masked) class capsules."""
        return self.decoder(capsules)

    def forward(self, images: torch.Tensor, targets: torch.Tensor | None = None) -> CapsuleOutput:
        capsules = self.class_capsules(images)
        lengths = capsules.norm(dim=-1)
        scores = lengths.softmax(dim=-1) if self.length_softmax else lengths
        return CapsuleOutput(scores, capsules, self.decode(self.mask(capsules, targets)))


class AUConvNet(_AUNet):
    """The plain CNN of equal size: the capsule layers replaced by convolution and FC units.

    features -> conv (types x dim channels, the primary capsules' kernel and stride) ->
    ReLU -> FC to n_classes x class_dim units -> ReLU -> FC to n_classes logits. The first
    FC layer has as many weights as the routing layer's W_ij (1152 x 8 inputs to n x 32
    units for ``"ours"``). Use it with :class:`fernb.tasks.MultiLabelTask` (AUs) or
    :class:`fernb.train.Classification` (expressions).
    """

    def __init__(self, architecture: Architecture, n_classes: int) -> None:
        super().__init__(architecture, n_classes)
        a = architecture
        units = a.primary_types * a.primary_dim
        self.conv = nn.Conv2d(
            self.feature_shape[0], units, a.primary_kernel, stride=a.primary_stride
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(units * self.grid[0] * self.grid[1], n_classes * a.class_dim),
            nn.ReLU(inplace=True),
            nn.Linear(n_classes * a.class_dim, n_classes),
        )

    def conv_units(self, images: torch.Tensor) -> torch.Tensor:
        """The last convolution's units after ReLU: (N, types x dim, grid_h, grid_w)."""
        self._check_input(images)
        return F.relu(self.conv(self.features(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv_units(images))


def build_model(
    head: Head,
    n_classes: int,
    architecture: Architecture | str = "ours",
    multi_label: bool = False,
    length_softmax: bool = False,
    **overrides,
) -> AUCapsNet | AUConvNet:
    """A network of the family: ``head="capsules"`` (:class:`AUCapsNet`) or ``"cnn"``.

    ``architecture`` is a name of :data:`ARCHITECTURES` or an :class:`Architecture`;
    ``overrides`` replace its fields (e.g. ``width=0.25, input_size=64``).
    """
    if isinstance(architecture, str):
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}"
            )
        architecture = ARCHITECTURES[architecture]
    architecture = replace(architecture, **overrides)
    if head == "capsules":
        return AUCapsNet(architecture, n_classes, multi_label, length_softmax)
    if head == "cnn":
        return AUConvNet(architecture, n_classes)
    raise ValueError(f"head must be 'capsules' or 'cnn', got {head!r}")


@dataclass(frozen=True)
class Recipe:
    """How one preset builds and trains a network.

    Attributes:
        architecture: per :data:`ARCHITECTURES` name, overrides of its fields (e.g. a
            smaller width); a name without an entry is built as the paper has it.
        batch_size, lr: Adam's batch size and learning rate.
        epochs: training epochs.
        augment: keyword arguments of :class:`fernb.data.augment.Augmentation`.
        min_au_rate: :func:`select_aus`' floor, AUs present in fewer images are left out
            (CK+ codes AUs that only a few sequences show); 0 on BP4D and DISFA, whose
            loaders read the AUs the paper reports, all of them kept (DISFA's AU1, AU2 and
            AU9 are present in only a few percent of the frames).
    """

    architecture: dict[str, dict] = field(default_factory=dict)
    batch_size: int = 64
    lr: float = 1e-3
    epochs: int = 10
    augment: dict = field(default_factory=dict)
    min_au_rate: float = 0.07

    def overrides(self, architecture: str) -> dict:
        """The fields this recipe changes in :data:`ARCHITECTURES` ``[architecture]``."""
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}"
            )
        return dict(self.architecture.get(architecture, {}))

    def input_size(self, architecture: str) -> int:
        """The side of the images the network of ``architecture`` takes under this recipe."""
        return self.overrides(architecture).get(
            "input_size", ARCHITECTURES[architecture].input_size
        )


_AUGMENT = {"flip": 0.5, "rotation": 10.0, "shift": 0.06, "scale": 0.08, "brightness": 0.1}
_SLIM = {"width": 0.25, "class_dim": 16, "decoder_hidden": (256, 512)}
_CPU = {
    "ours": {**_SLIM, "input_size": 48, "primary_kernel": 5, "decoder_base": 16},
    "ours_vgg": {**_SLIM, "input_size": 112, "decoder_base": 28, "imagenet": False},
}

#: preset -> kind of data -> recipe. ``"paper"``: the paper's sizes; BP4D/DISFA ("frames"):
#: 10 epochs at 1e-4 (Sec. 4.1, "Implementation details"); CK+-sized datasets ("posed"):
#: the authors' CK+ schedule, 600 epochs at 1e-3 (REFERENCES.md A2), batch 128.
#: ``"cpu"``: 48 x 48 input (CK+48's size), a quarter of the channels, primary kernel 5
#: (a 3 x 3 grid of 288 capsules), 16D class capsules and a smaller decoder (``"ours_vgg"``:
#: 112 x 112, a quarter of VGG16's channels, a 3 x 3 grid, no ImageNet weights), batch 16 (the
#: capsule network is limited by its number of steps on a CPU: at batch 16 it learned CK+48
#: AUs within 10 epochs, at batch 32 it had not started) and a few epochs: the book's quick
#: runs on a 2-core CPU (recorded CPU runs pass more epochs).
PRESETS: dict[str, dict[str, Recipe]] = {
    "paper": {
        "frames": Recipe(batch_size=128, lr=1e-4, epochs=10, augment=_AUGMENT, min_au_rate=0.0),
        "posed": Recipe(batch_size=128, lr=1e-3, epochs=600, augment=_AUGMENT),
    },
    "cpu": {
        "frames": Recipe(_CPU, batch_size=16, lr=1e-3, epochs=1, augment=_AUGMENT, min_au_rate=0.0),
        "posed": Recipe(_CPU, batch_size=16, lr=1e-3, epochs=3, augment=_AUGMENT),
    },
}

#: Datasets of long videos, trained for few epochs; every other dataset is "posed".
FRAME_DATASETS = ("bp4d", "disfa")


def recipe(preset: str, dataset: str, epochs: int | None = None) -> Recipe:
    """The :class:`Recipe` of ``preset`` for ``dataset`` (``epochs`` overrides its epochs)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    chosen = PRESETS[preset]["frames" if dataset in FRAME_DATASETS else "posed"]
    if epochs is not None:
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        chosen = replace(chosen, epochs=epochs)
    return chosen


@torch.no_grad()
def balanced_reconstruction_weight(
    model: AUCapsNet, batch: Batch, task: CapsuleTask, reduction: str = "mean"
) -> float:
    """alpha such that alpha x L_recon = L_cls on ``batch`` with the untrained model.

    Rashid & Lee, Eq. 1: "We set alpha to bring the magnitude of the average reconstruction
    loss to be similar to that of the averaged margin loss at the beginning of training".
    ``task`` gives the margin loss (its class weights included; its own reconstruction
    weight is ignored); the reconstruction loss is the ``reduction`` of the squared error
    (the paper: mean square error). ``batch`` holds float images in [0, 1] and targets.
    """
    was_training = model.training
    model.train()
    outputs = task.forward(model, batch)
    model.train(was_training)
    margin_only = copy.copy(task)
    margin_only.recon_weight = 0.0
    margin = margin_only.loss(outputs, batch)
    recon = reconstruction_loss(outputs.reconstruction, batch["image"], reduction, weight=1.0)
    if float(recon) <= 0 or not np.isfinite(float(margin)):
        raise ValueError(f"cannot balance: margin loss {float(margin)}, recon {float(recon)}")
    return float(margin / recon)


def load_data(
    dataset: str, root: str | None = None, size: int | None = None, **options
) -> FaceData:
    """Load a dataset of the chapter with :func:`fernb.data.load` and resize its images to
    ``size`` (the network's input); ``synthetic`` is drawn at ``size`` directly."""
    if dataset == "synthetic" and size is not None:
        options = {"size": size, **options}
    data = load(dataset, root, **options)
    return data if size is None else resize_images(data, size)


def resize_images(data: FaceData, size: int) -> FaceData:
    """``data`` with its images resized to ``size`` x ``size`` (bilinear, antialiased).

    Landmarks are scaled with the images, keeping pixel centres (x' = (x + 0.5) s - 0.5).
    Returns ``data`` itself when the images already have that size.
    """
    height, width = data.image_size
    if (height, width) == (size, size):
        return data
    images = torch.from_numpy(data.images)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
    resized = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    resized = resized.round().clamp(0, 255).to(torch.uint8)
    resized = resized[:, 0] if data.channels == 1 else resized.permute(0, 2, 3, 1)
    landmarks = data.landmarks
    if landmarks is not None:
        scale = np.array([size / width, size / height], dtype=np.float32)
        landmarks = (landmarks + 0.5) * scale - 0.5
    return replace(data, images=resized.contiguous().numpy(), landmarks=landmarks)


def select_aus(
    data: FaceData, names: Sequence[str] | None = None, min_rate: float = 0.0
) -> FaceData:
    """``data`` with only some AU columns: ``names``, else those present (occurrence, see
    :func:`occurrence`) in at least ``min_rate`` of the images where they are known.

    Rare AUs must go before training: the weighted margin loss needs every AU in every
    training fold (its weight is 1 / frequency).
    """
    if data.aus is None or data.au_names is None:
        raise ValueError(f"dataset {data.name!r} has no AU labels")
    if names is None:
        rate = np.nanmean(occurrence(data.aus), axis=0)
        names = [name for name, r in zip(data.au_names, rate, strict=True) if r >= min_rate]
    unknown = sorted(set(names) - set(data.au_names))
    if unknown or not names:
        raise ValueError(f"AUs {unknown or names} are not among {data.au_names}")
    columns = [data.au_names.index(name) for name in names]
    return replace(data, aus=data.aus[:, columns], au_names=list(names))


def variant_name(architecture: str, head: Head, preset: str) -> str:
    """The record's variant: ``"ours"``, ``"ours_vgg"`` (capsules) or ``"cnn"``,
    ``"cnn_vgg"`` (the plain twins), with ``"_<preset>"`` appended unless it is the paper's
    preset (so that :func:`fernb.results.compare` lines up only paper-sized runs)."""
    name = architecture if head == "capsules" else architecture.replace("ours", "cnn")
    return name if preset == "paper" else f"{name}_{preset}"


def occurrence(aus: np.ndarray) -> np.ndarray:
    """AU occurrence 0/1 (NaN unknown) from intensities or 0/1 codes (present from 1)."""
    return au_targets(torch.from_numpy(np.asarray(aus, dtype=np.float32))).numpy()


def make_task(
    kind: TaskKind, head: Head, train_aus: np.ndarray | None = None
) -> CapsuleTask | MultiLabelTask | Classification:
    """The task of a network: ``kind`` is ``"au"`` (multi-label) or ``"emotion"``.

    AU capsules: the weighted margin loss, w_c = inverse AU frequency in ``train_aus``
    (unknown entries count as absent), normalised to sum 1, plus reconstruction with a
    weight to be balanced (:func:`balanced_reconstruction_weight`). AU CNN: binary
    cross-entropy. Emotion: margin loss (capsules) or cross-entropy (CNN).
    """
    if kind not in ("au", "emotion"):
        raise ValueError(f"kind must be 'au' or 'emotion', got {kind!r}")
    if head == "cnn":
        return MultiLabelTask() if kind == "au" else Classification()
    if kind == "emotion":
        return CapsuleTask(reduction="mean")
    if train_aus is None:
        raise ValueError("AU capsules need train_aus for their class weights")
    weights = inverse_frequency_weights(np.nan_to_num(occurrence(train_aus)))
    return CapsuleTask(reduction="mean", multi_label=True, class_weights=weights)


@dataclass
class FoldRun:
    """One trained fold of :func:`cross_validate`.

    Attributes:
        fold: the fold number.
        model: the validation-selected network (on the CPU, eval mode).
        fit: what :func:`fernb.train.fit` returned (history, best epoch, wall time).
        test_index: positions of the test images in the dataset.
        scores: the task's test scores, (n_test, n_classes): capsule lengths (AUs and,
            by default, expressions; their softmax with ``softmax_lengths``), the CNN's
            sigmoid probabilities (AUs) or logits (expressions).
        lengths: raw class-capsule lengths of the test images (capsule networks only).
        recon_weight: the balanced alpha (capsule networks only).
        test_selected: ``{"best_epoch": e, metric: value}``, the best test score over the
            epochs (only with ``track_test``: the paper's "Ours-Max", selected on test).
    """

    fold: int
    model: nn.Module
    fit: FitResult
    test_index: np.ndarray
    scores: np.ndarray
    lengths: np.ndarray | None = None
    recon_weight: float | None = None
    test_selected: dict[str, float] | None = None


def _keys(kind: TaskKind) -> tuple[str, ...]:
    return ("image", "aus") if kind == "au" else ("image", "label")


def cross_validate(
    data: FaceData,
    kind: TaskKind,
    head: Head,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    preset: str = "cpu",
    architecture: str = "ours",
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    val_fraction: float = 0.15,
    track_test: bool = False,
    softmax_lengths: bool = False,
    progress: bool = False,
) -> list[FoldRun]:
    """Train and test one network per fold, selecting each on subjects held out of its
    training fold (:func:`fernb.data.splits.holdout_subjects`), never on its test fold.

    ``data`` must already have the network's input size (:func:`resize_images`); ``kind``
    is ``"au"`` (targets ``data.aus``, model selected on mean F1) or ``"emotion"``
    (``data.labels``, selected on accuracy). ``folds`` are (train, test) positions, e.g.
    from :func:`fernb.data.splits.subject_kfold`, or (train, val, test) positions to fix
    the validation images (``val_fraction`` is then unused). With ``track_test`` every
    epoch is also scored on the test fold, to report the test-selected number the paper
    reports beside its own ("Ours-Max"); it never chooses the returned model.
    ``softmax_lengths`` trains an expression capsule network with the margin loss on
    softmax(|v|) (a literal reading of the paper's Sec. 3) instead of |v|; the prediction
    (the longest capsule) is the same.
    """
    chosen = recipe(preset, data.name, epochs)
    runs = []
    for fold, positions in enumerate(folds):
        fit_index, val_index, test_index = _fit_val_test(data, positions, val_fraction, seed)
        keys = _keys(kind)
        train, val, test = (tensors(data, i, keys) for i in (fit_index, val_index, test_index))
        seed_everything(seed + fold)
        model = build_model(
            head, _n_outputs(data, kind), architecture, multi_label=kind == "au",
            length_softmax=softmax_lengths and kind == "emotion" and head == "capsules",
            **_data_overrides(data, chosen, architecture),
        )  # fmt: skip
        task = make_task(kind, head, data.aus[fit_index] if kind == "au" else None)
        alpha = None
        if head == "capsules":
            first = {k: v[: chosen.batch_size] for k, v in train.items()}
            first["image"] = first["image"].float() / 255
            alpha = balanced_reconstruction_weight(model, first, task)
            task.recon_weight = alpha
        config = TrainConfig(
            epochs=chosen.epochs, batch_size=chosen.batch_size, lr=chosen.lr,
            select_metric=_METRIC[kind], seed=seed + fold, device=device, progress=progress,
        )  # fmt: skip
        tracker = EpochScores(model, test, task, _METRIC[kind]) if track_test else None
        result = fit(model, train, val, task, config, Augmentation(**chosen.augment),
                     on_epoch_end=tracker)  # fmt: skip
        model = result.model.cpu().eval()
        tested = evaluate(model, test, task, config.eval_batch_size, device="cpu")
        lengths = capsule_lengths(model, test["image"]) if head == "capsules" else None
        best = None
        if tracker is not None:
            epoch, value = tracker.best()
            best = {"best_epoch": epoch, _METRIC[kind]: value}
        runs.append(FoldRun(fold, model, result, test_index, tested.scores, lengths, alpha, best))
    return runs


_METRIC = {"au": "f1", "emotion": "accuracy"}


def _fit_val_test(
    data: FaceData, positions: Sequence[np.ndarray], val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fold's (fit, val, test) positions from (train, val, test), or from (train, test)
    with the validation subjects held out of train."""
    if len(positions) == 3:
        return tuple(np.asarray(part) for part in positions)
    train_index, test_index = positions
    fit_index, val_index = holdout_subjects(data, train_index, val_fraction, seed)
    return fit_index, val_index, np.asarray(test_index)


def _n_outputs(data: FaceData, kind: TaskKind) -> int:
    if kind == "au":
        if data.aus is None:
            raise ValueError(f"dataset {data.name!r} has no AU labels")
        return data.aus.shape[1]
    return len(data.classes)


def _data_overrides(data: FaceData, chosen: Recipe, architecture: str) -> dict:
    """The recipe's overrides of ``architecture``, with the data's channels."""
    channels = {"in_channels": data.channels, "decoder_channels": data.channels}
    return {**chosen.overrides(architecture), **channels}


@torch.no_grad()
def capsule_lengths(model: AUCapsNet, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Raw class-capsule lengths |v_c| (N, n_classes) of uint8 or float images, eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        batch = batch.float() / 255 if batch.dtype == torch.uint8 else batch.float()
        lengths.append(model.class_capsules(batch).norm(dim=-1).cpu())
    model.train(was_training)
    return torch.cat(lengths).numpy()


def one_step(
    data: FaceData,
    kind: TaskKind,
    head: Head,
    preset: str = "paper",
    architecture: str = "ours",
    batch_size: int = 4,
    softmax_lengths: bool = False,
) -> dict[str, float | tuple]:
    """One forward and backward pass of a network of ``preset`` on ``batch_size`` images.

    Proves a configuration starts on real data where it cannot be trained (the paper preset
    on a CPU). ``data`` must have the preset's input size. Returns the loss, the output
    and gradient facts and the seconds it took.
    """
    started = time.perf_counter()
    chosen = recipe(preset, data.name)
    index = np.arange(min(batch_size, len(data)))
    batch = tensors(data, index, _keys(kind))
    batch["image"] = batch["image"].float() / 255
    model = build_model(
        head, _n_outputs(data, kind), architecture, multi_label=kind == "au",
        length_softmax=softmax_lengths and kind == "emotion" and head == "capsules",
        **_data_overrides(data, chosen, architecture),
    )  # fmt: skip
    task = make_task(kind, head, data.aus if kind == "au" else None)
    if head == "capsules":
        task.recon_weight = balanced_reconstruction_weight(model, batch, task)
    model.train()
    loss = task.loss(task.forward(model, batch), batch)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return {
        "loss": loss.item(),
        "input": tuple(batch["image"].shape),
        "parameters": sum(p.numel() for p in model.parameters()),
        "parameters_with_gradient": sum(
            g.numel() for g in grads if g is not None and bool(torch.isfinite(g).all())
        ),
        "seconds": time.perf_counter() - started,
    }


def collate(runs: Sequence[FoldRun]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The test positions, scores and capsule lengths of all folds, concatenated.

    The paper's AU results are "collated across folds": metrics are computed once over
    every test frame. Lengths are None for the CNN twin.
    """
    index = np.concatenate([run.test_index for run in runs])
    scores = np.concatenate([run.scores for run in runs])
    lengths = None if runs[0].lengths is None else np.concatenate([run.lengths for run in runs])
    return index, scores, lengths


def au_table(
    results: Mapping[str, Mapping], metrics: Sequence[str] = ("f1", "auc")
) -> pd.DataFrame:
    """Per-AU scores of several variants in the layout of Rashid & Lee's Tables 1-3.

    ``results`` maps a variant name to :func:`fernb.metrics.au_metrics`' output. One row
    per AU plus ``"Avg"`` (the mean over AUs), one column per (metric, variant), percent.
    """
    rows: list[str] = []
    columns = {}
    for metric in metrics:
        for variant, scores in results.items():
            values = {**scores[metric], "Avg": scores[f"{metric}_mean"]}
            rows += [name for name in values if name not in rows]
            columns[(metric, variant)] = pd.Series(values) * 100
    table = pd.DataFrame(columns)
    order = [name for name in rows if name != "Avg"] + ["Avg"]
    return table.reindex(order)


def au_scores_from_record(row: pd.Series, metrics: Sequence[str] = ("f1", "auc")) -> dict:
    """A row of :func:`fernb.results.read_records` back in :func:`fernb.metrics.au_metrics`'
    form (``{"f1": {AU: ...}, "f1_mean": ..., ...}``), e.g. for :func:`au_table`."""
    scores: dict = {}
    for metric in metrics:
        prefix = f"metrics.{metric}."
        scores[metric] = {
            column[len(prefix) :]: float(value)
            for column, value in row.items()
            if column.startswith(prefix) and pd.notna(value)
        }
        scores[f"{metric}_mean"] = float(row[f"metrics.{metric}_mean"])
    return scores
