"""VGG-16 with BatchNorm as used on CIFAR, written without torchvision.

Thirteen ``3x3 conv -> BatchNorm -> ReLU`` layers in five stages of 2, 2, 3, 3 and 3 layers,
each stage ending in a 2x2 max-pool, then one linear head. The stages have ``width``,
``2 * width``, ``4 * width``, ``8 * width`` and ``8 * width`` channels; convolutions keep their
bias. A 32x32 image leaves the fifth pool at 1x1, so the head reads ``8 * width`` features;
larger images are averaged down to 1x1 first. Images smaller than 32x32 would vanish in the
pools and are refused. With the defaults and CIFAR-10 (3x32x32, 10 classes) the model has
14,728,266 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ._common import ImageClassifier, positive_int

__all__ = ["VGG", "vgg16_bn"]

# Channels per conv layer as multiples of ``width``; "M" is a 2x2 max-pool.
VGG16 = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")
MIN_SIZE = 32  # five halvings


class VGG(ImageClassifier):
    """A plain stack of conv-BN-ReLU layers and max-pools, then a linear head.

    Args:
        image_shape: ``(C, H, W)`` with ``H, W >= 32``.
        num_classes: K.
        width: channels of the first stage (64 in the paper).
        layout: channel multiples and ``"M"`` pools (default: VGG-16).
        name: the architecture's name in error messages.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int = 64,
        layout: tuple[int | str, ...] = VGG16,
        name: str = "vgg16_bn",
    ):
        super().__init__(name, image_shape, min_size=MIN_SIZE)
        width = positive_int(width, f"{name} width", "width=64")
        c, h, w = self.image_shape
        if min(h, w) < MIN_SIZE:
            raise ConfigError(
                f"{name} halves the image five times and needs images of at least "
                f"{MIN_SIZE}x{MIN_SIZE}, got {h}x{w}; use resnet18, wrn28_10 or cnn_small for "
                "smaller images"
            )
        layers: list[nn.Module] = []
        in_ch = c
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out_ch = width * int(item)
            layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU()]
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._images(x)
        return self.head(self.pool(self.features(x)))


def vgg16_bn(image_shape: tuple[int, int, int], num_classes: int, *, width: int = 64) -> VGG:
    """VGG-16 with BatchNorm (13 conv layers, 5 max-pools, one linear head)."""
    return VGG(image_shape, num_classes, width=width, layout=VGG16, name="vgg16_bn")
