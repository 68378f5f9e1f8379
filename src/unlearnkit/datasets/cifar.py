"""CIFAR-10 and CIFAR-100 from their official python-pickle batches, as 3x32x32 images in [0, 1].

The loaders read ``root/cifar-10-batches-py/`` (``data_batch_1`` .. ``data_batch_5``,
``test_batch``, ``batches.meta``) or ``root/cifar-100-python/`` (``train``, ``test``, ``meta``),
the layout the official archives unpack to (and torchvision uses). When that folder is
incomplete but the archive ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` lies in
``root``, it is extracted there (members with absolute paths, ``..`` or links are refused); with
``download=True`` the archive is fetched from ``https://www.cs.toronto.edu/~kriz/`` first and
checked against its published MD5 checksum.

Security: the batches are Python pickles, and unpickling a file can run arbitrary code. Use only
the official archives (``download=True`` verifies the checksum). As a second line of defence the
files are read with a restricted unpickler that resolves nothing but NumPy's array
reconstruction (and refuses object arrays), so a tampered file fails with :class:`DataError`
instead of running code; that reduces the risk, it does not make untrusted pickles safe.

>>> bundle = load_cifar100("~/data", labels="coarse", download=True)  # doctest: +SKIP
>>> bundle.num_classes, len(bundle.fine_names), bundle.train.fine is not None  # doctest: +SKIP
(20, 100, True)
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._augment import CropFlip
from ._bundle import DatasetBundle
from ._download import assemble_bundle, check_split_args, download_file, extract_tar, resolve_root

__all__ = ["load_cifar10", "load_cifar100"]

_SIDE, _CHANNELS = 32, 3
_ROW = _CHANNELS * _SIDE * _SIDE  # 3072 bytes per image: R plane, G plane, B plane


@dataclass(frozen=True)
class _Spec:
    title: str
    folder: str  # what the archive unpacks to, inside root
    archive: str
    url: str
    md5: str  # published MD5 of the archive
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str


_SPECS = {
    "cifar10": _Spec(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        archive="cifar-10-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test=("test_batch",),
        meta="batches.meta",
    ),
    "cifar100": _Spec(
        title="CIFAR-100",
        folder="cifar-100-python",
        archive="cifar-100-python.tar.gz",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train=("train",),
        test=("test",),
        meta="meta",
    ),
}


# --- restricted unpickling --------------------------------------------------------------------


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an object array (unpickling it could run code)")
    return dtype


def _numpy_internal(module: str, name: str) -> Any:
    """NumPy's array reconstructors, under their NumPy 1 (``numpy.core``) or 2 (``numpy._core``)
    module names; the official files were written by NumPy 1."""
    sub = module.rsplit(".", 1)[1]
    for candidate in (f"numpy._core.{sub}", f"numpy.core.{sub}"):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot resolve {module}.{name}")  # pragma: no cover


_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: _plain_dtype,
    ("numpy.core.multiarray", "_reconstruct"): lambda: _numpy_internal(
        "numpy.core.multiarray", "_reconstruct"
    ),
    ("numpy._core.multiarray", "_reconstruct"): lambda: _numpy_internal(
        "numpy._core.multiarray", "_reconstruct"
    ),
    ("numpy.core.numeric", "_frombuffer"): lambda: _numpy_internal(
        "numpy.core.numeric", "_frombuffer"
    ),
    ("numpy._core.numeric", "_frombuffer"): lambda: _numpy_internal(
        "numpy._core.numeric", "_frombuffer"
    ),
    ("_codecs", "encode"): lambda: codecs.encode,  # bytes in protocol-2 pickles written by Py3
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, str, numbers and plain NumPy arrays; refuses anything else."""

    def find_class(self, module: str, name: str) -> Any:
        resolve = _ALLOWED_GLOBALS.get((module, name))
        if resolve is None:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name} (the official CIFAR files hold "
                f"only NumPy arrays, lists and strings)"
            )
        return resolve()


def _unpickle(path: Path) -> dict[Any, Any]:
    try:
        with path.open("rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - any unreadable pickle is a data error
        raise DataError(
            f"cannot read {path} as a CIFAR batch: {exc}; the file is corrupt, truncated or not "
            f"from the official archive; delete it and download it again (download=True)"
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(
            f"{path} holds a {type(obj).__name__}, not the dict of an official CIFAR batch"
        )
    return obj


# --- reading batches ----------------------------------------------------------------------------


def _field(d: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # bytes keys (encoding="bytes"), str keys (Py3-written files)
        if k in d:
            return d[k]
    raise DataError(f"{path} lacks the key {key!r}; it is not an official CIFAR file")


def _labels(d: dict[Any, Any], key: str, path: Path, n: int, num_classes: int) -> np.ndarray:
    y = np.asarray(_field(d, key, path))
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != n:
        raise DataError(
            f"{path}: {key!r} must be {n} integer labels, got shape {y.shape} of {y.dtype}"
        )
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise DataError(
            f"{path}: {key!r} holds labels {int(y.min())}..{int(y.max())}, outside "
            f"0..{num_classes - 1}; it is not an official CIFAR file"
        )
    return y.astype(np.int64)


def _read_batch(path: Path, label_keys: dict[str, int]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images ``(n, 3, 32, 32)`` uint8 and the labels named in ``label_keys`` (key -> K)."""
    d = _unpickle(path)
    data = _field(d, "data", path)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != _ROW
    ):
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{path}: 'data' must be an (n, {_ROW}) uint8 array, got "
            f"{type(data).__name__} {shape} {getattr(data, 'dtype', '')}"
        )
    n = data.shape[0]
    labels = {key: _labels(d, key, path, n, k) for key, k in label_keys.items()}
    return data.reshape(n, _CHANNELS, _SIDE, _SIDE), labels


def _read_batches(
    folder: Path, names: tuple[str, ...], label_keys: dict[str, int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    xs, ys = [], {key: [] for key in label_keys}
    for name in names:
        x, labels = _read_batch(folder / name, label_keys)
        xs.append(x)
        for key, y in labels.items():
            ys[key].append(y)
    return np.concatenate(xs), {key: np.concatenate(v) for key, v in ys.items()}


def _names(meta: dict[Any, Any], key: str, path: Path, count: int) -> tuple[str, ...]:
    raw = _field(meta, key, path)
    if not isinstance(raw, (list, tuple)) or len(raw) != count:
        raise DataError(f"{path}: {key!r} must list {count} names")
    return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw)


def _locate(spec: _Spec, root: Path, fetch: bool) -> Path:
    """Return the folder of batches, extracting (and first downloading) the archive if needed."""
    folder = root / spec.folder
    needed = (*spec.train, *spec.test, spec.meta)

    def missing() -> list[str]:
        return [name for name in needed if not (folder / name).is_file()]

    if not missing():
        return folder
    archive = root / spec.archive
    if not archive.is_file() and fetch:
        download_file(spec.url, archive, md5=spec.md5)
    if archive.is_file():
        extract_tar(archive, root)
        if missing():
            raise DataError(
                f"{archive} does not hold {', '.join(missing())} under {spec.folder}/; it is "
                f"not the official archive; delete it and pass download=True"
            )
        return folder
    raise DataError(
        f"{spec.title}: {', '.join(missing())} not found in {folder}, and there is no archive "
        f"{archive}; pass download=True, or place the files (or the archive) there"
    )


def _check_labels(labels: str) -> None:
    if labels not in ("fine", "coarse"):
        raise DataError(
            f"labels must be 'fine' (CIFAR-100's 100 classes) or 'coarse' (its 20 "
            f"super-classes), got {labels!r}"
        )


def _augmentation(augment: object) -> CropFlip | None:
    if not isinstance(augment, bool):
        raise DataError(f"augment must be true or false, got {augment!r}")
    return CropFlip(padding=4, flip=True) if augment else None


# --- public loaders -----------------------------------------------------------------------------


def load_cifar10(
    root: str | Path,
    *,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    augment: bool = False,
) -> DatasetBundle:
    """Load CIFAR-10 from the official python batches in ``root``.

    The validation split is carved from the official 50,000 training images (stratified by
    label, seeded); the official 10,000 test images are the test split. Inputs are ``raw / 255``
    with shape ``(3, 32, 32)`` (RGB); ``flip_invariant`` is true. With ``augment=True`` the
    bundle trains with the papers' augmentation (:class:`~._augment.CropFlip`: a random crop
    of the image padded by 4 black pixels, then a horizontal flip with probability 1/2).

    Args:
        root: directory holding ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz``.
        download: fetch the official archive into ``root`` when neither is there, checking
            its MD5, and extract it.
        seed: seed of the validation split.
        val_fraction: fraction of the official training set held out for validation, in
            [0, 1); 0 gives no validation split.
        limit_train: keep only the first N official training samples (before the validation
            split is carved), or ``None`` for all.
        limit_test: keep only the first N official test samples, or ``None`` for all.
        augment: train with random crops (padding 4) and horizontal flips.

    Raises:
        DataError: missing files (names them, the directory and the fix), a corrupt, truncated
            or unsafe file or archive, a failed download, or a bad argument.
    """
    check_split_args(val_fraction, limit_train, limit_test)
    aug = _augmentation(augment)
    root_path = resolve_root(root)
    spec = _SPECS["cifar10"]
    folder = _locate(spec, root_path, download)
    keys = {"labels": 10}
    x_train, y_train = _read_batches(folder, spec.train, keys)
    x_test, y_test = _read_batches(folder, spec.test, keys)
    class_names = _names(_unpickle(folder / spec.meta), "label_names", folder / spec.meta, 10)
    return assemble_bundle(
        name="cifar10",
        x_train=x_train,
        y_train=y_train["labels"],
        x_test=x_test,
        y_test=y_test["labels"],
        num_classes=10,
        class_names=class_names,
        root=root_path,
        seed=seed,
        val_fraction=val_fraction,
        limit_train=limit_train,
        limit_test=limit_test,
        flip_invariant=True,
        info={"source": "CIFAR-10 python batches", "dir": str(folder)},
        augment=aug,
    )


def load_cifar100(
    root: str | Path,
    *,
    labels: str = "fine",
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    augment: bool = False,
) -> DatasetBundle:
    """Load CIFAR-100 from the official python files in ``root``.

    With ``labels="fine"`` the model predicts the 100 classes and ``Split.fine`` is ``None``.
    With ``labels="coarse"`` ("CIFAR-20") it predicts the 20 super-classes; every split's
    ``fine`` then holds the 100-class labels and ``bundle.fine_names`` their names, which is
    what the ``subclass`` forget scenario needs. Either way the validation split is carved from
    the official training set stratified by the *fine* label, so for one seed both label modes
    hold out the same images. Inputs are ``raw / 255`` with shape ``(3, 32, 32)``.

    Args:
        root: directory holding ``cifar-100-python/`` or ``cifar-100-python.tar.gz``.
        labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 super-classes).
        download: fetch the official archive into ``root`` when neither is there, checking
            its MD5, and extract it.
        seed: seed of the validation split.
        val_fraction: fraction of the official training set held out for validation.
        limit_train: keep only the first N official training samples, or ``None``.
        limit_test: keep only the first N official test samples, or ``None``.
        augment: train with random crops (padding 4) and horizontal flips, as for CIFAR-10.

    Raises:
        DataError: an unknown ``labels`` value, missing files, a corrupt, truncated or unsafe
            file or archive, a failed download, or a bad argument.
    """
    _check_labels(labels)
    check_split_args(val_fraction, limit_train, limit_test)
    aug = _augmentation(augment)
    root_path = resolve_root(root)
    spec = _SPECS["cifar100"]
    folder = _locate(spec, root_path, download)
    keys = {"fine_labels": 100, "coarse_labels": 20}
    x_train, y_train = _read_batches(folder, spec.train, keys)
    x_test, y_test = _read_batches(folder, spec.test, keys)
    meta_path = folder / spec.meta
    meta = _unpickle(meta_path)
    fine_names = _names(meta, "fine_label_names", meta_path, 100)
    coarse_names = _names(meta, "coarse_label_names", meta_path, 20)
    fine_all = np.concatenate([y_train["fine_labels"], y_test["fine_labels"]])
    coarse_all = np.concatenate([y_train["coarse_labels"], y_test["coarse_labels"]])
    pairs = np.unique(np.stack([fine_all, coarse_all]), axis=1)
    if len(np.unique(pairs[0])) != pairs.shape[1]:
        raise DataError(
            f"{folder}: some fine class falls under two super-classes; the files are corrupt "
            f"or not the official ones"
        )
    coarse = labels == "coarse"
    label_key = "coarse_labels" if coarse else "fine_labels"
    return assemble_bundle(
        name="cifar100_coarse" if coarse else "cifar100",
        x_train=x_train,
        y_train=y_train[label_key],
        x_test=x_test,
        y_test=y_test[label_key],
        num_classes=20 if coarse else 100,
        class_names=coarse_names if coarse else fine_names,
        root=root_path,
        seed=seed,
        val_fraction=val_fraction,
        limit_train=limit_train,
        limit_test=limit_test,
        flip_invariant=True,
        fine_train=y_train["fine_labels"] if coarse else None,
        fine_test=y_test["fine_labels"] if coarse else None,
        fine_names=fine_names if coarse else None,
        info={"source": "CIFAR-100 python files", "dir": str(folder), "labels": labels},
        augment=aug,
    )
