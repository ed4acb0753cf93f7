"""E2-Capsnet (Cao, Yao, An) and the four models of its ablation, as one family.

The model (Cao et al., Fig. 1 and "Experimental Settings"; REFERENCES.md A1 for what the
authors' code adds):

- a VGG16 with batch norm in five stages (:class:`fernb.nn.vgg.StagedVGG`);
- enhancement module 1, the AU-aware attention: the attention map (:mod:`fernb.face.au_attention`,
  max-pooled to the resolution of the stage-2 output) multiplies the stage-2 pooled features,
  a parallel 3 x 3 convolution maps them to stage 3's width, and the result is added
  element-wise to stage 3's convolution output before its pool; the same between stages 3
  and 4;
- enhancement module 2, the capsules: the 512 x 7 x 7 stage-5 maps go through a 2 x 2
  convolution (stride 1) to 256 x 6 x 6, read as PrimaryCaps of 32 types x 8D; FaceCaps
  hold one 16D capsule per class after 3 routing iterations; the class score is the
  capsule length; a decoder of 3 fully connected layers reconstructs the input from the
  masked capsules;
- loss: margin loss (m+ 0.9, m- 0.1, lambda 0.5) + 0.0005 x the summed squared
  reconstruction error; Adam, lr 1e-4, batch 16, 300 epochs, 224 x 224 inputs.

The ablation of Table 1 is five :data:`VARIANTS` of :class:`E2CapsNet`: ``vgg16`` (VGG16 and
its fully connected classifier), ``capsnet`` (Sabour et al.'s capsule network on the face),
``avggnet`` (VGG16 + attention), ``rccnet`` (VGG16 convolutions + capsules) and
``e2capsnet`` (both). :class:`AsReleased` switches on, one by one, what the authors'
public code does differently from the paper; everything is off by default.

Choices the paper leaves open, made here and said in the chapter: the parallel convolution
has no batch norm (as released) and, multiplying its input, no bias (so a zero map adds
nothing); the ``capsnet`` variant works on the face resized to ``capsnet_size`` (48 x 48,
the native size of FER2013 and CK+48, in the paper preset: Sabour's net on 224 x 224 inputs
would need 310 M routing weights); images are fed in [0, 1] without ImageNet normalisation
(every convolution is followed by batch norm and the decoder's sigmoid reconstructs [0, 1]).

References: S. Cao, Y. Yao, G. An, "E2-Capsule neural networks for facial expression
recognition using AU-aware attention", IET Image Processing 2020; S. Sabour, N. Frosst,
G. E. Hinton, "Dynamic routing between capsules", NeurIPS 2017; K. Simonyan, A. Zisserman,
"Very deep convolutional networks for large-scale image recognition", ICLR 2015.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fernb.data.augment import Augmentation
from fernb.data.facedata import FaceData
from fernb.data.splits import holdout_subjects, official_split, subject_kfold
from fernb.face.au_attention import attention_map
from fernb.face.landmarks import Landmarks, dataset_landmarks
from fernb.nn.capsules import FCDecoder, PrimaryCapsules, RoutingCapsules, mask_capsules
from fernb.nn.vgg import StagedVGG, scaled_channels
from fernb.results import RunRecord, data_fields
from fernb.tasks import CapsuleOutput, CapsuleTask
from fernb.train import (
    Batch,
    Classification,
    EpochScores,
    FitResult,
    Task,
    TrainConfig,
    evaluate,
    fit,
    tensors,
)
from fernb.utils import seed_everything

__all__ = [
    "PRESETS",
    "VARIANTS",
    "AsReleased",
    "AttentionVGG",
    "E2CapsNet",
    "E2CapsuleTask",
    "E2Classification",
    "Preset",
    "Split",
    "Variant",
    "VariantRun",
    "build_model",
    "embed",
    "experiment_splits",
    "face_maps",
    "flip_augmentation",
    "make_task",
    "prepare_split",
    "run_records",
    "train_config",
    "train_variant",
]

MAP_SIZE = 100  # the grid the attention maps are drawn on (Cao et al.: 100 x 100)


class Variant(NamedTuple):
    """Which parts a model of the ablation has (the check marks of Table 1)."""

    vgg: bool  # "rich convolution": the VGG16 backbone (else Sabour's single convolution)
    attention: bool  # the AU-aware attention of enhancement module 1
    capsules: bool  # "dynamic routing": capsule head (else VGG16's fully connected head)


#: The five models of Cao et al.'s Table 1, by the names :data:`fernb.results.PAPER_TABLES` uses.
VARIANTS: dict[str, Variant] = {
    "vgg16": Variant(vgg=True, attention=False, capsules=False),
    "capsnet": Variant(vgg=False, attention=False, capsules=True),
    "avggnet": Variant(vgg=True, attention=True, capsules=False),
    "rccnet": Variant(vgg=True, attention=False, capsules=True),
    "e2capsnet": Variant(vgg=True, attention=True, capsules=True),
}


@dataclass(frozen=True)
class AsReleased:
    """What the authors' public code (ShanCao18/E2-Capsnet) does unlike the paper.

    Each switch is off by default (the paper); on, it does as the released code does
    (REFERENCES.md A1, A6, A7):

    Attributes:
        unflipped_map: the attention map is computed on the unflipped image while the image
            is randomly flipped, so half the training faces get a mirrored map.
        input_axis_routing: the routing softmax runs over the input capsules (Gram-AI's
            axis) instead of the parent capsules, with transform weights drawn from
            N(0, 1) as in that code lineage (the paper's axis uses N(0, 0.01^2)).
        mean_reconstruction: the squared reconstruction error is averaged over pixels and
            divided once more by the batch size (0.0005 / 16 x MSE) instead of summed.
        test_selection: the reported accuracy is the best test accuracy over the epochs.
            Training is unchanged; :func:`train_variant` then also evaluates the test split
            every epoch, and both numbers are recorded.
        map_quirks: the EAC-Net map generator's uint8 wrap, 14 x 14 half-open window and
            ``break`` at the top and left borders (``released_code_quirks``).
        map_after_conv: the map multiplies the parallel convolution's output (which keeps
            its bias) instead of its input.
        softmax_scores: the class scores are the softmax of the capsule lengths, and the
            margin loss is computed on them.
        predicted_mask: the decoder sees the longest capsule in training too, not the
            ground-truth class's.
    """

    unflipped_map: bool = False
    input_axis_routing: bool = False
    mean_reconstruction: bool = False
    test_selection: bool = False
    map_quirks: bool = False
    map_after_conv: bool = False
    softmax_scores: bool = False
    predicted_mask: bool = False

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The switches, in the order above."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def only(cls, *switches: str) -> AsReleased:
        """The paper's setting with the named switches on; ``only("all")`` is the release."""
        chosen = cls.names() if switches == ("all",) else switches
        unknown = sorted(set(chosen) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown as-released switch(es) {unknown}; expected {cls.names()}")
        return cls(**dict.fromkeys(chosen, True))

    def on(self) -> tuple[str, ...]:
        """The switches that are on."""
        return tuple(name for name in self.names() if getattr(self, name))

    def suffix(self) -> str:
        """``""`` for the paper's setting, else ``"+switch+switch"`` (record variant names)."""
        return "".join(f"+{name}" for name in self.on() if name != "test_selection")


@dataclass(frozen=True)
class Preset:
    """Sizes and training settings of a run.

    Attributes:
        input_size: side of the square input images (they are resized to it).
        width: channel multiplier of VGG16, of Sabour's first convolution and of VGG16's
            fully connected layers (1: the paper's 64 ... 512 channels, 4096 units).
        capsnet_size: side the ``capsnet`` variant resizes the face to.
        decoder_hidden: units of the decoder's two hidden layers (Sabour: 512, 1024).
        batch_size, lr, epochs: Adam's batch, learning rate and the number of epochs.
    """

    input_size: int
    width: float
    capsnet_size: int
    decoder_hidden: tuple[int, int]
    batch_size: int
    lr: float
    epochs: int


#: ``paper``: Cao et al.'s settings, for GPU runs. ``cpu``: small enough for the book's
#: default execution on a 2-core CPU (64 x 64 inputs, 1/16 of the channels, lr 1e-3 so that
#: a few epochs learn something).
PRESETS: dict[str, Preset] = {
    "paper": Preset(224, 1.0, 48, (512, 1024), batch_size=16, lr=1e-4, epochs=300),
    "cpu": Preset(64, 0.0625, 28, (128, 256), batch_size=16, lr=1e-3, epochs=10),
}


def _preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[preset]


def _variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; expected one of {list(VARIANTS)}")
    return VARIANTS[name]


class AttentionVGG(nn.Module):
    """VGG16-BN in five stages, with the AU-aware attention between stages 2-3 and 3-4.

    For k in (3, 4), with x the stage-(k-1) output (after its pool) and m the attention map
    max-pooled to x's resolution:

        stage_k(x) = pool(convs_k(x) + P_k(m * x))     (the paper)
        stage_k(x) = pool(convs_k(x) + m * P_k(x))     (``map_after_conv``, the release)

    where P_k is a 3 x 3 convolution from stage k-1's to stage k's width (no batch norm;
    bias only in the released order). Without ``attention`` it is the plain VGG16-BN.

    Args:
        in_channels: 1 for gray, 3 for RGB images.
        width: channel multiplier.
        attention: build the two parallel convolutions.
        map_after_conv: the released order (see above).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: float = 1.0,
        attention: bool = True,
        map_after_conv: bool = False,
    ) -> None:
        super().__init__()
        self.vgg = StagedVGG(16, batch_norm=True, width=width, in_channels=in_channels)
        self.attention = attention
        self.map_after_conv = map_after_conv
        self.enhance = nn.ModuleDict()
        if attention:
            for stage in (3, 4):
                self.enhance[f"stage{stage}"] = nn.Conv2d(
                    self.vgg.out_channels(stage - 1),
                    self.vgg.out_channels(stage),
                    kernel_size=3,
                    padding=1,
                    bias=map_after_conv,
                )

    @property
    def out_channels(self) -> int:
        """Channels of the stage-5 output."""
        return self.vgg.out_channels(5)

    def forward_stages(
        self, images: torch.Tensor, maps: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """The five stage outputs (each after its pool) of N x C x S x S images.

        ``maps`` (N x 1 x M x M, any M) are resized to S x S (bilinear) and then max-pooled
        to each stage's resolution, as the release max-pools its 224 x 224 map.
        """
        if self.attention and maps is None:
            raise ValueError("this model has AU attention: pass maps (N x 1 x M x M)")
        if self.attention:
            maps = F.interpolate(
                maps.to(images.dtype), size=images.shape[-2:], mode="bilinear", align_corners=False
            )
        outputs, x = [], images
        for name, stage in self.vgg.stages.items():
            if name in self.enhance:
                gate = F.adaptive_max_pool2d(maps, x.shape[-2:])
                conv = self.enhance[name]
                boost = gate * conv(x) if self.map_after_conv else conv(gate * x)
                x = stage[-1](stage[:-1](x) + boost)
            else:
                x = stage(x)
            outputs.append(x)
        return outputs

    def forward(self, images: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """The stage-5 output, N x C5 x S/32 x S/32."""
        return self.forward_stages(images, maps)[-1]


class _SabourConv(nn.Module):
    """Sabour et al.'s first layer on a resized face: conv 9 x 9, 256 channels, ReLU."""

    def __init__(self, in_channels: int, size: int, width: float) -> None:
        super().__init__()
        self.size = size
        self.out_channels = scaled_channels(256, width)
        self.conv = nn.Conv2d(in_channels, self.out_channels, kernel_size=9)

    def forward(self, images: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        resized = F.interpolate(images, size=(self.size, self.size), mode="area")
        return F.relu(self.conv(resized))


class E2CapsNet(nn.Module):
    """One model of Cao et al.'s Table 1, chosen by ``variant`` (see :data:`VARIANTS`).

    Called as ``model(images, targets=None, maps=None)``: capsule variants return a
    :class:`~fernb.tasks.CapsuleOutput` (the decoder sees the target capsule when
    ``targets`` are given, the longest one otherwise), the others logits (N x classes).
    Attention variants need ``maps``. Build it with :func:`build_model`.

    Args:
        variant: a key of :data:`VARIANTS`.
        num_classes: expression classes.
        in_channels: 1 for gray, 3 for RGB.
        input_size: side of the square inputs (VGG variants need at least 64 for a
            capsule head: the 2 x 2 primary convolution needs a 2 x 2 stage-5 map).
        width: channel multiplier (VGG, Sabour's convolution, the classifier's 4096 units).
        capsnet_size: side the ``capsnet`` variant resizes its input to.
        decoder_hidden: the decoder's hidden units.
        routing_iterations: iterations of dynamic routing.
        as_released: the model's released-code switches (``input_axis_routing``,
            ``map_after_conv``, ``softmax_scores``, ``predicted_mask``); the others act on
            data, loss and protocol, elsewhere.
    """

    def __init__(
        self,
        variant: str = "e2capsnet",
        num_classes: int = 7,
        in_channels: int = 3,
        input_size: int = 224,
        width: float = 1.0,
        capsnet_size: int = 48,
        decoder_hidden: tuple[int, ...] = (512, 1024),
        routing_iterations: int = 3,
        as_released: AsReleased | None = None,
    ) -> None:
        super().__init__()
        self.variant = variant
        self.parts = _variant(variant)
        self.as_released = as_released or AsReleased()
        self.input_size = input_size
        if self.parts.vgg:
            self.backbone: nn.Module = AttentionVGG(
                in_channels, width, self.parts.attention, self.as_released.map_after_conv
            )
            side = input_size // 32  # five 2 x 2 pools, each flooring
            primary_kernel, primary_stride = 2, 1
        else:
            if capsnet_size < 26:
                raise ValueError(
                    f"capsnet_size must be at least 26 (two 9 x 9 convs), got {capsnet_size}"
                )
            self.backbone = _SabourConv(in_channels, capsnet_size, width)
            side = capsnet_size - 8
            primary_kernel, primary_stride = 9, 2
        needed = primary_kernel if self.parts.capsules else 1
        if side < needed:
            raise ValueError(
                f"input_size {input_size} leaves a {side} x {side} feature map; variant "
                f"{variant!r} needs at least {needed} x {needed} (input_size >= {32 * needed})"
            )
        channels = self.backbone.out_channels
        if self.parts.capsules:
            self.primary = PrimaryCapsules(channels, 32, 8, primary_kernel, primary_stride)
            released_axis = self.as_released.input_axis_routing
            self.face_caps = RoutingCapsules(
                self.primary.num_capsules(side, side),
                8,
                num_classes,
                16,
                routing_iterations,
                softmax_axis="input" if released_axis else "paper",
                init_std=1.0 if released_axis else 0.01,
            )
            self.decoder = FCDecoder(
                num_classes * 16, (in_channels, input_size, input_size), decoder_hidden
            )
        else:
            hidden = scaled_channels(4096, width)
            self.hidden = nn.Sequential(
                nn.Flatten(),
                nn.Linear(channels * side * side, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(hidden, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
            )
            self.classifier = nn.Linear(hidden, num_classes)

    def _check(self, images: torch.Tensor) -> None:
        if images.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(
                f"{self.variant} expects {self.input_size} x {self.input_size} images, got "
                f"{tuple(images.shape[-2:])} (prepare_split resizes them)"
            )

    def class_capsules(
        self, images: torch.Tensor, maps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """FaceCaps v, N x classes x 16 (capsule variants)."""
        if not self.parts.capsules:
            raise ValueError(f"variant {self.variant!r} has no capsules")
        self._check(images)
        return self.face_caps(self.primary(self.backbone(images, maps)))

    def embed(self, images: torch.Tensor, maps: torch.Tensor | None = None) -> torch.Tensor:
        """The features t-SNE maps (Fig. 3): the flattened class capsules, or the last
        hidden layer of VGG16's classifier."""
        if self.parts.capsules:
            return self.class_capsules(images, maps).flatten(1)
        self._check(images)
        return self.hidden(self.backbone(images, maps))

    def forward(
        self,
        images: torch.Tensor,
        targets: torch.Tensor | None = None,
        maps: torch.Tensor | None = None,
    ) -> CapsuleOutput | torch.Tensor:
        """CapsuleOutput (capsule variants) or logits of N x C x S x S images in [0, 1]."""
        if not self.parts.capsules:
            return self.classifier(self.embed(images, maps))
        capsules = self.class_capsules(images, maps)
        lengths = capsules.norm(dim=-1)
        scores = lengths.softmax(dim=-1) if self.as_released.softmax_scores else lengths
        if targets is None or self.as_released.predicted_mask:
            masked = mask_capsules(capsules, mode="predicted")
        else:
            masked = mask_capsules(capsules, targets, mode="target")
        return CapsuleOutput(scores, capsules, self.decoder(masked))


def build_model(
    variant: str = "e2capsnet",
    preset: str | Preset = "paper",
    num_classes: int = 7,
    in_channels: int = 3,
    as_released: AsReleased | None = None,
) -> E2CapsNet:
    """An :class:`E2CapsNet` of ``variant`` with the sizes of ``preset`` (:data:`PRESETS`)."""
    sizes = _preset(preset)
    return E2CapsNet(
        variant,
        num_classes,
        in_channels,
        sizes.input_size,
        sizes.width,
        sizes.capsnet_size,
        sizes.decoder_hidden,
        as_released=as_released,
    )


class E2Classification(Classification):
    """Cross-entropy for the ``vgg16`` and ``avggnet`` variants, with the batch's maps."""

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(batch["image"], maps=batch.get("maps"))


class E2CapsuleTask(CapsuleTask):
    """Margin + reconstruction loss (:class:`~fernb.tasks.CapsuleTask`), with the maps."""

    def forward(self, model: nn.Module, batch: Batch) -> CapsuleOutput:
        targets = self.targets(batch) if model.training else None
        return model(batch["image"], targets, maps=batch.get("maps"))


def make_task(variant: str, as_released: AsReleased | None = None, batch_size: int = 16) -> Task:
    """The loss of ``variant``: cross-entropy for VGG16 heads; for capsules the margin loss
    plus 0.0005 x the summed squared error (Cao et al., Eq. 3-5), or with
    ``mean_reconstruction`` 0.0005 / ``batch_size`` x the pixel mean (the release)."""
    if not _variant(variant).capsules:
        return E2Classification()
    if as_released is not None and as_released.mean_reconstruction:
        return E2CapsuleTask(recon_weight=0.0005 / batch_size, reduction="mean")
    return E2CapsuleTask(recon_weight=0.0005, reduction="sum")


def train_config(
    preset: str | Preset = "paper",
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    progress: bool = False,
) -> TrainConfig:
    """Adam with the preset's batch size and learning rate, constant schedule, models
    selected on validation accuracy; ``epochs`` defaults to the preset's."""
    sizes = _preset(preset)
    return TrainConfig(
        epochs=sizes.epochs if epochs is None else epochs,
        batch_size=sizes.batch_size,
        optimizer="adam",
        lr=sizes.lr,
        seed=seed,
        device=device,
        progress=progress,
    )


def face_maps(
    data: FaceData,
    as_released: AsReleased | None = None,
    backend: str | None = None,
    cache_dir: Path | str | None = None,
    chunk: int = 2048,
) -> tuple[torch.Tensor, Landmarks]:
    """The AU-aware attention map of every face, N x 1 x 100 x 100 float32, and the
    landmarks they come from.

    ``backend`` defaults to the dataset's own landmarks (``"given"``) when it has them
    (SynthFACS) and to dlib otherwise; detections are cached in ``cache_dir``. Faces where
    dlib finds no face are counted in ``Landmarks.detected`` and get the map of the
    landmarks predicted in the fallback box. ``map_quirks`` draws as the release does.
    """
    quirks = as_released is not None and as_released.map_quirks
    backend = backend or ("given" if data.landmarks is not None else "dlib")
    landmarks = dataset_landmarks(data, backend, cache_dir)
    maps = [  # in chunks: painting holds a few N x 100 x 100 arrays at once
        attention_map(points, data.image_size, MAP_SIZE, released_code_quirks=quirks)
        for points in np.array_split(landmarks.points, max(1, len(data) // chunk))
    ]
    return torch.from_numpy(np.concatenate(maps))[:, None], landmarks


def prepare_split(
    data: FaceData,
    index: np.ndarray,
    input_size: int,
    maps: torch.Tensor | None = None,
    chunk: int = 512,
) -> Batch:
    """The images ``index`` of ``data`` resized to ``input_size`` (bilinear, antialiased,
    still uint8), their labels and, if given, their attention maps (``"maps"``)."""
    split = tensors(data, index)
    images = split["image"]
    if images.shape[-2:] != (input_size, input_size):
        resized = [
            F.interpolate(
                part.float(), size=(input_size, input_size), mode="bilinear", antialias=True
            )
            .round_()
            .clamp_(0, 255)
            .to(torch.uint8)
            for part in images.split(chunk)
        ]
        split["image"] = torch.cat(resized)
    if maps is not None:
        split["maps"] = maps[torch.as_tensor(np.asarray(index))]
    return split


def flip_augmentation(
    as_released: AsReleased | None = None, probability: float = 0.5
) -> Callable[[Batch, torch.Generator], Batch]:
    """Random horizontal flips (the release's only augmentation) for :func:`fernb.train.fit`.

    The maps are flipped with their images, unless ``unflipped_map``: then they stay as
    computed on the unflipped face, as in the release.
    """
    flip = Augmentation(flip=probability)
    aligned = not (as_released is not None and as_released.unflipped_map)

    def augment(batch: Batch, generator: torch.Generator) -> Batch:
        maps = batch.get("maps") if aligned else None
        out = flip(batch["image"], None, maps, generator)
        flipped = dict(batch, image=out.images)
        if out.maps is not None:
            flipped["maps"] = out.maps
        return flipped

    return augment


class Split(NamedTuple):
    """Positions of one train / validation / test split (``fold`` is None for an official
    split)."""

    fold: int | None
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def head(self, n: int) -> Split:
        """The first ``n`` images of each part (one batch: a smoke test of a preset)."""
        return Split(self.fold, self.train[:n], self.val[:n], self.test[:n])


def experiment_splits(
    data: FaceData, folds: int = 10, seed: int = 0, val_fraction: float = 0.1
) -> tuple[str, list[Split]]:
    """The protocol in words and its splits.

    A dataset with an official split (FER2013: Training / PublicTest / PrivateTest) uses it;
    where it has no validation part (RAF-DB: train / test), ``val_fraction`` of the training
    subjects (RAF-DB: images) are held out for model selection. One without (CK+48,
    SynthFACS) is split into ``folds`` subject-independent folds, and the validation set is
    ``val_fraction`` of each training fold's subjects.
    """
    if (data.split != "").any():
        parts = official_split(data)
        if len(parts["val"]):
            protocol = "official split: train / val (model selection) / test"
            return protocol, [Split(None, parts["train"], parts["val"], parts["test"])]
        train, val = holdout_subjects(data, parts["train"], val_fraction, seed)
        protocol = (
            f"official split: train / test; val (model selection): {val_fraction:.0%} of the "
            "training subjects"
        )
        return protocol, [Split(None, train, val, parts["test"])]
    splits = []
    for fold, (train_val, test) in enumerate(subject_kfold(data, folds, seed)):
        train, val = holdout_subjects(data, train_val, val_fraction, seed)
        splits.append(Split(fold, train, val, test))
    protocol = (
        f"{folds}-fold subject-independent CV; val: {val_fraction:.0%} of the training "
        "fold's subjects"
    )
    return protocol, splits


@dataclass
class VariantRun:
    """One trained model and what it scored.

    ``test_metrics`` are those of the validation-selected model; ``test_selected`` (with
    ``test_selection``) holds the best test accuracy over the epochs and its epoch.
    """

    variant: str
    as_released: AsReleased
    fit: FitResult
    test_metrics: dict[str, float]
    test_scores: np.ndarray
    test_targets: np.ndarray
    test_selected: dict[str, float] | None
    wall_time_s: float

    @property
    def model(self) -> nn.Module:
        """The validation-selected model."""
        return self.fit.model


def train_variant(
    variant: str,
    data: FaceData,
    split: Split,
    maps: torch.Tensor | None,
    preset: str | Preset = "cpu",
    epochs: int | None = None,
    seed: int = 0,
    device: str = "auto",
    as_released: AsReleased | None = None,
    checkpoint_root: Path | str | None = None,
) -> VariantRun:
    """Train ``variant`` on ``split.train``, select it on ``split.val``, test it on
    ``split.test`` (the whole protocol of the chapter's runs).

    With ``test_selection`` the test split is also evaluated after every epoch (the
    release's "best accuracy"), which changes nothing in training.

    With ``checkpoint_root`` the run is checkpointed every epoch (:func:`fernb.train.fit`) in
    ``<root>/<dataset>/<variant><switches>/<size>px-w<width>_<fold>_seed-<seed>_epochs-<epochs>``:
    a finished run is then read back instead of trained again (without a test-selected
    number: the test split was not watched). The folder name does not hold the dataset's
    loader options: use one root per dataset configuration.
    """
    started = time.perf_counter()
    released = as_released or AsReleased()
    sizes = _preset(preset)
    needs_maps = _variant(variant).attention
    if needs_maps and maps is None:
        raise ValueError(f"variant {variant!r} needs attention maps (face_maps)")
    chosen = maps if needs_maps else None
    train, val, test = (
        prepare_split(data, index, sizes.input_size, chosen)
        for index in (split.train, split.val, split.test)
    )
    seed_everything(seed)
    model = build_model(variant, sizes, len(data.classes), data.channels, released)
    task = make_task(variant, released, sizes.batch_size)
    config = train_config(sizes, epochs, seed, device)
    test_curve = (
        EpochScores(model, test, task, batch_size=config.eval_batch_size)
        if released.test_selection
        else None
    )
    result = fit(
        model,
        train,
        val,
        task,
        config,
        augment=flip_augmentation(released),
        checkpoint_dir=_run_folder(
            checkpoint_root, data, sizes, variant, released, split, seed, config
        ),
        on_epoch_end=test_curve,
    )
    tested = evaluate(result.model, test, task, config.eval_batch_size)
    test_selected = None
    if test_curve is not None and test_curve.scores:
        epoch, accuracy = test_curve.best()
        test_selected = {"accuracy": accuracy, "best_epoch": epoch}
    return VariantRun(
        variant,
        released,
        result,
        tested.metrics,
        tested.scores,
        tested.targets,
        test_selected,
        time.perf_counter() - started,
    )


def _run_folder(
    root: Path | str | None,
    data: FaceData,
    sizes: Preset,
    variant: str,
    released: AsReleased,
    split: Split,
    seed: int,
    config: TrainConfig,
) -> Path | None:
    """Where :func:`train_variant` checkpoints a run (None without a root)."""
    if root is None:
        return None
    fold = "official" if split.fold is None else f"fold-{split.fold}"
    run = f"{sizes.input_size}px-w{sizes.width:g}_{fold}_seed-{seed}_epochs-{config.epochs}"
    return Path(root) / (data.name or "data") / f"{variant}{released.suffix()}" / run


def run_records(
    run: VariantRun,
    experiment: str,
    data: FaceData,
    protocol: str,
    fold: int | None,
    seed: int,
    device: str,
) -> list[RunRecord]:
    """The run's records (on ``data``): the validation-selected model's test metrics, and
    with ``test_selection`` a second record of the best test accuracy over the epochs.

    The variant name carries the released switches that change training
    (``e2capsnet+unflipped_map``).
    """
    name = run.variant + run.as_released.suffix()
    epochs = len(run.fit.history)
    common = {
        "paper": "e2capsnet",
        "experiment": experiment,
        "variant": name,
        **data_fields(data),
        "protocol": protocol,
        "fold": fold,
        "seed": seed,
        "epochs": epochs,
        "device": device,
        "wall_time_s": run.wall_time_s,
    }
    val_metrics = {
        "accuracy": run.test_metrics["accuracy"],
        "val_accuracy": run.fit.best_metrics["accuracy"],
        "best_epoch": run.fit.best_epoch,
    }
    records = [RunRecord(selection="val", metrics=val_metrics, **common)]
    if run.test_selected is not None:
        records.append(RunRecord(selection="test", metrics=run.test_selected, **common))
    return records


@torch.no_grad()
def embed(model: E2CapsNet, split: Batch, batch_size: int = 256) -> np.ndarray:
    """:meth:`E2CapsNet.embed` features of a whole split (eval mode), N x D."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    features = []
    for start in range(0, len(split["image"]), batch_size):
        images = split["image"][start : start + batch_size].to(device)
        images = images.float() / 255 if images.dtype == torch.uint8 else images
        maps = split.get("maps")
        maps = maps[start : start + batch_size].to(device) if maps is not None else None
        features.append(model.embed(images, maps).float().cpu())
    model.train(was_training)
    return torch.cat(features).numpy()
