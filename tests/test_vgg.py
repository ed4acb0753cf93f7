"""Staged VGG: torchvision parity, stage shapes, ImageNet loading, gray input, width."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.vgg import cfgs, make_layers
from torchvision.transforms import Normalize

from fernb.nn.vgg import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageNetNormalisation,
    SmallInputVGG,
    StagedVGG,
    imagenet_weights_path,
)

TORCHVISION_VGG = {
    (16, False): torchvision.models.vgg16,
    (16, True): torchvision.models.vgg16_bn,
    (19, False): torchvision.models.vgg19,
    (19, True): torchvision.models.vgg19_bn,
}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache for the test."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def _torchvision_features(depth: int, batch_norm: bool, hub: Path) -> nn.Sequential:
    """Random torchvision VGG features (BN statistics perturbed), saved where fernb looks."""
    torch.manual_seed(depth + batch_norm)
    features = make_layers(cfgs["D" if depth == 16 else "E"], batch_norm)
    for layer in features:
        if isinstance(layer, nn.BatchNorm2d):
            layer.running_mean.normal_()
            layer.running_var.uniform_(0.5, 2.0)
            layer.weight.data.uniform_(0.5, 1.5)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # the classifier is ignored
    path = imagenet_weights_path(depth, batch_norm)
    assert path.parent == hub / "checkpoints"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return features.eval()


@pytest.mark.parametrize(("depth", "batch_norm"), list(TORCHVISION_VGG))
def test_parameter_count_equals_torchvision_features(depth: int, batch_norm: bool) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        reference = TORCHVISION_VGG[depth, batch_norm](weights=None)
        model = StagedVGG(depth, batch_norm)
    assert _count(model) == _count(reference.features)
    assert [tuple(p.shape) for p in model.parameters()] == [
        tuple(p.shape) for p in reference.features.parameters()
    ]


@pytest.mark.parametrize(("size", "sides"), [(224, [112, 56, 28, 14, 7]), (48, [24, 12, 6, 3, 1])])
def test_stage_output_shapes(size: int, sides: list[int]) -> None:
    model = StagedVGG(19, batch_norm=True, width=0.125).eval()
    outputs = model.forward_stages(torch.rand(2, 3, size, size))
    expected = [(2, model.out_channels(k), s, s) for k, s in enumerate(sides, start=1)]
    assert [tuple(o.shape) for o in outputs] == expected
    assert [model.out_channels(k) for k in range(1, 6)] == [8, 16, 32, 64, 64]


def test_stage_by_stage_forward_equals_the_full_forward() -> None:
    model = StagedVGG(16, batch_norm=True, width=0.25).eval()
    x = torch.rand(2, 3, 64, 64)
    y = x
    for name in ("stage1", "stage2", "stage3", "stage4", "stage5"):
        stage = model.stages[name]
        y = stage[-1](stage[:-1](y))  # the stage without its pool, then the pool
    torch.testing.assert_close(model.forward_stages(x)[-1], model(x), rtol=0, atol=0)
    torch.testing.assert_close(y, model(x), rtol=0, atol=0)


@pytest.mark.parametrize(("depth", "batch_norm"), [(16, False), (19, True)])
def test_imagenet_checkpoint_reproduces_torchvision(
    depth: int, batch_norm: bool, hub_dir: Path
) -> None:
    reference = _torchvision_features(depth, batch_norm, hub_dir)
    model = StagedVGG(depth, batch_norm, imagenet=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize("channels", [3, 1])
def test_imagenet_normalisation_matches_torchvision(channels: int) -> None:
    images = torch.rand(2, channels, 5, 5)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    if channels == 1:  # the channel averages
        mean, std = mean.mean(dim=0, keepdim=True), std.mean(dim=0, keepdim=True)
    expected = Normalize(mean.tolist(), std.tolist())(images)
    torch.testing.assert_close(ImageNetNormalisation(channels)(images), expected)
    assert ImageNetNormalisation(channels).state_dict() == {}  # checkpoints stay as they were
    with pytest.raises(ValueError, match="1 or 3 channels"):
        ImageNetNormalisation(2)


def test_missing_weights_error_names_the_expected_path(hub_dir: Path) -> None:
    expected = hub_dir / "checkpoints" / "vgg16_bn-6c64b313.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(expected))):
        StagedVGG(16, batch_norm=True, imagenet=True)


def test_imagenet_weights_need_full_width(hub_dir: Path) -> None:
    with pytest.raises(ValueError, match="width 1"):
        StagedVGG(16, width=0.5, imagenet=True)


def test_gray_input_sums_the_rgb_kernels(hub_dir: Path) -> None:
    _torchvision_features(16, False, hub_dir)
    rgb = StagedVGG(16, imagenet=True).eval()
    gray = StagedVGG(16, in_channels=1, imagenet=True).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(gray(x), rgb(x.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-5)


def test_width_multiplier_scales_channels_and_keeps_one() -> None:
    half = StagedVGG(16, width=0.5)
    assert [half.out_channels(k) for k in range(1, 6)] == [32, 64, 128, 256, 256]
    assert _count(half) < _count(StagedVGG(16)) / 3
    tiny = StagedVGG(16, width=1e-3)
    assert {tiny.out_channels(k) for k in range(1, 6)} == {1}


def test_first_ten_conv_layers_are_vgg16_up_to_conv4_3() -> None:
    model = StagedVGG(16, batch_norm=True, width=0.25)
    front = model.conv_layers(10)
    assert sum(isinstance(m, nn.Conv2d) for m in front) == 10
    assert sum(isinstance(m, nn.MaxPool2d) for m in front) == 3
    assert isinstance(front[-1], nn.ReLU)
    assert front[0] is model.stages["stage1"][0]  # shared weights
    assert front(torch.rand(1, 3, 64, 64)).shape == (1, 128, 8, 8)
    all_layers = sum(len(stage) for stage in model.stages.values())
    assert len(model.conv_layers(13)) == all_layers - 1  # all but the last pool
    with pytest.raises(ValueError, match="1 to 13"):
        model.conv_layers(14)


def test_small_input_vgg19_classifies_44_pixel_crops() -> None:
    model = SmallInputVGG(num_classes=7, width=0.25).eval()
    assert model.classifier.in_features == 128
    assert model(torch.rand(3, 3, 44, 44)).shape == (3, 7)
    with pytest.raises(ValueError, match="32 to 63"):
        model(torch.rand(1, 3, 96, 96))


def test_full_small_input_vgg19_size_matches_the_fer2013_code() -> None:
    with torch.device("meta"):
        conv = _count(torchvision.models.vgg19_bn(weights=None).features)
        model = SmallInputVGG()
    assert _count(model) == conv + 512 * 7 + 7
