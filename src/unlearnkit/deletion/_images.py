"""Read an image folder (one sub-folder per class) of a deletion request's data.

Part of :mod:`unlearnkit.deletion.inputs` (which calls :func:`_from_images`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .inputs import IMAGE_SUFFIXES, LoadedData, _finish
from .model_io import few, one_line


def _image_files(root: Path, where: str, like: LoadedData | None) -> list[tuple[Path, str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{where}: no class sub-folders; put the images in one sub-folder per class "
            "(root/<class>/<image>)"
        )
    if like is not None:
        unknown = [c for c in classes if c not in like.label_names]
        if unknown:
            raise DataError(
                f"{where}: held-out set with other classes: {len(unknown)} class folder(s) the "
                f"training data do not have ({few(unknown, 5)}); remove them"
            )
    files: list[tuple[Path, str]] = []
    for name in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [
                (Path(dirpath) / f, name)
                for f in sorted(filenames)
                if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)
            ]
        if not found:
            raise DataError(
                f"{where}: class folder {name!r} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                "add images or remove the folder"
            )
        files += found
    return files


def _from_images(root: Path, what: str, like: LoadedData | None) -> LoadedData:
    from PIL import Image, UnidentifiedImageError

    where = f"{what} {root}"
    files = _image_files(root, where, like)
    arrays: list[np.ndarray] = []
    first_of_size: dict[tuple[int, int], Path] = {}
    want = None if like is None or like.image_shape is None else like.image_shape[0]
    for path, _ in files:
        try:
            with Image.open(path) as im:
                im.load()
                wide = im.mode == "I" or im.mode.startswith("I;16")  # 16-bit grayscale
                gray = wide or im.mode in ("1", "L", "LA", "F")
                mode = "L" if want == 1 or (want is None and gray) else "RGB"
                if wide:
                    arr = np.asarray(im, dtype=np.float32)[..., None] / 65535.0
                else:
                    arr = np.asarray(im.convert(mode), dtype=np.uint8)
                    arr = arr[..., None] if arr.ndim == 2 else arr
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DataError(f"{where}: cannot read image {path} ({one_line(exc)})") from exc
        size = (arr.shape[1], arr.shape[0])
        first_of_size.setdefault(size, path)
        if len(first_of_size) > 1:
            (s1, p1), (s2, p2) = list(first_of_size.items())[:2]
            raise DataError(
                f"{where}: images differ in size: {s1[0]}x{s1[1]} ({p1}) and {s2[0]}x{s2[1]} "
                f"({p2}); resize them to one size"
            )
        arrays.append(arr)
    channels = want or (3 if any(a.shape[2] == 3 for a in arrays) else 1)
    h, w = arrays[0].shape[:2]
    x = np.empty((len(arrays), channels, h, w), dtype=np.float32)
    for i, a in enumerate(arrays):
        a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a
        x[i] = np.moveaxis(np.broadcast_to(a, (h, w, channels)), 2, 0)
    labels = [label for _, label in files]
    if like is not None:
        index = {n: i for i, n in enumerate(like.label_names)}
        y, names = torch.tensor([index[c] for c in labels]), list(like.label_names)
    else:
        names = sorted(set(labels))
        index = {n: i for i, n in enumerate(names)}
        y = torch.tensor([index[c] for c in labels], dtype=torch.int64)
    ids = [p.relative_to(root).as_posix() for p, _ in files]
    return _finish(
        torch.from_numpy(x),
        y.to(torch.int64),
        names,
        str(root),
        "image_folder",
        what,
        like,
        ids=ids,
        image_shape=(channels, h, w),
        id_source="paths",
    )
