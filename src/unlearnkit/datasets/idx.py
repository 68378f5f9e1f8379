"""MNIST and Fashion-MNIST from their official IDX files, as 1x28x28 images scaled to [0, 1].

The loaders read the four official files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or ``.gz``-compressed,
either directly in ``root`` or in torchvision's layout ``root/MNIST/raw`` /
``root/FashionMNIST/raw`` (searched first, so both datasets can share one ``root``). With
``download=True`` missing files are fetched into that torchvision layout and checked against the
published MD5 checksums. Fashion-MNIST's official host serves plain HTTP only; the checksum is
what guarantees the files.

>>> bundle = load_mnist("~/data", download=True)  # doctest: +SKIP
>>> bundle.input_shape, len(bundle.train), len(bundle.val), len(bundle.test)  # doctest: +SKIP
((1, 28, 28), 54000, 6000, 10000)
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import DataError
from ._bundle import DatasetBundle
from ._download import assemble_bundle, check_split_args, download_file, md5sum, resolve_root

__all__ = [
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "MAX_IDX_BYTES",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (n, rows, cols)
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (n,)

#: The largest data size :func:`read_idx` accepts from a header by default (1 GiB).
MAX_IDX_BYTES = 1 << 30
# The official files' largest: 60,000 images of 28x28 bytes (47,040,000); the loaders allow
# some room for same-format variants and refuse anything larger before inflating it.
_LOADER_MAX_BYTES = 64 << 20

# IDX type code -> big-endian NumPy dtype
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_TRAIN_IMAGES = "train-images-idx3-ubyte"
_TRAIN_LABELS = "train-labels-idx1-ubyte"
_TEST_IMAGES = "t10k-images-idx3-ubyte"
_TEST_LABELS = "t10k-labels-idx1-ubyte"
_FILES = (_TRAIN_IMAGES, _TRAIN_LABELS, _TEST_IMAGES, _TEST_LABELS)


@dataclass(frozen=True)
class _Family:
    key: str  # registry name and bundle name
    title: str  # for messages
    folder: str  # torchvision's folder: root/<folder>/raw
    base_url: str  # official host; files are <base_url><name>.gz
    md5: dict[str, str]  # published MD5 of each .gz file
    class_names: tuple[str, ...]


_FAMILIES = {
    "mnist": _Family(
        key="mnist",
        title="MNIST",
        folder="MNIST",
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        md5={
            f"{_TRAIN_IMAGES}.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            f"{_TRAIN_LABELS}.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            f"{_TEST_IMAGES}.gz": "9fb629c4189551a2d022fa330f9573f3",
            f"{_TEST_LABELS}.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        class_names=tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": _Family(
        key="fashion_mnist",
        title="Fashion-MNIST",
        folder="FashionMNIST",
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        md5={
            f"{_TRAIN_IMAGES}.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            f"{_TRAIN_LABELS}.gz": "25c81989df183df01b3e8a0aad5dffbe",
            f"{_TEST_IMAGES}.gz": "bef4ecab320f06d8554ea6380940ec79",
            f"{_TEST_LABELS}.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}


def read_idx(
    path: str | Path, *, magic: int | None = None, max_bytes: int | None = MAX_IDX_BYTES
) -> np.ndarray:
    """Read one IDX file (plain, or gzip-compressed when the name ends in ``.gz``).

    The IDX format is a 4-byte big-endian magic number (two zero bytes, a type code, the number
    of dimensions), one big-endian uint32 size per dimension, then the values in C order.

    The header is read first (streamed, for ``.gz``) and the size it declares is computed
    exactly (Python integers: no overflow) and checked before any data are read or
    decompressed: it must not exceed ``max_bytes``, a plain file must hold exactly that many
    bytes, and a ``.gz`` file is inflated only up to that size plus one byte (to detect
    trailing data). A small compressed file that would inflate to far more than its header
    declares is therefore never inflated in full.

    Args:
        path: the file.
        magic: the expected magic number, e.g. :data:`IMAGES_MAGIC` (``0x00000803``) or
            :data:`LABELS_MAGIC` (``0x00000801``); ``None`` accepts any valid IDX header.
        max_bytes: the largest data size a header may declare (default :data:`MAX_IDX_BYTES`,
            1 GiB); ``None`` for no bound beyond the file's own size.

    Returns:
        An array of the header's shape and type (native byte order).

    Raises:
        DataError: the file cannot be read or decompressed, has a bad or unexpected magic
            number, declares more data than ``max_bytes``, or holds fewer or more bytes than
            its header promises. The message names the file.
    """
    path = Path(path)
    fix = "delete it and download it again (download=True), or replace it with the official file"
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                return _read_idx_stream(f, path, magic, max_bytes, None, fix)
        with path.open("rb") as f:
            return _read_idx_stream(f, path, magic, max_bytes, path.stat().st_size, fix)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(
            f"cannot read {path}: {_one_line(exc)}; the file is corrupt or truncated; {fix}"
        ) from exc


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _read_exact(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream)."""
    chunks, left = [], n
    while left > 0:
        chunk = f.read(min(left, 1 << 24))  # bounded reads: a huge size allocates nothing
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_idx_stream(
    f: BinaryIO,
    path: Path,
    magic: int | None,
    max_bytes: int | None,
    file_size: int | None,
    fix: str,
) -> np.ndarray:
    head = _read_exact(f, 4)
    if len(head) < 4:
        raise DataError(
            f"{path} is truncated: {len(head)} bytes, too short for an IDX header; {fix}"
        )
    found = int.from_bytes(head, "big")
    type_code, ndim = head[2], head[3]
    if magic is not None and found != magic:
        raise DataError(
            f"{path} has the magic number 0x{found:08x}, expected 0x{magic:08x}; it is corrupt "
            f"or not the right IDX file; {fix}"
        )
    if head[0] != 0 or head[1] != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DataError(f"{path} has the magic number 0x{found:08x}: not an IDX file; {fix}")
    header = 4 + 4 * ndim
    dims = _read_exact(f, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(
            f"{path} is truncated: {4 + len(dims)} bytes, fewer than its {header}-byte "
            f"header; {fix}"
        )
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[type_code])
    count = math.prod(shape)  # Python ints: exact, however large the sizes
    expected = count * dtype.itemsize
    if max_bytes is not None and expected > max_bytes:
        raise DataError(
            f"{path} declares shape {shape}, {expected} bytes of data, more than the "
            f"{max_bytes} bytes allowed (max_bytes=); it is corrupt or not an IDX file of this "
            f"dataset; {fix}"
        )
    if file_size is not None and file_size - header != expected:
        actual = file_size - header
        problem = "is truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{path} {problem}: its header promises {expected} bytes of data for shape "
            f"{shape}, the file holds {actual}; {fix}"
        )
    data = _read_exact(f, expected)
    if len(data) < expected:
        raise DataError(
            f"{path} is truncated: its header promises {expected} bytes of data for shape "
            f"{shape}, the file holds {len(data)}; {fix}"
        )
    if f.read(1):  # one byte more is enough to know; the rest is never inflated
        raise DataError(
            f"{path} has trailing bytes: its header promises {expected} bytes of data for "
            f"shape {shape}, the file holds more; {fix}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape).astype(dtype.newbyteorder("="), copy=False)


def _find_in(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """The official files present in ``directory`` (plain preferred over ``.gz``) and those not."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in _FILES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def _locate(family: _Family, root: Path, fetch: bool) -> dict[str, Path]:
    raw_dir = root / family.folder / "raw"
    searched = [raw_dir, root]
    results = [(d, *_find_in(d)) for d in searched]
    for _, found, missing in results:
        if not missing:
            return found
    if fetch:
        _, _, missing = results[0]
        for name in missing:
            gz = f"{name}.gz"
            download_file(family.base_url + gz, raw_dir / gz, md5=family.md5[gz])
        found, missing = _find_in(raw_dir)
        if not missing:
            return found
    best_dir, _, missing = min(results, key=lambda r: len(r[2]))  # first on ties: raw_dir
    other = next(d for d in searched if d != best_dir)
    raise DataError(
        f"{family.title}: {', '.join(missing)} not found (plain or .gz) in {best_dir} "
        f"(also searched {other}); pass download=True, or place the files there"
    )


def _check_not_other_family(family: _Family, files: dict[str, Path]) -> None:
    """Refuse official ``.gz`` files of the *other* family (both use the same file names)."""
    for path in files.values():
        if not path.name.endswith(".gz"):
            continue
        digest = md5sum(path)
        for other in _FAMILIES.values():
            if other is not family and other.md5.get(path.name) == digest:
                raise DataError(
                    f"{path} is the official {other.title} file, not {family.title}; load it "
                    f"as {other.key!r}, or keep each dataset in its own folder "
                    f"(<root>/{family.folder}/raw)"
                )


def _read_split(images: Path, labels: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, magic=IMAGES_MAGIC, max_bytes=_LOADER_MAX_BYTES)
    y = read_idx(labels, magic=LABELS_MAGIC, max_bytes=_LOADER_MAX_BYTES)
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels; "
            f"the files do not belong together"
        )
    if y.size and int(y.max()) >= num_classes:
        raise DataError(
            f"{labels} holds the label {int(y.max())}, outside 0..{num_classes - 1}; "
            f"it is not an official label file"
        )
    return x[:, None], y.astype(np.int64)  # (n, 1, rows, cols)


def _load_family(
    family: _Family,
    root: Any,
    *,
    download: bool,
    seed: int,
    val_fraction: float,
    limit_train: int | None,
    limit_test: int | None,
) -> DatasetBundle:
    check_split_args(val_fraction, limit_train, limit_test)
    root_path = resolve_root(root)
    files = _locate(family, root_path, download)
    _check_not_other_family(family, files)
    num_classes = len(family.class_names)
    x_train, y_train = _read_split(files[_TRAIN_IMAGES], files[_TRAIN_LABELS], num_classes)
    x_test, y_test = _read_split(files[_TEST_IMAGES], files[_TEST_LABELS], num_classes)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{family.title}: training images are {x_train.shape[2:]} but test images are "
            f"{x_test.shape[2:]}; the files do not belong together"
        )
    return assemble_bundle(
        name=family.key,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        class_names=family.class_names,
        root=root_path,
        seed=seed,
        val_fraction=val_fraction,
        limit_train=limit_train,
        limit_test=limit_test,
        flip_invariant=False,  # a mirrored digit or shoe is not the same class in general
        info={"source": f"{family.title} IDX files", "dir": str(files[_TRAIN_IMAGES].parent)},
    )


def load_mnist(
    root: str | Path,
    *,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> DatasetBundle:
    """Load MNIST from its official IDX files in ``root``.

    The validation split is carved from the official 60,000 training images (stratified by
    label, seeded); the official 10,000 test images are the test split. Inputs are
    ``raw / 255`` with shape ``(1, 28, 28)``; no augmentation.

    Args:
        root: directory holding the four files (plain or ``.gz``), directly or in
            ``root/MNIST/raw``; downloads go to ``root/MNIST/raw``.
        download: fetch missing files from the official mirror
            (``https://ossci-datasets.s3.amazonaws.com/mnist/``), checking their MD5.
        seed: seed of the validation split.
        val_fraction: fraction of the official training set held out for validation, in
            [0, 1); 0 gives no validation split.
        limit_train: keep only the first N official training samples (before the validation
            split is carved), or ``None`` for all.
        limit_test: keep only the first N official test samples, or ``None`` for all.

    Raises:
        DataError: missing files (names them and the directories searched), a corrupt or
            truncated file, a failed download, or a bad argument.
    """
    return _load_family(
        _FAMILIES["mnist"],
        root,
        download=download,
        seed=seed,
        val_fraction=val_fraction,
        limit_train=limit_train,
        limit_test=limit_test,
    )


def load_fashion_mnist(
    root: str | Path,
    *,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> DatasetBundle:
    """Load Fashion-MNIST from its official IDX files in ``root``.

    Same layout, splits and scaling as :func:`load_mnist`; the files go in ``root`` or
    ``root/FashionMNIST/raw`` and downloads come from
    ``http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/`` (MD5-checked).

    Args:
        root: directory holding the four files (plain or ``.gz``), directly or in
            ``root/FashionMNIST/raw``; downloads go to ``root/FashionMNIST/raw``.
        download: fetch missing files from the official host, checking their MD5.
        seed: seed of the validation split.
        val_fraction: fraction of the official training set held out for validation.
        limit_train: keep only the first N official training samples, or ``None``.
        limit_test: keep only the first N official test samples, or ``None``.

    Raises:
        DataError: missing files, a corrupt or truncated file, MNIST's files found where
            Fashion-MNIST's were expected, a failed download, or a bad argument.
    """
    return _load_family(
        _FAMILIES["fashion_mnist"],
        root,
        download=download,
        seed=seed,
        val_fraction=val_fraction,
        limit_train=limit_train,
        limit_test=limit_test,
    )
