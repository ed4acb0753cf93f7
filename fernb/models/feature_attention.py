"""Facial features as attention for emotion recognition (Meen, Yoshioka, Inoue; paper 004).

Two VGG19s (:class:`fernb.nn.vgg.SmallInputVGG`, 44 x 44 gray crops, batch norm): a
**face network** trained on face vs non-face (:mod:`fernb.data.face_nonface`) and frozen, and
the **emotion network** trained on FER2013. The face network's convolution features are the
"facial features"; at 44 x 44 the last convolution of stage 4 gives the paper's (512, 5, 5)
tensor. One family, :class:`FeatureAttentionNet`, configured by an :class:`AttentionSpec`,
builds every model of the paper:

- **Model 1**: facial features -> attention map(s) by one of three reductions (``"all"`` 512
  maps, their ``"average"``, a 1 x 1 ``"conv"`` to one map), interpolated to the input size,
  combined with the image by ``"concat"``, ``"dot"`` (Eq. 1, ``f * img``) or ``"weighted"``
  (Eq. 2, ``(1 + f) * img``); the emotion network classifies the result.
- **Model 2**: Model 1 with the features weighted per channel by a softmax layer first
  (:class:`ChannelSoftmax`).
- **Model 3**: attention inside the emotion network at three stages (2, 3, 4): the maps come
  from the face network's features of the same stage (``"facial"``), from the emotion
  network's own (``"emotion"``), from their product (``"combination"``; of the paper's
  "concatenating or taking the dot-product" only the product is built), or the facial maps
  of all three stages are first applied to the image as in Model 1 and the emotion maps then
  inside the network (``"separately"``); features weighted as in Model 2. Model 2's weights
  act before the channel mean, or, for ``"all"`` maps, after each map's division by its
  maximum (:class:`MapHead`).

Where the paper is silent, choices made here (all switchable): maps of ``"all"`` and
``"average"`` are divided by their spatial maximum (so Eq. 2 weights lie in [1, 2]) and
``"conv"`` maps go through a sigmoid; the softmax weights are computed per image from the
globally pooled features (one linear layer) and scaled by the channel count, so uniform
weights leave the features unchanged; inside the network a map multiplies the output of its
stage's last convolution, before the pool (Fig. 2: "weighted features applied to the last
layer output"), by Eq. 1 in Model 3 (the paper's best). The names of :func:`variant_spec`
are those of the paper's Table 1 (``fernb.results.PAPER_TABLES``).

Training (Sec. 4.2): random 44 x 44 crops and horizontal flips, SGD (lr 0.01, momentum 0.9,
weight decay 5e-4), lr / 10 at 50%, 75% and 90% of the epochs, cross-entropy
(:func:`paper_train_config`). The test score averages the ten crops (:class:`TenCropTask`),
as the public FER2013 code does; the paper does not mention test-time augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from fernb.data import FaceData, load
from fernb.data.augment import Augmentation, ten_crop_predict
from fernb.data.face_nonface import FaceNonFace, make_face_nonface
from fernb.data.splits import holdout_subjects, official_split
from fernb.metrics import expression_metrics
from fernb.nn.vgg import SmallInputVGG, StagedVGG
from fernb.results import RunRecord, data_fields
from fernb.train import (
    Batch,
    Classification,
    EpochScores,
    EvalResult,
    FitResult,
    TrainConfig,
    evaluate,
    fit,
    tensors,
)
from fernb.utils import choose_device

__all__ = [
    "CROP",
    "FACIAL_STAGE",
    "FER2013_CLASSES",
    "MODEL3_STAGES",
    "PRESETS",
    "AttentionSpec",
    "ChannelSoftmax",
    "EmotionData",
    "FeatureAttentionNet",
    "MapHead",
    "Preset",
    "TenCropTask",
    "VariantResult",
    "apply_attention",
    "combine_with_image",
    "emotion_data",
    "face_metrics",
    "face_network",
    "face_training_data",
    "images_on",
    "load_face_network",
    "paper_train_config",
    "save_face_network",
    "smoke_test",
    "stage_outputs",
    "train_variant",
    "variant_label",
    "variant_records",
    "variant_spec",
]

#: Side of the training crops (and of the ten test crops) of 48 x 48 faces.
CROP = 44
#: The face network's stage whose last convolution gives the (512, 5, 5) facial features.
FACIAL_STAGE = 4
#: Model 3's stages: early, mid and late features (22, 11 and 5 pixels at 44 x 44).
MODEL3_STAGES = (2, 3, 4)

Reduce = Literal["all", "average", "conv"]
Combine = Literal["concat", "dot", "weighted"]
Equation = Literal["dot", "weighted"]
StageSource = Literal["none", "facial", "emotion", "combination"]


def stage_outputs(
    vgg: StagedVGG,
    images: torch.Tensor,
    taps: Collection[int],
    modulate: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    until: int = 5,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Run ``vgg`` stage by stage; return the last output and the tapped features.

    The features of stage k in ``taps`` are the output of its last convolution (after the
    ReLU, before the pool), optionally replaced by ``modulate(k, features)`` before the
    network goes on. Stages after ``until`` are not run.
    """
    taps = set(taps)
    tapped: dict[int, torch.Tensor] = {}
    for index, stage in enumerate(vgg.stages.values(), start=1):
        if index > until:
            break
        images = stage[:-1](images)
        if index in taps:
            if modulate is not None:
                images = modulate(index, images)
            tapped[index] = images
        images = stage[-1](images)
    return images, tapped


def apply_attention(features: torch.Tensor, maps: torch.Tensor, equation: Equation) -> torch.Tensor:
    """Eq. 1 ``maps * features`` (``"dot"``) or Eq. 2 ``(1 + maps) * features`` (``"weighted"``).

    The paper's "dot product" is this element-wise product; ``maps`` broadcast over
    ``features`` (one map for all channels, or one per channel).
    """
    if equation == "dot":
        return maps * features
    if equation == "weighted":
        return (1 + maps) * features
    raise ValueError(f"equation must be 'dot' (Eq. 1) or 'weighted' (Eq. 2), got {equation!r}")


def combine_with_image(images: torch.Tensor, maps: torch.Tensor, combine: Combine) -> torch.Tensor:
    """The emotion network's input from N x C x H x W images and N x M x H x W maps.

    ``"concat"``: C + M channels. ``"dot"`` / ``"weighted"``: every image channel times every
    map by Eq. 1 / Eq. 2, C x M channels (one per map for gray images).
    """
    if combine == "concat":
        return torch.cat([images, maps], dim=1)
    if combine not in ("dot", "weighted"):
        raise ValueError(f"combine must be 'concat', 'dot' or 'weighted', got {combine!r}")
    return apply_attention(images[:, :, None], maps[:, None], combine).flatten(1, 2)


class ChannelSoftmax(nn.Module):
    """Model 2's weighting: ``f_c * C * softmax(W mean_hw(f) + b)_c`` per image.

    The weights sum to 1 over the C channels; times C, uniform weights leave ``f`` unchanged
    and a weighted channel mean is ``sum_c w_c f_c``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Linear(channels, channels)

    def weights(self, features: torch.Tensor) -> torch.Tensor:
        """``softmax(W mean_hw(f) + b)``, N x C x 1 x 1 (summing to 1), of N x C x h x w."""
        return torch.softmax(self.score(features.mean(dim=(-2, -1))), dim=1)[..., None, None]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale(features, features)

    def scale(self, maps: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """``maps`` (N x C x h x w) times ``C`` times the weights of ``features``."""
        return maps * self.weights(features) * features.shape[1]


class MapHead(nn.Module):
    """Features (N x C x h x w, non-negative) -> attention maps (N x M x h x w).

    ``reduce``: ``"all"`` keeps the C maps (M = C), ``"average"`` their channel mean (M = 1),
    each divided by its spatial maximum (so in [0, 1]); ``"conv"`` a 1 x 1 convolution to one
    map and a sigmoid. ``softmax_weights`` weights the channels (:class:`ChannelSoftmax`):
    before the mean or the convolution, and after the division for ``"all"``, where a
    weight applied before it would cancel (``w f_c / max(w f_c) = f_c / max f_c``); the
    weighted ``"all"`` maps lie in ``[0, C w_c]``.
    """

    def __init__(self, channels: int, reduce: Reduce, softmax_weights: bool = False) -> None:
        super().__init__()
        if reduce not in ("all", "average", "conv"):
            raise ValueError(f"reduce must be 'all', 'average' or 'conv', got {reduce!r}")
        self.reduce = reduce
        self.weights = ChannelSoftmax(channels) if softmax_weights else None
        self.conv = nn.Conv2d(channels, 1, kernel_size=1) if reduce == "conv" else None
        self.maps = channels if reduce == "all" else 1

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.reduce == "all":
            maps = _peak_normalised(features)
            return maps if self.weights is None else self.weights.scale(maps, features)
        if self.weights is not None:
            features = self.weights(features)
        if self.conv is not None:
            return torch.sigmoid(self.conv(features))
        return _peak_normalised(features.mean(dim=1, keepdim=True))


def _peak_normalised(maps: torch.Tensor) -> torch.Tensor:
    """Each N x M x h x w map divided by its spatial maximum (at least 1e-6)."""
    return maps / maps.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-6)


@dataclass(frozen=True)
class AttentionSpec:
    """Where facial (and emotion) features act, and how. The default is plain VGG19.

    Attributes:
        input_stages: face-network stages whose maps meet the input image (Models 1, 2:
            ``(4,)``, the (512, 5, 5) features; Model 3 "separately": ``(2, 3, 4)``); their
            maps are stacked as channels.
        combine: how input maps meet the image: ``"concat"``, ``"dot"`` (Eq. 1),
            ``"weighted"`` (Eq. 2).
        reduce: features to maps, ``"all"``, ``"average"`` or ``"conv"`` (:class:`MapHead`).
        softmax_weights: Model 2's channel weighting before the reduction.
        stage_source: Model 3's maps inside the emotion network: ``"none"``, ``"facial"``,
            ``"emotion"`` or ``"combination"`` (the product of both networks' features).
        stages: the emotion-network stages where those maps act.
        stage_equation: how they act on the stage's features, Eq. 1 ``"dot"`` or Eq. 2
            ``"weighted"``.
    """

    input_stages: tuple[int, ...] = ()
    combine: Combine = "weighted"
    reduce: Reduce = "average"
    softmax_weights: bool = False
    stage_source: StageSource = "none"
    stages: tuple[int, ...] = MODEL3_STAGES
    stage_equation: Equation = "dot"

    def __post_init__(self) -> None:
        choices = {
            "combine": ("concat", "dot", "weighted"),
            "reduce": ("all", "average", "conv"),
            "stage_source": ("none", "facial", "emotion", "combination"),
            "stage_equation": ("dot", "weighted"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("input_stages", "stages"):
            value = tuple(getattr(self, name))
            object.__setattr__(self, name, value)
            if any(stage not in range(1, 6) for stage in value) or len(set(value)) != len(value):
                raise ValueError(f"{name} must be distinct stages 1 to 5, got {value}")
        if self.stage_source != "none" and not self.stages:
            raise ValueError(f"stage_source={self.stage_source!r} needs at least one stage")

    def face_stages(self) -> tuple[int, ...]:
        """The face-network stages whose features this model reads (none: no face network)."""
        inside = self.stages if self.stage_source in ("facial", "combination") else ()
        return tuple(sorted({*self.input_stages, *inside}))


_PAPER_COMBINE = {  # the combination the paper reports for each row of Table 1
    ("model1", "all"): "weighted",
    ("model1", "averaging"): "weighted",
    ("model2", "all"): "concat",
    ("model2", "averaging"): "weighted",
}
_REDUCE_NAMES = {"all": "all", "averaging": "average", "conv": "conv"}


def _known(parts: list[str], names: Collection[str], suffixes: Collection[str]) -> bool:
    """Whether ``parts`` is ``[name]`` or ``[name, suffix]`` of the given choices."""
    return (
        len(parts) in (1, 2) and parts[0] in names and parts[1:] in ([], *([s] for s in suffixes))
    )


def variant_spec(name: str) -> AttentionSpec:
    """The :class:`AttentionSpec` of a variant name.

    Names: ``"vgg19"`` (the baseline); ``"model1_<r>"`` and ``"model2_<r>"`` with ``<r>``
    one of ``all``, ``averaging``, ``conv``, optionally ``_concat``, ``_dot`` or ``_weighted``
    (default: the paper's reported choice, Eq. 2 where it reports none, e.g. for conv);
    ``"model3_<v>"`` with ``<v>`` one of ``facial``, ``emotion``, ``combination``,
    ``separately``, optionally ``_dot`` or ``_weighted`` (default Eq. 1, the paper's best).
    The suffix-free names are the rows of the paper's Table 1.
    """
    parts = name.split("_")
    if parts == ["vgg19"]:
        return AttentionSpec()
    model, rest = parts[0], parts[1:]
    if model in ("model1", "model2") and _known(rest, _REDUCE_NAMES, ("concat", "dot", "weighted")):
        combine = rest[1] if len(rest) == 2 else _PAPER_COMBINE.get((model, rest[0]), "weighted")
        return AttentionSpec(
            input_stages=(FACIAL_STAGE,),
            combine=combine,
            reduce=_REDUCE_NAMES[rest[0]],
            softmax_weights=model == "model2",
        )
    variations = ("facial", "emotion", "combination", "separately")
    if model == "model3" and _known(rest, variations, ("dot", "weighted")):
        equation = rest[1] if len(rest) == 2 else "dot"
        separately = rest[0] == "separately"
        return AttentionSpec(
            input_stages=MODEL3_STAGES if separately else (),
            combine=equation,
            softmax_weights=True,
            stage_source="emotion" if separately else rest[0],
            stage_equation=equation,
        )
    raise ValueError(
        f"unknown variant {name!r}; expected vgg19, model1_/model2_ + all|averaging|conv "
        "[+ _concat|_dot|_weighted], or model3_ + facial|emotion|combination|separately "
        "[+ _dot|_weighted]"
    )


_REDUCE_WORDS = {"all": "all features", "averaging": "averaged features", "conv": "conv features"}
_SUFFIX_WORDS = {"concat": "concatenated", "dot": "Eq. 1", "weighted": "Eq. 2"}


def variant_label(name: str) -> str:
    """How the book's text names a variant: ``"VGG19"``, ``"Model 2 with averaged features"``,
    ``'Model 3 "separately"'``; a suffix is spelt out (``"model3_separately_weighted"``:
    ``'Model 3 "separately", Eq. 2'``). Raises ``ValueError`` for an unknown name, as
    :func:`variant_spec` does."""
    variant_spec(name)
    if name == "vgg19":
        return "VGG19"
    model, choice, *suffix = name.split("_")
    number = model.removeprefix("model")
    base = (
        f'Model 3 "{choice}"' if number == "3" else f"Model {number} with {_REDUCE_WORDS[choice]}"
    )
    return ", ".join([base, *(_SUFFIX_WORDS[s] for s in suffix)])


class FeatureAttentionNet(nn.Module):
    """The emotion network with facial-feature attention (Models 1-3; plain VGG19 without).

    Args:
        num_classes: emotion classes.
        spec: where and how attention acts (:class:`AttentionSpec`, :func:`variant_spec`).
        face_net: the trained face network (a :class:`SmallInputVGG`); frozen here (no
            gradients, always in eval mode). Needed when ``spec.face_stages()`` is not empty.
        width: channel multiplier of the emotion network (1 = VGG19).
        in_channels: image channels (1 for gray faces).
        dropout: before the emotion network's classifier.

    ``forward`` takes N x in_channels x 44 x 44 crops (32 to 63 pixels) and returns logits.
    """

    def __init__(
        self,
        num_classes: int,
        spec: AttentionSpec | None = None,
        face_net: SmallInputVGG | None = None,
        width: float = 1.0,
        in_channels: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.spec = spec = spec or AttentionSpec()
        if spec.face_stages() and face_net is None:
            raise ValueError(
                f"this variant reads face-network stages {spec.face_stages()}: pass face_net"
            )
        self.face = face_net.features if spec.face_stages() else None
        if self.face is not None:
            if self.face.in_channels != in_channels:
                raise ValueError(
                    f"face_net takes {self.face.in_channels} channels, images have {in_channels}"
                )
            self.face.requires_grad_(False).eval()
        self.input_heads = nn.ModuleDict(
            {
                str(stage): MapHead(
                    self.face.out_channels(stage), spec.reduce, spec.softmax_weights
                )
                for stage in spec.input_stages
            }
        )
        maps = sum(head.maps for head in self.input_heads.values())
        channels = in_channels
        if maps:
            channels = in_channels + maps if spec.combine == "concat" else in_channels * maps
        self.emotion = SmallInputVGG(
            num_classes, width=width, in_channels=channels, dropout=dropout
        )
        self.stage_heads = nn.ModuleDict()
        if spec.stage_source != "none":
            for stage in spec.stages:
                source = self._stage_channels(stage)
                self.stage_heads[str(stage)] = MapHead(source, spec.reduce, spec.softmax_weights)

    def _stage_channels(self, stage: int) -> int:
        """Channels of the features Model 3's map of ``stage`` is computed from."""
        emotion = self.emotion.features.out_channels(stage)
        if self.spec.stage_source == "emotion":
            return emotion
        facial = self.face.out_channels(stage)
        if facial != emotion and (
            self.spec.stage_source == "combination" or self.spec.reduce == "all"
        ):
            raise ValueError(
                f"stage {stage}: the face network has {facial} channels and the emotion "
                f"network {emotion}; build both with the same width"
            )
        return facial

    def train(self, mode: bool = True) -> FeatureAttentionNet:
        """Set the training mode; the frozen face network stays in eval mode."""
        super().train(mode)
        if self.face is not None:
            self.face.eval()
        return self

    def facial_features(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        """The face network's features of the stages this model reads (no gradients)."""
        stages = self.spec.face_stages()
        if not stages:
            return {}
        with torch.no_grad():
            return stage_outputs(self.face, images, stages, until=max(stages))[1]

    def input_maps(
        self, images: torch.Tensor, facial: dict[int, torch.Tensor] | None = None
    ) -> torch.Tensor | None:
        """The attention maps that meet the image (N x M x H x W), None if there are none."""
        if not self.spec.input_stages:
            return None
        facial = self.facial_features(images) if facial is None else facial
        size = images.shape[-2:]
        return torch.cat(
            [
                F.interpolate(
                    self.input_heads[str(s)](facial[s]),
                    size=size,
                    mode="bilinear",
                    align_corners=False,
                )
                for s in self.spec.input_stages
            ],
            dim=1,
        )

    def _stage_source(
        self, stage: int, features: torch.Tensor, facial: dict[int, torch.Tensor]
    ) -> torch.Tensor:
        """What Model 3's map of ``stage`` is computed from: facial, emotion or their product."""
        if self.spec.stage_source == "emotion":
            return features
        if self.spec.stage_source == "facial":
            return facial[stage]
        return facial[stage] * features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        facial = self.facial_features(images)
        maps = self.input_maps(images, facial)
        inputs = images if maps is None else combine_with_image(images, maps, self.spec.combine)
        modulate = None
        if self.stage_heads:

            def modulate(stage: int, features: torch.Tensor) -> torch.Tensor:
                stage_maps = self.stage_heads[str(stage)](
                    self._stage_source(stage, features, facial)
                )
                return apply_attention(features, stage_maps, self.spec.stage_equation)

        out, _ = stage_outputs(self.emotion.features, inputs, self.spec.stages, modulate)
        if out.shape[-2:] != (1, 1):
            raise ValueError(f"needs 32 to 63 pixel crops, got {tuple(images.shape[-2:])}")
        return self.emotion.classifier(self.emotion.dropout(out.flatten(1)))


class TenCropTask(Classification):
    """Cross-entropy classification scored on the mean logits of ten crops in eval mode.

    In training the batch is already cropped (``Augmentation(crop=44)``); in eval mode each
    48 x 48 image becomes its ten 44 x 44 crops (:func:`fernb.data.augment.ten_crop`) and
    the model's logits are averaged over them (the FER2013 VGG recipe's TenCrop testing).
    """

    def __init__(self, crop: int = CROP, label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing)
        self.crop = crop

    def forward(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        if model.training:
            return model(batch["image"])
        return ten_crop_predict(model, batch["image"], self.crop)


def paper_train_config(epochs: int, **overrides) -> TrainConfig:
    """Sec. 4.2's optimiser and schedule as a :class:`~fernb.train.TrainConfig`.

    SGD, lr 0.01, momentum 0.9, weight decay 5e-4, batch 128, lr x 0.1 after 50%, 75% and
    90% of ``epochs`` (rounded; coinciding milestones of very short runs are merged).
    ``overrides`` set any other field (``device``, ``seed``, ``batch_size``, ...).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    milestones = tuple(sorted({max(1, round(share * epochs)) for share in (0.5, 0.75, 0.9)}))
    settings = {
        "epochs": epochs,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "schedule": "multistep",
        "milestones": milestones,
        "gamma": 0.1,
    }
    return TrainConfig(**(settings | overrides))


@dataclass(frozen=True)
class Preset:
    """Sizes of a run of this chapter's notebooks.

    Attributes:
        width: channel multiplier of both networks (1 = VGG19).
        epochs: emotion-network epochs (the paper: 150 to 300).
        face_epochs: face-network epochs (not stated in the paper).
        batch_size: training batch (the paper: 128; 16 for Model 3 for want of memory).
        eval_batch_size: images per evaluation step (each is ten crops).
        face_images: at most this many training faces of the emotion dataset for the face
            network (:func:`face_training_data` adds the negatives).
        synthetic_subjects: people of the SynthFACS stand-in data (``dataset="synthetic"``).
    """

    width: float
    epochs: int
    face_epochs: int
    batch_size: int
    eval_batch_size: int
    face_images: int
    synthetic_subjects: int


# fmt: off
#: ``default``: seconds on a CPU, synthetic data. ``cpu``: a real run on CK+48 in minutes on
#: a CPU. ``paper``: VGG19 at full width, Sec. 4.2's settings (250 epochs), for a GPU.
PRESETS: dict[str, Preset] = {
    "default": Preset(width=1 / 16, epochs=3, face_epochs=2, batch_size=32, eval_batch_size=64,
                      face_images=70, synthetic_subjects=12),
    "cpu": Preset(width=1 / 8, epochs=20, face_epochs=6, batch_size=32, eval_batch_size=64,
                  face_images=600, synthetic_subjects=60),
    "paper": Preset(width=1.0, epochs=250, face_epochs=30, batch_size=128, eval_batch_size=256,
                    face_images=12000, synthetic_subjects=400),
}
# fmt: on


def save_face_network(
    model: SmallInputVGG, path: Path | str, made_from: Mapping[str, object] | None = None
) -> Path:
    """Save a face network's weights, its width and ``made_from`` (what trained it: plain
    values) to ``path`` (a ``.pt`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = {"width": model.features.width, "state": model.state_dict()}
    torch.save({**saved, "made_from": dict(made_from or {})}, path)
    return path


def load_face_network(
    path: Path | str, made_from: Mapping[str, object] | None = None
) -> SmallInputVGG:
    """A face network saved by :func:`save_face_network` (2 classes, gray input).

    With ``made_from``, the file must have been saved with the same values for those keys:
    else :class:`ValueError` names the file and the values that differ.
    """
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if made_from is not None:
        stored = saved.get("made_from", {})
        differ = {key: stored.get(key) for key in made_from if stored.get(key) != made_from[key]}
        if differ:
            wanted = {key: made_from[key] for key in differ}
            raise ValueError(
                f"{path}: a face network made with {differ} (None: not saved), not {wanted}; "
                "train one for this run (another face_checkpoint path)"
            )
    model = SmallInputVGG(num_classes=2, width=saved["width"], in_channels=1)
    model.load_state_dict(saved["state"])
    return model


#: FER2013's seven classes, in its label order; SynthFACS stand-in data draws these.
FER2013_CLASSES: tuple[str, ...] = (
    "anger",
    "disgust",
    "fear",
    "happiness",
    "sadness",
    "surprise",
    "neutral",
)


@dataclass
class EmotionData:
    """An emotion dataset with the positions of its train, val and test images.

    ``protocol`` says in words how the split was made (it goes into the run records).
    """

    data: FaceData
    splits: dict[str, np.ndarray]
    protocol: str

    def tensors(self, split: str) -> Batch:
        """One split as ``fernb.train`` wants it (``image`` uint8, ``label``)."""
        return tensors(self.data, self.splits[split])

    def counts(self) -> pd.DataFrame:
        """Images per class (rows) and split (columns)."""
        return pd.DataFrame(
            {
                name: np.bincount(self.data.labels[index], minlength=len(self.data.classes))
                for name, index in self.splits.items()
            },
            index=pd.Index(self.data.classes, name="class"),
        )


def emotion_data(
    dataset: str, data_root: Path | str | None, preset: Preset, seed: int = 0
) -> EmotionData:
    """Load ``dataset`` and split it for selection on val and a single report on test.

    FER2013 keeps its official split: Training, PublicTest (val: the model is selected on
    it) and PrivateTest (test). A dataset without one is split by subject: 20% of the
    people for test, 20% of the rest for val (:func:`fernb.data.splits.holdout_subjects`).
    ``"synthetic"`` is SynthFACS with FER2013's seven classes, 14 images per person and
    ``preset.synthetic_subjects`` people (``data_root`` is then its cache folder).
    """
    if dataset == "synthetic":
        data = load(
            "synthetic",
            data_root,
            n_subjects=preset.synthetic_subjects,
            samples_per_subject=2 * len(FER2013_CLASSES),
            classes=FER2013_CLASSES,
        )
    else:
        data = load(dataset, data_root)
    if data.channels != 1:
        raise ValueError(f"this chapter's networks take gray faces; {dataset} is RGB")
    if (data.split != "").any():
        splits = official_split(data)
        protocol = "official split: train / val (selection) / test (reported)"
        if dataset == "fer2013":
            protocol = "FER2013 Training / PublicTest (selection) / PrivateTest (reported)"
        return EmotionData(data, splits, protocol)
    train_val, test = holdout_subjects(data, np.arange(len(data)), fraction=0.2, seed=seed)
    train, val = holdout_subjects(data, train_val, fraction=0.2, seed=seed)
    protocol = "subject hold-out: 20% of subjects test, 20% of the rest val (selection)"
    return EmotionData(data, {"train": train, "val": val, "test": test}, protocol)


def face_training_data(
    emotion: EmotionData, preset: Preset, synthetic_faces: int = 0, seed: int = 0
) -> FaceNonFace:
    """The face-network data for ``emotion``: its training faces as positives.

    Up to ``preset.face_images`` training faces of the emotion dataset (never its val or
    test faces), plus ``synthetic_faces`` SynthFACS faces (drawn from other people than the
    synthetic emotion data, seed 1) and the LFW faces; as negatives the LFW non-faces and
    half as many natural patches and textures each as there are positives, so the two
    classes are about balanced (:func:`fernb.data.face_nonface.make_face_nonface`).
    """
    rng = np.random.default_rng(seed)
    train = emotion.splits["train"]
    chosen = rng.choice(train, size=min(preset.face_images, len(train)), replace=False)
    faces = {emotion.data.name: emotion.data.images[np.sort(chosen)]}
    if synthetic_faces:
        people = -(-synthetic_faces // len(FER2013_CLASSES))
        extra = load("synthetic", n_subjects=people, samples_per_subject=7, seed=1)
        faces["synthetic-extra"] = extra.images[:synthetic_faces]
    positives = sum(map(len, faces.values())) + 100
    return make_face_nonface(faces, positives // 2, positives // 2, size=48, seed=seed)


def face_network(
    face_data: Callable[[], FaceNonFace],
    preset: Preset,
    checkpoint: Path | str | None = None,
    made_from: Mapping[str, object] | None = None,
    **config,
) -> tuple[SmallInputVGG, FitResult | None]:
    """The face network: loaded from ``checkpoint`` if that file exists, else trained.

    Training: ``face_data()``'s train split, random 44 x 44 crops and flips, Sec. 4.2's
    schedule over ``preset.face_epochs`` (``config`` overrides :func:`paper_train_config`),
    selection on its val split; the trained network is saved to ``checkpoint`` if given.
    The checkpoint keeps ``made_from`` (what chose the face data: the dataset, its options),
    the width, the face epochs and the seed, and only a checkpoint made with the same is
    loaded (:func:`load_face_network`): one trained on another seed's split may have seen
    this run's test people. Returns the network (eval mode) and the
    :class:`~fernb.train.FitResult` (None if loaded).
    """
    made_from = {
        **(made_from or {}),
        "width": preset.width,
        "face_epochs": preset.face_epochs,
        "seed": config.get("seed"),
    }
    if checkpoint is not None and Path(checkpoint).is_file():
        return load_face_network(checkpoint, made_from).eval(), None
    data = face_data()
    settings = {"epochs": preset.face_epochs, "batch_size": preset.batch_size}
    settings |= {"eval_batch_size": preset.eval_batch_size} | config
    train_config = paper_train_config(**settings)
    result = fit(
        SmallInputVGG(num_classes=2, width=preset.width, in_channels=1),
        images_on(data.tensors("train"), train_config.device),
        images_on(data.tensors("val"), train_config.device),
        TenCropTask(),
        train_config,
        Augmentation(crop=CROP),
    )
    if checkpoint is not None:
        save_face_network(result.model, checkpoint, made_from)
    return result.model.eval(), result


def images_on(split: Batch, device: torch.device | str) -> Batch:
    """``split`` with its images moved to ``device`` (the data stays there; batches are index
    slices of it). The other entries stay on the CPU, where :func:`fernb.train.evaluate`
    reads the targets."""
    return {**split, "image": split["image"].to(choose_device(str(device)))}


def face_metrics(face_net: nn.Module, faces: FaceNonFace, split: str = "test") -> dict:
    """Ten-crop accuracy of the face network on a split of ``faces``, overall and per source."""
    device = next(face_net.parameters()).device
    scores = evaluate(face_net, images_on(faces.tensors(split), device), TenCropTask())
    correct = scores.scores.argmax(axis=1) == scores.targets
    sources = faces.sources[faces.split == split]
    per_source = {name: float(correct[sources == name].mean()) for name in np.unique(sources)}
    return {"accuracy": float(correct.mean()), "per_source": per_source}


def smoke_test(emotion: EmotionData, preset: Preset) -> tuple[EmotionData, Preset]:
    """The data and preset of a smoke run: does a preset start on this data? No result.

    Keeps one training batch (the first ``preset.batch_size`` training images) and up to 32
    validation and test images, one epoch of each network and ``preset.batch_size`` faces
    for the face network; widths and everything else stay as in ``preset``.
    """
    sizes = {"train": preset.batch_size, "val": 32, "test": 32}
    splits = {name: index[: sizes[name]] for name, index in emotion.splits.items()}
    small = replace(preset, epochs=1, face_epochs=1, face_images=preset.batch_size)
    return EmotionData(emotion.data, splits, f"smoke test of: {emotion.protocol}"), small


@dataclass
class VariantResult:
    """A trained variant: its training, its test scores and, if tracked, its test curve.

    Attributes:
        variant: the :func:`variant_spec` name.
        fit: what :func:`fernb.train.fit` returned (the val-selected model in ``fit.model``).
        test: the val-selected model on the test split (ten-crop averaged).
        test_curve: test accuracy after every epoch (``None`` unless tracked). Its maximum
            is the test-selected number of public FER2013 codes, an optimistic figure.
    """

    variant: str
    fit: FitResult
    test: EvalResult
    test_curve: EpochScores | None = None

    def summary(self) -> dict:
        """One table row: the variant's switches, selected epoch, val and test accuracy."""
        spec = self.fit.model.spec
        row = {
            "variant": self.variant,
            "input maps": f"{spec.reduce}, {spec.combine}" if spec.input_stages else "-",
            "stage maps": f"{spec.stage_source}, {spec.stage_equation}"
            if spec.stage_source != "none"
            else "-",
            "softmax weights": spec.softmax_weights,
            "val-selected epoch": self.fit.best_epoch,
            "val accuracy": self.fit.best_metrics["accuracy"],
            "test accuracy": self.test.metrics["accuracy"],
            "wall time (s)": self.fit.wall_time_s,
        }
        if self.test_curve is not None:
            row["test accuracy, test-selected"] = self.test_selected()[1]
        return row

    def test_selected(self) -> tuple[int, float]:
        """(epoch, accuracy) of the best test accuracy over training (test-set selection)."""
        if self.test_curve is None:
            raise ValueError("the test curve was not tracked (train_variant(track_test=True))")
        return self.test_curve.best()


def train_variant(
    variant: str,
    emotion: EmotionData,
    face_net: SmallInputVGG | None,
    preset: Preset,
    track_test: bool = False,
    **config,
) -> VariantResult:
    """Train one variant (:func:`variant_spec`) on ``emotion``, select it on val, test it.

    ``config`` overrides :func:`paper_train_config` (epochs default to ``preset.epochs``).
    With ``track_test`` the test split is also scored after every epoch, for the
    test-selected number that public FER2013 codes report; selection itself stays on val.
    """
    model = FeatureAttentionNet(
        len(emotion.data.classes), variant_spec(variant), face_net, width=preset.width
    )
    settings = {"epochs": preset.epochs, "batch_size": preset.batch_size}
    settings |= {"eval_batch_size": preset.eval_batch_size} | config
    train_config = paper_train_config(**settings)
    train, val, test = (
        images_on(emotion.tensors(name), train_config.device) for name in ("train", "val", "test")
    )
    task = TenCropTask()
    curve = None
    if track_test:
        curve = EpochScores(
            model, test, task, batch_size=train_config.eval_batch_size, amp=train_config.amp
        )
    result = fit(model, train, val, task, train_config, Augmentation(crop=CROP), on_epoch_end=curve)
    tested = evaluate(result.model, test, task, train_config.eval_batch_size, amp=train_config.amp)
    return VariantResult(variant, result, tested, curve)


def variant_records(
    run: VariantResult,
    emotion: EmotionData,
    seed: int,
    device: str,
    experiment: str = "models",
) -> list[RunRecord]:
    """Run records of a trained variant: val-selected, plus test-selected if tracked.

    The val-selected record holds :func:`~fernb.metrics.expression_metrics` of the test
    split (with its confusion matrix), ``val_accuracy`` and the selected ``epoch``; the
    test-selected one only the best test ``accuracy`` over training (its epoch as
    ``epoch``), since its confusion matrix is that of another model.
    """
    common = {
        "paper": "feature_attention",
        "experiment": experiment,
        "variant": run.variant,
        **data_fields(emotion.data),
        "protocol": emotion.protocol,
        "fold": None,
        "seed": seed,
        "epochs": len(run.fit.history),
        "device": device,
        "wall_time_s": run.fit.wall_time_s,
    }
    predicted = run.test.scores.argmax(axis=1)
    metrics = expression_metrics(run.test.targets, predicted, emotion.data.classes)
    metrics |= {"val_accuracy": run.fit.best_metrics["accuracy"], "best_epoch": run.fit.best_epoch}
    records = [RunRecord(**common, selection="val", metrics=metrics)]
    if run.test_curve is not None:
        epoch, accuracy = run.test_selected()
        test_metrics = {"accuracy": accuracy, "best_epoch": epoch}
        records.append(RunRecord(**common, selection="test", metrics=test_metrics))
    return records
