"""The plain CNN baseline."""

from __future__ import annotations

import torch

from fernb.models.baseline import SmallCNN


def test_small_cnn_shapes_and_parameter_count() -> None:
    model = SmallCNN(num_classes=8, width=16)
    # conv weights 9*(1*16 + 16*16 + 16*32 + 32*32 + 32*64 + 64*64), BN 2 per channel,
    # linear 64*8 + 8
    convs = 9 * (16 + 256 + 512 + 1024 + 2048 + 4096)
    norms = 2 * (16 + 16 + 32 + 32 + 64 + 64)
    assert sum(p.numel() for p in model.parameters()) == convs + norms + 64 * 8 + 8
    images = torch.rand(5, 1, 48, 48)
    assert model(images).shape == (5, 8)
    assert model.embed(images).shape == (5, 64)


def test_small_cnn_takes_rgb_and_any_size() -> None:
    model = SmallCNN(num_classes=7, in_channels=3, width=8).eval()
    assert model(torch.rand(2, 3, 100, 100)).shape == (2, 7)
    logits = model(torch.rand(2, 3, 40, 40))
    features = model.embed(torch.rand(2, 3, 40, 40))
    assert logits.shape == (2, 7) and features.shape == (2, 32)
