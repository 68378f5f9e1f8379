"""The MNIST-family and CIFAR loaders, on tiny files written in the datasets' real formats.

No test touches the network: an autouse fixture makes ``urllib.request.urlopen`` fail loudly, and
the download tests replace it with a fake server that serves generated files.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.datasets import cifar, idx
from unlearnkit.errors import DataError

N_TRAIN, N_TEST, SIDE = 40, 10, 28  # 4 training images per class: val_fraction 0.25 -> 1 each
IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# --- writing files in the official formats ------------------------------------------------------


def _idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _digit_images(n: int, offset: int) -> np.ndarray:
    """Image i is constant ``offset + i`` (its identity) with pixel (0, 0) = 255 and (0, 1) = 0."""
    x = np.empty((n, SIDE, SIDE), dtype=np.uint8)
    x[:] = (offset + np.arange(n, dtype=np.uint8))[:, None, None]
    x[:, 0, 0], x[:, 0, 1] = 255, 0
    return x


def _mnist_arrays() -> dict[str, np.ndarray]:
    return {
        IDX_NAMES[0]: _digit_images(N_TRAIN, 1),
        IDX_NAMES[1]: (np.arange(N_TRAIN) % 10).astype(np.uint8),
        IDX_NAMES[2]: _digit_images(N_TEST, 101),
        IDX_NAMES[3]: (9 - np.arange(N_TEST) % 10).astype(np.uint8),
    }


def _mnist_file_bytes(name: str, arr: np.ndarray, gz: bool) -> bytes:
    data = _idx_bytes(arr, idx.IMAGES_MAGIC if arr.ndim == 3 else idx.LABELS_MAGIC)
    return gzip.compress(data, mtime=0) if gz else data


def _write_mnist(directory: Path, gz: tuple[bool, ...] = (True, True, False, False)) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for (name, arr), zipped in zip(_mnist_arrays().items(), gz):
        (directory / (name + (".gz" if zipped else ""))).write_bytes(
            _mnist_file_bytes(name, arr, zipped)
        )


def _cifar_images(n: int, offset: int) -> np.ndarray:
    """(n, 3072) channel-major rows: red plane 255, green plane 0, blue plane ``offset + i``."""
    x = np.zeros((n, 3, 32, 32), dtype=np.uint8)
    x[:, 0] = 255
    x[:, 2] = (offset + np.arange(n, dtype=np.uint8))[:, None, None]
    return x.reshape(n, 3072)


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 with every str and bytes written as a Python 2 ``str`` (BINSTRING), as the
    official CIFAR files were written by Python 2's cPickle."""

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str


def _dump(path: Path, obj: dict, protocol: int | str) -> None:
    """Pickle ``obj`` with a Python 3 protocol, or ``"py2"`` for the official files' dialect."""
    if protocol == "py2":
        buf = io.BytesIO()
        _Py2Pickler(buf, protocol=2).dump(obj)
        # NumPy 1 (which wrote the official files) names its reconstructor numpy.core.multiarray
        data = buf.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        if b"_reconstruct" in data:  # arrays: the GLOBAL opcode names the NumPy 1 module
            assert b"cnumpy.core.multiarray\n_reconstruct\n" in data
        assert b"_codecs" not in data
    else:
        data = pickle.dumps(obj, protocol=protocol)
    path.write_bytes(data)


CIFAR10_NAMES = [f"class{i}".encode() for i in range(10)]


def _write_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(5):
        ids = np.arange(8 * b, 8 * b + 8)
        batch = {b"data": _cifar_images(8, 1 + 8 * b), b"labels": [int(i % 10) for i in ids]}
        _dump(folder / f"data_batch_{b + 1}", batch, protocol="py2")
    test = {b"data": _cifar_images(N_TEST, 101), b"labels": [int(i) for i in range(N_TEST)]}
    _dump(folder / "test_batch", test, protocol="py2")
    _dump(folder / "batches.meta", {b"label_names": CIFAR10_NAMES}, protocol=2)  # Py3-written


def _fine_to_coarse(fine: np.ndarray) -> np.ndarray:
    return (fine * 7) % 20  # any map from the 100 fine classes to the 20 super-classes


def _write_cifar100(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n, offset in (("train", N_TRAIN, 1), ("test", N_TEST, 101)):
        fine = (np.arange(n) % 10) * 3  # fine classes 0, 3, ..., 27
        obj = {
            b"data": _cifar_images(n, offset),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": _fine_to_coarse(fine).tolist(),
        }
        _dump(folder / split, obj, protocol=pickle.HIGHEST_PROTOCOL)
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    _dump(folder / "meta", meta, protocol=pickle.HIGHEST_PROTOCOL)


def _tar_gz(path: Path, source_root: Path, folder: str) -> None:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source_root / folder, arcname=folder)


def _ids(split: uk.datasets.Split, channel: int = 0) -> np.ndarray:
    """Recover each sample's identity from the pixel written by the generators above."""
    return np.rint(split.x[:, channel, 1, 1].numpy() * 255).astype(int)


def _fake_server(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    """Replace urlopen with one that serves ``files`` by URL; returns the URLs requested."""
    requested: list[str] = []

    def fake_urlopen(request, timeout=None):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        requested.append(url)
        if url not in files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


# --- MNIST family -------------------------------------------------------------------------------


def test_mnist_reads_gzip_and_plain_idx(tmp_path: Path) -> None:
    _write_mnist(tmp_path)  # train files .gz, test files plain
    b = uk.datasets.load("mnist", root=tmp_path, val_fraction=0.25, seed=0)
    assert b.name == "mnist" and b.num_classes == 10 and not b.flip_invariant
    assert b.input_shape == b.image_shape == (1, SIDE, SIDE)
    assert b.class_names == tuple(str(i) for i in range(10)) and b.fine_names is None
    assert (len(b.train), len(b.val), len(b.test)) == (30, 10, N_TEST)
    for split in (b.train, b.val, b.test):
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert split.fine is None
        assert torch.all(split.x[:, 0, 0, 0] == 1.0) and torch.all(split.x[:, 0, 0, 1] == 0.0)
        assert float(split.x.min()) >= 0.0 and float(split.x.max()) <= 1.0
    # the official test set, in order, with its labels
    assert _ids(b.test).tolist() == list(range(101, 101 + N_TEST))
    assert b.test.y.tolist() == [9 - i % 10 for i in range(N_TEST)]
    # labels travel with their images
    assert np.array_equal(b.train.y.numpy(), (_ids(b.train) - 1) % 10)
    assert b.normalization == uk.datasets.Normalization(raw_range=(0.0, 255.0), quantized=True)
    raw = b.normalization.to_raw(b.train.x[:3])
    assert torch.equal(raw, torch.round(raw)) and float(raw.max()) == 255.0
    info = b.split_info
    assert info["sizes"] == {"train": 30, "val": 10, "test": N_TEST}
    assert info["official_sizes"] == {"train": N_TRAIN, "test": N_TEST}
    assert info["seed"] == 0 and info["fractions"] == {"train": 0.75, "val": 0.25}
    assert info["root"] == str(tmp_path) and info["limit_train"] is None


def test_val_is_carved_from_train_stratified_and_seeded(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=(False, False, True, True))
    a = uk.datasets.load("mnist", root=tmp_path, val_fraction=0.25, seed=0)
    a2 = uk.datasets.load("mnist", root=tmp_path, val_fraction=0.25, seed=0)
    c = uk.datasets.load("mnist", root=tmp_path, val_fraction=0.25, seed=1)
    train_ids, val_ids = set(_ids(a.train)), set(_ids(a.val))
    assert not train_ids & val_ids and train_ids | val_ids == set(range(1, N_TRAIN + 1))
    assert np.bincount(a.val.y.numpy(), minlength=10).tolist() == [1] * 10  # stratified
    assert a.fingerprint == a2.fingerprint and _ids(a.val).tolist() == _ids(a2.val).tolist()
    assert a.fingerprint != c.fingerprint and set(_ids(c.val)) != val_ids
    assert torch.equal(a.test.x, c.test.x)  # the test split never depends on the seed
    no_val = uk.datasets.load("mnist", root=tmp_path, val_fraction=0.0)
    assert no_val.val is None and len(no_val.train) == N_TRAIN


def test_limits_keep_the_first_samples_and_are_recorded(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    b = uk.datasets.load("mnist", root=tmp_path, val_fraction=0.25, limit_train=30, limit_test=3)
    assert sorted(_ids(b.train).tolist() + _ids(b.val).tolist()) == list(range(1, 31))
    assert _ids(b.test).tolist() == [101, 102, 103]
    assert b.split_info["limit_train"] == 30 and b.split_info["limit_test"] == 3
    assert b.split_info["sizes"] == {"train": 20, "val": 10, "test": 3}
    assert b.split_info["official_sizes"] == {"train": N_TRAIN, "test": N_TEST}
    # 2 images per class: a quarter of them rounds to none, so there is no validation split
    tiny = uk.datasets.load("mnist", root=tmp_path, val_fraction=0.25, limit_train=20)
    assert tiny.val is None and tiny.split_info["sizes"]["val"] == 0 and len(tiny.train) == 20


def test_fashion_mnist_in_torchvision_raw_layout(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "FashionMNIST" / "raw")
    b = uk.datasets.load("fashion_mnist", root=tmp_path, val_fraction=0.25)
    assert b.name == "fashion_mnist" and b.class_names[0] == "T-shirt/top"
    assert len(b.class_names) == 10 and len(b.train) + len(b.val) == N_TRAIN
    assert b.split_info["dir"] == str(tmp_path / "FashionMNIST" / "raw")
    # MNIST's own folder is absent and root holds nothing: a clear error, no silent fallback
    with pytest.raises(DataError, match="MNIST: train-images-idx3-ubyte"):
        uk.datasets.load("mnist", root=tmp_path)


def test_missing_file_names_file_directory_and_fix(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as err:
        uk.datasets.load("mnist", root=tmp_path)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte not found" in msg and "train-images" not in msg
    assert str(tmp_path) in msg and "download=True" in msg


def test_official_files_of_the_other_family_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_mnist(tmp_path, gz=(True, True, True, True))
    name = "train-images-idx3-ubyte.gz"
    digest = hashlib.md5((tmp_path / name).read_bytes()).hexdigest()
    monkeypatch.setitem(idx._FAMILIES["mnist"].md5, name, digest)  # pretend: MNIST's real file
    with pytest.raises(DataError, match="official MNIST file, not Fashion-MNIST"):
        uk.datasets.load("fashion_mnist", root=tmp_path)
    assert len(uk.datasets.load("mnist", root=tmp_path).test) == N_TEST


@pytest.mark.parametrize("gz", [False, True])
def test_corrupt_magic_number_is_named(tmp_path: Path, gz: bool) -> None:
    _write_mnist(tmp_path, gz=(gz,) * 4)
    name = "train-labels-idx1-ubyte" + (".gz" if gz else "")
    labels = (np.arange(N_TRAIN) % 10).astype(np.uint8)
    bad = _idx_bytes(labels, 0x00000803)  # an image-file magic on the label file
    (tmp_path / name).write_bytes(gzip.compress(bad) if gz else bad)
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*0x00000803, expected 0x0+801"):
        uk.datasets.load("mnist", root=tmp_path)


def test_truncated_files_are_named(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=(False, True, False, False))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte is truncated.*31360 bytes"):
        uk.datasets.load("mnist", root=tmp_path)
    _write_mnist(tmp_path, gz=(False, True, False, False))
    gz_path = tmp_path / "train-labels-idx1-ubyte.gz"
    gz_path.write_bytes(gz_path.read_bytes()[:-12])  # a cut-off gzip stream
    with pytest.raises(DataError, match=r"cannot read .*train-labels-idx1-ubyte\.gz"):
        uk.datasets.load("mnist", root=tmp_path)


def test_read_idx_rejects_trailing_bytes_and_mismatched_files(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(_idx_bytes(np.arange(5, dtype=np.uint8), idx.LABELS_MAGIC) + b"\x00")
    with pytest.raises(DataError, match="trailing bytes"):
        idx.read_idx(path)
    _write_mnist(tmp_path / "m")
    short = _idx_bytes(np.zeros(N_TRAIN - 1, dtype=np.uint8), idx.LABELS_MAGIC)
    (tmp_path / "m" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(short))
    with pytest.raises(DataError, match=r"40 images but .* 39 labels"):
        uk.datasets.load("mnist", root=tmp_path / "m")


def test_mnist_download_fetches_checks_and_places_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    served = {
        base + name + ".gz": _mnist_file_bytes(name, arr, gz=True)
        for name, arr in _mnist_arrays().items()
    }
    for url, body in served.items():
        monkeypatch.setitem(
            idx._FAMILIES["mnist"].md5, url.rsplit("/", 1)[1], hashlib.md5(body).hexdigest()
        )
    requested = _fake_server(monkeypatch, served)
    b = uk.datasets.load("mnist", root=tmp_path / "data", download=True, val_fraction=0.25)
    assert sorted(requested) == sorted(served) and len(b.test) == N_TEST
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(n + ".gz" for n in IDX_NAMES)
    requested.clear()
    uk.datasets.load("mnist", root=tmp_path / "data", download=True)
    assert requested == []  # present files are not fetched again


def test_download_checksum_mismatch_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = "https://ossci-datasets.s3.amazonaws.com/mnist/"
    served = {
        base + name + ".gz": _mnist_file_bytes(name, arr, gz=True)
        for name, arr in _mnist_arrays().items()
    }
    _fake_server(monkeypatch, served)  # the published checksums stay: the generated files differ
    with pytest.raises(DataError, match=r"checksum mismatch for https://ossci.*train-images"):
        uk.datasets.load("mnist", root=tmp_path, download=True)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_download_network_failure_names_url_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(request, timeout=None):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as err:
        uk.datasets.load("fashion_mnist", root=tmp_path, download=True)
    msg = str(err.value)
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images" in msg
    assert "place it at" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


# --- CIFAR --------------------------------------------------------------------------------------


def test_cifar10_batches_directory(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    b = uk.datasets.load("cifar10", root=tmp_path, val_fraction=0.25, seed=3)
    assert b.name == "cifar10" and b.num_classes == 10 and b.flip_invariant
    assert b.input_shape == b.image_shape == (3, 32, 32)
    assert b.class_names == tuple(f"class{i}" for i in range(10))
    assert (len(b.train), len(b.val), len(b.test)) == (30, 10, N_TEST)
    for split in (b.train, b.val, b.test):
        assert split.x.dtype == torch.float32 and split.fine is None
        # channel-major rows: red plane 255 -> 1.0, green plane 0 -> 0.0
        assert torch.all(split.x[:, 0] == 1.0) and torch.all(split.x[:, 1] == 0.0)
    ids = np.concatenate([_ids(b.train, channel=2), _ids(b.val, channel=2)])
    assert sorted(ids.tolist()) == list(range(1, N_TRAIN + 1))  # all five batches, val from train
    assert np.array_equal(b.train.y.numpy(), (_ids(b.train, channel=2) - 1) % 10)
    assert np.bincount(b.val.y.numpy(), minlength=10).tolist() == [1] * 10
    assert _ids(b.test, channel=2).tolist() == list(range(101, 111))
    assert b.test.y.tolist() == list(range(N_TEST))
    assert b.split_info["seed"] == 3 and b.split_info["sizes"]["val"] == 10


def test_cifar10_archive_is_extracted_and_matches_the_directory(tmp_path: Path) -> None:
    _write_cifar10(tmp_path / "src")
    _tar_gz(tmp_path / "cifar-10-python.tar.gz", tmp_path / "src", "cifar-10-batches-py")
    from_archive = uk.datasets.load("cifar10", root=tmp_path, val_fraction=0.25)
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".extract-")]
    from_dir = uk.datasets.load("cifar10", root=tmp_path / "src", val_fraction=0.25)
    assert from_archive.fingerprint == from_dir.fingerprint


@pytest.mark.parametrize("member", ["../evil", "/tmp/unlearnkit-evil", "ok/../../evil"])
def test_unsafe_tar_members_are_refused(tmp_path: Path, member: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match=r"refusing to extract .*(absolute path|'\.\.')"):
        uk.datasets.load("cifar10", root=root)
    assert not (tmp_path / "evil").exists() and list(root.iterdir()) == [
        root / "cifar-10-python.tar.gz"
    ]


def test_tar_symlink_member_is_refused(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "cifar-100-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/train")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="link or special file"):
        uk.datasets.load("cifar100", root=tmp_path)


def test_cifar100_fine_and_coarse_labels(tmp_path: Path) -> None:
    _write_cifar100(tmp_path)
    fine = uk.datasets.load("cifar100", root=tmp_path, val_fraction=0.25, seed=0)
    coarse = uk.datasets.load("cifar100", root=tmp_path, labels="coarse", val_fraction=0.25)
    assert fine.name == "cifar100" and fine.num_classes == 100 and fine.fine_names is None
    assert len(fine.class_names) == 100 and fine.class_names[3] == "fine3"
    assert all(s.fine is None for s in (fine.train, fine.val, fine.test))
    assert coarse.name == "cifar100_coarse" and coarse.num_classes == 20
    assert len(coarse.class_names) == 20 and len(coarse.fine_names) == 100
    assert coarse.split_info["labels"] == "coarse" and coarse.flip_invariant
    for f_split, c_split in ((fine.train, coarse.train), (fine.val, coarse.val)):
        assert torch.equal(f_split.x, c_split.x)  # one seed: the same held-out images
    pairs = ((fine.train, coarse.train), (fine.val, coarse.val), (fine.test, coarse.test))
    for f_split, c_split in pairs:
        assert torch.equal(c_split.fine, f_split.y)
        assert torch.equal(c_split.y, torch.from_numpy(_fine_to_coarse(c_split.fine.numpy())))
    # stratified by fine label: one image of each of the 10 fine classes in val
    assert sorted(coarse.val.fine.tolist()) == [3 * i for i in range(10)]
    assert coarse.fingerprint != fine.fingerprint


def test_cifar100_archive_and_unknown_labels(tmp_path: Path) -> None:
    _write_cifar100(tmp_path / "src")
    _tar_gz(tmp_path / "cifar-100-python.tar.gz", tmp_path / "src", "cifar-100-python")
    b = uk.datasets.load("cifar100", root=tmp_path, labels="coarse", limit_test=4)
    assert len(b.test) == 4 and b.test.fine is not None
    with pytest.raises(DataError, match=r"labels must be 'fine'.*or 'coarse'.*got 'super'"):
        uk.datasets.load("cifar100", root=tmp_path, labels="super")


def test_cifar_missing_files_name_directory_and_fix(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataError) as err:
        uk.datasets.load("cifar10", root=tmp_path)
    msg = str(err.value)
    assert "data_batch_4 not found" in msg and "data_batch_3" not in msg
    assert str(tmp_path / "cifar-10-batches-py") in msg and "cifar-10-python.tar.gz" in msg
    assert "download=True" in msg


def test_cifar_restricted_unpickler_refuses_foreign_globals(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)

    class Payload:
        def __reduce__(self):
            return (os.getcwd, ())

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({b"data": Payload(), b"labels": []})
    )
    with pytest.raises(DataError, match=r"test_batch.*refusing to load the global \S*getcwd"):
        uk.datasets.load("cifar10", root=tmp_path)
    obj = {b"data": np.array([None], dtype=object), b"labels": [0]}
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match="object array"):
        uk.datasets.load("cifar10", root=tmp_path)


def test_cifar_truncated_or_malformed_batches(tmp_path: Path) -> None:
    _write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"cannot read .*data_batch_2"):
        uk.datasets.load("cifar10", root=tmp_path)
    _dump(path, {b"data": np.zeros((8, 1024), dtype=np.uint8), b"labels": [0] * 8}, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_2: 'data' must be an \(n, 3072\) uint8"):
        uk.datasets.load("cifar10", root=tmp_path)
    _dump(path, {b"data": _cifar_images(8, 9), b"labels": [0] * 7 + [10]}, protocol=2)
    with pytest.raises(DataError, match=r"outside 0\.\.9"):
        uk.datasets.load("cifar10", root=tmp_path)


def test_cifar_download_success_and_checksum_mismatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_cifar10(tmp_path / "src")
    _tar_gz(tmp_path / "served.tar.gz", tmp_path / "src", "cifar-10-batches-py")
    body = (tmp_path / "served.tar.gz").read_bytes()
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    requested = _fake_server(monkeypatch, {url: body})
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"checksum mismatch .*expected c58f30108f718f92721a"):
        uk.datasets.load("cifar10", root=root, download=True)
    assert requested == [url] and [p for p in root.rglob("*") if p.is_file()] == []
    spec = cifar._SPECS["cifar10"]
    patched = dataclasses.replace(spec, md5=hashlib.md5(body).hexdigest())
    monkeypatch.setitem(cifar._SPECS, "cifar10", patched)
    b = uk.datasets.load("cifar10", root=root, download=True, val_fraction=0.25)
    assert len(b.train) + len(b.val) == N_TRAIN
    assert (root / "cifar-10-python.tar.gz").read_bytes() == body


# --- arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_fraction": 1.0}, r"val_fraction must lie in \[0, 1\)"),
        ({"val_fraction": -0.1}, r"val_fraction must lie in \[0, 1\)"),
        ({"limit_train": 0}, "limit_train must be a positive integer"),
        ({"limit_test": 2.5}, "limit_test must be a positive integer"),
        ({"root": 3}, "root must be a directory path"),
        ({"nonsense": 1}, "bad arguments for dataset 'mnist'"),
    ],
)
def test_bad_arguments_raise_data_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    _write_mnist(tmp_path)
    with pytest.raises(DataError, match=match):
        uk.datasets.load("mnist", **{"root": tmp_path, **kwargs})


def test_root_that_is_a_file_and_registry(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(DataError, match="is a file, not a directory"):
        uk.datasets.load("cifar10", root=tmp_path / "f")
    assert {"mnist", "fashion_mnist", "cifar10", "cifar100"} <= set(uk.datasets.available())
