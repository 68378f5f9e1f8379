"""The deletion report a person reads: ``report.md`` and a self-contained ``report.html``.

Both say the verdict in one sentence, then each acceptance criterion (value, target, passed),
the before/after figures, the calibration leaderboard and the provenance. The HTML adds the
forget-set vs held-out loss histograms before and after (matplotlib, inlined as PNG: no network,
no JavaScript).
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["verdict_sentence", "write_reports"]


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


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


_CRIT_HEAD = ["criterion", "before", "after", "target", "passed"]
_BOARD_HEAD = ["method", "best objective (0 = every target met)", "trials", "failed", "s", "config"]


def markdown(evidence: dict[str, Any]) -> str:
    after, before = evidence.get("after", {}), evidence.get("before", {})
    failed = [k for k, ok in evidence["verdict"]["criteria"].items() if not ok]
    parts = [
        "# unlearnkit deletion report\n",
        f"**{verdict_sentence(evidence)}**\n",
        "Figures are measured on the report half of the held-out data, which the calibration "
        "never read. Definitions: `docs/retrain-free-calibration.md`.\n",
        "## Acceptance criteria\n",
        _md_table(_CRIT_HEAD, _criteria_rows(after, before)) + "\n",
    ]
    if failed:
        parts.append("What to try:\n")
        parts += [f"- `{k}`: {_ADVICE.get(k, 'a larger --budget-s')}" for k in failed]
        parts.append("")
    m = evidence["method"]
    parts += [
        "## Method\n",
        f"`{m['name']}` ({m['access']}), seed {m['seed']}, run time {m['rte_seconds']:.2f} s"
        + (" — **diverged**: rolled back to its last finite state" if m.get("diverged") else "")
        + "\n",
        f"Config: `{m['config']}`\n",
        "## Calibration leaderboard\n",
        f"Budget {evidence['budget']['budget_s']:.0f} s, spent "
        f"{evidence['budget']['calibration_s']:.1f} s.\n",
        _md_table(_BOARD_HEAD, _board_rows(evidence)) + "\n",
        "## Provenance\n",
        f"- request: {evidence['request']}",
        f"- input: {evidence['input']['data']}; held-out: {evidence['input']['held_out']}",
        f"- checkpoint in: {evidence['input'].get('checkpoint_sha256', '(not a file)')}; out: "
        f"{evidence.get('output', {}).get('sha256', '?')}",
        f"- software: {evidence['software']}",
    ]
    if "reference" in evidence:
        parts += ["", "## Against a retrained model\n", f"{evidence['reference']}"]
    return "\n".join(parts) + "\n"


def _histogram_png(losses: dict[str, dict[str, np.ndarray]]) -> str | None:
    """Forget vs held-out loss histograms, before and after, as a base64 PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c).replace('**', '')}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def html_report(evidence: dict[str, Any], losses: dict[str, Any]) -> str:
    after, before = evidence.get("after", {}), evidence.get("before", {})
    ok = evidence["verdict"].get("passed")
    png = _histogram_png(losses) if losses else None
    plot = (
        f'<img alt="forget vs held-out loss histograms" src="data:image/png;base64,{png}">'
        if png
        else ""
    )
    md_lines = markdown(evidence).split("## Provenance", 1)[1]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>unlearnkit deletion report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
.verdict {{ padding: .8rem 1rem; border-radius: .4rem; font-weight: 600;
  background: {"#e8f6ec" if ok else "#fdecea"};
  border: 1px solid {"#27ae60" if ok else "#c0392b"}; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
td, th {{ border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; font-size: .9rem; }}
pre {{ white-space: pre-wrap; background: #f6f6f6; padding: .5rem; }}
</style></head><body>
<h1>unlearnkit deletion report</h1>
<p class="verdict">{html.escape(verdict_sentence(evidence))}</p>
<p>Figures are measured on the report half of the held-out data, which the calibration never
read.</p>
<h2>Forget set vs held-out data: per-sample loss</h2>{plot}
<h2>Acceptance criteria</h2>{_html_table(_CRIT_HEAD, _criteria_rows(after, before))}
<h2>Calibration leaderboard</h2>{_html_table(_BOARD_HEAD, _board_rows(evidence))}
<h2>Provenance</h2><pre>{html.escape(md_lines.strip())}</pre>
</body></html>
"""


def write_reports(result: Any, out: Path) -> dict[str, Path]:
    """Write ``report.md`` and ``report.html`` for a :class:`ForgetResult`."""
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(markdown(result.evidence), encoding="utf-8")
    losses = result.figures.get("losses", {})
    html_path.write_text(html_report(result.evidence, losses), encoding="utf-8")
    return {"report_md": md_path, "report_html": html_path}
