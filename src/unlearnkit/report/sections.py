"""The benchmark report's later sections as document blocks: the paper claims, the
sensitivity sweeps (with a plot of Avg. Gap over each grid) and the retrain-free calibration
check read from ``DIR/proxy-check.json``.

Each function takes the open store and the aggregated records and returns a list of blocks
(empty when the store has nothing for it).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..bench.claims import claims, sweeps
from ..bench.store import ResultStore
from ..metrics.functional.stats import mean_std, t_interval
from . import figures
from .document import Block, Cell, Figure, Note, Paragraph, Row, Table

__all__ = ["PROXY_FILE", "claims_blocks", "proxy_blocks", "proxy_summary", "sweeps_blocks"]

#: Written beside ``results.db`` by the retrain-free calibration check.
PROXY_FILE = "proxy-check.json"
_PROXY_KINDS = (
    ("default", "default"),
    ("proxy", "calibrated (no retrain)"),
    ("tuned", "retrain-tuned"),
)
_VERDICT_CLASS = {"holds": "good", "does not hold": "bad"}


def claims_blocks(store: ResultStore, records: list[dict] | None = None) -> list[Block]:
    """The paper claims: one row per claim and scenario, with its verdict."""
    rows = claims(store)
    if not rows:
        return []
    table = Table(["Scenario", "Claim", "Measured", "Verdict"], [])
    for r in rows:
        note = " (stand-in: no relabelling method registered)" if r.get("stand_in") else ""
        verdict = Cell(f"**{r['verdict']}**", cls=_VERDICT_CLASS.get(r["verdict"], "muted"))
        table.rows.append(Row([r["scenario"], f"{r['claim']}{note}", r["measured"], verdict]))
    intro = Paragraph(
        "Each paper's central claim, checked on this benchmark (mean ± std over replicates). "
        "*holds* / *does not hold* need the paired 95 % interval to exclude 0 and the "
        "difference to exceed the retrain-vs-retrain Avg. Gap floor; otherwise *inconclusive "
        "(within noise)*."
    )
    return [intro, table]


def _floors_pp(store: ResultStore) -> dict[str, float]:
    vals: dict[str, list[float]] = defaultdict(list)
    for row in store.rows("retrain_prime"):
        v = row.metrics.get("avg_gap_salun")
        if v is not None and math.isfinite(v):
            vals[row.scenario].append(100.0 * v)
    return {sc: float(np.mean(v)) for sc, v in vals.items()}


def _sweep_points(store: ResultStore) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per (scenario, method): each grid point's config and mean Avg. Gap (pp) with its 95 %
    interval over the replicates."""
    by: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in store.rows("sweep"):
        v = row.metrics.get("avg_gap_salun")
        key = (row.scenario, row.method, row.label)
        entry = by.setdefault(key, {"config": row.record.get("point") or {}, "values": []})
        if v is not None and math.isfinite(v):
            entry["values"].append(100.0 * v)
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for (sc, method, label), e in by.items():
        if not e["values"]:
            continue
        mean, half = t_interval(e["values"]) if len(e["values"]) > 1 else (e["values"][0], None)
        out[(sc, method)].append(
            {"label": label, "config": e["config"], "mean": mean, "half": half}
        )
    return out


def sweeps_blocks(store: ResultStore, records: list[dict] | None = None) -> list[Block]:
    """The sweep statistics table and, in HTML, Avg. Gap over each grid."""
    rows = sweeps(store)
    if not rows:
        return []
    table = Table(
        ["Scenario", "Method", "points", "best", "median", "worst", "IQR", "fraction ≤ τ (τ pp)"],
        [
            [
                r["scenario"],
                r["method"],
                str(r["n_points"]),
                f"{100 * r['best']:.2f}",
                f"{100 * r['median']:.2f}",
                f"{100 * r['worst']:.2f}",
                f"{100 * r['iqr']:.2f}",
                f"{r['frac_within_tau']:.2f} ({100 * r['tau']:g})",
            ]
            for r in rows
        ],
    )
    out: list[Block] = [
        Paragraph(
            "Each method over its grid (every point averaged over the replicates); Avg. Gap in pp."
        ),
        table,
    ]
    points, floors = _sweep_points(store), _floors_pp(store)
    for r in rows:
        pts = points.get((r["scenario"], r["method"]), [])
        sc, method, tau = r["scenario"], r["method"], 100 * r["tau"]
        out.append(
            Figure(
                lambda pts=pts, sc=sc, method=method, tau=tau: figures.sweep_plot(
                    pts, floors.get(sc), f"{method} over its grid, scenario {sc}", tau=tau
                ),
                alt=f"Avg. Gap of {method} over its sweep grid in scenario {sc}",
                caption="Mean Avg. Gap to Retrain per grid point over the replicates: over one "
                "varied parameter, a line with the 95 % interval (dashed: the noise floor; "
                "dotted: τ); over two, a heat map (darker: further from Retrain).",
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Retrain-free calibration check


def _load_proxy(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ValueError("it has no list of rows")
    for r in data["rows"]:
        if not isinstance(r, dict) or not {"scenario", "method", "kind"} <= set(r):
            raise ValueError("a row lacks its scenario, method or kind")
    return data


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def proxy_summary(check: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (scenario, method, kind): mean, std, 95 % half-width and n of the Avg. Gap (points)
    and the verdicts. Rows may be per seed (``seed``: aggregated here) or already aggregated
    (``avg_gap_pp_std``: taken as they are)."""
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for r in check.get("rows", []):
        groups[(str(r["scenario"]), str(r["method"]), str(r["kind"]))].append(r)
    out = []
    for (sc, method, kind), rs in groups.items():
        vals = [v for v in (_num(r.get("avg_gap_pp")) for r in rs) if v is not None]
        passed = [r.get("passed") for r in rs if isinstance(r.get("passed"), bool)]
        rec = {"scenario": sc, "method": method, "kind": kind, "passed": passed, "n": len(vals)}
        if len(rs) == 1 and "avg_gap_pp_std" in rs[0]:
            first = rs[0]
            rec.update(
                mean=_num(first.get("avg_gap_pp")), std=_num(first["avg_gap_pp_std"]), half=None
            )
        elif vals:
            mean, std, _ = mean_std(vals)
            half = t_interval(vals)[1] if len(vals) > 1 else None
            rec.update(mean=mean, std=std if len(vals) > 1 else None, half=half)
        else:
            rec.update(mean=None, std=None, half=None)
        out.append(rec)
    return out


def _gap_cell(rec: dict[str, Any] | None, floor: float | None) -> Cell:
    if rec is None or rec["mean"] is None:
        return Cell("–")
    text = f"{rec['mean']:.2f}" + (f" ± {rec['std']:.2f}" if rec.get("std") is not None else "")
    half = rec.get("half")
    sub = f"[{rec['mean'] - half:.2f}, {rec['mean'] + half:.2f}]" if half is not None else ""
    within = floor is not None and rec["mean"] <= floor
    return Cell(text, sub=sub, cls="good" if within else "", title="within the noise floor"
                if within else "")  # fmt: skip


def _verdicts(recs: dict[str, dict[str, Any]]) -> str:
    parts = []
    for kind, _ in _PROXY_KINDS:
        p = recs.get(kind, {}).get("passed", [])
        parts.append("".join("✓" if x else "✗" for x in p) or "–")
    return " / ".join(parts)


def proxy_blocks(store: ResultStore, records: list[dict] | None = None) -> list[Block]:
    """The retrain-free calibration check, when ``DIR/proxy-check.json`` exists."""
    path = store.path.parent / PROXY_FILE
    if not path.is_file():
        return []
    try:
        check = _load_proxy(path)
    except (OSError, ValueError) as exc:
        return [Note(f"`{PROXY_FILE}` cannot be read ({exc}); rerun the check.", kind="warn")]
    summary = proxy_summary(check)
    floors = {k: _num(v) for k, v in (check.get("noise_floor") or {}).items()}
    originals = {k: _num(v) for k, v in (check.get("original_gap") or {}).items()}
    s = check.get("settings") or {}
    out: list[Block] = [
        Paragraph(
            "Avg. Gap to Retrain (pp, lower is better) of each method with its defaults, with "
            "the config the retrain-free calibration picked (it reads no retrained model), and "
            "with the benchmark's retrain-tuned config, beside the noise floor and the original "
            f"model's own gap. Settings: trials {s.get('trials', '?')}, budget "
            f"{s.get('budget_s', '?')} s, seeds {s.get('seeds', '?')}. *verdict*: the "
            "retrain-free verdict per seed (✓ passed, ✗ not), default / calibrated / tuned; a "
            "green cell is within the noise floor."
        )
    ]
    head = ["scenario", "method", *[t for _, t in _PROXY_KINDS], "original", "noise floor"]
    table = Table([*head, "verdict"], [])
    by_sc: dict[str, dict[str, dict[str, dict]]] = defaultdict(lambda: defaultdict(dict))
    for rec in summary:
        by_sc[rec["scenario"]][rec["method"]][rec["kind"]] = rec
    for sc, methods in by_sc.items():
        fl, orig = floors.get(sc), originals.get(sc)
        for method, recs in methods.items():
            table.rows.append(
                Row(
                    [
                        sc,
                        method,
                        *[_gap_cell(recs.get(k), fl) for k, _ in _PROXY_KINDS],
                        "–" if orig is None else f"{orig:.2f}",
                        "–" if fl is None else f"{fl:.2f}",
                        _verdicts(recs),
                    ]
                )
            )
    out.append(table)
    for sc, methods in by_sc.items():
        names = list(methods)
        series = {
            title: [
                (
                    (methods[m].get(kind) or {}).get("mean"),
                    (methods[m].get(kind) or {}).get("half"),
                )
                for m in names
            ]
            for kind, title in _PROXY_KINDS
        }
        lines = {"noise floor": floors.get(sc), "original model": originals.get(sc)}
        out.append(
            Figure(
                lambda names=names, series=series, lines=lines, sc=sc: figures.grouped_bars(
                    names, series, lines, "Avg. Gap to Retrain (pp) ↓", f"scenario {sc}"
                ),
                alt=f"Avg. Gap to Retrain of default, calibrated and tuned configs, {sc}",
                caption="Bars: mean over seeds with the 95 % interval; dashed: the noise floor; "
                "dotted: the original model's gap.",
            )
        )
    return out
