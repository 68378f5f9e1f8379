"""ResNet-18 and ResNet-50 as used on CIFAR, written without torchvision.

The default CIFAR stem is one 3x3 convolution with stride 1 and no max-pool, so a 32x32 image
reaches the last stage at 4x4. ``stem="imagenet"`` uses the ImageNet stem instead: a 7x7
convolution with stride 2 followed by a 3x3 max-pool with stride 2. The four stages have
``width``, ``2 * width``, ``4 * width`` and ``8 * width`` channels (times 4 at the output of a
bottleneck block); the second to fourth stages halve the image. Global average pooling feeds
the linear head, so any image size works. Convolutions have no bias (each is followed by a
BatchNorm). With the defaults and CIFAR-10 (3x32x32, 10 classes) ResNet-18 has 11,173,962
parameters and ResNet-50 23,520,842.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._common import ImageClassifier, positive_int

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "resnet18", "resnet50"]

STEMS = ("cifar", "imagenet")


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
    ]


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    """Identity when shapes agree, else a strided 1x1 convolution and BatchNorm."""
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = _conv_bn(in_ch, ch, 3, stride)
        self.conv2, self.bn2 = _conv_bn(ch, ch, 3)
        self.shortcut = _shortcut(in_ch, ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4, with a residual connection."""

    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1):
        super().__init__()
        out_ch = ch * self.expansion
        self.conv1, self.bn1 = _conv_bn(in_ch, ch, 1)
        self.conv2, self.bn2 = _conv_bn(ch, ch, 3, stride)
        self.conv3, self.bn3 = _conv_bn(ch, out_ch, 1)
        self.shortcut = _shortcut(in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(ImageClassifier):
    """A four-stage residual network with global average pooling and a linear head.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        blocks: the number of blocks in each of the four stages, e.g. ``(2, 2, 2, 2)``.
        image_shape: ``(C, H, W)`` of the inputs.
        num_classes: K.
        width: channels of the stem and the first stage (64 in the papers).
        stem: ``"cifar"`` (3x3, stride 1) or ``"imagenet"`` (7x7 stride 2, then max-pool).
        name: the architecture's name in error messages.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks: tuple[int, int, int, int],
        image_shape: tuple[int, int, int],
        num_classes: int,
        *,
        width: int = 64,
        stem: str = "cifar",
        name: str = "resnet",
    ):
        super().__init__(name, image_shape)
        width = positive_int(width, f"{name} width", "width=64")
        if stem not in STEMS:
            raise ConfigError(f"{name} stem must be one of {list(STEMS)}, got {stem!r}")
        c = self.image_shape[0]
        if stem == "cifar":
            self.stem = nn.Sequential(*_conv_bn(c, width, 3), nn.ReLU())
        else:
            self.stem = nn.Sequential(
                *_conv_bn(c, width, 7, 2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1)
            )
        stages: list[nn.Module] = []
        in_ch = width
        for i, n in enumerate(blocks):
            ch = width * 2**i
            layers = []
            for j in range(n):
                layers.append(block(in_ch, ch, 2 if (i > 0 and j == 0) else 1))
                in_ch = ch * block.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._images(x)
        return self.head(self.pool(self.stages(self.stem(x))))


def resnet18(
    image_shape: tuple[int, int, int], num_classes: int, *, width: int = 64, stem: str = "cifar"
) -> ResNet:
    """ResNet-18: basic blocks ``(2, 2, 2, 2)``."""
    blocks = (2, 2, 2, 2)
    return ResNet(
        BasicBlock, blocks, image_shape, num_classes, width=width, stem=stem, name="resnet18"
    )


def resnet50(
    image_shape: tuple[int, int, int], num_classes: int, *, width: int = 64, stem: str = "cifar"
) -> ResNet:
    """ResNet-50: bottleneck blocks ``(3, 4, 6, 3)``."""
    blocks = (3, 4, 6, 3)
    return ResNet(
        Bottleneck, blocks, image_shape, num_classes, width=width, stem=stem, name="resnet50"
    )
