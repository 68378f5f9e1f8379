"""The SVHN loader, on tiny ``.mat`` files written in the official layout.

``X`` is ``(32, 32, 3, N)`` uint8 (height, width, channel, sample) and ``y`` is ``(N, 1)`` with
labels 1..10, 10 standing for the digit 0. No test touches the network: an autouse fixture makes
``urllib.request.urlopen`` fail loudly, and the download test serves generated files instead.
"""

from __future__ import annotations

import hashlib
import io
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import unlearnkit as uk
from unlearnkit.datasets import svhn
from unlearnkit.errors import DataError

N_TRAIN, N_TEST, N_EXTRA = 40, 10, 20  # 4 training images per digit: val_fraction 0.25 -> 1 each
BASE = "http://ufldl.stanford.edu/housenumbers/"


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _arrays(n: int, offset: int) -> dict[str, np.ndarray]:
    """Image i: red 255 except red (row 0, col 1) = 7, green ``8 * row``, blue ``offset + i``
    (its id). Label of image i: ``i % 10 + 1`` in the files' 1..10 coding, the digit
    ``(i + 1) % 10``, which is its id mod 10 for offsets 1, 101, 201."""
    x = np.zeros((32, 32, 3, n), dtype=np.uint8)
    x[:, :, 0, :] = 255
    x[0, 1, 0, :] = 7  # row 0, column 1: tells rows from columns after the transposition
    x[:, :, 1, :] = (8 * np.arange(32, dtype=np.uint8))[:, None, None]
    x[:, :, 2, :] = (offset + np.arange(n)).astype(np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)
    return {"X": x, "y": y}


def _mat_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, arrays)
    return buf.getvalue()


def _write(root: Path, extra: bool = False) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_32x32.mat").write_bytes(_mat_bytes(_arrays(N_TRAIN, 1)))
    (root / "test_32x32.mat").write_bytes(_mat_bytes(_arrays(N_TEST, 101)))
    if extra:
        (root / "extra_32x32.mat").write_bytes(_mat_bytes(_arrays(N_EXTRA, 201)))


def _ids(split: uk.datasets.Split) -> list[int]:
    return np.rint(split.x[:, 2, 5, 5].numpy() * 255).astype(int).tolist()


def test_svhn_reads_the_official_layout(tmp_path: Path) -> None:
    _write(tmp_path)
    b = uk.datasets.load("svhn", root=tmp_path, val_fraction=0.25, seed=0)
    assert b.name == "svhn" and b.num_classes == 10 and not b.flip_invariant
    assert b.input_shape == b.image_shape == (3, 32, 32) and b.modality is None
    assert b.class_names == tuple(str(d) for d in range(10))
    assert (len(b.train), len(b.val), len(b.test)) == (30, 10, N_TEST)
    for split in (b.train, b.val, b.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        # (H, W, C, N) -> (N, C, H, W): channel 0 is red, row 0 / column 1 holds the marker
        assert torch.all(split.x[:, 0, 0, 1] == 7 / 255) and torch.all(split.x[:, 0, 1, 0] == 1.0)
        rows = torch.arange(32, dtype=torch.float32)[:, None] * 8 / 255
        assert torch.equal(split.x[:, 1], rows.expand(32, 32).expand(len(split), 32, 32))
    # label 10 is the digit 0; labels travel with their images
    assert b.test.y.tolist() == [(i + 1) % 10 for i in range(N_TEST)]
    assert _ids(b.test) == list(range(101, 101 + N_TEST))
    assert [i % 10 for i in _ids(b.train)] == b.train.y.tolist()
    assert sorted(_ids(b.train) + _ids(b.val)) == list(range(1, N_TRAIN + 1))
    assert np.bincount(b.val.y.numpy(), minlength=10).tolist() == [1] * 10  # stratified
    assert b.normalization == uk.datasets.Normalization(raw_range=(0.0, 255.0), quantized=True)
    assert b.split_info["official_sizes"] == {"train": N_TRAIN, "test": N_TEST}
    assert b.split_info["seed"] == 0 and b.split_info["extra"] is False
    again = uk.datasets.load("svhn", root=tmp_path, val_fraction=0.25, seed=0)
    other = uk.datasets.load("svhn", root=tmp_path, val_fraction=0.25, seed=1)
    assert again.fingerprint == b.fingerprint != other.fingerprint


def test_extra_is_appended_to_train_and_limits_apply_to_the_whole(tmp_path: Path) -> None:
    _write(tmp_path, extra=True)
    b = uk.datasets.load("svhn", root=tmp_path, extra=True, val_fraction=0.0, limit_test=3)
    assert b.name == "svhn_extra" and len(b.train) == N_TRAIN + N_EXTRA and b.val is None
    assert _ids(b.train) == list(range(1, N_TRAIN + 1)) + list(range(201, 201 + N_EXTRA))
    assert b.split_info["official_sizes"] == {"train": 60, "test": N_TEST, "extra": N_EXTRA}
    assert _ids(b.test) == [101, 102, 103]
    cut = uk.datasets.load("svhn", root=tmp_path, extra=True, val_fraction=0.0, limit_train=45)
    assert _ids(cut.train) == list(range(1, N_TRAIN + 1)) + list(range(201, 206))
    assert cut.split_info["limit_train"] == 45
    (tmp_path / "extra_32x32.mat").unlink()
    with pytest.raises(DataError, match=r"SVHN: extra_32x32\.mat not found in .*download=True"):
        uk.datasets.load("svhn", root=tmp_path, extra=True)
    assert len(uk.datasets.load("svhn", root=tmp_path).test) == N_TEST  # extra not needed


def test_standardize_uses_the_training_split_statistics(tmp_path: Path) -> None:
    _write(tmp_path)
    b = uk.datasets.load("svhn", root=tmp_path, val_fraction=0.25, standardize=True)
    plain = uk.datasets.load("svhn", root=tmp_path, val_fraction=0.25)
    norm = b.normalization
    assert norm.mean is not None and norm.std is not None and norm.quantized
    assert b.split_info["standardize"] == {"mean": list(norm.mean), "std": list(norm.std)}
    blue = plain.train.x[:, 2]
    assert norm.mean[2] == pytest.approx(float(blue.double().mean()))
    assert norm.std[2] == pytest.approx(float(blue.double().std(unbiased=False)))
    # the same constants map every split; raw pixels come back exactly
    for split, ref in ((b.train, plain.train), (b.test, plain.test)):
        assert torch.equal(norm.to_raw(split.x), torch.round(ref.x * 255))
    with pytest.raises(DataError, match=r"channel is constant.*standardize=False"):
        uk.datasets.load("svhn", root=tmp_path, standardize=True, limit_train=1, val_fraction=0.0)


def test_missing_corrupt_and_wrong_shape_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        uk.datasets.load("svhn", root=tmp_path)
    msg = str(err.value)
    assert "train_32x32.mat, test_32x32.mat not found in" in msg and "download=True" in msg
    _write(tmp_path)
    path = tmp_path / "test_32x32.mat"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=r"cannot read .*test_32x32\.mat.*download=True"):
        uk.datasets.load("svhn", root=tmp_path)
    path.write_bytes(b"not a MATLAB file at all" * 10)
    with pytest.raises(DataError, match=r"cannot read .*test_32x32\.mat as a MATLAB file"):
        uk.datasets.load("svhn", root=tmp_path)
    grey = {"X": np.zeros((32, 32, 1, 4), dtype=np.uint8), "y": np.ones((4, 1), np.uint8)}
    path.write_bytes(_mat_bytes(grey))
    with pytest.raises(DataError, match=r"test_32x32\.mat: 'X' must be a \(32, 32, 3, N\)"):
        uk.datasets.load("svhn", root=tmp_path)
    bad = _arrays(4, 1)
    bad["y"][0, 0] = 11
    path.write_bytes(_mat_bytes(bad))
    with pytest.raises(DataError, match=r"labels 2\.\.11, outside 1\.\.10"):
        uk.datasets.load("svhn", root=tmp_path)
    path.write_bytes(_mat_bytes({"X": _arrays(4, 1)["X"]}))
    with pytest.raises(DataError, match=r"lacks the variable 'y'"):
        uk.datasets.load("svhn", root=tmp_path)
    short = _arrays(4, 1)
    short["y"] = short["y"][:3]
    path.write_bytes(_mat_bytes(short))
    with pytest.raises(DataError, match=r"'y' must hold 4 labels"):
        uk.datasets.load("svhn", root=tmp_path)


def test_download_fetches_checks_and_keeps_local_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = {
        BASE + "train_32x32.mat": _mat_bytes(_arrays(N_TRAIN, 1)),
        BASE + "test_32x32.mat": _mat_bytes(_arrays(N_TEST, 101)),
    }
    requested: list[str] = []

    def fake_urlopen(request, timeout=None):
        url = request.full_url
        requested.append(url)
        if url not in served:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(served[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    root = tmp_path / "data"
    # the published checksums stay: the generated files differ from the official ones
    with pytest.raises(DataError, match=r"checksum mismatch for http://ufldl.*e26dedcc434d2e4c"):
        uk.datasets.load("svhn", root=root, download=True)
    assert [p for p in root.rglob("*") if p.is_file()] == []
    for part, name in (("train", "train_32x32.mat"), ("test", "test_32x32.mat")):
        digest = hashlib.md5(served[BASE + name]).hexdigest()
        monkeypatch.setitem(svhn._FILES, part, (name, digest))
    requested.clear()
    b = uk.datasets.load("svhn", root=root, download=True, val_fraction=0.25)
    assert sorted(requested) == sorted(served) and len(b.test) == N_TEST
    assert sorted(p.name for p in root.iterdir()) == ["test_32x32.mat", "train_32x32.mat"]
    requested.clear()
    uk.datasets.load("svhn", root=root, download=True)
    assert requested == []  # files already there are not fetched again


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 1.0}, r"val_fraction must lie in \[0, 1\)"),
        ({"limit_train": 0}, "limit_train must be a positive integer"),
        ({"extra": "yes"}, "extra must be True or False"),
        ({"standardize": 1}, "standardize must be True or False"),
        ({"root": 3}, "root must be a directory path"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    _write(tmp_path)
    with pytest.raises(DataError, match=match):
        uk.datasets.load("svhn", **{"root": tmp_path, **kwargs})
