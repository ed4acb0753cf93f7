"""A plain CNN: the "how hard is this dataset" yardstick of the data chapter.

Three blocks of (conv 3 x 3, batch norm, ReLU) x 2 and 2 x 2 max-pooling, global average
pooling, dropout and a linear classifier. It is deliberately small (about 73 k parameters
at ``width=16``) so that it trains in seconds on a CPU; it is not any paper's model.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN"]


def _block(in_channels: int, out_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers += [
            nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class SmallCNN(nn.Module):
    """Plain CNN classifier for small gray faces.

    Args:
        num_classes: outputs (logits).
        in_channels: 1 for gray images, 3 for RGB.
        width: channels of the first block; the next two have 2x and 4x as many.
        dropout: dropout before the classifier.
    """

    def __init__(
        self, num_classes: int, in_channels: int = 1, width: int = 16, dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(in_channels, width), _block(width, 2 * width), _block(2 * width, 4 * width)
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(4 * width, num_classes),
        )

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N x 4 width), for t-SNE."""
        return self.head[:2](self.features(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
