"""scikit-learn's embedded 8x8 handwritten digits, as 1x8x8 images scaled to [0, 1]."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError
from ._bundle import DatasetBundle, Normalization, Split, stratified_split

__all__ = ["load_digits"]


def load_digits(
    *, seed: int = 0, val_fraction: float = 0.1, test_fraction: float = 0.3
) -> DatasetBundle:
    """Load the 1,797 digits with a seeded, stratified train/validation/test split.

    Raw pixels are integers 0..16; the model sees ``raw / 16`` with shape ``(1, 8, 8)``. The split
    (seed, fractions, sizes) is recorded in ``bundle.split_info``. No augmentation: flips and
    crops change what a digit means.

    Args:
        seed: seed of the split.
        val_fraction: fraction of all samples held out for model selection.
        test_fraction: fraction held out for testing.
    """
    from sklearn.datasets import load_digits as _sk_load

    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise DataError(f"{name} must lie in [0, 1), got {frac}")
    train_fraction = 1.0 - val_fraction - test_fraction
    if train_fraction <= 0:
        raise DataError("val_fraction + test_fraction must leave a training set (sum < 1)")
    raw = _sk_load()
    x_raw = raw.data.astype(np.float32).reshape(-1, 1, 8, 8)
    y = raw.target.astype(np.int64)
    parts = stratified_split(
        y, {"train": train_fraction, "val": val_fraction, "test": test_fraction}, seed
    )
    norm = Normalization(raw_range=(0.0, 16.0), quantized=True)
    x = norm.to_model(torch.from_numpy(x_raw))
    yt = torch.from_numpy(y)

    def split(name: str) -> Split | None:
        idx = torch.from_numpy(parts[name])
        return Split(x[idx].contiguous(), yt[idx].contiguous()) if len(idx) else None

    return DatasetBundle(
        name="digits",
        train=split("train"),
        val=split("val"),
        test=split("test"),
        num_classes=10,
        input_shape=(1, 8, 8),
        image_shape=(1, 8, 8),
        normalization=norm,
        split_info={
            "seed": seed,
            "fractions": {"train": train_fraction, "val": val_fraction, "test": test_fraction},
            "sizes": {k: int(len(v)) for k, v in parts.items()},
            "stratified": True,
        },
        class_names=tuple(str(i) for i in range(10)),
    )
