"""SVHN (Street View House Numbers, cropped digits) from its official ``.mat`` files.

The loader reads ``train_32x32.mat`` and ``test_32x32.mat`` (and ``extra_32x32.mat`` with
``extra=True``) from ``root``, the files the dataset's site publishes (and torchvision keeps in its
``root``). Each holds ``X``, ``(32, 32, 3, N)`` uint8 RGB images, and ``y``, ``(N, 1)`` labels
1..10 where 10 stands for the digit 0; the loader maps 10 to 0, so label ``d`` is digit ``d``.
With ``download=True`` missing files are fetched from ``http://ufldl.stanford.edu/housenumbers/``
and checked against their published MD5 checksums; files already in ``root`` are used as they are.

>>> bundle = load_svhn("~/data", download=True)  # doctest: +SKIP
>>> bundle.input_shape, bundle.class_names[0]  # doctest: +SKIP
((3, 32, 32), '0')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._bundle import DatasetBundle, Normalization, Split
from ._download import assemble_bundle, check_split_args, download_file, resolve_root

__all__ = ["load_svhn"]

_BASE_URL = "http://ufldl.stanford.edu/housenumbers/"
# official file -> its published MD5 checksum
_FILES = {
    "train": ("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": ("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
    "extra": ("extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
}
_SIDE, _CHANNELS = 32, 3
_FIX = "delete it and download it again (download=True), or replace it with the official file"


def _locate(root: Path, parts: tuple[str, ...], fetch: bool) -> dict[str, Path]:
    """Paths of the official files named by ``parts``, downloading missing ones if asked."""
    paths = {part: root / _FILES[part][0] for part in parts}
    missing = [part for part, path in paths.items() if not path.is_file()]
    if missing and fetch:
        for part in missing:
            name, md5 = _FILES[part]
            download_file(_BASE_URL + name, paths[part], md5=md5)
        missing = []
    if missing:
        names = ", ".join(_FILES[part][0] for part in missing)
        raise DataError(
            f"SVHN: {names} not found in {root}; pass download=True, or place the official "
            f"files from {_BASE_URL} there"
        )
    return paths


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, 3, 32, 32)`` uint8 and labels 0..9 from one official ``.mat`` file."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=("X", "y"))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a data error
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(
            f"cannot read {path} as a MATLAB file: {first}; the file is corrupt, truncated or "
            f"not the official one; {_FIX}"
        ) from exc
    for key in ("X", "y"):
        if key not in mat:
            raise DataError(f"{path} lacks the variable {key!r}; it is not an official SVHN file")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (_SIDE, _SIDE, _CHANNELS):
        raise DataError(
            f"{path}: 'X' must be a (32, 32, 3, N) uint8 array, got {x.shape} {x.dtype}; {_FIX}"
        )
    n = x.shape[3]
    if y.size != n or (y.ndim == 2 and 1 not in y.shape) or y.ndim > 2:
        raise DataError(f"{path}: 'y' must hold {n} labels, (N, 1), got shape {y.shape}; {_FIX}")
    y = y.reshape(-1)
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu":
        raise DataError(f"{path}: 'y' must hold integer labels, got {y.dtype}; {_FIX}")
    y = y.astype(np.int64)
    if n and (int(y.min()) < 1 or int(y.max()) > 10):
        raise DataError(
            f"{path}: 'y' holds labels {int(y.min())}..{int(y.max())}, outside 1..10 (10 is "
            f"the digit 0); it is not an official SVHN file"
        )
    y[y == 10] = 0
    # (H, W, C, N) -> (N, C, H, W)
    return np.transpose(x, (3, 2, 0, 1)), y


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (population) of ``(n, C, H, W)`` inputs on the [0, 1] scale."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, x.shape[0], 4096):
        block = x[start : start + 4096].to(torch.float64)
        total += block.sum(dim=(0, 2, 3))
        squares += (block * block).sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0.0).sqrt()
    if bool((std <= 0).any()):
        raise DataError(
            "SVHN: a colour channel is constant over the training split, so it cannot be "
            "standardised; pass standardize=False or keep more training samples"
        )
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def _standardised(bundle: DatasetBundle) -> DatasetBundle:
    """The bundle with inputs standardised per channel by the training split's statistics."""
    mean, std = _channel_stats(bundle.train.x)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    def scale(split: Split | None) -> Split | None:
        return None if split is None else Split((split.x - m) / s, split.y, split.fine)

    norm = Normalization(raw_range=(0.0, 255.0), mean=mean, std=std, quantized=True)
    info = {**bundle.split_info, "standardize": {"mean": list(mean), "std": list(std)}}
    return DatasetBundle(
        name=bundle.name,
        train=scale(bundle.train),  # type: ignore[arg-type]
        val=scale(bundle.val),
        test=scale(bundle.test),  # type: ignore[arg-type]
        num_classes=bundle.num_classes,
        input_shape=bundle.input_shape,
        image_shape=bundle.image_shape,
        normalization=norm,
        split_info=info,
        flip_invariant=bundle.flip_invariant,
        class_names=bundle.class_names,
    )


def load_svhn(
    root: str | Path,
    *,
    extra: bool = False,
    download: bool = False,
    seed: int = 0,
    val_fraction: float = 0.1,
    limit_train: int | None = None,
    limit_test: int | None = None,
    standardize: bool = False,
) -> DatasetBundle:
    """Load SVHN (cropped 32x32 digits) from the official ``.mat`` files in ``root``.

    The validation split is carved from the official training set (73,257 images; with
    ``extra=True`` the 531,131 "extra" images are appended after them), stratified by label and
    seeded; the official 26,032 test images are the test split. Labels are the digits 0..9 (the
    files' label 10 is the digit 0). Inputs have shape ``(3, 32, 32)`` (RGB) and are
    ``raw / 255``, as for CIFAR; ``flip_invariant`` is false (a mirrored digit is another
    shape); no augmentation.

    With ``standardize=True`` each channel is further standardised by the mean and standard
    deviation of the training split actually kept (after ``limit_train`` and the validation
    split), recorded in ``bundle.normalization`` and ``split_info["standardize"]``; the same
    constants map the validation and test splits.

    Args:
        root: directory holding ``train_32x32.mat``, ``test_32x32.mat`` (and
            ``extra_32x32.mat`` for ``extra=True``).
        extra: append the official "extra" images to the training set.
        download: fetch the missing files from ``http://ufldl.stanford.edu/housenumbers/`` into
            ``root``, checking their MD5.
        seed: seed of the validation split.
        val_fraction: fraction of the (kept) training set held out for validation, in [0, 1).
        limit_train: keep only the first N training samples (of the training set with the extra
            images appended, when ``extra=True``) before the validation split, or ``None``.
        limit_test: keep only the first N official test samples, or ``None``.
        standardize: standardise each channel by the training split's mean and std.

    Raises:
        DataError: missing files (names them, the directory and the fix), a corrupt or
            wrong-shaped file, a failed download or checksum mismatch, or a bad argument.
    """
    check_split_args(val_fraction, limit_train, limit_test)
    for flag, value in (("extra", extra), ("download", download), ("standardize", standardize)):
        if not isinstance(value, (bool, np.bool_)):
            raise DataError(f"{flag} must be True or False, got {value!r}")
    extra = bool(extra)
    root_path = resolve_root(root)
    parts = ("train", "test", "extra") if extra else ("train", "test")
    paths = _locate(root_path, parts, bool(download))
    x_train, y_train = _read_mat(paths["train"])
    n_official = {"train": len(y_train)}
    if extra:
        x_extra, y_extra = _read_mat(paths["extra"])
        n_official["extra"] = len(y_extra)
        if limit_train is not None:  # concatenate only what the limit keeps
            keep = max(0, limit_train - len(y_train))
            x_extra, y_extra = x_extra[:keep], y_extra[:keep]
        x_train = np.concatenate([x_train, x_extra])
        y_train = np.concatenate([y_train, y_extra])
    x_test, y_test = _read_mat(paths["test"])
    info: dict[str, Any] = {"source": "SVHN .mat files", "dir": str(root_path), "extra": extra}
    bundle = assemble_bundle(
        name="svhn_extra" if extra else "svhn",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=10,
        class_names=tuple(str(d) for d in range(10)),
        root=root_path,
        seed=seed,
        val_fraction=val_fraction,
        limit_train=limit_train,
        limit_test=limit_test,
        flip_invariant=False,
        info=info,
    )
    # before any limit; with extra=True the training set counts the extra images too
    sizes = bundle.split_info["official_sizes"]
    sizes["train"] = sum(n_official.values())
    if extra:
        sizes["extra"] = n_official["extra"]
    return _standardised(bundle) if standardize else bundle
