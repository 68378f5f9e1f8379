"""Aggregate a results store into tables: Markdown (``report.md``), HTML (``report.html``),
JSON and CSV.

Rows per scenario, in order: Original, Retrain (the reference), Retrain′ (the noise floor: its
gap columns hold the floors), then the methods grouped by access level. Cells are mean ± std
over replicates (ddof 1; the HTML adds the 95 % t-interval), rates ×100 with one decimal, gaps
in percentage points (pp). The store and the JSON/CSV exports keep :func:`unlearnkit.evaluate`'s
units and names: rates and gaps as fractions of 1 (``avg_gap_salun`` 0.05 is 5 pp).

The tables are :mod:`unlearnkit.report` blocks; the whole document (sections, plots,
provenance) is put together by :mod:`unlearnkit.report.bench`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..metrics.functional.gaps import avg_gap_trial_mean
from ..metrics.functional.stats import mean_std, t_interval
from ..report.document import Block, Cell, GroupRow, Row, Section, Table, md_table, to_markdown
from .store import CellRow, ResultStore

__all__ = [
    "LEGACY_NOTE",
    "SUMMARY_KEYS",
    "access_level",
    "aggregate",
    "memorisation",
    "render",
    "render_html",
    "render_markdown",
    "row_label",
    "scenario_sections",
]

#: Said by every report of a store written before rows recorded which run produced them.
LEGACY_NOTE = (
    "This results store predates run identity: its rows do not record which run produced them, "
    "so rows of different runs under one scenario and label may be averaged together here."
)

#: The columns of the headline table and of the JSON/CSV output: (key, header, kind).
SUMMARY_KEYS: tuple[tuple[str, str, str], ...] = (
    ("ua", "UA (%, → Retrain)", "rate"),
    ("acc_retain", "RA (%)", "rate"),
    ("acc_test", "TA (%)", "rate"),
    ("mia_efficacy", "MIA-Eff (non-member %, → Retrain)", "rate"),
    ("avg_gap_salun", "Avg. Gap ↓ (pp)", "rate"),
    ("rte_seconds", "RTE (s)", "seconds"),
)

#: The detail columns, in two tables (forgetting and attacks; agreement with Retrain).
DETAIL_FORGET_KEYS: tuple[tuple[str, str, str], ...] = (
    ("signed_fa", "signed FA (pp, <0 over-forgets)", "rate"),
    ("acc_forget_test", "forgotten-class TA (%)", "rate"),
    ("collateral_acc_neighbours", "neighbour-class TA change (pp vs original)", "rate"),
    ("mia_lr_entropy_member_rate", "MIA-LR (member %)", "rate"),
    ("mia_lr_loss_cv_acc", "MIA-CV acc (%)", "rate"),
)
DETAIL_RETRAIN_KEYS: tuple[tuple[str, str, str], ...] = (
    ("avg_gap_natmu", "Avg. Gap NatMU (pp)", "rate"),
    ("zrf", "ZRF", "score"),
    ("tow", "ToW", "score"),
    ("js_to_retrain_forget", "JS to Retrain on D_f (×1e3)", "milli"),
)
DETAIL_KEYS = DETAIL_FORGET_KEYS + DETAIL_RETRAIN_KEYS

#: Opt-in readouts, shown when the rows have them: the spec's ``relearn: true`` and, with
#: ``retrain_init: same_init``, the weight distance to Retrain.
OPTIONAL_KEYS: tuple[tuple[str, str, str], ...] = (
    ("relearn_steps", "relearn steps (→ Retrain; cap 100)", "count"),
    ("ain", "AIN (→ 1)", "score"),
    ("wdist_rel", "weight distance to Retrain (rel.)", "score"),
)

_KIND_ORDER = {"original": 0, "retrain": 1, "retrain_prime": 2, "method": 3}
_ACCESS_ORDER = {"forget_only": 0, "forget_and_retain": 1, "full_train": 2}
_ACCESS_TITLES = {
    "reference": "Reference models: Retrain is the target, Retrain′ shows the noise floor",
    "forget_only": "forget_only: methods that read only the forget set",
    "forget_and_retain": "forget_and_retain: methods that also read the retain set",
    "full_train": "full_train: methods that read the whole training set",
}


def _stat(values: Iterable[float]) -> dict[str, float]:
    """Mean, std (ddof 1), n and the half-width of the 95 % t-interval (``half``)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "half": float("nan")}
    m, s, n = mean_std(vals)
    half = t_interval(vals)[1] if n >= 2 and math.isfinite(s) else float("nan")
    return {"mean": m, "std": s, "n": n, "half": half}


def aggregate(store: ResultStore, kinds: tuple[str, ...] = tuple(_KIND_ORDER)) -> list[dict]:
    """One record per (scenario, row label): mean/std/n of every metric over replicates.

    Also adds ``avg_gap_salun_trial_mean`` / ``avg_gap_natmu_trial_mean`` (gap of replicate
    means, the paper-compatible variant) beside the paired ``avg_gap_*`` (mean ± std of the
    per-replicate gaps).
    """
    # Replicates are averaged only within one identity (the store refuses to mix them; a store
    # that predates run identity has none, and its rows group as they always did).
    groups: dict[tuple[str, str, str], list[CellRow]] = defaultdict(list)
    for row in store.rows():
        if row.kind in kinds:
            groups[(row.scenario, row.label, row.identity)].append(row)
    retrain_rows = {key[0]: rows for key, rows in groups.items() if rows[0].kind == "retrain"}
    scenario_order: dict[str, int] = {}
    for sc, *_ in groups:
        scenario_order.setdefault(sc, len(scenario_order))
    out = []
    for (sc, label, _identity), rows in groups.items():
        rows = sorted(rows, key=lambda r: r.seed)
        diverged = sum(1 for r in rows if r.metrics.get("diverged", 0.0) >= 0.5)
        keys = sorted({k for r in rows for k in r.metrics})
        rec: dict[str, Any] = {
            "scenario": sc,
            "label": label,
            "method": rows[0].method,
            "kind": rows[0].kind,
            "access": rows[0].access,
            "n": len(rows),
            "seeds": [r.seed for r in rows],
            "diverged": diverged,
            "metrics": {k: _stat(r.metrics.get(k, float("nan")) for r in rows) for k in keys},
        }
        ref = sorted(retrain_rows.get(sc, []), key=lambda r: r.seed)
        for preset in ("salun", "natmu"):
            try:
                rec["metrics"][f"avg_gap_{preset}_trial_mean"] = {
                    "mean": avg_gap_trial_mean(
                        [r.metrics for r in rows], [r.metrics for r in ref], preset
                    ),
                    "std": float("nan"),
                    "n": len(rows),
                }
            except (ValueError, KeyError):
                pass
        out.append(rec)
    out.sort(
        key=lambda r: (
            scenario_order[r["scenario"]],
            _KIND_ORDER.get(r["kind"], 9),
            _ACCESS_ORDER.get(r["access"].split("+")[0], 9),
            r["access"],
            r["label"],
        )
    )
    return out


def memorisation(store: ResultStore) -> list[dict[str, Any]]:
    """How far theta_o's forget-set signals sit from Retrain's, against the noise floor.

    Per scenario and signal: the mean over replicates of ``|orig - retrain|`` (paired) and of
    ``|retrain′ - retrain|`` (the floor), and their ratio. A ratio well above 1 means the
    benchmark can tell a model that still remembers the forget set from one that never saw it.
    """
    by = defaultdict(dict)
    for row in store.rows():
        if row.kind in ("original", "retrain", "retrain_prime"):
            by[(row.scenario, row.seed)][row.kind] = row.metrics
    keys = (
        ("forget_conf_mean", "mean confidence p_y on D_f"),
        ("forget_loss_mean", "mean loss on D_f"),
        ("mia_svc_conf_nonmember_rate", "MIA-Efficacy (SVC, non-member rate)"),
        ("mia_lr_entropy_member_rate", "entropy-LR member rate"),
        ("mia_lr_loss_cv_acc", "loss-LR CV attack accuracy"),
    )
    scen: dict[str, list] = defaultdict(list)
    for (sc, _seed), kinds in by.items():
        if len(kinds) == 3:
            scen[sc].append(kinds)
    out = []
    for sc, reps in scen.items():
        for key, desc in keys:
            try:
                d_orig = [abs(k["original"][key] - k["retrain"][key]) for k in reps]
                d_floor = [abs(k["retrain_prime"][key] - k["retrain"][key]) for k in reps]
            except KeyError:
                continue
            margin, floor = float(np.mean(d_orig)), float(np.mean(d_floor))
            out.append(
                {
                    "scenario": sc,
                    "signal": key,
                    "description": desc,
                    "original": float(np.mean([k["original"][key] for k in reps])),
                    "retrain": float(np.mean([k["retrain"][key] for k in reps])),
                    "margin": margin,
                    "floor": floor,
                    "ratio": margin / floor if floor > 0 else float("inf"),
                    "n": len(reps),
                }
            )
    return out


def _scale(kind: str) -> float:
    return {"rate": 100.0, "milli": 1000.0}.get(kind, 1.0)


def _digits(stat: dict[str, float], kind: str) -> int:
    digits = {"score": 2, "seconds": 2, "count": 0}.get(kind, 1)
    return 1 if kind == "count" and stat["n"] >= 2 else digits


def _number(x: float, digits: int) -> str:
    """``x`` with ``digits`` decimals, or in 3 significant digits once it is very large (a
    value that rounds to zero is written without a minus sign)."""
    text = f"{x:.3g}" if abs(x) >= 1e6 else f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _fmt(stat: dict[str, float] | None, kind: str) -> str:
    if stat is None or stat["n"] == 0 or math.isnan(stat["mean"]):
        return "–"
    scale, digits = _scale(kind), _digits(stat, kind)
    m = _number(stat["mean"] * scale, digits)
    if stat["n"] < 2 or math.isnan(stat["std"]):
        return m
    return f"{m} ± {_number(stat['std'] * scale, digits)}"


def _interval(stat: dict[str, float] | None, kind: str) -> str:
    """The 95 % t-interval of the mean, ``[lo, hi]`` (empty under two replicates)."""
    half = (stat or {}).get("half", float("nan"))
    if stat is None or stat["n"] < 2 or not math.isfinite(half):
        return ""
    scale, digits = _scale(kind), _digits(stat, kind)
    lo, hi = (stat["mean"] - half) * scale, (stat["mean"] + half) * scale
    return f"[{_number(lo, digits)}, {_number(hi, digits)}]"


def access_level(rec: dict) -> str:
    """The access level a row is grouped under: ``reference`` for Original, Retrain and
    Retrain′; a method's registered ``access.level`` (the row's own for unknown methods)."""
    if rec["kind"] not in ("method", "sweep"):
        return "reference"
    from ..methods import get_method

    try:
        return get_method(rec["method"]).access.level
    except ConfigError:
        return str(rec["access"]).split("+")[0]


_ROW_CLASS = {"original": "orig", "retrain": "ref", "retrain_prime": "floor"}


def _table(
    records: list[dict], columns: tuple[tuple[str, str, str], ...], caption: str = ""
) -> Table:
    head = ["Method", "Access", *[c[1] for c in columns]]
    rows: list[Row | GroupRow] = []
    group = None
    for r in records:
        level = access_level(r)
        if level != group:
            group = level
            rows.append(GroupRow(_ACCESS_TITLES.get(level, level)))
        cls = "diverged" if r.get("diverged") else _ROW_CLASS.get(r["kind"], "")
        cells: list[str | Cell] = [row_label(r), r["access"]]
        for key, _, kind in columns:
            stat = r["metrics"].get(key)
            sub = _interval(stat, kind)
            cells.append(Cell(_fmt(stat, kind), sub=sub, title="95 % interval" if sub else ""))
        rows.append(Row(cells, cls))
    return Table(head, rows, caption=caption)


def row_label(r: dict) -> str:
    """A row's label, marked when some of its replicates diverged (the model kept is the last
    state with finite outputs, or the input model: its numbers are not the method working)."""
    if not r.get("diverged"):
        return r["label"]
    return f"{r['label']} ⚠ diverged in {r['diverged']}/{r['n']}"


def _scenarios(records: list[dict]) -> list[str]:
    seen: list[str] = []
    for r in records:
        if r["scenario"] not in seen:
            seen.append(r["scenario"])
    return seen


def scenario_sections(
    records: list[dict], detail: bool = True, figures: Any = None
) -> list[Section]:
    """One section per scenario: the headline table, ``figures(scenario, rows)`` (blocks, for
    the HTML plots) and, with ``detail``, the detail tables (at most nine columns each)."""
    out = []
    for sc in _scenarios(records):
        rows = [r for r in records if r["scenario"] == sc]
        n = max(r["n"] for r in rows)
        sec = Section(f"Scenario `{sc}` ({n} replicate{'s' if n != 1 else ''})", level=3)
        sec.add(_table(rows, SUMMARY_KEYS))
        if figures is not None:
            sec.add(*figures(sc, rows))
        if detail:
            sec.add(_table(rows, DETAIL_FORGET_KEYS, "Detail, forgetting and attacks:"))
            sec.add(_table(rows, DETAIL_RETRAIN_KEYS, "Detail, agreement with Retrain:"))
            extra = tuple(c for c in OPTIONAL_KEYS if any(c[0] in r["metrics"] for r in rows))
            if extra:
                sec.add(_table(rows, extra, "Opt-in readouts:"))
        out.append(sec)
    return out


def tables_md(records: list[dict], detail: bool = True) -> str:
    """Per-scenario Markdown tables (headline and, optionally, detail)."""
    return to_markdown(scenario_sections(records, detail))


def _ratio(r: float) -> str:
    if math.isinf(r):
        return "∞ (floor 0)"
    if r >= 1000:
        return "> 1000×"
    return f"{r:.1f}×" if r < 100 else f"{r:.0f}×"


def memorisation_table(mem: list[dict]) -> Table:
    head = [
        "Scenario",
        "Signal",
        "Original",
        "Retrain",
        "margin (mean abs. original − Retrain)",
        "noise floor (mean abs. Retrain′ − Retrain)",
        "margin / floor",
    ]
    rows = [
        Row(
            [
                m["scenario"],
                m["description"],
                f"{m['original']:.4f}",
                f"{m['retrain']:.4f}",
                f"{m['margin']:.4f}",
                f"{m['floor']:.4f}",
                Cell(_ratio(m["ratio"]), cls="good" if m["ratio"] >= 2 else "bad"),
            ]
        )
        for m in mem
    ]
    return Table(head, rows)


def memorisation_md(mem: list[dict]) -> str:
    t = memorisation_table(mem)
    return md_table(t.head, t.rows)


SectionFn = Callable[[ResultStore, list[dict]], list[Block]]


def _extra_sections() -> list[tuple[str, SectionFn]]:
    """The sections after the results tables, as report blocks (an empty list: no section)."""
    from ..report import sections

    out: list[tuple[str, SectionFn]] = [
        ("Paper claims", sections.claims_blocks),
        ("Sensitivity sweeps", sections.sweeps_blocks),
    ]
    try:
        from ..audit.report import audit_blocks
    except ImportError:  # the audit package is optional at this stage
        audit_blocks = None
    if audit_blocks is not None:
        out.append(("Audits", lambda store, _records: audit_blocks(store)))
    out.append(("Retrain-free calibration check", sections.proxy_blocks))
    return out


def render_markdown(store: ResultStore) -> str:
    """The whole ``report.md``."""
    from ..report.bench import bench_document

    return to_markdown(bench_document(store))


def render_html(store: ResultStore) -> str:
    """The whole ``report.html``: the same content as ``report.md``, with the 95 % intervals,
    rows grouped by access level and the plots (self-contained: inline PNG, no script)."""
    from ..report.bench import bench_document
    from ..report.html import to_html

    return to_html(bench_document(store))


def summary_records(store: ResultStore) -> list[dict[str, Any]]:
    """One flat object per (scenario, row): mean and std of the headline metrics, in the
    store's units (fractions of 1, as :func:`unlearnkit.evaluate` returns them; seconds)."""
    out = []
    for r in aggregate(store):
        obj: dict[str, Any] = {
            "scenario": r["scenario"],
            "method": r["label"],
            "registry_name": r["method"],
            "kind": r["kind"],
            "access": r["access"],
            "n": r["n"],
            "diverged": r.get("diverged", 0),
        }
        for key, _, _ in SUMMARY_KEYS:
            name = "mia_efficacy" if key == "mia_efficacy" else key
            name = {"acc_retain": "ra", "acc_test": "ta", "avg_gap_salun": "avg_gap"}.get(
                name, name
            )
            st = r["metrics"].get(key, {"mean": float("nan"), "std": float("nan")})
            obj[f"{name}_mean"] = _num(st["mean"])
            obj[f"{name}_std"] = _num(st["std"])
        tm = r["metrics"].get("avg_gap_salun_trial_mean")
        obj["avg_gap_trial_mean"] = _num(tm["mean"]) if tm else None
        out.append(obj)
    return out


def _num(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def render(store: ResultStore, fmt: str = "md") -> str:
    """The report in ``md``, ``html``, ``json`` (one object per scenario × method) or ``csv``.

    The per-replicate export (one row per scenario, row, config and seed) is
    :func:`unlearnkit.report.long.export`.
    """
    if fmt == "md":
        return render_markdown(store)
    if fmt == "html":
        return render_html(store)
    records = summary_records(store)
    if fmt == "json":
        return json.dumps(records, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        if records:
            w = csv.DictWriter(buf, fieldnames=list(records[0]))
            w.writeheader()
            w.writerows(records)
        return buf.getvalue()
    raise ConfigError(f"unknown format {fmt!r}; use md, html, json or csv")
