"""Image folders read lazily from disk: one sub-folder per class, Tiny-ImageNet, CelebA.

The splits' inputs are :class:`~._lazy.LazyImages`: the loader lists the files (and stats them
for the fingerprint) but decodes no image beyond the first one's header; training and
evaluation read them batch by batch through a ``DataLoader``. Three layouts of ``root``:

- ``"folders"`` (default): ``root/train/<class>/...``, ``root/test/<class>/...`` and optionally
  ``root/val/<class>/...`` (images may sit in nested folders under a class folder). The
  classes are the training class folders in sorted order.
- ``"tiny_imagenet"``: the official Tiny-ImageNet-200 folder: ``train/<wnid>/images/*.JPEG``
  and ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt``. The official validation
  images are the test split (the official test images have no labels); class order is
  ``wnids.txt`` (else the sorted training folders), class names come from ``words.txt``.
- ``"celeba"``: ``list_attr_celeba.csv`` and ``list_eval_partition.csv`` (the CSV edition of
  CelebA) with the images in ``img_align_celeba/img_align_celeba/``, ``img_align_celeba/`` or
  ``images/``; ``attribute=`` picks the binary label (class 0 ``not_<attr>``, class 1
  ``<attr>``); the partition file gives train (0), validation (1) and test (2).

Without a validation split on disk, one is carved from the training files, stratified by label
and seeded (``val_fraction``, ``seed``).

>>> bundle = load_image_folder("~/data/tiny-imagenet-200", layout="tiny_imagenet")  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._augment import CropFlip
from ._bundle import DatasetBundle, Normalization, Split, stratified_split
from ._download import check_split_args, resolve_root
from ._lazy import IMAGE_SUFFIXES, ImageSource, LazyImages

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "LAYOUTS", "CropFlip", "load_image_folder"]

LAYOUTS = ("folders", "tiny_imagenet", "celeba")
#: Per-channel mean and standard deviation of ImageNet (on the [0, 1] scale).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Listing = tuple[list[str], list[int]]  # file names relative to root, labels
Layout = tuple[Listing, "Listing | None", Listing, list[str]]  # train, val, test, class names


# --- listing the files -------------------------------------------------------------------------


def _images_under(folder: Path, root: Path) -> list[str]:
    """Image files under ``folder`` (recursively, sorted, hidden entries skipped), relative to
    ``root``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        found += [
            (rel / f).as_posix()
            for f in sorted(filenames)
            if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
        ]
    return found


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _list_classes(root: Path, split: str, classes: list[str]) -> Listing:
    """Files and labels of ``root/split/<class>/...`` for the known ``classes``."""
    split_dir = root / split
    present = _class_dirs(split_dir)
    unknown = [c for c in present if c not in classes]
    if unknown:
        raise DataError(
            f"{split_dir} has class folders that are not training classes "
            f"({', '.join(unknown[:5])}); remove them or add training images of those classes"
        )
    index = {c: i for i, c in enumerate(classes)}
    files: list[str] = []
    labels: list[int] = []
    for c in present:
        found = _images_under(split_dir / c, root)
        if not found and split == "train":
            raise DataError(
                f"class folder {split_dir / c} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add images or remove the folder"
            )
        files += found
        labels += [index[c]] * len(found)
    if not files:
        raise DataError(f"{split_dir} holds no images in its class folders; add some")
    return files, labels


def _folders(root: Path) -> Layout:
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise DataError(
                f"{root / split} not found; an image folder needs root/train/<class>/<image> and "
                "root/test/<class>/<image> (root/val/ is optional)"
            )
    classes = _class_dirs(root / "train")
    if len(classes) < 2:
        raise DataError(
            f"{root / 'train'} has {len(classes)} class folder(s); put the images in one "
            "sub-folder per class, at least two classes"
        )
    val = _list_classes(root, "val", classes) if (root / "val").is_dir() else None
    return _list_classes(root, "train", classes), val, _list_classes(root, "test", classes), classes


def _read_lines(path: Path) -> list[str]:
    try:
        return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path} ({exc}); restore the file") from exc


def _tiny_imagenet(root: Path) -> Layout:
    train_dir, annotations = root / "train", root / "val" / "val_annotations.txt"
    if not train_dir.is_dir() or not annotations.is_file():
        raise DataError(
            f"{root} is not a Tiny-ImageNet folder: it needs train/<wnid>/images/ and "
            "val/val_annotations.txt (the official tiny-imagenet-200 layout)"
        )
    wnids_file = root / "wnids.txt"
    wnids = _read_lines(wnids_file) if wnids_file.is_file() else _class_dirs(train_dir)
    train = _list_classes(root, "train", wnids)
    index = {w: i for i, w in enumerate(wnids)}
    files: list[str] = []
    labels: list[int] = []
    for n, line in enumerate(_read_lines(annotations), start=1):
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(
                f"{annotations} line {n}: expected '<file>\\t<wnid>...' with a known wnid, got "
                f"{line[:60]!r}; restore the official file"
            )
        files.append(f"val/images/{parts[0]}")
        labels.append(index[parts[1]])
    names = list(wnids)
    words = root / "words.txt"
    if words.is_file():
        table = dict(ln.split("\t", 1) for ln in _read_lines(words) if "\t" in ln)
        names = [table.get(w, w).split(",")[0].strip() or w for w in wnids]
    return train, None, (files, labels), names


def _find_celeba_images(root: Path) -> Path:
    for rel in ("img_align_celeba/img_align_celeba", "img_align_celeba", "images"):
        if (root / rel).is_dir():
            return root / rel
    raise DataError(
        f"no CelebA image folder in {root}; put the images in img_align_celeba/ (or images/)"
    )


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise DataError(f"{path} not found; the celeba layout needs it (the CSV edition)")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path} as CSV ({exc}); restore the file") from exc
    if len(rows) < 2:
        raise DataError(f"{path} has no data rows; restore the file")
    return [h.strip() for h in rows[0]], rows[1:]


def _celeba(root: Path, attribute: str | None) -> Layout:
    attr_path = root / "list_attr_celeba.csv"
    header, rows = _csv_rows(attr_path)
    attributes = header[1:]
    if attribute not in attributes:
        raise DataError(
            f"the celeba layout needs attribute= one of the columns of {attr_path.name} "
            f"({', '.join(attributes[:8])}{'...' if len(attributes) > 8 else ''}), got "
            f"{attribute!r}"
        )
    col = header.index(attribute)
    value = {}
    for n, row in enumerate(rows, start=2):
        v = row[col].strip() if col < len(row) else ""
        if v not in ("1", "-1", "0"):
            raise DataError(f"{attr_path} line {n}: {attribute} must be 1 or -1, got {v!r}")
        value[row[0].strip()] = 1 if v == "1" else 0
    part_path = root / "list_eval_partition.csv"
    _, parts = _csv_rows(part_path)
    images = _find_celeba_images(root).relative_to(root).as_posix()
    split: dict[str, Listing] = {"0": ([], []), "1": ([], []), "2": ([], [])}
    for n, row in enumerate(parts, start=2):
        name, which = row[0].strip(), row[1].strip() if len(row) > 1 else ""
        if which not in split or name not in value:
            raise DataError(
                f"{part_path} line {n}: expected '<image>,<0|1|2>' for an image listed in "
                f"{attr_path.name}, got {','.join(row)[:60]!r}"
            )
        split[which][0].append(f"{images}/{name}")
        split[which][1].append(value[name])
    if not split["0"][0] or not split["2"][0]:
        raise DataError(f"{part_path} lists no training (0) or no test (2) images")
    val = split["1"] if split["1"][0] else None
    return split["0"], val, split["2"], [f"not_{attribute}", attribute]


# --- the loader --------------------------------------------------------------------------------


def _check_args(layout: Any, size: Any, channels: Any, normalize: Any, padding: Any) -> None:
    if layout not in LAYOUTS:
        raise DataError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else size
        if (
            not isinstance(hw, (tuple, list))
            or len(hw) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in hw)
        ):
            raise DataError(f"size must be a positive int or an (height, width) pair, got {size!r}")
    if channels not in (None, 1, 3):
        raise DataError(f"channels must be 1, 3 or None (from the first image), got {channels!r}")
    pair = isinstance(normalize, (tuple, list)) and len(normalize) == 2
    if not (normalize is None or normalize == "imagenet" or pair):
        raise DataError(
            f"normalize must be None, 'imagenet' or a (mean, std) pair, got {normalize!r}"
        )
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise DataError(f"crop_padding must be a whole number >= 0, got {padding!r}")


def _normalization(normalize: Any, channels: int) -> Normalization:
    if normalize is None:
        return Normalization(raw_range=(0.0, 255.0), quantized=True)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize == "imagenet" else normalize
    try:
        mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    except (TypeError, ValueError):
        raise DataError(
            f"normalize must hold a mean and a std sequence, got {normalize!r}"
        ) from None
    if channels == 1 and normalize == "imagenet":
        mean, std = (sum(mean) / 3,), (sum(std) / 3,)
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise DataError(
            f"normalize needs {channels} mean(s) and {channels} positive std(s), got {normalize!r}"
        )
    return Normalization(raw_range=(0.0, 255.0), mean=mean, std=std, quantized=True)


def _first_image(path: Path) -> tuple[str, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode, (im.height, im.width)
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"cannot read image {path} ({exc}); replace or remove it") from exc


def load_image_folder(
    root: str | Path,
    *,
    layout: str = "folders",
    attribute: str | None = None,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    normalize: str | tuple[Any, Any] | None = None,
    augment: bool = True,
    crop_padding: int = 4,
    flip: bool = True,
    seed: int = 0,
    val_fraction: float = 0.1,
    num_workers: int | None = None,
    eval_batch_size: int | None = None,
    fingerprint: str = "stat",
    name: str | None = None,
) -> DatasetBundle:
    """Load an image folder whose images stay on disk and are read batch by batch.

    Args:
        root: the dataset directory.
        layout: ``"folders"``, ``"tiny_imagenet"`` or ``"celeba"`` (see the module).
        attribute: the CelebA attribute that is the label (``"celeba"`` only).
        size: resize every image to ``(height, width)`` (an int: square) when decoding;
            ``None`` keeps the first image's size and refuses images of another size.
        channels: 1 (grayscale) or 3 (RGB); ``None``: 1 when the first image is grayscale.
        normalize: ``None`` (inputs ``raw / 255``), ``"imagenet"`` (ImageNet's per-channel
            mean and std) or a ``(mean, std)`` pair of per-channel values on the [0, 1] scale.
        augment: give the bundle the training augmentation :class:`CropFlip` (random crop of
            the image padded by ``crop_padding``, horizontal flip when ``flip``).
        crop_padding: padding of the random crop (0: no crop).
        flip: flip in the augmentation; also the bundle's ``flip_invariant``.
        seed, val_fraction: the stratified, seeded validation split carved from the training
            files when the layout has none on disk (``val_fraction`` 0: no validation split).
        num_workers: loader worker processes (``None``: none on the CPU, 4 for CUDA).
        eval_batch_size: rows per batch of evaluation passes (``None``: as many as fit in
            64 MiB of float32 inputs, at most 1024).
        fingerprint: ``"stat"`` (file names, sizes and modification times) or ``"content"``
            (file names and bytes, read when the fingerprint is first asked for).
        name: the bundle's name (default: the layout's dataset name or the folder's name).

    Raises:
        DataError: a missing folder or listing, an unknown class or attribute, an unreadable
            first image, or a bad argument.
    """
    _check_args(layout, size, channels, normalize, crop_padding)
    if fingerprint not in ("stat", "content"):
        raise DataError(f"fingerprint must be 'stat' or 'content', got {fingerprint!r}")
    check_split_args(val_fraction, None, None)
    for what, value in (("num_workers", num_workers), ("eval_batch_size", eval_batch_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DataError(f"{what} must be a whole number or None, got {value!r}")
    if num_workers is not None and num_workers < 0:
        raise DataError(f"num_workers must be >= 0, got {num_workers}")
    if eval_batch_size is not None and eval_batch_size < 1:
        raise DataError(f"eval_batch_size must be >= 1, got {eval_batch_size}")
    root_path = resolve_root(root)
    if not root_path.is_dir():
        raise DataError(f"image folder {root_path} not found; pass the dataset directory")
    if layout == "celeba":
        train, val, test, class_names = _celeba(root_path, attribute)
    elif attribute is not None:
        raise DataError("attribute= applies to layout='celeba' only; drop it")
    elif layout == "tiny_imagenet":
        train, val, test, class_names = _tiny_imagenet(root_path)
    else:
        train, val, test, class_names = _folders(root_path)

    mode, first_hw = _first_image(root_path / train[0][0])
    if channels is None:  # palette images may hold colours: read as RGB
        channels = 1 if mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;") else 3
    hw = first_hw if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    norm = _normalization(normalize, channels)
    source = ImageSource(
        root=str(root_path),
        channels=channels,
        height=int(hw[0]),
        width=int(hw[1]),
        resize=size is not None,
        normalization=norm,
        num_workers=num_workers,
        eval_batch_size=eval_batch_size,
        hash_mode=fingerprint,
    )

    y_train = np.asarray(train[1], dtype=np.int64)
    val_from = "folder on disk" if val is not None else "training files"
    if val is None and float(val_fraction) > 0:
        cut = stratified_split(
            y_train, {"train": 1.0 - float(val_fraction), "val": float(val_fraction)}, seed
        )
    else:
        cut = {"train": np.arange(len(y_train)), "val": np.arange(0)}
    files_train = np.asarray(train[0], dtype=object)

    def split(files: Any, labels: Any) -> Split:
        return Split(
            LazyImages.from_files(source, list(files)),
            torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        )

    train_split = split(files_train[cut["train"]], y_train[cut["train"]])
    if val is not None:
        val_split: Split | None = split(*val)
    elif len(cut["val"]):
        val_split = split(files_train[cut["val"]], y_train[cut["val"]])
    else:
        val_split = None
    test_split = split(*test)
    if len(train_split) == 0:
        raise DataError(
            "no training images are left after the validation split; lower val_fraction"
        )

    image_shape = (channels, source.height, source.width)
    fill = tuple(float(v) for v in norm.to_model(torch.zeros(1, channels, 1, 1)).flatten())
    default_name = {"tiny_imagenet": "tiny_imagenet", "celeba": f"celeba_{attribute}"}
    return DatasetBundle(
        name=name or default_name.get(layout, root_path.name or "image_folder"),
        train=train_split,
        val=val_split,
        test=test_split,
        num_classes=len(class_names),
        input_shape=image_shape,
        image_shape=image_shape,
        normalization=norm,
        split_info={
            "source": f"image folder ({layout})",
            "root": str(root_path),
            "storage": "disk",
            "seed": seed,
            "fractions": {"train": 1.0 - float(val_fraction), "val": float(val_fraction)},
            "val_from": val_from,
            "stratified": val is None,
            "sizes": {
                "train": len(train_split),
                "val": len(val_split) if val_split is not None else 0,
                "test": len(test_split),
            },
            "resize": list(hw) if size is not None else None,
            "normalize": normalize if isinstance(normalize, (str, type(None))) else "custom",
            "attribute": attribute,
            "fingerprint": fingerprint,
        },
        augment=CropFlip(padding=crop_padding, flip=flip, fill=fill) if augment else None,
        flip_invariant=bool(flip),
        class_names=tuple(class_names),
    )
