"""Checks shared by the reference architectures: sizes given by users and image inputs."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError

__all__ = ["ImageClassifier", "positive_int", "positive_ints", "unit_fraction"]


def positive_ints(values: Any, what: str, example: str) -> tuple[int, ...]:
    """``values`` as a tuple of positive ints, or a ConfigError naming ``what``."""
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = (values,)  # one hidden layer given as a bare width
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{what} must be positive integers, e.g. {example}, got {values!r}")
    values = tuple(values)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
    bad += [v for v in values if v not in bad and int(v) < 1]
    if bad:
        raise ConfigError(
            f"{what} must be positive integers, e.g. {example}, got {list(values)} (bad: {bad[:3]})"
        )
    return tuple(int(v) for v in values)


def positive_int(value: Any, what: str, example: str) -> int:
    """One positive int, or a ConfigError naming ``what`` (a sequence is refused too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ConfigError(f"{what} must be a positive integer, e.g. {example}, got {value!r}")
    return int(value)


def unit_fraction(value: Any, what: str) -> float:
    """A dropout probability in [0, 1), or a ConfigError naming ``what``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{what} must be a number in [0, 1), e.g. {what}=0.0, got {value!r}")
    return float(value)


class ImageClassifier(nn.Module):
    """Base of the image models: remembers the image shape and checks inputs cheaply.

    Inputs are ``(N, C, H, W)``; flattened images ``(N, C*H*W)`` are reshaped. With
    ``exact_size`` the height and width must equal the built ones (a ViT's position table);
    with ``min_size`` they must be at least that large (a VGG's five halvings).
    """

    def __init__(
        self,
        name: str,
        image_shape: tuple[int, int, int],
        *,
        exact_size: bool = False,
        min_size: int = 1,
    ):
        super().__init__()
        self.arch_name = name
        self.image_shape = tuple(int(s) for s in image_shape)
        self.exact_size = exact_size
        self.min_size = min_size

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        if x.dim() == 2 and x.shape[1] == c * h * w:
            x = x.reshape(x.shape[0], c, h, w)
        if not x.is_floating_point():
            raise DataError(
                f"{self.arch_name} takes floating-point images, got "
                f"{str(x.dtype).replace('torch.', '')} inputs; for token ids use "
                "embedding_bag or text_transformer"
            )
        if x.dim() != 4 or x.shape[1] != c:
            raise DataError(
                f"{self.arch_name} takes images of shape (N, {c}, H, W), got a batch of shape "
                f"{tuple(x.shape)}; build the model for this data (uk.models.build(name, bundle))"
            )
        size = tuple(x.shape[2:])
        if self.exact_size and size != (h, w):
            raise DataError(
                f"{self.arch_name} was built for {h}x{w} images, got {size[0]}x{size[1]}; "
                "build it for this data (uk.models.build(name, bundle))"
            )
        if min(size) < self.min_size:
            raise DataError(
                f"{self.arch_name} needs images of at least {self.min_size}x{self.min_size}, "
                f"got {size[0]}x{size[1]}"
            )
        return x
