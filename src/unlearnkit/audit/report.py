"""Render tier-C audit results: the audit section of ``report.md`` / ``report.html`` (as
:mod:`unlearnkit.report` blocks) and the CLI's text.

Every audited method is shown beside the same audit of Retrain (its control row), because no
audit number means anything alone: the NeurIPS score depends on N and two i.i.d. populations
do not reach F = 1, and an attack's accuracy or AUC on Retrain is the estimation floor at that
bank size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..bench.store import CellRow, ResultStore
from ..report import figures
from ..report.document import Block, Figure, Row, Section, Table, to_markdown

__all__ = ["audit_blocks", "audit_section_md", "format_audit_text"]

_TITLES = {
    "epsilon": "NeurIPS-2023 score: per-example ε and H-score",
    "ulira": "U-LiRA: per-example unlearning membership inference",
    "rmia": "RMIA (offline) against Retrain",
}
_ORDER = ("epsilon", "ulira", "rmia")
_SHORT = {"epsilon": "ε audit", "ulira": "U-LiRA", "rmia": "RMIA"}


# --------------------------------------------------------------------------------------------
# Cell formatting


def _num(v: Any, digits: int = 3) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _pct(v: Any) -> str:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else f"{100 * x:.1f} %"


def _pct_ci(m: dict[str, float], key: str, flag_underpowered: bool = False) -> str:
    cell = _pct(m.get(key))
    lo, hi = m.get(f"{key}_ci_lo"), m.get(f"{key}_ci_hi")
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        cell += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    if flag_underpowered and m.get("underpowered", 0.0) > 0.5:
        cell += " †"
    return cell


def _eps_q(m: dict[str, float]) -> str:
    return " / ".join(_num(m.get(f"eps_{q}"), 2) for q in ("q50", "q90", "q99"))


# (column header, cell function of the metrics) per kind; the first columns are shared.
_Col = tuple[str, Callable[[dict[str, float]], str]]
_COLUMNS: dict[str, list[_Col]] = {
    "epsilon": [
        ("F (H-score) ↑, ceiling = Retrain", lambda m: _num(m.get("F"))),
        ("final ↑", lambda m: _num(m.get("final"))),
        ("ε p50 / p90 / p99 ↓", _eps_q),
        ("ε mean ↓", lambda m: _num(m.get("eps_mean"), 2)),
        ("attack acc (→ Retrain)", lambda m: _pct(m.get("attack_acc"))),
        ("RA", lambda m: _pct(m.get("ra_mean"))),
        ("TA", lambda m: _pct(m.get("ta_mean"))),
    ],
    "ulira": [
        ("U-LiRA acc (→ 0.5) [95 % CI]", lambda m: _pct_ci(m, "ulira_acc")),
        ("AUC (→ 0.5)", lambda m: _num(m.get("auc"))),
        ("TPR @ 1 % FPR", lambda m: _pct_ci(m, "tpr_at_fpr_0.01", True)),
        ("TPR @ 0.1 % FPR", lambda m: _pct_ci(m, "tpr_at_fpr_0.001", True)),
        (
            "vulnerability p50 / p90 / p99",
            lambda m: " / ".join(_pct(m.get(f"vulnerability_{q}")) for q in ("q50", "q90", "q99")),
        ),
    ],
    "rmia": [
        ("AUC (→ Retrain)", lambda m: _num(m.get("auc"))),
        ("Δauc (→ 0)", lambda m: _num(m.get("delta_auc")) if "delta_auc" in m else ""),
        ("TPR @ 1 % FPR", lambda m: _pct_ci(m, "tpr_at_fpr_0.01", True)),
        ("TPR @ 0.1 % FPR", lambda m: _pct_ci(m, "tpr_at_fpr_0.001", True)),
        ("balanced acc", lambda m: _pct(m.get("balanced_acc"))),
    ],
}
_N_HEADER = {"epsilon": "N per side", "ulira": "splits × M", "rmia": "references"}


def _n_cell(kind: str, row: CellRow) -> str:
    n = int(row.record.get("n_models", row.metrics.get("n_models", 0)) or 0)
    if kind == "ulira":
        return f"{n} × {row.record.get('forget_sets', '?')}"
    return str(n)


def _footer(kind: str, rows: list[CellRow]) -> str:
    ns = sorted({_n_cell(kind, r) for r in rows})
    ci = sorted({f"{100 * float(r.record.get('ci_level', 0.95)):g} %" for r in rows})
    negs = sorted({str(r.record.get("negatives", "?")) for r in rows})
    parts = [f"N ({_N_HEADER[kind]}): {', '.join(ns)}"]
    if kind == "epsilon":
        ex = sorted({str(int(r.metrics.get("n_examples", 0))) for r in rows})
        parts.append(
            f"negatives: the retrained side ({'; '.join(negs)}); forget examples: {', '.join(ex)}"
        )
        parts.append(
            "scores are comparable only at equal N; the Retrain row scores N further Retrains "
            "against the same N Retrains (the practical ceiling); attack acc = mean over forget "
            "examples of the best single-threshold balanced accuracy (0.5 + KS/2, in-sample)"
        )
    else:
        n_neg = sorted({str(int(r.metrics.get("n_neg", 0))) for r in rows})
        parts.append(f"negatives: {'; '.join(negs)} (n_neg = {', '.join(n_neg)})")
        parts.append("† underpowered: fewer than 1/α negatives, the TPR at that FPR is noise")
    parts.append(f"Clopper–Pearson level {', '.join(ci)}")
    return "; ".join(parts) + "."


def _table_row(kind: str, r: CellRow, label: str, cls: str = "") -> Row:
    cells = [r.scenario, label, _n_cell(kind, r), *[fn(r.metrics) for _, fn in _COLUMNS[kind]]]
    return Row(list(cells), cls)


def _values(record: dict[str, Any], key: str) -> np.ndarray | None:
    v = record.get(key)
    if not isinstance(v, list) or not v:
        return None
    try:  # the store keeps NaN as null and infinities as "inf" / "-inf"
        return np.asarray([math.nan if x is None else float(x) for x in v], dtype=float)
    except (TypeError, ValueError):
        return None


_HISTOGRAMS = {
    "epsilon": ("eps", "ε", "per-example ε (lower: closer to retraining)"),
    "ulira": ("vulnerability", "vulnerability", "per-example vulnerability (share flagged)"),
}


def _figures(kind: str, r: CellRow, ctrl: CellRow | None) -> list[Block]:
    """The HTML plots of one audited method beside its control, from what the rows keep."""
    pair = {f"{r.label} ({r.access})": r} | ({"Retrain (control)": ctrl} if ctrl else {})
    out: list[Block] = []
    if kind in _HISTOGRAMS:
        key, what, xlabel = _HISTOGRAMS[kind]
        series = {name: _values(row.record, key) for name, row in pair.items()}
        series = {k: v for k, v in series.items() if v is not None}
        if series:
            out.append(
                Figure(
                    lambda s=series: figures.histograms(
                        s, xlabel, f"per-example {what}, scenario {r.scenario}"
                    ),
                    alt=f"histogram of per-example {what}: {r.label} and its Retrain control",
                    caption=f"Per-example {what} over the forget examples: the audited method "
                    "beside the same audit of Retrain (its control).",
                )
            )
    rocs = {name: row.record.get("roc") for name, row in pair.items()}
    rocs = {k: v for k, v in rocs.items() if isinstance(v, dict) and v.get("levels")}
    if rocs:
        out.append(
            Figure(
                lambda m=rocs: figures.roc_points(m, f"{_SHORT[kind]}: ROC, {r.scenario}"),
                alt=f"ROC curves of {r.label} and its Retrain control (log-log)",
                caption="Log-log ROC curves (staircases through the operating points read at "
                "16 FPR budgets per decade, down to one negative) and the low-FPR operating "
                "points (TPR at FPR 1 % and 0.1 %, with Clopper–Pearson intervals; x is the "
                "realised FPR). Open markers: a TPR or FPR of 0, drawn on the axis edge.",
            )
        )
    return out


def audit_blocks(store: ResultStore) -> list[Block]:
    """The audit section as report blocks (empty when no audit ran).

    One table per audit kind; each audited method's row is directly followed by the same
    audit of Retrain (its control row), and a footer gives N, the negatives, their number and
    the Clopper–Pearson level. In HTML, each method also gets plots of what its rows keep:
    per-example ε (epsilon) or vulnerability (U-LiRA) histograms beside its control, and the
    ROC curves with the low-FPR operating points, log-log (U-LiRA, RMIA).
    """
    rows = list(store.rows("audit"))
    if not rows:
        return []
    by_key = {r.key: r for r in rows}
    methods = [r for r in rows if r.record.get("control_key")]
    orphans = [
        r
        for r in rows
        if not r.record.get("control_key")
        and not any(m.record.get("control_key") == r.key for m in methods)
    ]
    out: list[Block] = []
    for kind in _ORDER:
        mine = [r for r in methods if r.record.get("audit") == kind]
        lone = [r for r in orphans if r.record.get("audit") == kind]
        if not mine and not lone:
            continue
        cols = _COLUMNS[kind]
        table = Table(["scenario", "model", _N_HEADER[kind], *[c[0] for c in cols]], [])
        plots: list[Block] = []
        shown: list[CellRow] = []
        for r in mine:
            shown.append(r)
            table.rows.append(_table_row(kind, r, f"{r.label} ({r.access})"))
            ctrl = by_key.get(r.record["control_key"])
            if ctrl is None:
                missing = [r.scenario, "Retrain (control)", "", "missing: rerun the audit"]
                table.rows.append(Row(missing + [""] * (len(cols) - 1), "diverged"))
            else:
                shown.append(ctrl)
                table.rows.append(_table_row(kind, ctrl, "↳ Retrain (control)", "ref"))
            plots += _figures(kind, r, ctrl)
        for r in lone:
            shown.append(r)
            table.rows.append(_table_row(kind, r, r.label))
        table.footer = _footer(kind, shown)
        out.append(Section(_TITLES[kind], [table, *plots], level=3))
    return out


def audit_section_md(store: ResultStore) -> str:
    """Return the audit section of ``report.md`` (Markdown), or ``""`` when no audit ran.

    The blocks of :func:`audit_blocks` in Markdown (the plots are HTML only).

    Args:
        store: an open results store.

    Returns:
        Markdown without a top-level heading (the caller adds "## Audits"), or ``""``.
    """
    blocks = audit_blocks(store)
    return to_markdown(blocks) if blocks else ""


# --------------------------------------------------------------------------------------------
# CLI text


def _text_rows(kind: str, m: dict[str, float], r: dict[str, float]) -> list[tuple[str, str, str]]:
    if kind == "epsilon":
        return [
            ("H-score (forget quality F) ↑", _num(m.get("F")), _num(r.get("F"))),
            ("final score ↑", _num(m.get("final")), _num(r.get("final"))),
            ("ε median / p90 / p99", _eps_q(m), _eps_q(r)),
            ("ε mean", _num(m.get("eps_mean"), 2), _num(r.get("eps_mean"), 2)),
            ("attack accuracy", _pct(m.get("attack_acc")), _pct(r.get("attack_acc"))),
            ("RA (mean)", _pct(m.get("ra_mean")), _pct(r.get("ra_mean"))),
            ("TA (mean)", _pct(m.get("ta_mean")), _pct(r.get("ta_mean"))),
        ]
    if kind == "ulira":
        return [
            ("U-LiRA accuracy (→ 50 %)", _pct_ci(m, "ulira_acc"), _pct_ci(r, "ulira_acc")),
            ("AUC (→ 0.5)", _num(m.get("auc")), _num(r.get("auc"))),
            (
                "TPR @ 1 % FPR",
                _pct_ci(m, "tpr_at_fpr_0.01", True),
                _pct_ci(r, "tpr_at_fpr_0.01", True),
            ),
            (
                "TPR @ 0.1 % FPR",
                _pct_ci(m, "tpr_at_fpr_0.001", True),
                _pct_ci(r, "tpr_at_fpr_0.001", True),
            ),
            (
                "vulnerability p50 / p90 / p99",
                " / ".join(_pct(m.get(f"vulnerability_{q}")) for q in ("q50", "q90", "q99")),
                " / ".join(_pct(r.get(f"vulnerability_{q}")) for q in ("q50", "q90", "q99")),
            ),
        ]
    return [
        ("AUC (→ Retrain)", _num(m.get("auc")), _num(r.get("auc"))),
        ("Δauc = method − Retrain (→ 0)", _num(m.get("delta_auc")), ""),
        ("TPR @ 1 % FPR", _pct_ci(m, "tpr_at_fpr_0.01", True), _pct_ci(r, "tpr_at_fpr_0.01", True)),
        (
            "TPR @ 0.1 % FPR",
            _pct_ci(m, "tpr_at_fpr_0.001", True),
            _pct_ci(r, "tpr_at_fpr_0.001", True),
        ),
        ("balanced accuracy", _pct(m.get("balanced_acc")), _pct(r.get("balanced_acc"))),
    ]


def format_audit_text(result: dict[str, Any]) -> str:
    """Return the plain-text summary the CLI prints for one :func:`run_audit` result.

    For an epsilon audit: the H-score (F), the final score, ε quantiles and the attack
    accuracy, each beside Retrain's own value at the same N; for U-LiRA and RMIA: accuracy,
    AUC and TPR at low FPR with Clopper–Pearson intervals beside Retrain's.
    """
    kind = result["kind"]
    m, r = result["metrics"], result["retrain"]
    rec = result.get("record", {})
    title = {
        "epsilon": "NeurIPS-2023 score (epsilon audit)",
        "ulira": "U-LiRA audit",
        "rmia": "RMIA-vs-Retrain audit",
    }[kind]
    n = result["n_models"]
    size = {
        "epsilon": f"N = {n} unlearned and {n} retrained models, "
        f"{int(m.get('n_examples', 0))} forget examples",
        "ulira": f"{n} shadow splits × {rec.get('forget_sets', '?')} forget sets "
        f"(f = {rec.get('forget_fraction', '?')}), "
        f"{'fixed' if rec.get('fixed_variance') else 'per-example'} variance",
        "rmia": f"{n} reference models, a = {_num(m.get('a'), 1)}, "
        f"{int(m.get('n_pos', 0))} positives vs {int(m.get('n_neg', 0))} negatives",
    }[kind]
    rows = _text_rows(kind, m, r)
    head = ("", result.get("label", result["method"]), "Retrain (control)")
    w0 = max(len(head[0]), *(len(x[0]) for x in rows))
    w1 = max(len(head[1]), *(len(x[1]) for x in rows))
    lines = [
        f"{title}: {result.get('label', result['method'])} ({result.get('access', '?')}), "
        f"scenario {result['scenario']}",
        size,
        "",
        f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]}",
    ]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    lines.append("")
    if kind == "epsilon":
        lines.append(
            f"Retrain's own score (N more Retrains scored against the same {n}) is the practical "
            "ceiling; scores are comparable only at equal N."
        )
    else:
        lines.append(
            "Retrain's values are the estimation floor at this bank size; Clopper–Pearson "
            f"intervals at {100 * float(rec.get('ci_level', 0.95)):g} %"
            + ("; † = fewer than 1/α negatives (underpowered)." if m.get("underpowered") else ".")
        )
    status = "reused from" if result.get("reused") else "stored in"
    lines.append(
        f"{status} {result.get('out_dir', '?')}/results.db; models trained now: "
        f"{result.get('trained', 0)}, unlearning runs: {result.get('unlearning_runs', 0)}"
    )
    return "\n".join(lines)
