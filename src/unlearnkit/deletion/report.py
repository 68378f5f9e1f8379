"""The deletion report a person reads: ``report.md`` and a self-contained ``report.html``.

Both say the verdict in one sentence, then each acceptance criterion (value, target, passed),
the before/after figures, the calibration leaderboard and the provenance. The HTML adds the
forget-set vs held-out loss histograms before and after (matplotlib, inlined as PNG: no network,
no JavaScript). Both render one :mod:`unlearnkit.report` document.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..report.document import (
    BulletList,
    Cell,
    Document,
    Figure,
    Note,
    Paragraph,
    Row,
    Section,
    Table,
    to_markdown,
)
from ..report.html import to_html

__all__ = ["document", "html_report", "markdown", "verdict_sentence", "write_reports"]


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, float) for x in v):
        return f"[{v[0]:.4g}, {v[1]:.4g}]"
    return str(v)


def verdict_sentence(evidence: dict[str, Any]) -> str:
    """One sentence: passed or not, and which criteria failed."""
    crit = evidence.get("verdict", {}).get("criteria", {})
    failed = [k for k, ok in crit.items() if not ok]
    req = evidence.get("request", {})
    what = (
        f"class(es) {', '.join(map(str, req.get('classes', [])))}"
        if req.get("kind") == "class"
        else f"{req.get('n_ids', 0)} rows"
    )
    method = evidence.get("method", {}).get("name", "?")
    if not failed:
        return (
            f"PASSED: after {method}, the model treats the {what} like data it never saw, and "
            "its accuracy on the other data holds."
        )
    return (
        f"NOT PASSED: after {method}, the criteria {', '.join(failed)} do not hold for the "
        f"{what}; see the report for what to try."
    )


_ADVICE = {
    "mia_auc": "a larger --budget-s, or a method that changes the model more (e.g. --method "
    "neggrad_plus or salun)",
    "acc_gap": "a larger --budget-s; if the deleted rows are now predicted worse than held-out "
    "data (over-forgetting), a gentler method such as finetune",
    "loss_ks": "a larger --budget-s: the deleted rows' losses still differ from held-out data's",
    "forget_acc": "a method that unlearns harder (e.g. --method salun or random_labels)",
    "forget_heldout_acc": "a method that unlearns harder (e.g. --method salun or random_labels)",
    "heldout_acc": "a gentler configuration: over-forgetting costs accuracy on unseen data",
    "retain_acc": "a method that also trains on the retained data (forget_and_retain access)",
}


def _criteria_rows(after: dict[str, Any], before: dict[str, Any]) -> list[list[str]]:
    rows = []
    b = before.get("criteria", {})
    for name, c in after.get("criteria", {}).items():
        rows.append(
            [
                name,
                _fmt(b.get(name, {}).get("value", float("nan"))),
                _fmt(c.get("value")),
                _fmt(c.get("target")),
                "yes" if c.get("passed") else "**no**",
            ]
        )
    return rows


def _board_rows(evidence: dict[str, Any]) -> list[list[str]]:
    rows = []
    cal = evidence.get("calibration", {})
    for r in sorted(cal.get("rows", []), key=lambda r: r.get("best_objective", math.inf)):
        rows.append(
            [
                str(r.get("method")),
                _fmt(float(r.get("best_objective", math.nan))),
                str(r.get("trials", 0)),
                str(r.get("failed", 0)),
                _fmt(float(r.get("seconds", math.nan))),
                ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.get("best_config", {}).items()))
                or "(defaults)",
            ]
        )
    return rows


_CRIT_HEAD = ["criterion", "before", "after", "target", "passed"]
_BOARD_HEAD = ["method", "best objective (0 = every target met)", "trials", "failed", "s", "config"]


def _criteria_table(after: dict[str, Any], before: dict[str, Any]) -> Table:
    rows = [
        Row([*r[:4], Cell(r[4], cls="good" if r[4] == "yes" else "bad")])
        for r in _criteria_rows(after, before)
    ]
    return Table(_CRIT_HEAD, rows)


def _loss_histograms(losses: dict[str, dict[str, Any]]) -> Any:
    """Forget vs held-out loss histograms, before and after (a matplotlib figure)."""
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(9, 3.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    # per-sample losses span orders of magnitude (memorised rows sit near 0): a log axis
    logs = {
        when: {k: np.log10(np.maximum(np.asarray(v, dtype=float), 1e-6)) for k, v in part.items()}
        for when, part in losses.items()
    }
    every = np.concatenate([v for part in logs.values() for v in part.values()] or [[0.0]])
    bins = np.linspace(float(every.min()), float(every.max()) + 1e-9, 30)
    for ax, when in zip(axes, ("before", "after")):
        for name, color in (("forget", "#c0392b"), ("heldout", "#2471a3")):
            vals = logs.get(when, {}).get(name)
            if vals is not None and len(vals):
                ax.hist(vals, bins=bins, density=True, alpha=0.55, color=color,
                        label="held-out" if name == "heldout" else "deleted rows")  # fmt: skip
        ax.set_title(f"{when} unlearning")
        ax.set_xlabel("per-sample loss (log10)")
        ax.legend()
    axes[0].set_ylabel("density")
    return fig


def document(evidence: dict[str, Any], losses: dict[str, Any] | None = None) -> Document:
    """The deletion report as a document (``losses``: the per-sample losses of the plot)."""
    after, before = evidence.get("after", {}), evidence.get("before", {})
    failed = [k for k, ok in evidence["verdict"]["criteria"].items() if not ok]
    ok = bool(evidence["verdict"].get("passed"))
    doc = Document("unlearnkit deletion report")
    doc.add(
        Note(verdict_sentence(evidence), kind="pass" if ok else "fail", bold=True),
        Paragraph(
            "Figures are measured on the report half of the held-out data, which the "
            "calibration never read. Definitions: `docs/retrain-free-calibration.md`."
        ),
    )
    if losses:
        doc.add(
            Section("Forget set vs held-out data: per-sample loss").add(
                Figure(
                    lambda: _loss_histograms(losses),
                    alt="forget vs held-out loss histograms",
                    caption="Per-sample loss of the deleted rows and of held-out data, before "
                    "and after unlearning (log scale).",
                )
            )
        )
    crit = Section("Acceptance criteria").add(_criteria_table(after, before))
    if failed:
        crit.add(
            Paragraph("What to try:"),
            BulletList([f"`{k}`: {_ADVICE.get(k, 'a larger --budget-s')}" for k in failed]),
        )
    m = evidence["method"]
    diverged = " — **diverged**: rolled back to its last finite state" if m.get("diverged") else ""
    board = [Row(r) for r in _board_rows(evidence)]
    doc.add(
        crit,
        Section("Method").add(
            Paragraph(
                f"`{m['name']}` ({m['access']}), seed {m['seed']}, run time "
                f"{m['rte_seconds']:.2f} s{diverged}"
            ),
            Paragraph(f"Config: `{m['config']}`"),
        ),
        Section("Calibration leaderboard").add(
            Paragraph(
                f"Budget {evidence['budget']['budget_s']:.0f} s, spent "
                f"{evidence['budget']['calibration_s']:.1f} s."
            ),
            Table(_BOARD_HEAD, list(board)),
        ),
        Section("Provenance").add(
            BulletList(
                [
                    f"request: {evidence['request']}",
                    f"input: {evidence['input']['data']}; held-out: "
                    f"{evidence['input']['held_out']}",
                    "checkpoint in: "
                    f"{evidence['input'].get('checkpoint_sha256', '(not a file)')}; out: "
                    f"{evidence.get('output', {}).get('sha256', '?')}",
                    f"software: {evidence['software']}",
                ]
            )
        ),
    )
    if "reference" in evidence:
        doc.add(Section("Against a retrained model").add(Paragraph(f"{evidence['reference']}")))
    return doc


def markdown(evidence: dict[str, Any]) -> str:
    """``report.md``: the document in Markdown (no plot)."""
    return to_markdown(document(evidence))


def html_report(evidence: dict[str, Any], losses: dict[str, Any]) -> str:
    """``report.html``: the document with the loss histograms, one self-contained page."""
    return to_html(document(evidence, losses), toc=False)


def write_reports(result: Any, out: Path) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` for a :class:`ForgetResult`."""
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown(result.evidence), encoding="utf-8")
    losses = result.figures.get("losses", {})
    html_path.write_text(html_report(result.evidence, losses), encoding="utf-8")
    return {"report_md": md_path, "report_html": html_path}
