"""The two small reference models: an MLP for vectors and a two-layer CNN for small images."""

from __future__ import annotations

import torch
from torch import nn

from ._common import positive_ints

__all__ = ["MLP", "SmallCNN"]


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU`` blocks and a linear head."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        hidden = positive_ints(hidden, "mlp hidden sizes", "hidden=(256, 256)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (16, 32 channels), 2x2 max-pooling, and a linear head."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 16):
        super().__init__()
        (width,) = positive_ints((width,), "cnn_small width", "width=16")
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * (h // 2) * (w // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flattened images
            x = x.view(x.shape[0], *self.image_shape)
        return self.head(self.features(x))
