"""VGG16 and VGG19 as five named stages, so that models can act between them.

Simonyan and Zisserman's VGG (arXiv 1409.1556; configurations D = VGG16 and E = VGG19)
stacks 3 x 3 convolutions (padding 1) with ReLUs, optionally batch normalisation after
each convolution, and a 2 x 2 max-pool after each group. Here each group is a stage,
``stages["stage1"]`` to ``stages["stage5"]``, and each stage ends in its max-pool, so
``stage[:-1]`` is the stage without its pool. The papers use them as follows:

- E2-Capsnet (Cao et al.): VGG16 stages 1-5 give 512 x 7 x 7 maps at 224 x 224; the
  AU-attention branch is added to the stage-3 and stage-4 convolution outputs before
  their pools (``stage[:-1]``, then ``stage[-1]``). The paper says VGG16; the released
  code builds it with batch norm (``batch_norm=True``), trained from scratch.
- Li et al. (attention CNN with LBP): "the first 10 layers of VGG-16" in both streams,
  with batch norm after each layer: :meth:`StagedVGG.conv_layers` (10), conv1_1 to
  conv4_3 with the first three pools (1/8 of the input resolution, CSRNet's front end).
- Meen et al. (FER2013 baseline, "VGG19" on 44 x 44 crops): :class:`SmallInputVGG`.

Module order inside the stages is torchvision's ``features`` order, so torchvision's
ImageNet checkpoints load by position (:meth:`StagedVGG.load_imagenet_weights`), and only
from a file already in the torch hub cache: fernb never downloads weights.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights, VGG19_BN_Weights, VGG19_Weights

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "STAGE_NAMES",
    "VGG_STAGES",
    "ImageNetNormalisation",
    "SmallInputVGG",
    "StagedVGG",
    "imagenet_weights_path",
    "scaled_channels",
]

#: Output channels of each convolution, stage by stage (VGG configurations D and E).
VGG_STAGES: dict[int, tuple[tuple[int, ...], ...]] = {
    16: ((64, 64), (128, 128), (256,) * 3, (512,) * 3, (512,) * 3),
    19: ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4),
}
STAGE_NAMES: tuple[str, ...] = ("stage1", "stage2", "stage3", "stage4", "stage5")

_IMAGENET_WEIGHTS = {
    (16, False): VGG16_Weights.IMAGENET1K_V1,
    (16, True): VGG16_BN_Weights.IMAGENET1K_V1,
    (19, False): VGG19_Weights.IMAGENET1K_V1,
    (19, True): VGG19_BN_Weights.IMAGENET1K_V1,
}


#: The RGB channel statistics of the images torchvision's ImageNet weights were trained on
#: (pixels in [0, 1]).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class ImageNetNormalisation(nn.Module):
    """``(x - mean_c) / std_c`` per channel: the input that ImageNet weights expect.

    Images in [0, 1]. RGB uses :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`; a gray image
    (``channels=1``) their averages, 0.449 and 0.226, which for the summed first kernel of
    :meth:`StagedVGG.load_imagenet_weights` is close to the RGB network on (x, x, x) (the
    three channels' statistics differ by at most 0.08 and 0.005).
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        if channels not in (1, 3):
            raise ValueError(f"ImageNet statistics fit 1 or 3 channels, got {channels}")
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        if channels == 1:
            mean, std = mean.mean(dim=0, keepdim=True), std.mean(dim=0, keepdim=True)
        self.register_buffer("mean", mean.view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, channels, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std


def scaled_channels(channels: int, width: float) -> int:
    """``round(channels * width)``, at least 1: layer widths of a slimmed network."""
    return max(1, round(channels * width))


def imagenet_weights_path(depth: int, batch_norm: bool) -> Path:
    """Where torchvision's ImageNet checkpoint of this VGG must be for fernb to load it.

    ``torch.hub.get_dir()/checkpoints/<file>``, the cache that
    ``torchvision.models.vgg16(weights=...)`` fills (e.g. ``vgg16-397923af.pth``).
    """
    url = _IMAGENET_WEIGHTS[_check_depth(depth), batch_norm].url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


class StagedVGG(nn.Module):
    """The convolutional part of VGG16 or VGG19, as five named stages.

    Args:
        depth: 16 or 19.
        batch_norm: BatchNorm2d after every convolution (torchvision's ``vgg16_bn``).
        width: channel multiplier for small runs; every layer keeps at least one channel.
        in_channels: 3 for RGB, 1 for gray images.
        imagenet: load torchvision's ImageNet weights (see :meth:`load_imagenet_weights`).

    Weights start as in torchvision: Kaiming-normal convolutions (fan-out), zero biases,
    unit BN scales.
    """

    def __init__(
        self,
        depth: int = 16,
        batch_norm: bool = False,
        width: float = 1.0,
        in_channels: int = 3,
        imagenet: bool = False,
    ) -> None:
        super().__init__()
        self.depth = _check_depth(depth)
        self.batch_norm = batch_norm
        self.width = width
        self.in_channels = in_channels
        self.stages = nn.ModuleDict()
        channels = in_channels
        for name, widths in zip(STAGE_NAMES, VGG_STAGES[depth], strict=True):
            scaled = [scaled_channels(c, width) for c in widths]
            self.stages[name] = _stage(channels, scaled, batch_norm)
            channels = scaled[-1]
        self.apply(_init_weights)
        if imagenet:
            self.load_imagenet_weights()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The stage-5 output (N x C5 x H/32 x W/32)."""
        for stage in self.stages.values():
            x = stage(x)
        return x

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five stage outputs, each after its pool (stage k: H / 2^k x W / 2^k)."""
        outputs = []
        for stage in self.stages.values():
            x = stage(x)
            outputs.append(x)
        return outputs

    def out_channels(self, stage: int) -> int:
        """Number of channels that stage 1 to 5 outputs."""
        if stage not in range(1, 6):
            raise ValueError(f"stage must be 1 to 5, got {stage}")
        return scaled_channels(VGG_STAGES[self.depth][stage - 1][-1], self.width)

    def conv_layers(self, n: int) -> nn.Sequential:
        """The first ``n`` convolutions with their BN and ReLU layers and the pools between.

        The pool that follows the n-th convolution is left out: ``conv_layers(10)`` of VGG16
        is conv1_1 to conv4_3 with three pools (stride 8). The Sequential shares its layers,
        and so its weights, with this model.
        """
        total = sum(map(len, VGG_STAGES[self.depth]))
        if not 1 <= n <= total:
            raise ValueError(f"VGG{self.depth} has 1 to {total} conv layers, got n={n}")
        layers: list[nn.Module] = []
        convs = 0
        for layer in self._layers():
            if convs == n and isinstance(layer, nn.Conv2d | nn.MaxPool2d):
                break
            convs += isinstance(layer, nn.Conv2d)
            layers.append(layer)
        return nn.Sequential(*layers)

    def load_imagenet_weights(self) -> None:
        """Copy torchvision's ImageNet ``features`` weights into the stages.

        The checkpoint must already be at :func:`imagenet_weights_path` (nothing is
        downloaded); its classifier is ignored. With ``in_channels=1`` the first
        convolution gets the sum of its RGB kernels, so a gray image x gives what the RGB
        network gives on (x, x, x) (the same normalisation in all three channels).
        """
        if self.width != 1 or self.in_channels not in (1, 3):
            raise ValueError(
                "ImageNet weights fit width 1 and 1 or 3 input channels only, got "
                f"width={self.width}, in_channels={self.in_channels}"
            )
        path = imagenet_weights_path(self.depth, self.batch_norm)
        if not path.is_file():
            weights = _IMAGENET_WEIGHTS[self.depth, self.batch_norm]
            raise FileNotFoundError(
                f"ImageNet weights of VGG{self.depth}{'-BN' if self.batch_norm else ''} "
                f"not found at {path}; fernb never downloads weights: put {weights.url} "
                "there (or point TORCH_HOME to a hub cache that holds it)"
            )
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        names = self._layer_names()
        state = {}
        for key, value in checkpoint.items():
            part, index, parameter = key.split(".", 2)
            if part == "features":
                state[f"{names[int(index)]}.{parameter}"] = value
        first_conv = f"{names[0]}.weight"
        if self.in_channels == 1:
            state[first_conv] = state[first_conv].sum(dim=1, keepdim=True)
        self.load_state_dict(state)

    def _layers(self) -> list[nn.Module]:
        return [layer for stage in self.stages.values() for layer in stage]

    def _layer_names(self) -> list[str]:
        """``stages.stageK.i`` of every layer, in torchvision's ``features`` order."""
        return [
            f"stages.{name}.{i}" for name, stage in self.stages.items() for i in range(len(stage))
        ]


class SmallInputVGG(nn.Module):
    """VGG for small face crops: conv stages, dropout, one linear layer.

    The FER2013 VGG19 of the common public codes (WuJie1010's, the closest public code to
    Meen et al.'s baseline, which the paper does not detail): batch norm after every
    convolution, 44 x 44 crops pooled five times to 1 x 1 x 512, dropout 0.5 and
    ``Linear(512, num_classes)``. Inputs of 32 to 63 pixels end at 1 x 1; others are
    refused. Those codes replicate gray images to 3 channels; pass ``in_channels=1`` to
    feed them as they are. Their no-op ``AvgPool2d(1, 1)`` is left out, and their
    convolutions start from PyTorch's default initialisation, these from torchvision's.
    """

    def __init__(
        self,
        num_classes: int = 7,
        depth: int = 19,
        batch_norm: bool = True,
        width: float = 1.0,
        in_channels: int = 3,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = StagedVGG(depth, batch_norm, width, in_channels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.features.out_channels(5), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (N x num_classes) of N x C x H x W crops, 32 <= H, W < 64."""
        features = self.features(x)
        if features.shape[-2:] != (1, 1):
            raise ValueError(
                f"SmallInputVGG needs 32 to 63 pixel inputs, got {tuple(x.shape[-2:])}"
            )
        return self.classifier(self.dropout(features.flatten(1)))


def _check_depth(depth: int) -> int:
    if depth not in VGG_STAGES:
        raise ValueError(f"depth must be one of {sorted(VGG_STAGES)}, got {depth}")
    return depth


def _stage(in_channels: int, widths: list[int], batch_norm: bool) -> nn.Sequential:
    """Conv 3 x 3 (+ BN) + ReLU per width, then a 2 x 2 max-pool."""
    layers: list[nn.Module] = []
    for out_channels in widths:
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
