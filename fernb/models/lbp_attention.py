"""Li et al.'s attention CNN with LBP, as one configurable family with its ablation switches.

J. Li, K. Jin, D. Zhou, N. Kubota, Z. Ju, "Attention mechanism-based CNN for facial
expression recognition", Neurocomputing 411, 340-350, 2020. No code was released; where the
paper is vague the choice made here is written in the docstrings below and in the chapter
(``book/lbp_attention/index.md``). Four modules:

1. Feature extraction (:class:`FeatureStream`, the paper's Fig. 5): two streams of the same
   architecture, one on the raw image and one on its LBP image, each the first 10
   convolutions of VGG16 (conv1_1 to conv4_3, three pools: 1/8 of the input) with batch
   norm, then three 1 x 1 x 64 convolutions that reduce the 512 channels to 64. Their
   outputs are F1 (raw) and F2 (LBP), fused by element-wise sum, F3 = F1 + F2 (the paper
   calls the fusion an element-wise sum in Sec. 4.2.5).
2. Attention (:class:`AttentionModule`, Eqs. 1-2): a trunk branch F_p = T(F3) and a mask
   branch F_m = sigmoid(W * f_m + b) over the LBP-informed F3, refined F_refine = F_p F_m
   (element-wise).
3. Reconstruction (:class:`DenseAtrousBlock`): four 3 x 3 atrous convolutions with
   dilations (2, 3, 4, 5); layer k reads the concatenation of F_refine, the outputs of
   layers 1..k-1 and F1; the last layer's output is summed with F3.
4. Classification: fully connected layers; the softmax is in the cross-entropy loss.

Batch norm follows every convolution except the mask's last one, whose sigmoid reads
W * f_m + b directly as in Eq. 2.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fernb.data.augment import Augmentation
from fernb.data.facedata import FaceData
from fernb.data.splits import holdout_subjects, image_kfold, official_split, subject_kfold
from fernb.face.lbp import lbp_image
from fernb.metrics import expression_metrics
from fernb.nn.vgg import ImageNetNormalisation, StagedVGG, scaled_channels
from fernb.results import SAME_DATA, RunRecord, compare, data_fields, records_frame
from fernb.train import EvalResult, TrainConfig, evaluate, fit, tensors

__all__ = [
    "AUGMENTATION",
    "DILATION_CONFIGS",
    "LBP_VARIANTS",
    "PAPER_DATASETS",
    "PRESETS",
    "PROTOCOLS",
    "TABLES",
    "VARIANTS",
    "AttentionModule",
    "DenseAtrousBlock",
    "FeatureStream",
    "LBPAttentionNet",
    "Preset",
    "Split",
    "Trained",
    "band_means",
    "beside_paper",
    "build",
    "protocol_name",
    "protocol_splits",
    "record_name",
    "train_and_test",
]

LBPVariant = Literal["original", "circular", "uniform", "none"]
#: LBP images of the second stream (Table 1); ``"none"`` drops the stream ("Without LBP").
LBP_VARIANTS: tuple[str, ...] = ("original", "circular", "uniform", "none")
#: Dilation rates of the four atrous layers, the configurations A-E of Table 3.
DILATION_CONFIGS: dict[str, tuple[int, int, int, int]] = {
    "A": (1, 1, 1, 1),
    "B": (2, 2, 2, 2),
    "C": (3, 3, 3, 3),
    "D": (4, 4, 4, 4),
    "E": (2, 3, 4, 5),
}
#: Each table's variants (names as in :data:`fernb.results.PAPER_TABLES`) and the switches
#: of :class:`LBPAttentionNet` that make them; ``"full"`` is the complete network.
VARIANTS: dict[str, dict[str, object]] = {
    "full": {},
    "lbp_original": {"lbp": "original"},
    "lbp_uniform": {"lbp": "uniform"},
    "no_lbp": {"lbp": "none"},
    "no_feature_extraction": {"feature_extraction": False},
    "no_attention": {"attention": False},
    "no_reconstruction": {"reconstruction": False},
    "dilation_1": {"dilations": "A"},
    "dilation_2": {"dilations": "B"},
    "dilation_3": {"dilations": "C"},
    "dilation_4": {"dilations": "D"},
}
#: The paper's experiments: Tables 1-3 (ablations on FER2013) and Tables 4-7 (benchmark).
TABLES: dict[str, tuple[str, ...]] = {
    "lbp": ("lbp_original", "lbp_uniform", "full", "no_lbp"),
    "modules": ("no_feature_extraction", "no_attention", "no_reconstruction", "full"),
    "dilation": ("dilation_1", "dilation_2", "dilation_3", "dilation_4", "full"),
    "benchmark": ("full", "no_lbp", "no_attention"),
}
#: Sec. 3.4's augmentation in Keras terms: rotation_range=20, width/height_shift_range=0.15,
#: zoom_range=0.15, shear_range=0.15, horizontal flips. Keras reads shear_range in degrees
#: since early 2018 (keras-team/keras pull request 8868; radians before), so the shear is
#: 0.15 degrees, kept as the paper ran it.
AUGMENTATION = Augmentation(flip=0.5, rotation=20.0, shift=0.15, scale=0.15, shear=0.15)
#: Split protocols of :func:`protocol_splits`.
PROTOCOLS: tuple[str, ...] = ("official", "subject_kfold", "image_kfold")
#: Our dataset names that stand for another name in the paper's tables: CK+48 is the CK+
#: subset the paper describes (the last three frames of the 327 labelled sequences).
PAPER_DATASETS: Mapping[str, str] = SAME_DATA["lbp_attention"]


def _conv(in_channels: int, out_channels: int, kernel: int = 3, dilation: int = 1) -> nn.Sequential:
    """Convolution ("same" padding), batch norm, ReLU."""
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=padding, dilation=dilation),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FeatureStream(nn.Module):
    """One stream of the feature extraction module (Fig. 5): N x C_in x H x W -> N x C x H/8 x W/8.

    With ``vgg=True``: VGG16's first 10 convolutions with batch norm (three pools), then three
    1 x 1 convolutions to ``channels``. With ``vgg=False`` (the ablation "without the feature
    extraction module") the stream is a single 3 x 3 convolution to ``channels`` and an 8 x 8
    max-pool, so that the later modules see maps of the same size and width.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        width: float = 1.0,
        vgg: bool = True,
        imagenet: bool = False,
    ) -> None:
        super().__init__()
        if vgg:
            backbone = StagedVGG(
                16, batch_norm=True, width=width, in_channels=in_channels, imagenet=imagenet
            )
            front = [*backbone.conv_layers(10)]
            if imagenet:  # the weights expect ImageNet's input statistics
                front.insert(0, ImageNetNormalisation(in_channels))
            reduced = backbone.out_channels(4)
            self.layers = nn.Sequential(
                *front, *(_conv(c, channels, kernel=1) for c in (reduced, channels, channels))
            )
        else:
            self.layers = nn.Sequential(_conv(in_channels, channels), nn.MaxPool2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class AttentionModule(nn.Module):
    """Trunk and mask branches: F_refine = F_p * F_m with F_m = sigmoid(W * f_m + b).

    Both branches read the fused features F3. The trunk is two 3 x 3 convolutions; the mask
    branch two 3 x 3 convolutions (f_m) and a 1 x 1 convolution with a sigmoid, one attention
    value per channel and position (the paper multiplies "attention maps" element-wise with
    the feature maps; it does not say whether they have one channel or all of them).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(_conv(channels, channels), _conv(channels, channels))
        self.mask = nn.Sequential(
            _conv(channels, channels),
            _conv(channels, channels),
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(F_refine, F_p, F_m), all N x C x h x w."""
        trunk, mask = self.trunk(fused), self.mask(fused)
        return trunk * mask, trunk, mask


class DenseAtrousBlock(nn.Module):
    """Dense atrous convolution: layer k reads [x, y_1, ..., y_{k-1}, F1], returns y_K + F3.

    Every layer has ``channels`` outputs, so layer k has (k + 1) ``channels`` inputs; layer
    k's dilation is ``dilations[k - 1]`` (padding equal to it keeps the map size).
    """

    def __init__(self, channels: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.dilations = tuple(int(d) for d in dilations)
        self.layers = nn.ModuleList(
            _conv((k + 2) * channels, channels, dilation=d) for k, d in enumerate(self.dilations)
        )

    def forward(self, x: torch.Tensor, f1: torch.Tensor, f3: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        for layer in self.layers:
            outputs.append(layer(torch.cat([x, *outputs, f1], dim=1)))
        return outputs[-1] + f3


def _dilations(dilations: str | Sequence[int]) -> tuple[int, ...]:
    if isinstance(dilations, str):
        if dilations not in DILATION_CONFIGS:
            raise ValueError(
                f"dilations must be one of {sorted(DILATION_CONFIGS)} or four integers, "
                f"got {dilations!r}"
            )
        return DILATION_CONFIGS[dilations]
    rates = tuple(dilations)
    if len(rates) != 4 or not all(isinstance(d, int | np.integer) and d >= 1 for d in rates):
        raise ValueError(f"dilations must be four integers >= 1, got {dilations!r}")
    return rates


class LBPAttentionNet(nn.Module):
    """The attention CNN with LBP of Li et al. (2020), with the switches of its ablations.

    Args:
        num_classes: number of expressions.
        in_channels: 1 (gray) or 3 (RGB; the LBP image is taken of its luma).
        lbp: the second stream's LBP image, ``"original"`` (3 x 3), ``"circular"`` (the
            paper's choice) or ``"uniform"`` (riu2), or ``"none``" to drop the stream.
        lbp_points, lbp_radius: P and R of the circular and uniform LBPs (the paper gives
            neither; P = 8, R = 1 by default).
        feature_extraction: False replaces both VGG streams by one convolution and a pool
            (:class:`FeatureStream`).
        attention: False drops the attention module (F_refine = F3).
        reconstruction: False drops the dense atrous block; the classifier reads F_refine.
        dilations: a configuration ``"A"``-``"E"`` of :data:`DILATION_CONFIGS` or four rates.
        width: channel multiplier of the VGG layers and of ``channels`` (small CPU runs).
        channels: width of the reduced features (64 in the paper), before ``width``.
        hidden: units of the hidden fully connected layer.
        dropout: dropout before each fully connected layer (the paper names none: 0).
        pool: the classifier average-pools the features to ``pool`` x ``pool`` first.
        input_size: images are resized to this square size (bilinear; their LBP image,
            taken at the original size, nearest-neighbour) before the streams; None keeps
            the size. The paper feeds 256 x 256.
        imagenet: start the VGG layers from torchvision's ImageNet weights (local only),
            their inputs normalised by ImageNet's statistics
            (:class:`fernb.nn.vgg.ImageNetNormalisation`).

    Inputs are floats in [0, 1] (what :func:`fernb.train.fit` feeds). The LBP image is
    computed on the batch, on its device, after augmentation, of the image rounded to 8-bit
    gray levels (``round(255 x)``), so that neighbours equal to the centre count as in an
    8-bit image.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 1,
        lbp: LBPVariant = "circular",
        lbp_points: int = 8,
        lbp_radius: float = 1.0,
        feature_extraction: bool = True,
        attention: bool = True,
        reconstruction: bool = True,
        dilations: str | Sequence[int] = "E",
        width: float = 1.0,
        channels: int = 64,
        hidden: int = 256,
        dropout: float = 0.0,
        pool: int = 4,
        input_size: int | None = None,
        imagenet: bool = False,
    ) -> None:
        super().__init__()
        if lbp not in LBP_VARIANTS:
            raise ValueError(f"lbp must be one of {LBP_VARIANTS}, got {lbp!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        if input_size is not None and input_size < 8:
            raise ValueError(f"input_size must be at least 8 (three 2 x 2 pools), got {input_size}")
        self.lbp, self.lbp_points, self.lbp_radius = lbp, lbp_points, lbp_radius
        self.input_size = input_size
        width_channels = scaled_channels(channels, width)
        self.channels = width_channels
        stream = {
            "channels": width_channels,
            "width": width,
            "vgg": feature_extraction,
            "imagenet": imagenet,
        }
        self.raw_stream = FeatureStream(in_channels, **stream)
        self.lbp_stream = FeatureStream(1, **stream) if lbp != "none" else None
        self.attention = AttentionModule(width_channels) if attention else None
        self.reconstruction = (
            DenseAtrousBlock(width_channels, _dilations(dilations)) if reconstruction else None
        )
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(pool),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(width_channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def lbp_images(self, images: torch.Tensor) -> torch.Tensor:
        """The LBP stream's input: N x 1 x H x W codes scaled to [0, 1] (see the class doc)."""
        if self.lbp == "none":
            raise ValueError("this model has no LBP stream (lbp='none')")
        gray = images if images.shape[1] == 1 else _luma(images)
        levels = (gray.detach().float() * 255).round_()
        codes = lbp_image(levels, self.lbp, self.lbp_points, self.lbp_radius)
        return codes.to(images.dtype)

    def _resized(self, images: torch.Tensor, mode: str) -> torch.Tensor:
        if self.input_size is None or images.shape[-2:] == (self.input_size,) * 2:
            return images
        size = (self.input_size, self.input_size)
        if mode == "nearest":
            return F.interpolate(images, size=size, mode="nearest")
        return F.interpolate(images, size=size, mode="bilinear", align_corners=False)

    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate map: ``f1``, ``f2`` (None without LBP), ``f3``, ``f_p``,
        ``f_m`` (None without attention), ``f_refine`` and ``out`` (the classifier's input).
        """
        f1 = self.raw_stream(self._resized(images, "bilinear"))
        f2 = None
        if self.lbp_stream is not None:
            f2 = self.lbp_stream(self._resized(self.lbp_images(images), "nearest"))
        f3 = f1 if f2 is None else f1 + f2
        if self.attention is not None:
            f_refine, f_p, f_m = self.attention(f3)
        else:
            f_refine, f_p, f_m = f3, f3, None
        if self.reconstruction is not None:
            out = self.reconstruction(f_refine, f1, f3)
        else:
            out = f_refine
        return {
            "f1": f1,
            "f2": f2,
            "f3": f3,
            "f_p": f_p,
            "f_m": f_m,
            "f_refine": f_refine,
            "out": out,
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits, N x num_classes."""
        return self.classifier(self.features(images)["out"])

    @torch.no_grad()
    def attention_maps(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The mask F_m averaged over channels and upsampled to the images: N x H x W in (0, 1).

        The heat-maps of the paper's Fig. 6 (eval mode; the model's mode is restored).
        """
        if self.attention is None:
            raise ValueError("this model has no attention module (attention=False)")
        was_training = self.training
        self.eval()
        maps = []
        for part in images.split(batch_size):
            mask = self.features(part)["f_m"].float().mean(dim=1, keepdim=True)
            maps.append(F.interpolate(mask, size=part.shape[-2:], mode="bilinear")[:, 0])
        self.train(was_training)
        return torch.cat(maps)


def _luma(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of N x 3 x H x W RGB images, N x 1 x H x W."""
    weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


@dataclass(frozen=True)
class Preset:
    """Model size and training settings of one kind of run.

    Attributes:
        input_size: images are resized to it (None: kept as they are).
        width: channel multiplier of :class:`LBPAttentionNet`.
        batch_size, lr, optimizer: training settings.
        note: where the numbers come from.
    """

    input_size: int | None
    width: float
    batch_size: int
    lr: float
    optimizer: Literal["adam", "adamw", "sgd"]
    note: str

    def config(self, epochs: int, **overrides) -> TrainConfig:
        """A :class:`~fernb.train.TrainConfig` with this preset's batch size, rate and optimiser."""
        settings = {"batch_size": self.batch_size, "lr": self.lr, "optimizer": self.optimizer}
        return TrainConfig(epochs=epochs, **(settings | overrides))


#: ``paper``: Sec. 4's 256 x 256 inputs, batch 40 and learning rate 1e-6 (Keras; the paper
#: names no optimiser: Adam is assumed). ``cpu``: native-size inputs and an eighth of the
#: channels, with a learning rate that trains within a few epochs on this book's CPU.
PRESETS: dict[str, Preset] = {
    "paper": Preset(256, 1.0, 40, 1e-6, "adam", "Sec. 4: input 256, batch 40, lr 1e-6"),
    "cpu": Preset(None, 0.125, 32, 2e-3, "adam", "CPU: native size, width 1/8, lr 2e-3"),
}


def build(
    variant: str, num_classes: int, preset: str | Preset = "cpu", **options
) -> LBPAttentionNet:
    """The model of a :data:`VARIANTS` entry at a preset's size; ``options`` override both."""
    switches = _lookup(VARIANTS, variant, "variant")
    chosen = preset if isinstance(preset, Preset) else _lookup(PRESETS, preset, "preset")
    settings = {"input_size": chosen.input_size, "width": chosen.width}
    return LBPAttentionNet(num_classes, **(settings | switches | options))


def _lookup(table: dict, name: str, what: str):
    """``table[name]``, or an error listing the names there are."""
    if name not in table:
        raise ValueError(f"unknown {what} {name!r}; expected one of {sorted(table)}")
    return table[name]


@dataclass(frozen=True)
class Split:
    """Positions of one fold's training, validation and test images."""

    fold: int | None
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def protocol_splits(
    data: FaceData, protocol: str, folds: int = 5, seed: int = 0, val_fraction: float = 0.1
) -> list[Split]:
    """The train / val / test splits of a protocol.

    - ``"official"``: the dataset's own split (FER2013: Training, PublicTest as val,
      PrivateTest as test); a dataset without a val split gets one from its training
      images by subject (:func:`~fernb.data.splits.holdout_subjects`).
    - ``"subject_kfold"``: ``folds`` subject-independent folds; in each, ``val_fraction``
      of the training subjects are held out for model selection.
    - ``"image_kfold"``: ``folds`` folds over images as the paper's "5-fold cross-validation"
      most likely was (it does not say): the same person, often the same sequence, on both
      sides. It warns with :class:`~fernb.data.splits.LeakageWarning`; the validation
      images are still held out by subject inside the training fold.
    """
    if protocol == "official":
        split = official_split(data)
        train, val = split["train"], split["val"]
        if len(val) == 0:
            train, val = holdout_subjects(data, train, val_fraction, seed)
        return [Split(None, train, val, split["test"])]
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if protocol == "subject_kfold":
        pairs = subject_kfold(data, folds, seed)
    else:
        pairs = image_kfold(data, folds, seed)
    splits = []
    for fold, (train_val, test) in enumerate(pairs):
        train, val = holdout_subjects(data, train_val, val_fraction, seed)
        splits.append(Split(fold, train, val, test))
    return splits


def protocol_name(data: FaceData, protocol: str, folds: int = 5) -> str:
    """The protocol in words, for run records."""
    if protocol == "official":
        return f"{data.name}: official split, model selected on its val split"
    kind = {"subject_kfold": "subject-independent", "image_kfold": "per-image (subjects leak)"}
    if protocol not in kind:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    return f"{data.name}: {folds}-fold {kind[protocol]} CV, val by subject inside each fold"


def record_name(record: RunRecord, protocol: str) -> str:
    """The record's file name with the split protocol after the dataset.

    :attr:`~fernb.results.RunRecord.name` leaves the protocol out, so the runs of one model
    under two protocols (per-image and subject-independent folds) would take the same file:
    ``benchmark_full_ckplus48_subject_kfold_fold-0_seed-0_val-selected``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    head = f"{record.experiment}_{record.variant}_{record.dataset}"
    return f"{head}_{protocol}{record.name.removeprefix(head)}"


def band_means(maps: np.ndarray, bands: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """Mean of each N x H x W map over rows in a band of the image height.

    ``bands`` maps a name to (top, bottom) as fractions of the height, e.g. the eyes of an
    aligned face at (0.2, 0.5); rows r with top <= (r + 0.5) / H < bottom are averaged.
    Returns a length-N array per band.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3:
        raise ValueError(f"maps must be N x H x W, got shape {maps.shape}")
    centres = (np.arange(maps.shape[1]) + 0.5) / maps.shape[1]
    means = {}
    for name, (top, bottom) in bands.items():
        rows = (centres >= top) & (centres < bottom)
        if not rows.any():
            raise ValueError(f"band {name!r} ({top}, {bottom}) holds no row of {maps.shape[1]}")
        means[name] = maps[:, rows].mean(axis=(1, 2))
    return means


@dataclass
class Trained:
    """One model trained on one split and tested on its test images.

    ``val_accuracy`` is the selected epoch's validation accuracy; ``test`` holds the test
    split's scores and targets.
    """

    variant: str
    fold: int | None
    model: LBPAttentionNet
    history: pd.DataFrame
    best_epoch: int
    val_accuracy: float
    test: EvalResult
    wall_time_s: float

    def metrics(self, classes: Sequence[str]) -> dict:
        """Test accuracy, per-class accuracy and confusion, and the selected epoch and its
        validation accuracy, for a record."""
        predicted = self.test.scores.argmax(axis=1)
        found = expression_metrics(self.test.targets, predicted, classes)
        return found | {"val_accuracy": self.val_accuracy, "best_epoch": self.best_epoch}

    def record(
        self, data: FaceData, experiment: str, protocol: str, seed: int, epochs: int, device: str
    ) -> RunRecord:
        """This run as a :class:`~fernb.results.RunRecord` of the ``lbp_attention`` paper."""
        return RunRecord(
            paper="lbp_attention",
            experiment=experiment,
            variant=self.variant,
            **data_fields(data),
            protocol=protocol,
            fold=self.fold,
            seed=seed,
            epochs=epochs,
            selection="val",
            metrics=self.metrics(data.classes),
            device=device,
            wall_time_s=self.wall_time_s,
        )


def train_and_test(
    data: FaceData,
    split: Split,
    variant: str,
    config: TrainConfig,
    preset: str | Preset = "cpu",
    augment: bool = True,
    **options,
) -> Trained:
    """Train a :data:`VARIANTS` model on ``split.train`` with :func:`fernb.train.fit`,
    keep the epoch that is best on ``split.val`` and test it on ``split.test``.

    ``augment`` applies :data:`AUGMENTATION` to every training batch; ``options`` go to
    :func:`build` (e.g. ``width``, ``input_size``).
    """
    started = time.perf_counter()
    model = build(variant, len(data.classes), preset, in_channels=data.channels, **options)
    result = fit(
        model,
        tensors(data, split.train),
        tensors(data, split.val),
        config=config,
        augment=AUGMENTATION if augment else None,
    )
    tested = evaluate(result.model, tensors(data, split.test), amp=config.amp)
    return Trained(
        variant=variant,
        fold=split.fold,
        model=result.model,
        history=result.history,
        best_epoch=result.best_epoch,
        val_accuracy=result.best_metrics["accuracy"],
        test=tested,
        wall_time_s=time.perf_counter() - started,
    )


def beside_paper(records: Iterable[RunRecord] | pd.DataFrame) -> pd.DataFrame:
    """Our runs beside the paper's numbers (:func:`fernb.results.compare`), in percent.

    ``records`` are run records or :func:`fernb.results.read_records`' table; datasets named
    differently in the paper's tables are renamed first (:data:`PAPER_DATASETS`).
    """
    if isinstance(records, pd.DataFrame):
        frame = records.copy()
    else:
        frame = records_frame(record.to_dict() for record in records)
    if frame.empty:
        frame = records_frame([])
    frame["dataset"] = frame["dataset"].replace(PAPER_DATASETS)
    return compare(frame, "lbp_attention")
