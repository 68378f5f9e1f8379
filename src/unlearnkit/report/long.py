"""The per-replicate ("long") export of a results store: CSV, JSON or Parquet.

One row per stored cell: (scenario, row label, config id, seed) with the run identity columns
and every metric the row holds as a column (tier A, tier B, the detail metrics and any opt-in
readout). Values are in the store's units, the units and names of :func:`unlearnkit.evaluate`:
rates and gaps as fractions of 1 (``avg_gap_salun`` 0.05 is 5 pp), times in seconds. Grouping
the rows by ``scenario``, ``label`` and ``config_id`` and taking the mean and the std (ddof 1) of
a column gives the report's table cell (×100 for rates and gaps)::

    df = pandas.read_csv("long.csv")
    df.groupby(["scenario", "label", "config_id"])["avg_gap_salun"].agg(["mean", "std"])

Audit rows are not in it (their metrics are per audit, not per replicate).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from ..bench.report import _KIND_ORDER, access_level, summary_records
from ..bench.store import CellRow, ResultStore
from ..errors import ConfigError

__all__ = ["FORMATS", "ID_COLUMNS", "LONG_KINDS", "export", "long_records"]

FORMATS = ("csv", "json", "parquet")
#: The row kinds of the export: the reference models, the methods and the sweep points.
LONG_KINDS = ("original", "retrain", "retrain_prime", "method", "sweep")
#: The identity columns, before the metric columns (sorted by name).
ID_COLUMNS = (
    "scenario",
    "label",
    "config_id",
    "seed",
    "kind",
    "method",
    "access",
    "access_level",
    "preset",
    "config",
    "key",
    "context",
)


def _config(row: CellRow) -> str:
    run = row.record.get("run")
    cfg = run.get("config") if isinstance(run, dict) else None
    return "" if cfg is None else json.dumps(cfg, sort_keys=True, default=str)


def long_records(store: ResultStore, kinds: tuple[str, ...] = LONG_KINDS) -> list[dict[str, Any]]:
    """One flat record per stored cell of ``kinds``; the metrics a row lacks are NaN.

    ``config_id`` is the hash of everything that produced the row (equal for the replicates
    of one table row; empty in a store that predates run identity).
    """
    rows = [r for r in store.rows() if r.kind in kinds]
    metric_keys = sorted({k for r in rows for k in r.metrics} - set(ID_COLUMNS))
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(r.scenario, len(order))
    rows.sort(
        key=lambda r: (order[r.scenario], _KIND_ORDER.get(r.kind, 9), r.label, r.identity, r.seed)
    )
    out = []
    for r in rows:
        rec: dict[str, Any] = {
            "scenario": r.scenario,
            "label": r.label,
            "config_id": r.identity,
            "seed": r.seed,
            "kind": r.kind,
            "method": r.method,
            "access": r.access,
            "access_level": access_level({"kind": r.kind, "method": r.method, "access": r.access}),
            "preset": r.record.get("preset") or "",
            "config": _config(r),
            "key": r.key,
            "context": r.context,
        }
        rec.update({k: float(r.metrics.get(k, math.nan)) for k in metric_keys})
        out.append(rec)
    return out


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


def _parquet(records: list[dict[str, Any]]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "Parquet output needs pyarrow: pip install 'unlearnkit[parquet]' (or use --format csv)"
        ) from None
    columns = list(records[0]) if records else list(ID_COLUMNS)
    table = pa.table({c: [r.get(c) for r in records] for c in columns})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def export(store: ResultStore, fmt: str, long: bool = True) -> str | bytes:
    """The store as ``csv`` / ``json`` text or ``parquet`` bytes.

    Args:
        store: an open results store.
        fmt: ``csv``, ``json`` or ``parquet``.
        long: one row per replicate (:func:`long_records`); ``False``: one row per table row
            (:func:`unlearnkit.bench.report.summary_records`, mean and std).

    Raises:
        ConfigError: an unknown format, or Parquet without pyarrow.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use {', '.join(FORMATS)}")
    records = long_records(store) if long else summary_records(store)
    if fmt == "parquet":
        return _parquet(records)
    if fmt == "json":
        return json.dumps([{k: _json_value(v) for k, v in r.items()} for r in records], indent=1)
    buf = io.StringIO()
    if records:
        w = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        w.writeheader()
        w.writerows({k: _csv_value(v) for k, v in r.items()} for r in records)
    return buf.getvalue()
