"""Data views: what a method is allowed to see of a split, and the batch loaders over them.

Inputs are tensors or disk-backed images (:class:`~unlearnkit.datasets._lazy.LazyImages`);
a loader over disk-backed inputs reads each batch from disk through a
``torch.utils.data.DataLoader`` (worker processes, pinned memory for CUDA) and never holds more
than the batches in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .datasets._lazy import LazyImages, concat_rows, take_rows
from .errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from .datasets import Normalization

__all__ = [
    "BatchLoader",
    "DataView",
    "DataViews",
    "concat_rows",
    "cycle",
    "default_workers",
    "take_rows",
]

#: Loader workers on a CUDA target when neither the loader nor the dataset sets a number.
CUDA_WORKERS = 4


def default_workers(device: torch.device | str | None) -> int:
    """Worker processes a loader of disk-backed images uses by default: none (the batches
    are decoded in the calling process) unless the batches go to a CUDA device, then
    ``min(4, CPU count)``."""
    if device is not None and torch.device(device).type == "cuda":
        return min(CUDA_WORKERS, os.cpu_count() or 1)
    return 0


class _Rows(torch.utils.data.Dataset):
    """A map-style dataset whose items are whole batches: ``rows[positions]`` decodes them."""

    def __init__(self, x: LazyImages) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, positions: torch.Tensor) -> torch.Tensor:
        return self.x[positions]


class BatchLoader:
    """Iterate ``(x, y)`` mini-batches of a split's inputs and labels.

    Each ``iter()`` draws a fresh permutation from ``generator`` when ``shuffle`` is set, so a
    cycled loader is re-shuffled on every pass. ``order`` instead fixes the positions to visit,
    in that order. ``y`` is ``None`` for label-free views.

    Batches go to ``device`` when one is given. When it is a CUDA device, each batch is first
    copied into page-locked (pinned) host memory and then sent with ``non_blocking=True``, so
    the transfer overlaps the GPU work of the previous step (:attr:`pinned`).

    Disk-backed inputs (:class:`~unlearnkit.datasets._lazy.LazyImages`) are read one batch at a
    time through a ``torch.utils.data.DataLoader`` with ``num_workers`` worker processes
    (default: the dataset's setting, else :func:`default_workers`) and, for CUDA targets,
    ``pin_memory``. The batches, their order and the augmentation (applied to each batch in
    the calling process, with ``generator``) are the same as for the same inputs in memory.
    """

    def __init__(
        self,
        x: torch.Tensor | LazyImages,
        y: torch.Tensor | None,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        drop_last: bool = False,
        device: torch.device | str | None = None,
        order: torch.Tensor | np.ndarray | None = None,
        num_workers: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if order is not None and shuffle:
            raise ValueError("pass either shuffle=True or an order, not both")
        if num_workers is not None and (isinstance(num_workers, bool) or num_workers < 0):
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.drop_last = shuffle, drop_last
        self.order = None if order is None else torch.as_tensor(order, dtype=torch.long)
        if self.order is not None and self.order.numel() != len(x):
            raise DataError(f"order has {self.order.numel()} positions but the inputs {len(x)}")
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.augment = augment
        self.device = device
        #: whether batches travel through pinned memory with non-blocking copies (CUDA targets)
        self.pinned = device is not None and torch.device(device).type == "cuda"
        #: whether the inputs are read from disk batch by batch
        self.lazy = isinstance(x, LazyImages)
        if num_workers is None:
            num_workers = getattr(x, "num_workers", None)
        #: worker processes decoding disk-backed batches (0: in the calling process)
        self.num_workers = default_workers(device) if num_workers is None else int(num_workers)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        n = len(self.x)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else self.order
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        starts = range(0, stop, self.batch_size)
        reader = self._reader(order, starts) if self.lazy else None
        for start in starts:
            if order is None:
                xb = self.x[start : start + self.batch_size] if reader is None else next(reader)
                yb = None if self.y is None else self.y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb = self.x[idx] if reader is None else next(reader)
                yb = None if self.y is None else self.y[idx]
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            if self.device is not None:
                xb = self._send(xb)
                yb = None if yb is None else self._send(yb)
            yield xb, yb

    def _reader(self, order: torch.Tensor | None, starts: range) -> Iterator[torch.Tensor]:
        """The decoded batches of disk-backed inputs, in order, from a ``DataLoader``."""
        n, bs = len(self.x), self.batch_size
        if order is None:
            batches = [torch.arange(s, min(s + bs, n)) for s in starts]
        else:
            batches = [order[s : s + bs] for s in starts]
        loader = torch.utils.data.DataLoader(
            _Rows(self.x),  # type: ignore[arg-type]
            batch_size=None,  # each item is already a batch
            sampler=batches,
            num_workers=self.num_workers,
            pin_memory=self.pinned,
        )
        return iter(loader)

    def _send(self, t: torch.Tensor) -> torch.Tensor:
        if self.pinned and t.device.type == "cpu":
            # The caching host allocator keeps the pinned block alive until the copy is done.
            pinned = t if t.is_pinned() else t.pin_memory()
            return pinned.to(self.device, non_blocking=True)
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
        x: model-ready inputs: a tensor, or disk-backed images
            (:class:`~unlearnkit.datasets._lazy.LazyImages`) that are read batch by batch.
        y: labels, or ``None`` when withheld from the method.
        indices: positions in the bundle's training set (``None`` for non-training views).
        augment: the training-time augmentation of the original recipe, if any.
        normalization: raw-to-model map (for methods that work in pixel space).
    """

    name: str
    x: torch.Tensor | LazyImages
    y: torch.Tensor | None
    indices: np.ndarray | None = None
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    normalization: Normalization | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def labels(self) -> torch.Tensor | None:
        return self.y

    @property
    def lazy(self) -> bool:
        """Whether the inputs are read from disk on demand."""
        return isinstance(self.x, LazyImages)

    def loader(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        order: torch.Tensor | np.ndarray | None = None,
        num_workers: int | None = None,
    ) -> BatchLoader:
        """Batches of this view; ``augment=True`` applies the recipe's training augmentation.

        ``order``: visit these positions in this order instead of the stored (or a shuffled)
        one. ``num_workers``: loader processes for disk-backed inputs (see
        :class:`BatchLoader`)."""
        return BatchLoader(
            self.x,
            self.y,
            batch_size,
            shuffle=shuffle,
            generator=generator,
            augment=self.augment if augment else None,
            drop_last=drop_last,
            device=device,
            order=order,
            num_workers=num_workers,
        )

    def subset(self, positions: np.ndarray | torch.Tensor) -> DataView:
        """The samples at ``positions`` (0-based positions within this view); disk-backed
        inputs stay on disk."""
        pos = np.asarray(positions, dtype=np.int64)
        t = torch.as_tensor(pos)
        return DataView(
            name=self.name,
            x=take_rows(self.x, t),
            y=None if self.y is None else self.y[t],
            indices=None if self.indices is None else self.indices[pos],
            augment=self.augment,
            normalization=self.normalization,
        )

    def without_labels(self) -> DataView:
        """The same samples with labels withheld."""
        return DataView(self.name, self.x, None, self.indices, self.augment, self.normalization)

    def raw(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Pre-normalisation inputs and labels, or ``None`` without normalisation metadata.

        Raises:
            DataError: the inputs are disk-backed (this would read them all into memory).
        """
        if self.normalization is None:
            return None
        if isinstance(self.x, LazyImages):
            raise DataError(
                f"the {self.name} view is read from disk; raw() would load every image at once; "
                "read it in batches (view.loader(...)) and map each with normalization.to_raw"
            )
        return self.normalization.to_raw(self.x), self.y


@dataclass
class DataViews:
    """The views handed to a method; a field is ``None`` when its access level withholds it."""

    forget: DataView | None = None
    retain: DataView | None = None
    val: DataView | None = None
    train_full: DataView | None = None
