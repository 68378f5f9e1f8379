"""The results store: one SQLite file per run directory, one row per finished cell.

Rows are keyed by a content hash of everything that determines the cell and written when the
cell finishes (one transaction each), so an interrupted benchmark resumes where it
stopped and never duplicates rows. Every row also carries its table *slot*, the *identity* of what
produced it and the folder's *context* (see :mod:`unlearnkit.bench.identity`): :meth:`admit`
refuses a run that would put rows of another identity into a slot the folder already holds, so
rows of different runs are never averaged together.

A store written before rows carried their identity (schema 1) can still be read (``readonly``),
and says so: :attr:`ResultStore.legacy`. Writing into one is refused with a clear message.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from .identity import RunIdentityError, describe_differences, digest

__all__ = ["SCHEMA_VERSION", "CellRow", "ResultStore", "open_existing"]

#: 1: rows keyed by (scenario, label) only; 2: rows carry slot, identity and context.
SCHEMA_VERSION = 2

_COLUMNS = (
    "key",
    "kind",
    "scenario",
    "label",
    "method",
    "access",
    "seed",
    "metrics",
    "record",
    "created",
    "slot",
    "context",
    "identity",
)
_LEGACY_COLUMNS = _COLUMNS[:10]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    scenario TEXT NOT NULL,
    label TEXT NOT NULL,
    method TEXT NOT NULL,
    access TEXT NOT NULL,
    seed INTEGER NOT NULL,
    metrics TEXT NOT NULL,
    record TEXT NOT NULL,
    created REAL NOT NULL,
    slot TEXT NOT NULL,
    context TEXT NOT NULL,
    identity TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cells_slot ON cells (slot);
CREATE TABLE IF NOT EXISTS identities (hash TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _dumps(obj: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), sort_keys=True, default=str)


def _loads_metrics(text: str) -> dict[str, float]:
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("metrics are not a JSON object")
    return {k: (float("nan") if v is None else float(v)) for k, v in raw.items()}


@dataclass
class CellRow:
    """One finished cell: a model of one kind (original, retrain, retrain_prime, method,
    sweep, audit) in one scenario and replicate, with its metrics and provenance record.

    ``slot`` is the table cell it belongs to, ``identity`` the hash of what produced it (equal
    for the replicates of one row) and ``context`` the hash of the folder's context; all three
    are empty on rows read from a store that predates run identity.
    """

    key: str
    kind: str
    scenario: str
    label: str
    method: str
    access: str
    seed: int
    metrics: dict[str, float]
    record: dict[str, Any]
    slot: str = ""
    context: str = ""
    identity: str = ""


class ResultStore:
    """``OUT/results.db``.

    Args:
        path: the database file.
        readonly: open an existing store for reading only (``report``): nothing is written, and
            a store that predates run identity is accepted (:attr:`legacy`).

    Raises:
        DataError: the file is not a usable results store (empty, damaged, another schema,
            a directory), or, for writing, a store that predates run identity.
    """

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.legacy = False
        if self.path.is_dir():
            raise DataError(f"{self.path} is a directory, not a results store")
        exists = self.path.is_file()
        if exists and self.path.stat().st_size == 0:
            raise DataError(
                f"{self.path} is empty (0 bytes), not a results store; delete it or use "
                "another --out"
            )
        if readonly and not exists:
            raise DataError(f"no results store at {self.path}")
        if not readonly:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = self._connect(exists)

    # -- opening ---------------------------------------------------------------------------

    def _bad(self, why: str) -> DataError:
        return DataError(
            f"{self.path} is not a usable unlearnkit results store ({why}); restore it from a "
            "backup or use another --out"
        )

    def _connect(self, exists: bool) -> sqlite3.Connection:
        try:
            if self.readonly:
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            else:
                con = sqlite3.connect(self.path, timeout=30)
            try:
                ok = con.execute("PRAGMA quick_check").fetchone()
                if ok is None or ok[0] != "ok":
                    raise self._bad(f"integrity check: {ok[0] if ok else 'no answer'}")
                tables = {
                    r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                self._check_schema(con, tables)
                if not self.readonly and "cells" in tables:
                    self._check_rows(con)
                if not self.readonly:
                    # A rollback journal, not WAL: one writer per folder (bench.lock), and readers
                    # leave no -wal/-shm files behind, so a refused run changes no byte.
                    con.execute("PRAGMA journal_mode=DELETE")
                    if "cells" not in tables:
                        con.executescript(_SCHEMA)
                        with con:
                            con.execute(
                                "INSERT OR REPLACE INTO meta VALUES ('schema', ?)",
                                (_dumps({"version": SCHEMA_VERSION}),),
                            )
            except BaseException:
                con.close()
                raise
        except sqlite3.DatabaseError as exc:
            raise self._bad(str(exc)) from exc
        return con

    def _check_schema(self, con: sqlite3.Connection, tables: set[str]) -> None:
        if "cells" not in tables:
            if tables - {"meta", "identities"}:
                raise self._bad(f"it holds other tables: {', '.join(sorted(tables))}")
            if self.readonly:
                raise self._bad("it has no results table")
            return
        cols = tuple(r[1] for r in con.execute("PRAGMA table_info(cells)"))
        if cols == _LEGACY_COLUMNS:
            self.legacy = True
            if not self.readonly:
                raise DataError(
                    f"{self.path} was written by an earlier unlearnkit whose rows do not record "
                    "which run produced them, so new rows could be mixed with them; run into "
                    "another --out DIR ('unlearnkit report' still reads this one)"
                )
            return
        if cols != _COLUMNS or "meta" not in tables or "identities" not in tables:
            raise self._bad(f"unexpected table layout {list(cols)}")
        row = con.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        info = _json_or_none(row[0]) if row else None
        version = info.get("version") if isinstance(info, dict) else None
        if version != SCHEMA_VERSION:
            raise self._bad(f"schema version {version!r}, expected {SCHEMA_VERSION}")

    def _check_rows(self, con: sqlite3.Connection) -> None:
        """Every stored row must be readable before a run adds to the store: a damaged row
        found only when the report is written would leave new rows beside an unusable store."""
        for key, metrics, record in con.execute("SELECT key, metrics, record FROM cells"):
            try:
                _loads_metrics(metrics)
                if not isinstance(json.loads(record), dict):
                    raise ValueError("the record is not a JSON object")
            except (TypeError, ValueError) as exc:
                raise self._bad(f"row {key} cannot be read: {exc}") from None

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._con.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._bad(str(exc)) from exc

    # -- identity ----------------------------------------------------------------------------

    def context(self) -> dict[str, Any] | None:
        """The folder's context (``None`` before the first run)."""
        return self.get_meta("context")

    def admit(self, context: dict[str, Any], slots: dict[str, dict[str, Any]]) -> str:
        """Check that a run of ``context`` filling ``slots`` (slot -> identity) mixes nothing.

        Returns the context's hash. Raises :class:`RunIdentityError` (before anything is
        written) when the folder holds another context, or another identity in one of the
        slots, naming the differences and the fix.
        """
        folder = self.path.parent
        ctx_hash = digest(context)
        stored = self.context()
        if stored is not None and digest(stored) != ctx_hash:
            raise RunIdentityError(
                f"{folder} holds results of another run ({describe_differences(stored, context)}"
                f"); averaging them with this run would mix runs: give this run another --out DIR"
            )
        for slot, ident in slots.items():
            h = digest(ident)
            for (other,) in self._query(
                "SELECT DISTINCT identity FROM cells WHERE slot = ? AND identity != ?", (slot, h)
            ):
                _table, scenario, label = json.loads(slot)
                old = self._identity_value(other) or {}
                hint = (
                    ", or give the variant its own label in a spec"
                    if ident.get("kind") in ("method", "sweep")
                    else ""
                )
                raise RunIdentityError(
                    f"{folder} already holds '{label}' in scenario '{scenario}' from another "
                    f"configuration ({describe_differences(old, ident)}); give this run another "
                    f"--out DIR{hint}"
                )
        return ctx_hash

    def begin(self, context: dict[str, Any], **meta: Any) -> None:
        """Record the folder's context and this run's metadata (call after :meth:`admit`)."""
        if self.context() is None:
            self.set_meta("context", context)
        for name, value in meta.items():
            self.set_meta(name, value)

    def _identity_value(self, h: str) -> dict[str, Any] | None:
        got = self._query("SELECT value FROM identities WHERE hash = ?", (h,))
        return _json_or_none(got[0][0]) if got else None

    # -- rows ---------------------------------------------------------------------------------

    def has(self, key: str) -> bool:
        return bool(self._query("SELECT 1 FROM cells WHERE key = ?", (key,)))

    def keys(self) -> set[str]:
        return {r[0] for r in self._query("SELECT key FROM cells")}

    def put(self, row: CellRow, identity: dict[str, Any] | None = None) -> None:
        """Write a finished cell (a second write of the same key is ignored).

        ``identity``: the value whose hash is ``row.identity`` (kept once, for messages).
        """
        if self.readonly:
            raise DataError(f"{self.path} was opened read-only")
        if not (row.slot and row.identity and row.context):
            raise ValueError("a stored row needs its slot, identity and context")
        values = (
            row.key,
            row.kind,
            row.scenario,
            row.label,
            row.method,
            row.access,
            row.seed,
            _dumps(row.metrics),
            _dumps(row.record),
            time.time(),
            row.slot,
            row.context,
            row.identity,
        )
        try:
            with self._con:
                if identity is not None:
                    self._con.execute(
                        "INSERT OR IGNORE INTO identities VALUES (?, ?)",
                        (row.identity, _dumps(identity)),
                    )
                self._con.execute(
                    f"INSERT OR IGNORE INTO cells VALUES ({','.join('?' * len(_COLUMNS))})",
                    values,
                )
        except sqlite3.DatabaseError as exc:
            raise self._bad(str(exc)) from exc

    def rows(self, kind: str | None = None) -> Iterator[CellRow]:
        cols = _LEGACY_COLUMNS if self.legacy else _COLUMNS
        q = f"SELECT {', '.join(c for c in cols if c != 'created')} FROM cells"
        args: tuple = ()
        if kind is not None:
            q += " WHERE kind = ?"
            args = (kind,)
        for r in self._query(q + " ORDER BY created, key", args):
            try:
                metrics, record = _loads_metrics(r[7]), json.loads(r[8])
                if not isinstance(record, dict):
                    raise ValueError("the record is not a JSON object")
                seed = int(r[6])
            except (ValueError, TypeError) as exc:
                raise self._bad(f"row {r[0]} cannot be read: {exc}") from exc
            yield CellRow(r[0], r[1], r[2], r[3], r[4], r[5], seed, metrics, record, *r[9:])

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM cells")[0][0])

    def set_meta(self, name: str, value: Any) -> None:
        if self.readonly:
            raise DataError(f"{self.path} was opened read-only")
        with self._con:
            self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, _dumps(value)))

    def get_meta(self, name: str, default: Any = None) -> Any:
        try:
            r = self._query("SELECT value FROM meta WHERE name = ?", (name,))
        except DataError:
            if self.legacy:
                return default
            raise
        return _json_or_none(r[0][0], sentinel=default) if r else default


def _json_or_none(text: str, sentinel: Any = None) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return sentinel


def open_existing(path: str | Path) -> ResultStore:
    """Open ``DIR/results.db`` (or the file itself) for reading; DataError if missing."""
    p = Path(path)
    db = p / "results.db" if p.is_dir() else p
    if not db.is_file():
        raise DataError(f"no results store at {db}; run 'unlearnkit bench --out {p}' first")
    return ResultStore(db, readonly=True)
