from __future__ import annotations

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.errors import DataError


def test_digits_split_is_stratified_seeded_and_recorded() -> None:
    a = uk.datasets.load("digits", seed=0)
    b = uk.datasets.load("digits", seed=0)
    c = uk.datasets.load("digits", seed=1)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert len(a.train) + len(a.val) + len(a.test) == 1797
    assert a.split_info["sizes"] == {"train": len(a.train), "val": len(a.val), "test": len(a.test)}
    assert a.input_shape == (1, 8, 8) and a.image_shape == (1, 8, 8)
    assert float(a.train.x.min()) == 0.0 and float(a.train.x.max()) == 1.0
    # stratified: each class keeps its 60 % train share, within one sample
    from sklearn.datasets import load_digits

    per_class = np.bincount(load_digits().target, minlength=10)
    counts = np.bincount(a.train.y.numpy(), minlength=10)
    assert np.all(np.abs(counts - 0.6 * per_class) <= 1)


def test_digits_normalisation_round_trips_to_integer_pixels() -> None:
    b = uk.datasets.load("digits")
    raw = b.normalization.to_raw(b.train.x[:5])
    assert torch.equal(raw, torch.round(raw)) and float(raw.max()) <= 16
    assert torch.allclose(b.normalization.to_model(raw), b.train.x[:5])


def test_synthetic_shapes_and_label_noise() -> None:
    b = uk.datasets.load(
        "synthetic", n_train=100, n_test=20, n_val=0, num_classes=3, input_shape=(2, 4, 4), seed=1
    )
    assert b.train.x.shape == (100, 2, 4, 4) and b.val is None and b.image_shape == (2, 4, 4)
    clean = uk.datasets.load("synthetic", n_train=200, seed=3)
    noisy = uk.datasets.load("synthetic", n_train=200, seed=3, label_noise=0.25)
    assert int((clean.train.y != noisy.train.y).sum()) == 50


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"y_train": np.array([0, 1, 2.5])}, "integer"),
        ({"x_train": np.zeros((4, 2))}, "3 labels"),
        ({"x_train": np.array([[np.nan, 0]] * 3)}, "NaN"),
        ({"x_val": np.zeros((2, 2))}, "both x_val and y_val"),
    ],
)
def test_from_arrays_rejects_bad_input(kwargs, match) -> None:
    args = {
        "x_train": np.zeros((3, 2)),
        "y_train": np.array([0, 1, 1]),
        "x_test": np.zeros((2, 2)),
        "y_test": np.array([0, 1]),
    }
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        uk.datasets.from_arrays(
            args.pop("x_train"), args.pop("y_train"), args.pop("x_test"), args.pop("y_test"), **args
        )


def test_from_torch_and_npz_round_trip(tmp_path) -> None:
    x = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    y = np.arange(20) % 3
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    b = uk.datasets.from_torch(ds, ds, num_classes=3)
    assert torch.equal(b.train.x, torch.from_numpy(x)) and b.num_classes == 3
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    b2 = uk.datasets.load("npz", path=path)
    assert len(b2.train) == 20 and len(b2.test) == 5
    with pytest.raises(DataError, match="no such file"):
        uk.datasets.load("npz", path=tmp_path / "missing.npz")


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="available: digits"):
        uk.datasets.load("cifar11")
