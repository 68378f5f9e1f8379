"""Read a user's data for a deletion request, and turn the requested IDs into row positions.

Sources: CSV and Parquet tables, ``.npz`` arrays, image folders (one sub-folder per class), an
import path ``PKG.MODULE:FUNCTION`` returning a torch ``Dataset``, a ``Dataset`` object, or a
tuple ``(x, y)``. Every mistake in them is a :class:`~unlearnkit.errors.DataError` whose one
line names the file, the column or row, and the fix. The ID side (:func:`read_ids`,
:func:`resolve_ids`) lives in :mod:`unlearnkit.deletion.ids` and is re-exported here.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..datasets.arrays import as_inputs
from ..errors import ConfigError, DataError
from .ids import _check_unique, _positions, read_ids, resolve_ids
from .model_io import few, import_object, one_line

__all__ = ["IMAGE_SUFFIXES", "LoadedData", "read_data", "read_ids", "resolve_ids"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")


@dataclass
class LoadedData:
    """A data source read into memory: inputs, class indices and one ID per row.

    Attributes:
        x: inputs, ``float32``; ``int64`` when every feature is an integer or a category code.
        y: ``int64`` class indices ``0..K-1``.
        ids: one unique string per row (see ``id_source``).
        label_names: index -> the label as the user wrote it.
        source: what was read (the resolved path or the import path).
        kind: ``"csv"``, ``"parquet"``, ``"npz"``, ``"image_folder"``, ``"dataset"`` or
            ``"arrays"``.
        feature_names: the feature columns of a table, in order.
        categories: text column -> its sorted categories (the code is the index).
        image_shape: ``(C, H, W)`` for images.
        id_source: where the IDs come from: ``"column:<name>"``, ``"npz:ids"``, ``"paths"``
            (image folder) or ``"positions"`` (row numbers ``"0", "1", ...``).
    """

    x: torch.Tensor
    y: torch.Tensor
    ids: list[str]
    label_names: list[str]
    source: str
    kind: str
    feature_names: list[str] | None = None
    categories: dict[str, list[str]] = field(default_factory=dict)
    image_shape: tuple[int, int, int] | None = None
    id_source: str = "positions"

    def __len__(self) -> int:
        return int(self.y.shape[0])


# ----------------------------------------------------------------------------- labels


def _label_values(values: Any, where: str) -> tuple[np.ndarray | None, list[str] | None]:
    """Integer labels as an array, or text labels as a list (exactly one is not None)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise DataError(f"{where}: labels must be 1-D, got shape {values.shape}")
        if values.dtype.kind in "iub":
            return values.astype(np.int64), None
        if values.dtype.kind == "S":
            values = [v.decode("utf-8", "replace") for v in values.tolist()]
        else:
            values = values.tolist()
    items = list(values)
    if all(isinstance(v, str) for v in items):
        if all(_INT.match(v) for v in items):
            return np.array([int(v) for v in items], dtype=np.int64), None
        if not all(_FLOAT.match(v) for v in items):
            return None, items
        items = [float(v) for v in items]
    if all(isinstance(v, (int, float, np.number)) for v in items):
        arr = np.asarray(items, dtype=np.float64)
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}: label {items[i]!r} (row {i}) is not a class; labels must be integers "
                "or text"
            )
        return arr.astype(np.int64), None
    odd = next(v for v in items if not isinstance(v, (str, int, float, np.number)))
    raise DataError(
        f"{where}: labels must be integers or text, found a {type(odd).__name__} ({odd!r})"
    )


def _encode_labels(
    values: Any, where: str, like: LoadedData | None
) -> tuple[torch.Tensor, list[str]]:
    """Class indices and label names; with ``like``, in its mapping (by the label's text)."""
    ints, texts = _label_values(values, where)
    if like is not None:
        index = {name: i for i, name in enumerate(like.label_names)}
        keys = [str(int(v)) for v in ints] if ints is not None else texts
        unknown = list(dict.fromkeys(k for k in keys if k not in index))
        if unknown:
            raise DataError(
                f"{where}: held-out set with other classes: {len(unknown)} label(s) the training "
                f"data do not have ({few(unknown, 5)}); the model has no output for them, so "
                "drop those rows"
            )
        return torch.tensor([index[k] for k in keys], dtype=torch.int64), list(like.label_names)
    if ints is not None:
        if len(ints) and ints.min() < 0:
            raise DataError(
                f"{where}: integer labels are class indices and must be >= 0, found "
                f"{int(ints.min())}; relabel the classes 0..K-1 or write them as text"
            )
        top = int(ints.max()) + 1 if len(ints) else 0
        return torch.as_tensor(ints, dtype=torch.int64), _positions(top)
    names = sorted(set(texts))
    index = {name: i for i, name in enumerate(names)}
    return torch.tensor([index[t] for t in texts], dtype=torch.int64), names


# ----------------------------------------------------------------------------- inputs


def _x_tensor(x: Any, where: str) -> torch.Tensor:
    """Inputs as float32, or int64 when they are integers (categorical codes kept exact)."""
    return as_inputs(x, where, keep_dtype=True)


def _match_like(data: LoadedData, like: LoadedData, what: str) -> LoadedData:
    """Held-out inputs in the training inputs' shape and dtype."""
    if tuple(data.x.shape[1:]) != tuple(like.x.shape[1:]):
        raise DataError(
            f"{what} {data.source}: inputs have shape {tuple(data.x.shape[1:])} per row but the "
            f"training inputs {tuple(like.x.shape[1:])}; give held-out data in the training "
            "data's format"
        )
    if like.x.dtype == torch.int64 and data.x.is_floating_point():
        raise DataError(
            f"{what} {data.source}: inputs are floats but the training inputs are integers; "
            "give held-out data in the training data's format"
        )
    if like.x.is_floating_point() and not data.x.is_floating_point():
        data.x = data.x.to(torch.float32)
    return data


def _from_arrays(source: tuple, what: str, like: LoadedData | None) -> LoadedData:
    if len(source) != 2:
        raise DataError(f"{what}: a tuple must be (x, y), got {len(source)} items")
    x = _x_tensor(source[0], what)
    y, names = _encode_labels(source[1], what, like)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{what}: x has {x.shape[0]} rows but y has {y.shape[0]} labels")
    return _finish(x, y, names, "arrays", "arrays", what, like)


def _finish(x, y, names, source, kind, what, like, **extra) -> LoadedData:
    if x.shape[0] == 0:
        raise DataError(f"{what} {source}: no rows; give at least one sample")
    ids = extra.pop("ids", None) or _positions(int(x.shape[0]))
    if extra.get("image_shape") is None and x.dim() == 4:
        extra["image_shape"] = tuple(int(s) for s in x.shape[1:])
    data = LoadedData(x, y, ids, names, source, kind, **extra)
    return _match_like(data, like, what) if like is not None else data


def _item_label(y: Any, i: int, where: str) -> Any:
    if isinstance(y, torch.Tensor):
        if y.numel() != 1 or y.dim() > 1:
            raise DataError(
                f"{where}: item {i} has a label of shape {tuple(y.shape)}; return a class index "
                "(an int or a 0-d tensor), not a one-hot vector"
            )
        return y.item()
    return y.item() if isinstance(y, np.generic) else y


def _from_dataset(ds: Any, source: str, what: str, like: LoadedData | None) -> LoadedData:
    where = f"{what} {source}"
    try:
        n = len(ds)
    except TypeError as exc:
        raise DataError(f"{where}: not a map-style torch Dataset (no len()); give one") from exc
    xs: list[torch.Tensor] = []
    labels: list[Any] = []
    for i in range(n):
        try:
            item = ds[i]
        except Exception as exc:
            raise DataError(f"{where}: reading item {i} raised {one_line(exc)}") from exc
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise DataError(
                f"{where}: item {i} is a {type(item).__name__}, not an (input, label) pair"
            )
        x, y = item
        if not isinstance(x, (torch.Tensor, np.ndarray, list, tuple)):
            raise DataError(
                f"{where}: the input of item {i} is a {type(x).__name__}; return a tensor "
                "(for images, e.g. transforms.ToTensor())"
            )
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).cpu()
        if xs and t.shape != xs[0].shape:
            raise DataError(
                f"{where}: inputs differ in shape: {tuple(xs[0].shape)} (item 0) and "
                f"{tuple(t.shape)} (item {i}); make every input the same shape"
            )
        xs.append(t)
        labels.append(_item_label(y, i, where))
    if not xs:
        raise DataError(f"{where}: the dataset is empty; give at least one sample")
    floating = any(t.is_floating_point() for t in xs)
    x = torch.stack([t.to(torch.float32 if floating else torch.int64) for t in xs])
    if x.dim() == 1:
        x = x[:, None]
    x = _x_tensor(x, where)
    y, names = _encode_labels(labels, where, like)
    return _finish(x, y, names, source, "dataset", what, like)


def _from_import(spec: str, what: str, like: LoadedData | None) -> LoadedData:
    try:
        fn = import_object(spec, what)
    except ConfigError as exc:
        raise DataError(str(exc)) from exc
    try:
        ds = fn()
    except Exception as exc:
        raise DataError(f"{what} {spec}: calling it raised {one_line(exc)}") from exc
    if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")) or isinstance(ds, (str, dict)):
        raise DataError(
            f"{what} {spec} returned a {type(ds).__name__}, not a torch Dataset of (x, y) pairs"
        )
    return _from_dataset(ds, spec, what, like)


def _from_npz(path: Path, what: str, like: LoadedData | None) -> LoadedData:
    where = f"{what} {path}"
    if not zipfile.is_zipfile(path):
        raise DataError(f"{where}: not a readable .npz file; save it with np.savez(PATH, x=, y=)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            missing = [k for k in ("x", "y") if k not in keys]
            if missing:
                raise DataError(
                    f"{where}: no array {' or '.join(map(repr, missing))} (it has "
                    f"{', '.join(keys) or 'none'}); save np.savez(PATH, x=..., y=..., ids=...)"
                )
            x_arr, y_arr = npz["x"], npz["y"]
            id_arr = npz["ids"] if "ids" in keys else None
    except DataError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise DataError(
                f"{where}: holds Python objects (pickled arrays); save plain number or string "
                "arrays"
            ) from exc
        raise DataError(f"{where}: not a readable .npz file ({one_line(exc)})") from exc
    except Exception as exc:
        raise DataError(f"{where}: not a readable .npz file ({one_line(exc)})") from exc
    x = _x_tensor(x_arr, f"{where} x")
    y, names = _encode_labels(y_arr, f"{where} y", like)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{where}: x has {x.shape[0]} rows but y has {y.shape[0]} labels")
    ids = None
    if id_arr is not None:
        if id_arr.shape != (x.shape[0],):
            raise DataError(
                f"{where}: ids has shape {id_arr.shape}; give one ID per row ({x.shape[0]},)"
            )
        if id_arr.dtype.kind in "iu":
            ids = [str(int(v)) for v in id_arr.tolist()]
        elif id_arr.dtype.kind in "US":
            ids = [v.decode() if isinstance(v, bytes) else str(v) for v in id_arr.tolist()]
            ids = [v.strip() for v in ids]
        else:
            raise DataError(f"{where}: ids must be strings or integers, got dtype {id_arr.dtype}")
        _check_unique(ids, where)
    return _finish(
        x,
        y,
        names,
        str(path),
        "npz",
        what,
        like,
        ids=ids,
        id_source="npz:ids" if ids is not None else "positions",
    )


# ----------------------------------------------------------------------------- front door


def read_data(
    source: Any,
    *,
    label_column: str = "y",
    id_column: str = "id",
    like: LoadedData | None = None,
    what: str = "--data",
) -> LoadedData:
    """Read training or held-out data from a file, a folder, an import path or objects.

    ``source`` is one of:

    - a ``.csv`` or ``.parquet``/``.pq`` file: the label column (``label_column``), an optional
      ID column (``id_column``; without it the IDs are the row positions ``"0", "1", ...``),
      and every other column a feature. A column of integer literals stays integer, one of
      other numbers is float, any other text is a category coded by its sorted values;
    - a ``.npz`` file with arrays ``x``, ``y`` and optionally ``ids`` (read without pickle);
    - a folder of images, one sub-folder per class (sorted names are the classes), each image
      scaled to [0, 1] as ``(C, H, W)`` (RGB, or one channel when every image is grayscale);
      an image's ID is its path relative to the folder;
    - ``"PKG.MODULE:FUNCTION"``: a function returning a torch ``Dataset`` of ``(x, y)`` pairs;
    - a torch ``Dataset`` of ``(x, y)`` pairs, or a tuple ``(x, y)`` of arrays or tensors.

    Integer labels are their own class indices; text labels are ordered by sorting them.

    Args:
        source: the data, as above.
        label_column: the label column of a table.
        id_column: the ID column of a table.
        like: the training data, when reading held-out data: its label mapping, feature
            columns, categories and input shape are used and enforced.
        what: the option name used in error messages (``"--data"``, ``"--held-out"``).

    Returns:
        The :class:`LoadedData`.

    Raises:
        DataError: any unusable input, in one line naming the file, row or column and the fix.

    Example:
        >>> d = read_data((np.zeros((3, 2)), np.array([0, 1, 1])))
        >>> d.x.shape, d.label_names, d.ids
        (torch.Size([3, 2]), ['0', '1'], ['0', '1', '2'])
    """
    if isinstance(source, tuple):
        return _from_arrays(source, what, like)
    if isinstance(source, (str, os.PathLike)):
        # imported here: the readers of tables and image folders use this module's helpers
        from ._images import _from_images
        from ._tables import _from_table

        text = os.fspath(source)
        path = Path(text).expanduser()
        if path.is_dir():
            return _from_images(path.resolve(), what, like)
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix == ".csv":
                return _from_table(path.resolve(), "csv", what, label_column, id_column, like)
            if suffix in (".parquet", ".pq"):
                return _from_table(path.resolve(), "parquet", what, label_column, id_column, like)
            if suffix == ".npz":
                return _from_npz(path.resolve(), what, like)
            raise DataError(
                f"{what} {text}: unknown file type {suffix or '(none)'}; give a .csv, .parquet, "
                ".npz file, an image folder, or an import path PKG.MODULE:FUNCTION"
            )
        if isinstance(source, str) and _IMPORT_PATH.match(text):
            return _from_import(text, what, like)
        raise DataError(
            f"{what} {text}: no such file or folder; give a .csv, .parquet, .npz file, an image "
            "folder, or an import path PKG.MODULE:FUNCTION"
        )
    if (
        isinstance(source, (dict, bytes))
        or not hasattr(source, "__len__")
        or not hasattr(source, "__getitem__")
    ):
        raise DataError(
            f"{what}: cannot read a {type(source).__name__}; give a path, an import path, a "
            "torch Dataset of (x, y) pairs, or a tuple (x, y)"
        )
    return _from_dataset(source, f"<{type(source).__name__}>", what, like)
