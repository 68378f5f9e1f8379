"""The results store: one SQLite file per run directory, one row per finished cell.

Rows are keyed by a content hash of everything that determines the cell and written when the
cell finishes (one transaction each, WAL mode), so an interrupted benchmark resumes where it
stopped and never duplicates rows.
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

__all__ = ["CellRow", "ResultStore"]

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
    created REAL NOT NULL
);
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
    return {k: (float("nan") if v is None else float(v)) for k, v in raw.items()}


@dataclass
class CellRow:
    """One finished cell: a model of one kind (original, retrain, retrain_prime, method,
    sweep) in one scenario and replicate, with its metrics and provenance record."""

    key: str
    kind: str
    scenario: str
    label: str
    method: str
    access: str
    seed: int
    metrics: dict[str, float]
    record: dict[str, Any]


class ResultStore:
    """``OUT/results.db``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = sqlite3.connect(self.path, timeout=30)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} is not a usable results database: {exc}") from exc

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def has(self, key: str) -> bool:
        return self._con.execute("SELECT 1 FROM cells WHERE key = ?", (key,)).fetchone() is not None

    def keys(self) -> set[str]:
        return {r[0] for r in self._con.execute("SELECT key FROM cells")}

    def put(self, row: CellRow) -> None:
        """Write a finished cell (a second write of the same key is ignored)."""
        with self._con:
            self._con.execute(
                "INSERT OR IGNORE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
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
                ),
            )

    def rows(self, kind: str | None = None) -> Iterator[CellRow]:
        q = "SELECT key, kind, scenario, label, method, access, seed, metrics, record FROM cells"
        args: tuple = ()
        if kind is not None:
            q += " WHERE kind = ?"
            args = (kind,)
        for r in self._con.execute(q + " ORDER BY created, key", args):
            yield CellRow(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                int(r[6]),
                _loads_metrics(r[7]),
                json.loads(r[8]),
            )

    def count(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM cells").fetchone()[0])

    def set_meta(self, name: str, value: Any) -> None:
        with self._con:
            self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, _dumps(value)))

    def get_meta(self, name: str, default: Any = None) -> Any:
        r = self._con.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return json.loads(r[0]) if r else default


def open_existing(path: str | Path) -> ResultStore:
    """Open ``DIR/results.db`` (or the file itself) for reading; DataError if missing."""
    p = Path(path)
    db = p / "results.db" if p.is_dir() else p
    if not db.is_file():
        raise DataError(f"no results store at {db}; run 'unlearnkit bench --out {p}' first")
    return ResultStore(db)
