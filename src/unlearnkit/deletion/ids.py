"""The ID side of a deletion request: read the list of IDs to delete, and turn it into row
positions of the training data.

:func:`read_ids` reads the ``--forget-ids`` file; :func:`resolve_ids` maps the IDs onto the IDs
of the :class:`~unlearnkit.deletion.inputs.LoadedData` (its ID column, its ``.npz`` ``ids``,
its image paths, or its row positions). Both are re-exported by
:mod:`unlearnkit.deletion.inputs`. Every mistake is a :class:`~unlearnkit.errors.DataError`
whose one line says how many IDs are wrong, names the first few, and gives the fix.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .model_io import few, one_line

__all__ = ["read_ids", "resolve_ids"]


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
