"""Seeded synthetic classification data of any size and shape, for tests and scaling runs."""

from __future__ import annotations

import math

import torch

from ..errors import DataError
from ._bundle import DatasetBundle, Split

__all__ = ["load_synthetic"]


def load_synthetic(
    *,
    n_train: int = 512,
    n_val: int = 128,
    n_test: int = 256,
    num_classes: int = 4,
    input_shape: tuple[int, ...] = (16,),
    separation: float = 2.0,
    label_noise: float = 0.0,
    fine_per_class: int = 1,
    seed: int = 0,
) -> DatasetBundle:
    """Generate Gaussian class clusters: one random mean per class plus unit-variance noise.

    Labels are balanced (sample ``i`` has class ``i % K`` before shuffling). ``label_noise``
    flips that fraction of *training* labels to another random class, which creates samples a
    model can only fit by memorising them. Inputs with 3-dimensional ``input_shape`` are
    declared images (``image_shape = input_shape``).

    With ``fine_per_class = m > 1`` every class is a mixture of ``m`` fine sub-classes (fine
    label ``c * m + j``, each with its own mean around the class mean, half the class
    separation away), recorded in every split's ``fine`` labels: the data of the ``subclass``
    forget scenario. Label noise flips coarse labels only.

    Args:
        n_train, n_val, n_test: split sizes (``n_val`` may be 0).
        num_classes: K >= 2.
        input_shape: shape of one input, e.g. ``(16,)`` or ``(1, 8, 8)``.
        separation: std of the class means; larger is easier.
        label_noise: fraction of training labels flipped, in [0, 1).
        fine_per_class: fine sub-classes per class (1: no fine labels).
        seed: seed of everything.
    """
    if num_classes < 2:
        raise DataError(f"num_classes must be at least 2, got {num_classes}")
    if n_train < num_classes or n_test < 1 or n_val < 0:
        raise DataError("need n_train >= num_classes, n_test >= 1 and n_val >= 0")
    if not 0.0 <= label_noise < 1.0:
        raise DataError(f"label_noise must lie in [0, 1), got {label_noise}")
    m = int(fine_per_class)
    if m < 1:
        raise DataError(f"fine_per_class must be at least 1, got {fine_per_class}")
    if m > 1 and min(n_train, n_test) < num_classes * m:
        raise DataError(
            f"fine_per_class={m} needs n_train and n_test >= num_classes * fine_per_class "
            f"({num_classes * m}) so that every fine class occurs in both"
        )
    shape = tuple(int(s) for s in input_shape)
    dim = math.prod(shape)
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, dim, generator=g) * separation
    if m > 1:
        offsets = torch.randn(num_classes, m, dim, generator=g) * (separation / 2)
        fine_means = (means.unsqueeze(1) + offsets).reshape(num_classes * m, dim)

    def draw(n: int) -> Split:
        if m == 1:
            y = torch.arange(n) % num_classes
            y = y[torch.randperm(n, generator=g)]
            x = means[y] + torch.randn(n, dim, generator=g)
            return Split(x.reshape(n, *shape).contiguous(), y.contiguous())
        fine = torch.arange(n) % (num_classes * m)  # balanced over fine classes
        fine = fine[torch.randperm(n, generator=g)]
        x = fine_means[fine] + torch.randn(n, dim, generator=g)
        return Split(x.reshape(n, *shape).contiguous(), (fine // m).contiguous(), fine)

    train, val, test = draw(n_train), draw(n_val), draw(n_test)
    if label_noise > 0:
        n_flip = int(round(label_noise * n_train))
        idx = torch.randperm(n_train, generator=g)[:n_flip]
        shift = torch.randint(1, num_classes, (n_flip,), generator=g)
        train.y[idx] = (train.y[idx] + shift) % num_classes
    return DatasetBundle(
        name="synthetic",
        train=train,
        val=val if n_val else None,
        test=test,
        num_classes=num_classes,
        input_shape=shape,
        image_shape=shape if len(shape) == 3 else None,  # type: ignore[arg-type]
        split_info={
            "seed": seed,
            "sizes": {"train": n_train, "val": n_val, "test": n_test},
            "separation": separation,
            "label_noise": label_noise,
            **({"fine_per_class": m} if m > 1 else {}),
        },
        fine_names=tuple(f"{c}.{j}" for c in range(num_classes) for j in range(m))
        if m > 1
        else None,
    )
