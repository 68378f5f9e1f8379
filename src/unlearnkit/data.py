"""Data views: what a method is allowed to see of a split, and fast in-memory batch loaders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from .datasets import Normalization

__all__ = ["BatchLoader", "DataView", "DataViews", "cycle"]


class BatchLoader:
    """Iterate ``(x, y)`` mini-batches of in-memory tensors.

    Each ``iter()`` draws a fresh permutation from ``generator`` when ``shuffle`` is set, so a
    cycled loader is re-shuffled on every pass. ``y`` is ``None`` for
    label-free views.

    Batches go to ``device`` when one is given. When it is a CUDA device, each batch is first
    copied into page-locked (pinned) host memory and then sent with ``non_blocking=True``, so
    the transfer overlaps the GPU work of the previous step (:attr:`pinned`).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.augment = augment
        self.device = device
        #: whether batches travel through pinned memory with non-blocking copies (CUDA targets)
        self.pinned = device is not None and torch.device(device).type == "cuda"

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        n = self.x.shape[0]
        order = torch.randperm(n, generator=self.generator) if self.shuffle else None
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            if order is None:
                xb = self.x[start : start + self.batch_size]
                yb = None if self.y is None else self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb = self.x[idx]
                yb = None if self.y is None else self.y[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            if self.device is not None:
                xb = self._send(xb)
                yb = None if yb is None else self._send(yb)
            yield xb, yb

    def _send(self, t: torch.Tensor) -> torch.Tensor:
        if self.pinned and t.device.type == "cpu":
            # The caching host allocator keeps the pinned block alive until the copy is done.
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)


def cycle(loader: BatchLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield batches forever, re-iterating (and so re-shuffling) ``loader`` on every pass."""
    if len(loader) == 0:
        raise ValueError("cannot cycle an empty loader")
    while True:
        yield from loader


@dataclass
class DataView:
    """A read-only view of some samples: inputs, optional labels, and how to batch them.

    Attributes:
        name: ``"forget"``, ``"retain"``, ``"val"``...
        x: model-ready inputs.
        y: labels, or ``None`` when withheld from the method.
        indices: positions in the bundle's training set (``None`` for non-training views).
        augment: the training-time augmentation of the original recipe, if any.
        normalization: raw-to-model map (for methods that work in pixel space).
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor | None
    indices: np.ndarray | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    normalization: Normalization | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def labels(self) -> torch.Tensor | None:
        return self.y

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> BatchLoader:
        """Batches of this view; ``augment=True`` applies the recipe's training augmentation."""
        return BatchLoader(
            self.x,
            self.y,
            batch_size,
            shuffle=shuffle,
            generator=generator,
            augment=self.augment if augment else None,
            drop_last=drop_last,
            device=device,
        )

    def subset(self, positions: np.ndarray | torch.Tensor) -> DataView:
        """The samples at ``positions`` (0-based positions within this view)."""
        pos = np.asarray(positions, dtype=np.int64)
        t = torch.as_tensor(pos)
        return DataView(
            name=self.name,
            x=self.x[t],
            y=None if self.y is None else self.y[t],
            indices=None if self.indices is None else self.indices[pos],
            augment=self.augment,
            normalization=self.normalization,
        )

    def without_labels(self) -> DataView:
        """The same samples with labels withheld."""
        return DataView(self.name, self.x, None, self.indices, self.augment, self.normalization)

    def raw(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Pre-normalisation inputs and labels, or ``None`` without normalisation metadata."""
        if self.normalization is None:
            return None
        return self.normalization.to_raw(self.x), self.y


@dataclass
class DataViews:
    """The views handed to a method; a field is ``None`` when its access level withholds it."""

    forget: DataView | None = None
    retain: DataView | None = None
    val: DataView | None = None
    train_full: DataView | None = None
