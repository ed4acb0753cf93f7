"""Capsule-LSTM (Liu et al. 2021): capsules per frame, an LSTM over the clip, a joint loss.

Liu, Long, Xu, Yang, Xu, Yao, Shu, "An optimized Capsule-LSTM model for facial expression
recognition with video sequences", arXiv:2106.07564 (no public code). Sec. 3.1 of the paper:

- **Capsule encoder**, per 48 x 48 gray frame: a convolution with kernel 3, a convolutional
  capsule layer and "digit" capsules, one 30-D capsule per class (N x 30) with dynamic routing
  (:class:`CapsuleEncoder`, built from :mod:`fernb.nn.capsules`).
- **Capsule decoder**: a deconvolutional network that reconstructs the frame from the
  longest capsule only (:func:`fernb.nn.capsules.mask_capsules` with ``"predicted"``, then
  :class:`fernb.nn.capsules.DeconvDecoder`).
- **LSTM**: the N capsule lengths of each frame pass through a softmax; an LSTM with 128
  hidden units reads the 16 frames; the clip's class is the argmax of its last output
  (:class:`ClipLSTM`).
- **Joint loss** (Eq. 3.1-3.4): margin loss on every frame's capsules + 0.0005 x
  reconstruction + 0.5 x cross-entropy of the LSTM (:class:`CapsuleLSTMTask`), and the four
  combinations of Table 4.1 as switches (:data:`VARIANTS`).

The paper gives no layer widths for the convolutional capsule layer or the decoder, no
batch size and no epoch count; the choices are fernb's and are listed in
:data:`PRESETS` and in the chapter. The clips are batches ``{"image": (B, T, C, H, W),
"label": (B,)}`` built by :func:`clip_rows` and :func:`clip_tensors`, augmented one
transform per clip by :class:`ClipAugmentation`, and trained one cross-validation fold at a
time by :func:`train_fold` with :func:`fernb.train.fit`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fernb.data import FaceData, load
from fernb.data.augment import Augmentation
from fernb.data.splits import holdout_subjects
from fernb.metrics import confusion_matrix, expression_metrics
from fernb.nn.capsules import (
    DeconvDecoder,
    PrimaryCapsules,
    RoutingCapsules,
    margin_loss,
    mask_capsules,
    reconstruction_loss,
)
from fernb.results import RunRecord, data_fields
from fernb.train import Batch, EvalResult, FitResult, Task, TrainConfig, evaluate, fit

__all__ = [
    "BASIC_EMOTIONS",
    "PAPER_AUGMENTATION",
    "PRESETS",
    "SHORT_CLIPS",
    "VARIANTS",
    "CapsuleEncoder",
    "CapsuleLSTM",
    "CapsuleLSTMConfig",
    "CapsuleLSTMOutput",
    "CapsuleLSTMTask",
    "ClipAugmentation",
    "ClipLSTM",
    "FoldRun",
    "LossLog",
    "LossSwitches",
    "Preset",
    "clip_rows",
    "clip_tensors",
    "fold_record",
    "load_sequences",
    "select_classes",
    "train_fold",
]

#: MMI's six labels, the paper's classes (Sec. 4.1), in :data:`fernb.data.EMOTIONS` order.
BASIC_EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")

#: What :func:`clip_rows` does with a sequence shorter than the clip.
SHORT_CLIPS: tuple[str, ...] = ("error", "repeat_first")

MaskMode = Literal["predicted", "target"]
LSTMLoss = Literal["cross_entropy", "margin"]


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CapsuleLSTMConfig:
    """Sizes of a :class:`CapsuleLSTM`.

    Attributes:
        n_classes: N, the class capsules (6 in the paper).
        image_size: side of the square gray frames (48 in the paper).
        conv_channels, conv_kernel: the first convolution (kernel 3 in the paper).
        primary_types, primary_dim, primary_kernel, primary_stride: the convolutional
            capsule layer (``primary_types`` capsules of ``primary_dim`` at each position).
        capsule_dim: length of the class capsules (30 in the paper).
        routing_iterations: dynamic-routing iterations.
        decoder_base, decoder_channels: the deconvolutional decoder, from a
            ``decoder_channels[0] x decoder_base x decoder_base`` map doubled per layer.
        hidden_size: LSTM hidden units (128 in the paper).
        mask: which capsule the decoder sees: ``"predicted"``, the longest (the paper, in
            training too) or ``"target"``, the true class's in training (Sabour et al.).
    """

    n_classes: int = 6
    image_size: int = 48
    conv_channels: int = 256
    conv_kernel: int = 3
    primary_types: int = 32
    primary_dim: int = 8
    primary_kernel: int = 9
    primary_stride: int = 2
    capsule_dim: int = 30
    routing_iterations: int = 3
    decoder_base: int = 6
    decoder_channels: tuple[int, ...] = (64, 32, 16)
    hidden_size: int = 128
    mask: MaskMode = "predicted"

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        if self.mask not in ("predicted", "target"):
            raise ValueError(f"mask must be 'predicted' or 'target', got {self.mask!r}")
        object.__setattr__(self, "decoder_channels", tuple(self.decoder_channels))


class CapsuleLSTMOutput(NamedTuple):
    """What :class:`CapsuleLSTM` returns for B clips of T frames.

    Attributes:
        lengths: capsule lengths |v_c| per frame, (B, T, N).
        capsules: the class capsules per frame, (B, T, N, D).
        reconstruction: each frame rebuilt from its longest capsule, (B, T, C, H, W).
        logits: the LSTM's last output, (B, N); the clip's class is its argmax.
    """

    lengths: torch.Tensor
    capsules: torch.Tensor
    reconstruction: torch.Tensor
    logits: torch.Tensor


class CapsuleEncoder(nn.Module):
    """Frame -> N class capsules: conv + ReLU, convolutional capsules, routed digit capsules."""

    def __init__(self, config: CapsuleLSTMConfig) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, config.conv_channels, config.conv_kernel)
        self.primary = PrimaryCapsules(
            config.conv_channels,
            config.primary_types,
            config.primary_dim,
            config.primary_kernel,
            config.primary_stride,
        )
        side = config.image_size - config.conv_kernel + 1
        self.digits = RoutingCapsules(
            self.primary.num_capsules(side, side),
            config.primary_dim,
            config.n_classes,
            config.capsule_dim,
            config.routing_iterations,
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Class capsules (F, N, D) of gray frames (F, 1, H, W)."""
        return self.digits(self.primary(F.relu(self.conv(frames))))


class ClipLSTM(nn.Module):
    """Per-frame capsule lengths -> softmax -> LSTM -> a linear layer on the last step."""

    def __init__(self, n_classes: int, hidden_size: int = 128) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_classes, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, n_classes)

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        """Logits (B, N) of the last time step from capsule lengths (B, T, N)."""
        outputs, _ = self.lstm(lengths.softmax(dim=-1))
        return self.head(outputs[:, -1])


class CapsuleLSTM(nn.Module):
    """The Capsule-LSTM of Liu et al. (Fig. 3.1): encoder and decoder per frame, LSTM per clip.

    ``model(clips, targets=None)`` takes clips (B, T, 1, H, W) in [0, 1] and, with
    ``config.mask == "target"``, the clip labels (B,) in training; it returns a
    :class:`CapsuleLSTMOutput`.
    """

    def __init__(self, config: CapsuleLSTMConfig | None = None) -> None:
        super().__init__()
        self.config = config or CapsuleLSTMConfig()
        self.encoder = CapsuleEncoder(self.config)
        self.decoder = DeconvDecoder(
            self.config.n_classes * self.config.capsule_dim,
            out_size=self.config.image_size,
            base_size=self.config.decoder_base,
            channels=self.config.decoder_channels,
        )
        self.temporal = ClipLSTM(self.config.n_classes, self.config.hidden_size)

    def forward(
        self, clips: torch.Tensor, targets: torch.Tensor | None = None
    ) -> CapsuleLSTMOutput:
        size = self.config.image_size
        if clips.dim() != 5 or clips.shape[2:] != (1, size, size):
            raise ValueError(
                f"clips must be (B, T, 1, {size}, {size}) gray frames, got {tuple(clips.shape)}"
            )
        batch, frames = clips.shape[:2]
        capsules = self.encoder(clips.flatten(0, 1))
        lengths = capsules.norm(dim=-1)
        if self.config.mask == "target" and targets is not None:
            masked = mask_capsules(capsules, targets.repeat_interleave(frames), "target")
        else:
            masked = mask_capsules(capsules, mode="predicted")
        reconstruction = self.decoder(masked)
        lengths = lengths.view(batch, frames, -1)
        return CapsuleLSTMOutput(
            lengths=lengths,
            capsules=capsules.view(batch, frames, *capsules.shape[1:]),
            reconstruction=reconstruction.view(batch, frames, *reconstruction.shape[1:]),
            logits=self.temporal(lengths),
        )


@dataclass(frozen=True)
class Preset:
    """A model size with the training settings that go with it.

    ``batch_size`` counts clips (each of T frames); ``lr`` is Adam's learning rate (Sec. 4.2).
    """

    model: CapsuleLSTMConfig
    epochs: int
    batch_size: int
    lr: float
    note: str = ""

    def build(self, n_classes: int) -> CapsuleLSTM:
        """A fresh model of this size for ``n_classes`` classes."""
        return CapsuleLSTM(replace(self.model, n_classes=n_classes))

    def config(self, epochs: int | None = None, **overrides) -> TrainConfig:
        """A :class:`~fernb.train.TrainConfig` with Adam, this batch size and rate, and
        ``epochs`` (default: this preset's); ``overrides`` replace any setting."""
        settings = {
            "epochs": self.epochs if epochs is None else epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "optimizer": "adam",
        }
        return TrainConfig(**(settings | overrides))


#: ``paper``: the paper's sizes where it gives them (kernel 3, 30-D capsules, LSTM 128,
#: Adam at 1e-4); Sabour et al.'s 256 channels and 32 x 8-D primary capsules (kernel 9,
#: stride 2: 32 x 19 x 19 capsules) where it does not; the batch and epochs are fernb's.
#: ``cpu``: an eighth of the channels and stride 4 (8 x 10 x 10 primary capsules), for
#: real-data runs on a CPU in minutes. ``tiny``: the book's default, seconds on a CPU.
PRESETS: dict[str, Preset] = {
    "paper": Preset(
        CapsuleLSTMConfig(), epochs=100, batch_size=8, lr=1e-4, note="GPU: the paper's sizes"
    ),
    "cpu": Preset(
        CapsuleLSTMConfig(
            conv_channels=32, primary_types=8, primary_stride=4, decoder_channels=(32, 16, 8)
        ),
        epochs=20,
        batch_size=16,
        lr=1e-3,
        note="CPU: real data, one CK+48 fold in tens of minutes",
    ),
    "tiny": Preset(
        CapsuleLSTMConfig(
            conv_channels=16,
            primary_types=4,
            primary_stride=4,
            capsule_dim=16,
            decoder_channels=(16, 8, 4),
            hidden_size=32,
        ),
        epochs=3,
        batch_size=8,
        lr=3e-3,
        note="CPU: seconds on small synthetic data (the book's default; learns little)",
    ),
}


# --- the loss ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LossSwitches:
    """Which terms the joint loss has: reconstruction on or off, and the LSTM's loss."""

    reconstruction: bool = True
    lstm: LSTMLoss = "cross_entropy"

    def __post_init__(self) -> None:
        if self.lstm not in ("cross_entropy", "margin"):
            raise ValueError(f"lstm must be 'cross_entropy' or 'margin', got {self.lstm!r}")


#: The four rows of Table 4.1, named as in :data:`fernb.results.PAPER_TABLES`.
VARIANTS: dict[str, LossSwitches] = {
    "lstm_margin_no_recon": LossSwitches(reconstruction=False, lstm="margin"),
    "lstm_margin": LossSwitches(reconstruction=True, lstm="margin"),
    "full": LossSwitches(reconstruction=True, lstm="cross_entropy"),
    "no_recon": LossSwitches(reconstruction=False, lstm="cross_entropy"),
}


class LossLog:
    """Running, sample-weighted means of named loss terms; :meth:`pop` returns and resets."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def add(self, terms: Mapping[str, torch.Tensor], n: int) -> None:
        """Add the batch means ``terms`` of a batch of ``n`` samples."""
        for name, value in terms.items():
            weighted = value.detach().double() * n
            self._sums[name] = self._sums[name] + weighted if name in self._sums else weighted
        self._count += n

    def pop(self) -> dict[str, float]:
        """The mean of each term since the last call (empty if nothing was added)."""
        means = {name: float(total) / self._count for name, total in self._sums.items()}
        self._sums, self._count = {}, 0
        return means


class CapsuleLSTMTask(Task):
    """The joint loss of Eq. 3.1 for :func:`fernb.train.fit`, with Table 4.1's switches.

    Terms (each a mean over the batch; :meth:`terms`):

    - ``margin``: margin loss (Eq. 3.2, m+ 0.9, m- 0.1, lambda 0.5) of every frame's capsule
      lengths against the clip's label, averaged over frames;
    - ``reconstruction`` (if switched on): ``recon_weight`` x squared error of every frame's
      reconstruction (Eq. 3.3), summed over pixels (``recon_reduction="sum"``) or averaged
      (``"mean"``, Eq. 3.3 as printed), averaged over frames;
    - ``lstm``: ``lstm_weight`` x the LSTM's loss on its last output: cross-entropy (Eq.
      3.4) or margin loss on the softmax of the logits (Table 4.1's "margin_loss (LSTM)";
      the paper does not define it: fernb's choice).

    Scores are the softmax of the LSTM's logits. During training (gradients enabled) every
    batch's terms and their sum ``total`` are added to :attr:`log`; evaluation batches are not.

    Args:
        variant: a :data:`VARIANTS` name or :class:`LossSwitches`.
        recon_weight: weight of the reconstruction term (0.0005 in the paper).
        lstm_weight: weight of the LSTM term (0.5 in the paper, kept for its margin loss).
        recon_reduction: ``"sum"`` or ``"mean"`` over the pixels of a frame.
    """

    target = "label"

    def __init__(
        self,
        variant: str | LossSwitches = "full",
        recon_weight: float = 0.0005,
        lstm_weight: float = 0.5,
        recon_reduction: Literal["sum", "mean"] = "sum",
        m_pos: float = 0.9,
        m_neg: float = 0.1,
        lam: float = 0.5,
    ) -> None:
        if isinstance(variant, str) and variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
        if recon_reduction not in ("sum", "mean"):
            raise ValueError(f"recon_reduction must be 'sum' or 'mean', got {recon_reduction!r}")
        self.switches = VARIANTS[variant] if isinstance(variant, str) else variant
        self.recon_weight = recon_weight
        self.lstm_weight = lstm_weight
        self.recon_reduction = recon_reduction
        self.margins = {"m_pos": m_pos, "m_neg": m_neg, "lam": lam}
        self.log = LossLog()

    def forward(self, model: nn.Module, batch: Batch) -> CapsuleLSTMOutput:
        return model(batch["image"], batch["label"] if model.training else None)

    def terms(self, outputs: CapsuleLSTMOutput, batch: Batch) -> dict[str, torch.Tensor]:
        """The weighted loss terms of a batch (see the class docstring)."""
        labels = batch["label"]
        frames = outputs.lengths.shape[1]
        terms = {
            "margin": margin_loss(
                outputs.lengths.flatten(0, 1).float(),
                labels.repeat_interleave(frames),
                **self.margins,
            )
        }
        if self.switches.reconstruction:
            terms["reconstruction"] = reconstruction_loss(
                outputs.reconstruction.flatten(0, 1).float(),
                batch["image"].flatten(0, 1),
                self.recon_reduction,
                self.recon_weight,
            )
        logits = outputs.logits.float()
        if self.switches.lstm == "cross_entropy":
            lstm = F.cross_entropy(logits, labels)
        else:
            lstm = margin_loss(logits.softmax(dim=-1), labels, **self.margins)
        terms["lstm"] = self.lstm_weight * lstm
        return terms

    def loss(self, outputs: CapsuleLSTMOutput, batch: Batch) -> torch.Tensor:
        terms = self.terms(outputs, batch)
        total = torch.stack(list(terms.values())).sum()
        if torch.is_grad_enabled():
            self.log.add({**terms, "total": total}, len(batch["label"]))
        return total

    def scores(self, outputs: CapsuleLSTMOutput) -> torch.Tensor:
        return outputs.logits.float().softmax(dim=-1)


# --- clips -------------------------------------------------------------------------------


def select_classes(data: FaceData, classes: Sequence[str]) -> FaceData:
    """The rows of ``data`` whose class is one of ``classes``, relabelled to index ``classes``.

    Raises:
        ValueError: a class of ``classes`` is not among ``data.classes``.
    """
    classes = list(classes)
    missing = [name for name in classes if name not in data.classes]
    if missing:
        raise ValueError(f"{data.name or 'dataset'} has no class {missing}; it has {data.classes}")
    lookup = np.array([*(classes.index(c) if c in classes else -1 for c in data.classes), -1])
    labels = lookup[data.labels]
    kept = data.subset(labels >= 0)
    return replace(kept, labels=labels[labels >= 0], classes=classes)


def load_sequences(
    dataset: str,
    root: Path | str | None = None,
    frames: int = 16,
    classes: Sequence[str] = BASIC_EMOTIONS,
    **options,
) -> FaceData:
    """A dataset of expression clips in the label space ``classes``, rows clip by clip.

    ``synthetic``: SynthFACS neutral-to-apex clips of ``frames`` frames (``options`` such as
    ``n_subjects``, ``samples_per_subject``, ``difficulty`` go to it). ``mmi``:
    the MMI loader (:func:`fernb.data.mmi.load_mmi`) with ``frames`` frames around the middle
    of each video.
    ``ckplus``: the official CK+ release, the last ``frames`` frames (to the peak) of each
    sequence, the face cut out around the sequence's landmarks (the paper detects faces with
    dlib) at 48 x 48; fewer than ``frames`` where a sequence is shorter (CK+ has sequences of
    6 frames; :func:`clip_rows` can pad them).
    Any other name (``ckplus48``: 3 frames per sequence) is read with :func:`fernb.data.load`
    as it comes. Images of classes outside ``classes`` are dropped.
    """
    if dataset == "synthetic":
        options = {"sequences": True, "frames": frames, "classes": tuple(classes), **options}
        data = load(dataset, root, **options)
    elif dataset == "mmi":
        data = load(dataset, root, **{"frames": frames, **options})
    elif dataset == "ckplus":
        options = {"frames": f"last{frames}", "size": 48, "crop": True, **options}
        data = load(dataset, root, **options)
    else:
        data = load(dataset, root, **options)
    return select_classes(data, classes)


def clip_rows(data: FaceData, frames: int, short: str = "error") -> np.ndarray:
    """Row positions (n_clips, frames) of each clip's frames, in frame order.

    A clip is a ``sequence``; from a longer one the middle ``frames`` frames are taken
    (Sec. 4.1: "the middle 16 frames"). Clips keep the order of their first row. A sequence
    shorter than ``frames`` raises with ``short="error"``; with ``short="repeat_first"`` its
    first frame is repeated before it until the clip is long enough (on CK+, whose sequences
    start at a neutral face and have 6 frames or more, the clip holds the neutral face
    longer), and a warning counts the clips so padded.

    Raises:
        ValueError: ``data`` has no sequences, a sequence is shorter than ``frames`` (with
            ``short="error"``), or its frames disagree on the label.
    """
    if data.sequence is None or data.frame is None:
        raise ValueError(
            f"{data.name or 'dataset'} has no sequence/frame fields: load clips, e.g. "
            "load('synthetic', sequences=True) or load_sequences()"
        )
    if frames < 1:
        raise ValueError(f"frames must be positive, got {frames}")
    if short not in SHORT_CLIPS:
        raise ValueError(f"short must be one of {SHORT_CLIPS}, got {short!r}")
    table = pd.DataFrame({"sequence": data.sequence, "frame": data.frame, "label": data.labels})
    clips, padded = [], 0
    for name, group in table.groupby("sequence", sort=False):
        if group["label"].nunique() != 1:
            raise ValueError(f"the frames of sequence {name} have different labels")
        ordered = group.sort_values("frame", kind="stable").index.to_numpy()
        missing = frames - len(ordered)
        if missing > 0 and short == "error":
            raise ValueError(
                f"sequence {name} has {len(ordered)} frames, fewer than frames={frames} "
                f"(the shortest sequence has {table.groupby('sequence').size().min()}); "
                "pass short='repeat_first' to pad it with its first frame"
            )
        if missing > 0:
            ordered = np.concatenate([np.repeat(ordered[:1], missing), ordered])
            padded += 1
        start = (len(ordered) - frames) // 2
        clips.append(ordered[start : start + frames])
    if padded:
        warnings.warn(
            f"{padded} of {len(clips)} sequences are shorter than {frames} frames: their "
            "first frame is repeated before them",
            stacklevel=2,
        )
    return np.stack(clips)


def clip_tensors(data: FaceData, rows: np.ndarray) -> Batch:
    """Clips as CPU tensors: ``image`` uint8 (n, T, C, H, W), ``label`` (n,) from ``rows``."""
    rows = np.asarray(rows)
    if rows.ndim != 2:
        raise ValueError(f"rows must be (n_clips, frames), got shape {rows.shape}")
    images = torch.from_numpy(data.images[rows])
    images = images.unsqueeze(2) if images.dim() == 4 else images.permute(0, 1, 4, 2, 3)
    return {"image": images, "label": torch.from_numpy(data.labels[rows[:, 0]])}


#: Sec. 4.1: horizontal flips and rotations of up to 15 degrees (drawn, see ClipAugmentation).
PAPER_AUGMENTATION = Augmentation(flip=0.5, rotation=15.0)


@dataclass(frozen=True)
class ClipAugmentation:
    """One random transform per clip, the same for all its frames.

    A batch of clips (B, T, C, H, W) is seen as B images of T x C channels, so
    :class:`fernb.data.augment.Augmentation` draws one flip and one angle per clip. The
    paper expands MMI offline to 8 copies (the original, its mirror image and rotations of
    +-5, 10, 15 degrees); drawn per step, :data:`PAPER_AUGMENTATION` covers the same flips
    and angle range (fernb's choice). Call it as ``fit(..., augment=ClipAugmentation())``.
    """

    augmentation: Augmentation = PAPER_AUGMENTATION

    def __call__(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        images = batch["image"]
        if images.dim() != 5:
            raise ValueError(f"expected clips (B, T, C, H, W), got {tuple(images.shape)}")
        b, t, c, h, w = images.shape
        out = self.augmentation(images.reshape(b, t * c, h, w), generator=generator)
        return dict(batch, image=out.images.view(b, t, c, h, w))


# --- one cross-validation fold -----------------------------------------------------------


@dataclass
class FoldRun:
    """A trained fold: the fit, per-epoch curves, and the test split's evaluation.

    ``curves`` has one row per epoch: ``train_loss``, the training means of each loss term
    (``margin``, ``reconstruction``, ``lstm``, ``total``) and the validation metrics.
    """

    fold: int
    variant: str
    result: FitResult
    curves: pd.DataFrame
    test: EvalResult
    classes: list[str]
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def predicted(self) -> np.ndarray:
        """Predicted class of each test clip."""
        return self.test.scores.argmax(axis=1)

    def metrics(self) -> dict:
        """Test accuracy, per-class accuracy and confusion, plus the selected epoch and its
        validation accuracy."""
        return {
            **expression_metrics(self.test.targets, self.predicted, self.classes),
            "val_accuracy": self.result.best_metrics["accuracy"],
            "best_epoch": self.result.best_epoch,
        }

    def confusion(self) -> np.ndarray:
        """Test confusion matrix (rows: true class)."""
        return confusion_matrix(self.test.targets, self.predicted, len(self.classes))


def train_fold(
    data: FaceData,
    rows: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    preset: Preset,
    config: TrainConfig,
    variant: str = "full",
    fold: int = 0,
    val_fraction: float = 0.1,
    augment: Callable[[Batch, torch.Generator], Batch] | None = None,
    recon_reduction: Literal["sum", "mean"] = "sum",
    val: np.ndarray | None = None,
) -> FoldRun:
    """Train a :class:`CapsuleLSTM` on the clips ``train`` and test it on the clips ``test``.

    ``rows`` is :func:`clip_rows`' (n_clips, T) array; ``train`` and ``test`` index its clips
    (e.g. from :func:`fernb.data.splits.subject_kfold` on ``data.subset(rows[:, -1])``).
    ``val_fraction`` of the training subjects are held out to select the epoch (validation
    accuracy, :func:`fernb.data.splits.holdout_subjects`), unless ``val`` gives the
    validation clips (then all of ``train`` is trained on); the test clips are used once.
    """
    if val is None:
        clips = data.subset(rows[:, -1])
        fit_index, val_index = holdout_subjects(clips, train, val_fraction, config.seed)
    else:
        fit_index, val_index = np.asarray(train), np.asarray(val)
    model = preset.build(len(data.classes))
    task = CapsuleLSTMTask(variant, recon_reduction=recon_reduction)
    curves: list[dict[str, float]] = []
    result = fit(
        model,
        clip_tensors(data, rows[fit_index]),
        clip_tensors(data, rows[val_index]),
        task,
        config,
        augment,
        on_epoch_end=lambda _, row: curves.append({**row, **task.log.pop()}),
    )
    tested = evaluate(
        result.model,
        clip_tensors(data, rows[test]),
        task,
        batch_size=config.eval_batch_size,
        amp=config.amp,
    )
    return FoldRun(
        fold=fold,
        variant=variant,
        result=result,
        curves=pd.DataFrame(curves),
        test=tested,
        classes=list(data.classes),
        sizes={"train": len(fit_index), "val": len(val_index), "test": len(test)},
    )


def fold_record(
    run: FoldRun,
    experiment: str,
    data: FaceData,
    protocol: str,
    seed: int,
    device: str,
    started: float | None = None,
) -> RunRecord:
    """The run record of a fold (paper ``capsule_lstm``, selected on validation) of the clips
    of ``data``.

    ``started`` is a :func:`time.perf_counter` value; without it the fit's wall time is used.
    """
    wall = time.perf_counter() - started if started is not None else run.result.wall_time_s
    return RunRecord(
        paper="capsule_lstm",
        experiment=experiment,
        variant=run.variant,
        **data_fields(data),
        protocol=protocol,
        fold=run.fold,
        seed=seed,
        epochs=len(run.curves),
        selection="val",
        metrics=run.metrics(),
        device=device,
        wall_time_s=wall,
    )
