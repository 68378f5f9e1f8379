"""Wide ResNet (pre-activation) as used on CIFAR, written without torchvision.

A 3x3 stem convolution with 16 channels, then three groups of ``(depth - 4) / 6``
pre-activation blocks with ``16 * widen``, ``32 * widen`` and ``64 * widen`` channels (the
second and third groups halve the image), a final BatchNorm and ReLU, global average pooling
and a linear head. Each block is ``BN -> ReLU -> conv3x3 -> BN -> ReLU -> dropout -> conv3x3``
plus a shortcut: the identity when the shape is kept, else a strided 1x1 convolution applied
to the block's pre-activated input. Convolutions have no bias. WRN-28-10 on CIFAR-10
(3x32x32, 10 classes) has 36,479,194 parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._common import ImageClassifier, positive_int, unit_fraction

__all__ = ["WideBlock", "WideResNet", "wrn28_10"]


class WideBlock(nn.Module):
    """One pre-activation block of a Wide ResNet."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.shortcut = (
            None
            if stride == 1 and in_ch == out_ch
            else nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.drop(F.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(pre))


class WideResNet(ImageClassifier):
    """WRN-``depth``-``widen`` with optional dropout inside the blocks.

    Args:
        image_shape: ``(C, H, W)`` of the inputs.
        num_classes: K.
        depth: total depth, ``6 n + 4`` for ``n >= 1`` blocks per group (28 in the paper).
        widen: the widening factor k (10 in the paper).
        dropout: dropout probability between the two convolutions of a block.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        depth: int = 28,
        widen: int = 10,
        dropout: float = 0.0,
    ):
        super().__init__("wrn28_10", image_shape)
        depth = positive_int(depth, "wrn28_10 depth", "depth=28")
        widen = positive_int(widen, "wrn28_10 widen", "widen=10")
        dropout = unit_fraction(dropout, "dropout")
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(
                f"wrn28_10 depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}"
            )
        n = (depth - 4) // 6
        channels = (16 * widen, 32 * widen, 64 * widen)
        self.stem = nn.Conv2d(self.image_shape[0], 16, 3, padding=1, bias=False)
        groups: list[nn.Module] = []
        in_ch = 16
        for i, ch in enumerate(channels):
            stride = 1 if i == 0 else 2
            blocks = [
                WideBlock(in_ch if j == 0 else ch, ch, stride if j == 0 else 1, dropout)
                for j in range(n)
            ]
            groups.append(nn.Sequential(*blocks))
            in_ch = ch
        self.groups = nn.Sequential(*groups)
        self.bn = nn.BatchNorm2d(in_ch)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._images(x)
        out = F.relu(self.bn(self.groups(self.stem(x))))
        return self.head(self.pool(out))


def wrn28_10(
    image_shape: tuple[int, int, int],
    num_classes: int,
    *,
    depth: int = 28,
    widen: int = 10,
    dropout: float = 0.0,
) -> WideResNet:
    """Wide ResNet 28-10 (``depth``, ``widen`` and ``dropout`` adjustable)."""
    return WideResNet(image_shape, num_classes, depth=depth, widen=widen, dropout=dropout)
