"""Read a CSV or Parquet table of a deletion request's data, and type its columns.

Part of :mod:`unlearnkit.deletion.inputs` (which calls :func:`_from_table`); every mistake is a
:class:`~unlearnkit.errors.DataError` naming the file, the line or row, and the column.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from .ids import _check_unique, _positions
from .inputs import _FLOAT, _INT, LoadedData, _encode_labels, _finish, log
from .model_io import few, one_line

# Spellings of "no value" that tools write into numeric columns.
_NOT_A_NUMBER = frozenset(
    "nan +nan -nan na n/a null none inf +inf -inf infinity +infinity -infinity".split()
)
_PANDAS_INDEX = re.compile(r"__index_level_\d+__\Z")


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
