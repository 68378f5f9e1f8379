"""CIFAR's training augmentation: ``augment=True`` gives the bundle the papers' random crop
(padding 4) and horizontal flip, which the training engine applies to every training batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import unlearnkit as uk
from unlearnkit.data import DataView
from unlearnkit.datasets._augment import CropFlip
from unlearnkit.errors import DataError
from unlearnkit.training import TrainRecipe, train

from ..test_public_datasets import _write_cifar10, _write_cifar100


def test_augment_gives_crop_and_flip_and_is_off_by_default(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "c10")
    _write_cifar100(tmp_path / "c100")
    plain = uk.datasets.load("cifar10", root=tmp_path / "c10")
    c10 = uk.datasets.load("cifar10", root=tmp_path / "c10", augment=True)
    c100 = uk.datasets.load("cifar100", root=tmp_path / "c100", augment=True)
    assert plain.augment is None
    assert c10.augment == c100.augment == CropFlip(padding=4, flip=True)
    assert torch.equal(plain.train.x, c10.train.x)  # the stored images are not altered
    with pytest.raises(DataError, match="augment must be true or false, got 'yes'"):
        uk.datasets.load("cifar10", root=tmp_path / "c10", augment="yes")


def test_the_crop_shifts_by_at_most_4_pixels_and_fills_with_black() -> None:
    x = torch.arange(1, 3 * 32 * 32 + 1, dtype=torch.float32).view(1, 3, 32, 32).repeat(64, 1, 1, 1)
    out = CropFlip(padding=4, flip=False)(x, torch.Generator().manual_seed(0))
    for img in out:  # each output is a window of the padded image: find its offset
        nz = img[0].nonzero()
        top, left = int(nz[:, 0].min()), int(nz[:, 1].min())
        bottom, right = int(nz[:, 0].max()), int(nz[:, 1].max())
        assert top <= 4 and left <= 4 and bottom >= 27 and right >= 27
        window = img[:, top : bottom + 1, left : right + 1]
        assert (window > 0).all()  # the image part is contiguous; the rest is black (0)
        assert int((img == 0).sum()) == 3 * (32 * 32 - window.shape[1] * window.shape[2])
    shifts = {(int(o[0].nonzero()[:, 0].min()), int(o[0].nonzero()[:, 1].min())) for o in out}
    assert len(shifts) > 10  # every sample draws its own offsets


def test_training_applies_the_augmentation(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    b = uk.datasets.load("cifar10", root=tmp_path, augment=True)
    seen: list[torch.Tensor] = []

    class Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3 * 32 * 32, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training:
                seen.append(x.detach().clone())
            return self.head(x.flatten(1))

    recipe = TrainRecipe(epochs=1, batch_size=len(b.train), lr=0.01, augment=True, seed=0)
    view = DataView("train", b.train.x, b.train.y, augment=b.augment)
    train(Spy(), view, recipe)
    assert seen and seen[0].shape == b.train.x.shape
    assert not torch.equal(seen[0].sort(0).values, b.train.x.sort(0).values)  # cropped/flipped
