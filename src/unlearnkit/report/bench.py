"""The benchmark report as one document: ``report.md`` and ``report.html`` of a run folder.

Sections, in order: notes (legacy store, diverged rows), how to read the tables, memorisation,
the results per scenario (headline table; in HTML also the Pareto plot of Avg. Gap against run
time and per-metric bars against Retrain; then the detail tables), the paper claims, the
sensitivity sweeps, the audits, the retrain-free calibration check, the metric definitions and
the provenance. Sections without data are left out.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..bench.report import (
    LEGACY_NOTE,
    _extra_sections,
    aggregate,
    memorisation,
    memorisation_table,
    scenario_sections,
)
from ..bench.store import ResultStore, open_existing
from . import figures
from .document import Block, BulletList, Document, Figure, Note, Paragraph, Section, to_markdown
from .html import to_html

__all__ = ["bench_document", "write_reports"]

#: The four metrics of the Avg. Gap, as drawn in the per-metric bars: (key, title).
BAR_METRICS = (
    ("ua", "UA (%)"),
    ("acc_retain", "RA (%)"),
    ("acc_test", "TA (%)"),
    ("mia_efficacy", "MIA-Eff (%)"),
)

_DEFINITIONS = [
    "**UA** (`ua`) = 1 − accuracy on the forget set; **RA** (`acc_retain`) and **TA** "
    "(`acc_test`): accuracy on the retain and test sets; **MIA-Eff** (`mia_efficacy`, "
    "`mia_svc_conf_nonmember_rate`): share of forget examples a confidence-based SVC attack "
    "calls non-members. Each is read against Retrain (→ Retrain), never maximised.",
    "**Avg. Gap (pp)** = 100 × `avg_gap_salun`: per replicate, the mean absolute difference "
    "to the paired Retrain over UA, RA, TA and MIA-Eff, then mean ± std over replicates. "
    "`unlearnkit.evaluate()`, `results.db` and the JSON/CSV/Parquet exports keep it as a "
    "fraction of 1 (0.05 = 5 pp); the tables and plots show points. **Avg. Gap NatMU** = "
    "100 × `avg_gap_natmu` (FA, RA, TA and the entropy-LR member rate).",
    "**Noise floor**: the same metrics for Retrain′, a second retrain with another seed, "
    "against Retrain; a gap within it cannot be told apart from retraining.",
    "**RTE (s)** (`rte_seconds`): wall-clock seconds of the method call alone.",
    "**ZRF**, **ToW**, **JS to Retrain on D_f** (×1e3): agreement scores with a random teacher "
    "and with Retrain (ToW → 1; JS → the floor).",
    "**95 % interval** (HTML, under each mean): Student-t interval of the mean over the "
    "replicates (needs two or more).",
    "Full definitions and references: `docs/metrics.md`.",
]


def _pct(stat: dict[str, float] | None) -> dict[str, float]:
    if not stat or not stat.get("n"):
        return {"mean": math.nan, "half": math.nan}
    return {"mean": 100.0 * stat["mean"], "half": 100.0 * stat.get("half", math.nan)}


def _pareto(sc: str, rows: list[dict]) -> Any:
    from ..bench.report import access_level

    points, floor = [], None
    for r in rows:
        gap, rte = r["metrics"].get("avg_gap_salun"), r["metrics"].get("rte_seconds")
        if r["kind"] == "retrain_prime":
            floor = _pct(gap)
            continue
        if r["kind"] not in ("method", "retrain") or not rte or not rte.get("n"):
            continue
        g = _pct(gap)
        points.append(
            {
                "label": r["label"],
                "access": access_level(r),
                "x": rte["mean"],
                "y": g["mean"],
                "y_half": g["half"],
                "diverged": r.get("diverged", 0),
            }
        )
    return figures.pareto(points, floor, f"Avg. Gap vs run time, scenario {sc}")


def _bars(sc: str, rows: list[dict]) -> Any:
    from ..bench.report import access_level

    ref = next((r for r in rows if r["kind"] == "retrain"), None)
    prime = next((r for r in rows if r["kind"] == "retrain_prime"), None)
    if ref is None:
        return None
    reference = {}
    for key, _ in BAR_METRICS:
        floor = _pct((prime or {}).get("metrics", {}).get(f"gap_{key}"))["mean"]
        reference[key] = {
            "value": _pct(ref["metrics"].get(key))["mean"],
            "floor": floor if math.isfinite(floor) else 0.0,
        }
    shown = [
        {"label": r["label"], "access": "original" if r["kind"] == "original" else access_level(r)}
        | {k: _pct(r["metrics"].get(k)) for k, _ in BAR_METRICS}
        for r in rows
        if r["kind"] in ("original", "method")
    ]
    return figures.metric_bars(shown, BAR_METRICS, reference, f"Scenario {sc}: each metric")


def _scenario_figures(sc: str, rows: list[dict]) -> list[Block]:
    return [
        Figure(
            lambda: _pareto(sc, rows),
            alt=f"Avg. Gap to Retrain against run time, scenario {sc}",
            caption="One point per method (mean, 95 % interval), coloured by access level; the "
            "star is Retrain (gap 0 by definition, at its own cost); the grey band is the "
            "noise floor (Retrain′ vs Retrain, with its interval). Lower and further left is "
            "better; a point inside the band is as close to Retrain as a second retrain is.",
        ),
        Figure(
            lambda: _bars(sc, rows),
            alt=f"UA, RA, TA and MIA-Eff per method against Retrain, scenario {sc}",
            caption="Mean with the 95 % interval per method; the green line is Retrain's value "
            "and the grey band Retrain ± the noise floor of that metric. Closer to the line is "
            "better, in either direction.",
        ),
    ]


def _provenance(store: ResultStore, records: list[dict]) -> list[str]:
    spec = store.get_meta("spec", {}) or {}
    prov = store.get_meta("provenance", {}) or {}
    data = store.get_meta("dataset", {}) or {}
    seeds = sorted({s for rec in records for s in rec["seeds"]}) or spec.get("seeds", [])
    methods = "; ".join(
        f"{m.get('method')}"
        + (f" as {m['label']}" if m.get("label") else "")
        + (f" preset {m['preset']}" if m.get("preset") else "")
        + f" {json.dumps(m.get('config') or {}, sort_keys=True)}"
        for m in spec.get("methods", [])
        if isinstance(m, dict)
    )
    return [
        f"dataset: {data.get('name')} (train {data.get('n_train')}, val {data.get('n_val')}, "
        f"test {data.get('n_test')}; split {json.dumps(data.get('split', {}))}; fingerprint "
        f"{data.get('fingerprint')})",
        f"model: {json.dumps(spec.get('model', {}))}; recipe: {json.dumps(spec.get('recipe', {}))}",
        f"replicates: seeds {seeds} (replicate s: train seed s, retrain 1000+s, retrain′ "
        f"2000+s, unlearn s; the forget set is fixed); attack seed {spec.get('seed_attack')}; "
        f"ZRF teacher seed {spec.get('zrf_teacher_seed')}",
        f"methods (config source: {store.get_meta('configs', '?')}): {methods or '?'}",
        "std with ddof = 1; rates ×100; RTE is the method call alone (no evaluation); no "
        "legacy metric flags in force",
        f"software/hardware: {json.dumps(prov)}",
    ]


def bench_document(store: ResultStore) -> Document:
    """The whole benchmark report of ``store`` (both formats render from it)."""
    records = aggregate(store)
    spec = store.get_meta("spec", {}) or {}
    what = "audit" if not records and any(True for _ in store.rows("audit")) else "benchmark"
    doc = Document(f"unlearnkit {what} report: {spec.get('name', '?')}")
    if store.legacy:
        doc.add(Note(LEGACY_NOTE, kind="warn"))
    if any(r.get("diverged") for r in records):
        doc.add(
            Note(
                "Rows marked ⚠ diverged: the method hit non-finite values in some replicates; "
                "the model evaluated is its last state with finite outputs (or the input "
                "model), so those numbers do not show the method working.",
                kind="warn",
            )
        )
    doc.add(
        Paragraph(
            "Every forgetting metric is read against Retrain (the model retrained without the "
            "forget set), never maximised: the Retrain row is the target and Retrain′ (a second "
            "retrain with another seed) shows the noise floor. Avg. Gap is the mean absolute "
            "gap to Retrain of UA, RA, TA and MIA-Efficacy (SalUn's definition), per "
            "replicate, then mean ± std."
        )
    )
    mem = memorisation(store)
    if mem:
        doc.add(
            Section("Memorisation: can this benchmark tell methods apart?").add(
                Paragraph(
                    "The original model's forget-set signals must differ from Retrain's by "
                    "clearly more than two Retrains differ from each other; otherwise no "
                    "metric can separate a method that forgets from one that does nothing."
                ),
                memorisation_table(mem),
            )
        )
    results = Section("Results")
    results.add(*scenario_sections(records, figures=_scenario_figures))
    doc.add(results)
    for title, fn in _extra_sections():
        blocks = fn(store, records)
        if blocks:
            doc.add(Section(title, list(blocks)))
    doc.add(Section("Metric definitions").add(BulletList(list(_DEFINITIONS))))
    doc.add(Section("Provenance").add(BulletList(_provenance(store, records))))
    return doc


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(out: str | Path) -> dict[str, Path]:
    """Rewrite ``OUT/report.md`` and ``OUT/report.html`` from ``OUT/results.db``, each
    atomically. Returns their paths."""
    out = Path(out)
    with open_existing(out) as store:
        doc = bench_document(store)
        md, page = to_markdown(doc), to_html(doc)
    paths = {"report_md": out / "report.md", "report_html": out / "report.html"}
    _write_atomic(paths["report_md"], md)
    _write_atomic(paths["report_html"], page)
    return paths
