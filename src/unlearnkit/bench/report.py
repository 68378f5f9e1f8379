"""Aggregate a results store into tables: Markdown (``report.md``), JSON and CSV.

Rows per scenario, in order: Original, Retrain (the reference), Retrain′ (the noise floor: its
gap columns hold the floors), then the methods grouped by access level. Cells
are mean ± std over replicates (ddof 1), rates ×100 with one decimal, gaps in percentage points.
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

from ..metrics.functional.gaps import avg_gap_trial_mean
from ..metrics.functional.stats import mean_std
from .store import CellRow, ResultStore

__all__ = ["LEGACY_NOTE", "SUMMARY_KEYS", "aggregate", "memorisation", "render", "row_label"]

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

DETAIL_KEYS: tuple[tuple[str, str, str], ...] = (
    ("signed_fa", "signed FA (pp, <0 over-forgets)", "rate"),
    ("acc_forget_test", "forgotten-class TA (%)", "rate"),
    ("collateral_acc_neighbours", "neighbour-class TA change (pp vs original)", "rate"),
    ("mia_lr_entropy_member_rate", "MIA-LR (member %)", "rate"),
    ("mia_lr_loss_cv_acc", "MIA-CV acc (%)", "rate"),
    ("avg_gap_natmu", "Avg. Gap NatMU (pp)", "rate"),
    ("zrf", "ZRF", "score"),
    ("tow", "ToW", "score"),
    ("js_to_retrain_forget", "JS to Retrain on D_f (×1e3)", "milli"),
)

#: Opt-in readouts, shown when the rows have them: the spec's ``relearn: true`` and, with
#: ``retrain_init: same_init``, the weight distance to Retrain.
OPTIONAL_KEYS: tuple[tuple[str, str, str], ...] = (
    ("relearn_steps", "relearn steps (→ Retrain; cap 100)", "count"),
    ("ain", "AIN (→ 1)", "score"),
    ("wdist_rel", "weight distance to Retrain (rel.)", "score"),
)

_KIND_ORDER = {"original": 0, "retrain": 1, "retrain_prime": 2, "method": 3}
_ACCESS_ORDER = {"forget_only": 0, "forget_and_retain": 1, "full_train": 2}


def _stat(values: Iterable[float]) -> dict[str, float]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    m, s, n = mean_std(vals)
    return {"mean": m, "std": s, "n": n}


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


def _fmt(stat: dict[str, float] | None, kind: str) -> str:
    if stat is None or stat["n"] == 0 or math.isnan(stat["mean"]):
        return "–"
    scale = {"rate": 100.0, "milli": 1000.0}.get(kind, 1.0)
    m = stat["mean"] * scale
    digits = {"score": 2, "seconds": 2, "count": 0}.get(kind, 1)
    if kind == "count" and stat["n"] >= 2:
        digits = 1
    if stat["n"] < 2 or math.isnan(stat["std"]):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def _table(records: list[dict], columns: tuple[tuple[str, str, str], ...]) -> str:
    head = ["Method", "Access", *[c[1] for c in columns]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in records:
        cells = [row_label(r), r["access"]]
        for key, _, kind in columns:
            stat = r["metrics"].get(key)
            if r["kind"] == "retrain_prime" and key.startswith("avg_gap"):
                stat = r["metrics"].get(key)  # the gap of Retrain′ to Retrain *is* the floor
            cells.append(_fmt(stat, kind))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def tables_md(records: list[dict], detail: bool = True) -> str:
    """Per-scenario Markdown tables (headline and, optionally, detail)."""
    parts = []
    for sc in _scenarios(records):
        rows = [r for r in records if r["scenario"] == sc]
        n = max(r["n"] for r in rows)
        parts.append(f"### Scenario `{sc}` ({n} replicate{'s' if n != 1 else ''})\n")
        parts.append(_table(rows, SUMMARY_KEYS))
        if detail:
            parts.append("\nDetail:\n")
            extra = tuple(c for c in OPTIONAL_KEYS if any(c[0] in r["metrics"] for r in rows))
            parts.append(_table(rows, DETAIL_KEYS + extra))
        parts.append("")
    return "\n".join(parts)


def memorisation_md(mem: list[dict]) -> str:
    lines = [
        "| Scenario | Signal | Original | Retrain | margin |orig − retrain| | noise floor "
        "|retrain′ − retrain| | margin / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in mem:
        ratio = "∞" if math.isinf(m["ratio"]) else f"{m['ratio']:.1f}×"
        lines.append(
            f"| {m['scenario']} | {m['description']} | {m['original']:.4f} | "
            f"{m['retrain']:.4f} | {m['margin']:.4f} | {m['floor']:.4f} | {ratio} |"
        )
    return "\n".join(lines)


SectionFn = Callable[[ResultStore, list[dict]], str]


def _extra_sections() -> list[tuple[str, SectionFn]]:
    """The sections after the results tables (each renders nothing when it has no data)."""
    from .claims import claims_md, sweeps_md

    sections: list[tuple[str, SectionFn]] = [
        ("Paper claims", claims_md),
        ("Sensitivity sweeps", sweeps_md),
    ]
    try:
        from ..audit.report import audit_section_md
    except ImportError:  # the audit package is optional at this stage
        return sections
    sections.append(("Audits", lambda store, _records: audit_section_md(store)))
    return sections


def render_markdown(store: ResultStore) -> str:
    """The whole ``report.md``."""
    records = aggregate(store)
    spec = store.get_meta("spec", {})
    prov = store.get_meta("provenance", {})
    data = store.get_meta("dataset", {})
    parts = [f"# unlearnkit benchmark report: {spec.get('name', '?')}\n"]
    if store.legacy:
        parts.append(f"> {LEGACY_NOTE}\n")
    if any(r.get("diverged") for r in records):
        parts.append(
            "> Rows marked ⚠ diverged: the method hit non-finite values in some replicates; the "
            "model evaluated is its last state with finite outputs (or the input model), so "
            "those numbers do not show the method working.\n"
        )
    parts.append(
        "Every forgetting metric is read against Retrain (the model retrained without the forget "
        "set), never maximised: the Retrain row is the target and Retrain′ (a second retrain "
        "with another seed) shows the noise floor. Avg. Gap is the mean absolute gap to Retrain "
        "of UA, RA, TA and MIA-Efficacy (SalUn's definition), per replicate, then mean ± std.\n"
    )
    mem = memorisation(store)
    if mem:
        parts.append("## Memorisation: can this benchmark tell methods apart?\n")
        parts.append(
            "The original model's forget-set signals must differ from Retrain's by clearly more "
            "than two Retrains differ from each other; otherwise no metric can separate a "
            "method that forgets from one that does nothing.\n"
        )
        parts.append(memorisation_md(mem) + "\n")
    parts.append("## Results\n")
    parts.append(tables_md(records))
    for title, fn in _extra_sections():
        body = fn(store, records)
        if body:
            parts.append(f"## {title}\n\n{body}\n")
    parts.append("## Provenance\n")
    seeds = sorted({r for rec in records for r in rec["seeds"]}) or spec.get("seeds", [])
    parts.append(
        f"- dataset: {data.get('name')} (train {data.get('n_train')}, val {data.get('n_val')}, "
        f"test {data.get('n_test')}; split {json.dumps(data.get('split', {}))}; fingerprint "
        f"{data.get('fingerprint')})\n"
        f"- model: {json.dumps(spec.get('model', {}))}; recipe: "
        f"{json.dumps(spec.get('recipe', {}))}\n"
        f"- replicates: seeds {seeds} (replicate s: train seed s, retrain 1000+s, retrain′ "
        f"2000+s, unlearn s; the forget set is fixed); attack seed {spec.get('seed_attack')}; "
        f"ZRF teacher seed {spec.get('zrf_teacher_seed')}\n"
        "- std with ddof = 1; rates ×100; RTE is the method call alone (no evaluation); no "
        "legacy metric flags in force\n"
        f"- software/hardware: {json.dumps(prov)}\n"
    )
    return "\n".join(parts)


def summary_records(store: ResultStore) -> list[dict[str, Any]]:
    """One flat object per (scenario, row): mean and std of the headline metrics."""
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
    """The report in ``md``, ``json`` (one object per scenario × method) or ``csv``."""
    if fmt == "md":
        return render_markdown(store)
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
    raise ValueError(f"unknown format {fmt!r}; use md, json or csv")
