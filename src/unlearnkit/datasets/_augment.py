"""The training augmentation of image datasets, as tensor ops on a batch (no torchvision).

:class:`CropFlip` is the augmentation the CIFAR-style papers train with: a random crop of the
image padded by 4 pixels and a horizontal flip. The image-folder and CIFAR loaders give it to
their bundles (``augment=True``); the training engine applies it to every training batch with
the run's generator, so a seeded run draws the same crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["CropFlip"]


@dataclass(frozen=True)
class CropFlip:
    """Training augmentation as tensor ops: a random crop of the image padded by ``padding``
    pixels on every side (the padding is black: ``fill`` is a black pixel in model units, per
    channel), then a horizontal flip with probability 1/2 when ``flip``. Every sample draws its
    own offsets and flip from ``generator``."""

    padding: int = 4
    flip: bool = True
    fill: tuple[float, ...] = (0.0,)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        out = x
        p = self.padding
        if p > 0:
            fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            padded = fill.expand(n, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p : p + h, p : p + w] = x
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = dy[:, None] + torch.arange(h, device=x.device)  # (n, h)
            cols = dx[:, None] + torch.arange(w, device=x.device)  # (n, w)
            out = padded[
                torch.arange(n, device=x.device)[:, None, None, None],
                torch.arange(c, device=x.device)[None, :, None, None],
                rows[:, None, :, None],
                cols[:, None, None, :],
            ]
        if self.flip:
            mirror = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
            out = torch.where(mirror, out.flip(-1), out)
        return out
