"""Read a user's data for a deletion request, and turn the requested IDs into row positions.

Sources: CSV and Parquet tables, ``.npz`` arrays, image folders (one sub-folder per class), an
import path ``PKG.MODULE:FUNCTION`` returning a torch ``Dataset``, a ``Dataset`` object, or a
tuple ``(x, y)``. Every mistake in them is a :class:`~unlearnkit.errors.DataError` whose one
line names the file, the column or row, and the fix.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .model_io import few, import_object, one_line

__all__ = ["IMAGE_SUFFIXES", "LoadedData", "read_data", "read_ids", "resolve_ids"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_INT = re.compile(r"[+-]?\d+\Z")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
# Spellings of "no value" that tools write into numeric columns.
_NOT_A_NUMBER = frozenset(
    "nan +nan -nan na n/a null none inf +inf -inf infinity +infinity -infinity".split()
)
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
_PANDAS_INDEX = re.compile(r"__index_level_\d+__\Z")


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


def _positions(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def _check_unique(ids: list[str], where: str) -> None:
    seen: set[str] = set()
    dup: dict[str, None] = {}
    for i in ids:
        if i in seen:
            dup[i] = None
        seen.add(i)
    if dup:
        raise DataError(
            f"{where}: {len(dup)} ID(s) appear more than once ({few(list(dup))}); every row "
            "needs its own ID"
        )


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
    """Inputs as float32 (or int64 for integer inputs), at least 2-D, finite."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise DataError(
                f"{where}: inputs must be numbers, got dtype {arr.dtype}; encode text as "
                "numbers first"
            )
        t = torch.as_tensor(arr)
    if t.is_complex():
        raise DataError(f"{where}: inputs hold complex numbers; pass real values")
    if t.dim() < 2:
        raise DataError(
            f"{where}: inputs must have shape (n, ...) with at least 2 dimensions, got "
            f"{tuple(t.shape)}; reshape single features to (n, 1)"
        )
    if not t.is_floating_point():
        return t.to(torch.int64).contiguous()
    t = t.to(torch.float32)
    bad = ~torch.isfinite(t).reshape(t.shape[0], -1).all(dim=1)
    if bad.any():
        raise DataError(
            f"{where}: row {int(bad.nonzero()[0])} of the inputs holds NaN or infinite values; "
            "clean the data first"
        )
    return t.contiguous()


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


# ----------------------------------------------------------------------------- tables


def _read_csv(path: Path, where: str) -> tuple[dict[str, list[Any]], Callable[[int], str]]:
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{where}: the file is empty; it needs a header line")
            header = [h.strip() for h in header]
            rows: list[list[str]] = []
            for row in reader:
                if not row:
                    continue  # a blank line
                if len(row) != len(header):
                    raise DataError(
                        f"{where}: line {reader.line_num} has {len(row)} fields but the header "
                        f"has {len(header)}; fix that line"
                    )
                rows.append([c.strip() for c in row])
                lines.append(reader.line_num)
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text; save the CSV as UTF-8") from exc
    except csv.Error as exc:
        raise DataError(f"{where}: not a readable CSV ({one_line(exc)})") from exc
    columns = {name: [r[j] for r in rows] for j, name in enumerate(header)}
    if "" in columns:
        raise DataError(
            f"{where}: column {header.index('') + 1} has no name (a pandas index written by "
            "to_csv?); save with index=False or name the column"
        )
    if len(columns) != len(header):
        dup = [h for h in dict.fromkeys(header) if header.count(h) > 1]
        raise DataError(f"{where}: duplicate column name(s) {few(dup)}; rename them")
    return columns, lambda i: f"line {lines[i]}"


def _read_parquet(path: Path, where: str) -> tuple[dict[str, list[Any]], Callable[[int], str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError(
            f"{where}: reading Parquet needs pyarrow: install pyarrow "
            "(pip install 'unlearnkit[parquet]')"
        ) from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DataError(f"{where}: not a readable Parquet file ({one_line(exc)})") from exc
    names = [n for n in table.column_names if not _PANDAS_INDEX.match(n)]
    if len(set(names)) != len(names):
        dup = [n for n in dict.fromkeys(names) if names.count(n) > 1]
        raise DataError(f"{where}: duplicate column name(s) {few(dup)}; rename them")
    return {n: table.column(n).to_pylist() for n in names}, lambda i: f"row {i + 1}"


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v) or (isinstance(v, float) and math.isnan(v))


def _column(name: str, values: list[Any], where: str, at: Callable[[int], str]):
    """``("int", array)``, ``("float", array)`` or ``("cat", texts)`` for one feature column."""
    if all(isinstance(v, str) for v in values):
        if all(_INT.match(v) for v in values):
            kind, out = "int", values
        else:
            numeric = [bool(_FLOAT.match(v) or _INT.match(v)) for v in values]
            nan = [not ok and v.lower() in _NOT_A_NUMBER for ok, v in zip(numeric, values)]
            if any(numeric) and all(a or b for a, b in zip(numeric, nan)):
                i = nan.index(True) if any(nan) else -1
                if i >= 0:
                    raise DataError(
                        f"{where}: {at(i)}, column {name!r}: {values[i]!r} is not a number; "
                        "fill or drop missing values"
                    )
                return "float", np.array([float(v) for v in values], dtype=np.float64)
            if sum(numeric) >= 0.9 * len(values):
                odd = next(v for ok, v in zip(numeric, values) if not ok)
                log.warning(
                    "%s: column %r is mostly numbers but holds text such as %r; it is read as "
                    "categories",
                    where,
                    name,
                    odd,
                )
            return "cat", values
    elif all(isinstance(v, (bool, int, np.integer)) for v in values):
        kind, out = "int", values
    elif all(isinstance(v, (bool, int, float, np.number)) for v in values):
        arr = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(
                f"{where}: {at(i)}, column {name!r} is {values[i]!r}; fill or drop missing values"
            )
        return "float", arr
    else:
        odd = next(v for v in values if not isinstance(v, (str, bool, int, float, np.number)))
        raise DataError(
            f"{where}: column {name!r} holds {type(odd).__name__} values ({odd!r}); convert it "
            "to numbers or text"
        )
    try:
        return kind, np.array([int(v) for v in out], dtype=np.int64)
    except OverflowError as exc:
        raise DataError(f"{where}: column {name!r} holds integers beyond 64 bits") from exc


def _text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _features(
    columns: dict[str, list[Any]], where: str, at, like: LoadedData | None
) -> tuple[torch.Tensor, dict[str, list[str]]]:
    cols: list[np.ndarray] = []
    categories: dict[str, list[str]] = {}
    all_int = True
    for name, values in columns.items():
        if like is not None and name in like.categories:
            index = {c: i for i, c in enumerate(like.categories[name])}
            texts = [_text(v) for v in values]
            unseen = list(dict.fromkeys(t for t in texts if t not in index))
            if unseen:
                raise DataError(
                    f"{where}: column {name!r} has {len(unseen)} categor(ies) the training data "
                    f"do not have ({few(unseen, 5)}); the model has no code for them, so drop "
                    "those rows"
                )
            cols.append(np.array([index[t] for t in texts], dtype=np.int64))
            categories[name] = list(like.categories[name])
            continue
        kind, data = _column(name, values, where, at)
        if kind == "cat":
            if like is not None:
                raise DataError(
                    f"{where}: column {name!r} holds text (e.g. {data[0]!r}) but numbers in the "
                    "training data; give held-out data in the training data's format"
                )
            cats = sorted(set(data))
            index = {c: i for i, c in enumerate(cats)}
            data = np.array([index[v] for v in data], dtype=np.int64)
            categories[name] = cats
        elif kind == "float":
            if like is not None and like.x.dtype == torch.int64:
                if not np.all(data == np.round(data)):
                    raise DataError(
                        f"{where}: column {name!r} holds non-integer numbers but integers in "
                        "the training data; give held-out data in the training data's format"
                    )
                data = data.astype(np.int64)
            else:
                all_int = False
        cols.append(data)
    if like is not None:
        all_int = like.x.dtype == torch.int64
    stacked = np.stack(cols, axis=1)
    x = torch.as_tensor(stacked.astype(np.int64 if all_int else np.float32))
    return x, categories


def _from_table(
    path: Path,
    kind: str,
    what: str,
    label_column: str,
    id_column: str,
    like: LoadedData | None,
) -> LoadedData:
    where = f"{what} {path}"
    reader = _read_csv if kind == "csv" else _read_parquet
    columns, at = reader(path, where)
    if label_column not in columns:
        raise DataError(
            f"{where}: no label column {label_column!r} (columns: {few(list(columns), 10)}); "
            "name it with --label-column / label_column="
            + (" (is the file comma-separated?)" if len(columns) == 1 else "")
        )
    if id_column == label_column:
        raise DataError(f"{where}: the label and ID columns are both {label_column!r}")
    n = len(columns[label_column])
    if n == 0:
        raise DataError(f"{where}: the table has no rows")
    for name, values in columns.items():
        for i, v in enumerate(values):
            if _missing(v):
                raise DataError(
                    f"{where}: {at(i)}, column {name!r} is empty; fill or drop missing values"
                )
    y, names = _encode_labels(columns.pop(label_column), f"{where} column {label_column!r}", like)
    if id_column in columns:
        ids = [_text(v) for v in columns.pop(id_column)]
        _check_unique(ids, f"{where} column {id_column!r}")
        id_source = f"column:{id_column}"
    else:
        ids, id_source = _positions(n), "positions"
        log.info("%s: no ID column %r; the IDs are row positions 0..%d", where, id_column, n - 1)
    if not columns:
        raise DataError(f"{where}: no feature columns besides {label_column!r} and {id_column!r}")
    feature_names = list(columns)
    if like is not None:
        if like.feature_names is None:
            raise DataError(
                f"{where}: the training data ({like.kind}) have no named columns; give held-out "
                "data in the training data's format"
            )
        if feature_names != like.feature_names:
            lost = [c for c in like.feature_names if c not in feature_names]
            extra = [c for c in feature_names if c not in like.feature_names]
            detail = (
                f"missing {few(lost)}; extra {few(extra)}"
                if lost or extra
                else "the same columns in another order"
            )
            raise DataError(
                f"{where}: the feature columns differ from the training data's ({detail}); give "
                "the same columns in the same order"
            )
    x, categories = _features(columns, where, at, like)
    return _finish(
        x,
        y,
        names,
        str(path),
        kind,
        what,
        like,
        ids=ids,
        feature_names=feature_names,
        categories=categories,
        id_source=id_source,
    )


# ----------------------------------------------------------------------------- images


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


# ----------------------------------------------------------------------------- IDs


def read_ids(path: str | os.PathLike, *, id_column: str = "id") -> list[str]:
    """Read the IDs to delete: one per line (text or CSV), blank lines skipped.

    A first line ``id`` (or ``id_column``) is a header and is skipped. A CSV with several
    columns needs such a header naming the ID column.

    Raises:
        DataError: the file is missing or not UTF-8 text; a multi-column CSV without an ID
            header.
    """
    p = Path(path)
    where = f"--forget-ids {p}"
    if not p.is_file():
        raise DataError(f"{where}: no such file; give a text or CSV file with one ID per line")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text; save the ID list as UTF-8") from exc
    if p.suffix.lower() == ".csv":
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise DataError(f"{where}: not a readable CSV ({one_line(exc)})") from exc
    else:
        rows = [[line] for line in text.splitlines()]
    rows = [[c.strip() for c in r] for r in rows if any(c.strip() for c in r)]
    if not rows:
        return []
    headers = {"id", id_column.lower()}
    col = 0
    if any(len(r) > 1 for r in rows):
        lowered = [h.lower() for h in rows[0]]
        hits = [j for j, h in enumerate(lowered) if h in headers]
        if not hits:
            raise DataError(
                f"{where}: lines hold several fields; put one ID per line, or add a header line "
                f"naming the {id_column!r} column"
            )
        col = hits[0]
        rows = rows[1:]
    elif rows[0][0].lower() in headers:
        rows = rows[1:]
    short = [i for i, r in enumerate(rows) if len(r) <= col or not r[col]]
    if short:
        raise DataError(f"{where}: data line {short[0] + 1} has no ID; fill or remove it")
    return [r[col] for r in rows]


def resolve_ids(
    requested: Sequence[Any], ids: Sequence[str], *, allow_all: bool = False
) -> np.ndarray:
    """Row positions (sorted ``int64``) of the ``requested`` IDs among the data's ``ids``.

    Args:
        requested: the IDs to delete (compared as strings).
        ids: the data's IDs, one per row.
        allow_all: accept a request that covers every row (a forget-only, zero-shot request).

    Raises:
        DataError: an empty request; duplicate IDs in it; IDs the data do not have; a request
            covering the whole training set (unless ``allow_all``); non-unique data IDs. Each
            message says how many and names the first few.

    Example:
        >>> resolve_ids(["c", "a"], ["a", "b", "c"]).tolist()
        [0, 2]
    """
    if isinstance(requested, (str, bytes)):
        raise DataError("the forget IDs must be a list of IDs, not one string")
    req = [str(r) for r in requested]
    if not req:
        raise DataError("the forget-ID list is empty; list at least one ID to delete")
    counts: dict[str, int] = {}
    for r in req:
        counts[r] = counts.get(r, 0) + 1
    dup = [r for r, c in counts.items() if c > 1]
    if dup:
        raise DataError(
            f"{len(dup)} ID(s) appear more than once in the forget list ({few(dup, 5)}); list "
            "each ID once"
        )
    position = {v: i for i, v in enumerate(ids)}
    if len(position) != len(ids):
        _check_unique(list(ids), "the data's IDs")
    unknown = [r for r in req if r not in position]
    if unknown:
        hint = (
            "; the data have no ID column, so the IDs are row positions 0.."
            f"{len(ids) - 1} (set --id-column / id_column=)"
            if list(ids) == _positions(len(ids))
            else "; IDs must match the data's ID column exactly"
        )
        raise DataError(
            f"{len(unknown)} of {len(req)} forget IDs are not in the training data "
            f"({few(unknown, 5)}){hint}"
        )
    if len(req) == len(ids) and not allow_all:
        raise DataError(
            f"the forget list covers the whole training set ({len(ids)} rows); nothing would be "
            "retained: retrain from scratch instead, or give the retain rows too"
        )
    return np.sort(np.fromiter((position[r] for r in req), dtype=np.int64, count=len(req)))
