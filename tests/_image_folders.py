"""Small generated image folders (the ``image_folder`` dataset, read from disk) for tests, a
counter of the images decoded, and the in-memory copy of a disk-backed bundle.

The decode counter (shared with ``tests/unit/datasets/test_image_folder.py``) is patched over
``_lazy.read_image`` (decodes per file) and ``LazyImages._decode`` (rows per decode call).
"""

from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unlearnkit.datasets import DatasetBundle, Split, _lazy
from unlearnkit.datasets._lazy import LazyImages


def make_folder(
    root: Path, n_train: int, n_test: int, classes: tuple[str, ...] = ("a", "b", "c")
) -> Path:
    """``root/{train,test}/<class>/NNN.png``: ``n_train`` / ``n_test`` 8x8 RGB images per
    class, seeded noise whose channel ``k`` is brighter for class ``k`` (learnable, but not
    perfectly: models disagree on some images)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, name in enumerate(classes):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 256, (8, 8, 3))
                a[..., k % 3] = np.clip(a[..., k % 3] + 60, 0, 255)
                Image.fromarray(a.astype(np.uint8)).save(root / split / name / f"{i:03d}.png")
    return root


def in_memory(bundle: DatasetBundle) -> DatasetBundle:
    """``bundle`` with every split decoded into a tensor (augmentation and normalisation
    kept): the same data, held in memory."""

    def dense(split: Split | None) -> Split | None:
        return None if split is None else Split(split.x[:], split.y)

    return dataclasses.replace(
        bundle, train=dense(bundle.train), val=dense(bundle.val), test=dense(bundle.test)
    )


@dataclass
class Reads:
    files: collections.Counter = field(default_factory=collections.Counter)  # decodes per file
    rows: list[int] = field(default_factory=list)  # rows of each decode call

    @property
    def max_rows(self) -> int:
        return max(self.rows, default=0)

    def clear(self) -> None:
        self.files.clear()
        self.rows.clear()


def count_reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    """Record every image decoded in this process from now on (see the module docstring)."""
    seen = Reads()
    read, decode = _lazy.read_image, LazyImages._decode

    def counting_read(path, mode, size):
        seen.files[path] += 1
        return read(path, mode, size)

    def recording_decode(self, pos):
        seen.rows.append(len(pos))
        return decode(self, pos)

    monkeypatch.setattr(_lazy, "read_image", counting_read)
    monkeypatch.setattr(LazyImages, "_decode", recording_decode)
    return seen
