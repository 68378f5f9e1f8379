"""Shared plumbing of the public-dataset loaders (:mod:`.idx`, :mod:`.cifar`).

Downloading with a checksum check and an atomic rename, safe extraction of tar archives, the
checks of the loaders' common arguments, and the assembly of a :class:`DatasetBundle` from a
dataset's official train/test arrays (validation carved from the official training set).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._bundle import DatasetBundle, Normalization, Split, stratified_split

__all__ = [
    "assemble_bundle",
    "check_split_args",
    "download_file",
    "extract_tar",
    "md5sum",
    "resolve_root",
]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # bytes read/written/hashed at a time
_CONVERT_ROWS = 8192  # images converted to float32 at a time (bounds the peak memory)


def md5sum(path: Path) -> str:
    """Return the hex MD5 digest of a file (the checksum the datasets publish)."""
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _chunks(url: str, dest: Path, timeout: float) -> Iterator[bytes]:
    """Yield the body of ``url``; any network failure becomes one :class:`DataError`."""
    request = urllib.request.Request(url, headers={"User-Agent": "unlearnkit"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                yield chunk
    except (OSError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts
        raise DataError(
            f"could not download {url}: {exc}; check the network connection and retry, or "
            f"fetch the file by hand and place it at {dest}"
        ) from exc


def download_file(url: str, dest: Path, *, md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, verifying its MD5 checksum.

    The body goes to a temporary file next to ``dest`` that is renamed onto ``dest`` only once
    the checksum matches, so an interrupted or corrupt download never leaves a file that a later
    load would trust.

    Args:
        url: the file's address.
        dest: where the file ends up (its directory is created if needed).
        md5: the published hex MD5 digest of the file.
        timeout: seconds a connection may stall before the download fails.

    Returns:
        ``dest``.

    Raises:
        DataError: the directory is not writable, the download failed (names the URL and the
            fix), or the checksum differs.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        raise DataError(
            f"cannot write to {dest.parent}: {exc}; pass a writable root directory"
        ) from exc
    tmp = Path(tmp_name)
    log.info("downloading %s to %s", url, dest)
    try:
        h = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as out:
            for chunk in _chunks(url, dest, timeout):
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if got != md5:
            raise DataError(
                f"checksum mismatch for {url}: md5 {got}, expected {md5}; the download is "
                f"corrupt or the server changed the file; retry, or place a verified copy at {dest}"
            )
        os.replace(tmp, dest)
    except OSError as exc:  # writing the temporary file or renaming it
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"cannot write {dest}: {exc}; free some disk space or pick another root"
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _check_member(archive: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive:
        problem = "an absolute path"
    elif ".." in posix.parts or ".." in windows.parts:
        problem = "a '..' component"
    elif not (member.isfile() or member.isdir()):
        problem = "a link or special file"
    else:
        return
    raise DataError(
        f"refusing to extract {archive}: member {name!r} has {problem}, which could write "
        f"outside the target directory; use the official archive"
    )


def extract_tar(archive: Path, dest: Path) -> None:
    """Extract a (possibly compressed) tar archive into ``dest``, safely.

    Every member is checked first: absolute paths, ``..`` components, links and special files
    are refused before anything is written. Members are extracted into a temporary directory
    inside ``dest`` and then renamed into place file by file, so an archive that turns out to be
    truncated leaves no half-written file behind.

    Raises:
        DataError: an unsafe member, or a corrupt/truncated archive.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member)
            dest.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
            try:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                    tar.extractall(staging, members=members, filter="data")
                else:  # pragma: no cover - older patch releases; members were checked above
                    tar.extractall(staging, members=members)
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        target = dest / path.relative_to(staging)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(path, target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(
            f"cannot extract {archive} into {dest}: {exc}; the archive is corrupt or truncated "
            f"(delete it and download it again) or the directory is not writable"
        ) from exc


def resolve_root(root: Any) -> Path:
    """Return ``root`` as a :class:`Path` (``~`` expanded); it may not exist yet.

    Raises:
        DataError: ``root`` is not a path, or names an existing file.
    """
    if not isinstance(root, (str, os.PathLike)):
        raise DataError(
            f"root must be a directory path, got {type(root).__name__}; pass the directory that "
            f"holds (or should receive) the dataset files"
        )
    path = Path(root).expanduser()
    if path.exists() and not path.is_dir():
        raise DataError(f"root {path} is a file, not a directory; pass the dataset directory")
    return path


def check_split_args(val_fraction: Any, limit_train: Any, limit_test: Any) -> None:
    """Check the arguments every public-dataset loader shares.

    Raises:
        DataError: ``val_fraction`` outside [0, 1), or a limit that is not a positive integer.
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float, np.floating, np.integer))
        or not 0.0 <= float(val_fraction) < 1.0
    ):
        raise DataError(f"val_fraction must lie in [0, 1), got {val_fraction!r}")
    for name, value in (("limit_train", limit_train), ("limit_test", limit_test)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{name} must be a positive integer or None, got {value!r}")


def _to_model(norm: Normalization, raw: np.ndarray) -> torch.Tensor:
    """Map uint8 images to float32 model inputs, a block of rows at a time."""
    out = torch.empty(raw.shape, dtype=torch.float32)
    for start in range(0, raw.shape[0], _CONVERT_ROWS):
        # callers pass fancy-indexed (fresh, writable) arrays, so no copy is needed here
        block = torch.from_numpy(np.ascontiguousarray(raw[start : start + _CONVERT_ROWS]))
        out[start : start + _CONVERT_ROWS] = norm.to_model(block)
    return out


def assemble_bundle(
    *,
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    num_classes: int,
    class_names: tuple[str, ...],
    root: Path,
    seed: int,
    val_fraction: float,
    limit_train: int | None,
    limit_test: int | None,
    flip_invariant: bool,
    fine_train: np.ndarray | None = None,
    fine_test: np.ndarray | None = None,
    fine_names: tuple[str, ...] | None = None,
    info: dict[str, Any] | None = None,
    augment: Any = None,
) -> DatasetBundle:
    """Build a bundle from a dataset's official splits of uint8 ``(N, C, H, W)`` images.

    The first ``limit_train``/``limit_test`` samples of each official split are kept; the
    validation split is carved from the (kept) official training set, stratified by label (by
    the fine label when there is one) and seeded; the official test set is the test split.
    Inputs are ``raw / 255`` as float32; ``augment`` is the bundle's training augmentation.
    """
    n_train_official, n_test_official = len(y_train), len(y_test)
    if limit_train is not None:
        x_train, y_train = x_train[:limit_train], y_train[:limit_train]
        fine_train = None if fine_train is None else fine_train[:limit_train]
    if limit_test is not None:
        x_test, y_test = x_test[:limit_test], y_test[:limit_test]
        fine_test = None if fine_test is None else fine_test[:limit_test]
    val_fraction = float(val_fraction)
    if val_fraction > 0:
        strata = fine_train if fine_train is not None else y_train
        parts = stratified_split(strata, {"train": 1.0 - val_fraction, "val": val_fraction}, seed)
    else:
        parts = {"train": np.arange(len(y_train)), "val": np.arange(0)}
    if len(parts["train"]) == 0:
        raise DataError(
            f"{name}: no training samples are left after holding out val_fraction="
            f"{val_fraction}; lower val_fraction or raise limit_train"
        )
    norm = Normalization(raw_range=(0.0, 255.0), quantized=True)

    def make(x: np.ndarray, y: np.ndarray, fine: np.ndarray | None, idx: np.ndarray) -> Split:
        return Split(
            _to_model(norm, x[idx]),
            torch.from_numpy(y[idx].astype(np.int64)),
            None if fine is None else torch.from_numpy(fine[idx].astype(np.int64)),
        )

    train = make(x_train, y_train, fine_train, parts["train"])
    val = make(x_train, y_train, fine_train, parts["val"]) if len(parts["val"]) else None
    test = make(x_test, y_test, fine_test, np.arange(len(y_test)))
    image_shape = tuple(int(s) for s in x_train.shape[1:])
    return DatasetBundle(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        input_shape=image_shape,
        image_shape=image_shape,  # type: ignore[arg-type]
        normalization=norm,
        split_info={
            **(info or {}),
            "root": str(root),
            "seed": seed,
            "fractions": {"train": 1.0 - val_fraction, "val": val_fraction},
            "val_from": "official train split",
            "stratified": True,
            "sizes": {"train": len(train), "val": len(val) if val else 0, "test": len(test)},
            "official_sizes": {"train": n_train_official, "test": n_test_official},
            "limit_train": limit_train,
            "limit_test": limit_test,
        },
        flip_invariant=flip_invariant,
        augment=augment,
        class_names=class_names,
        fine_names=fine_names,
    )
