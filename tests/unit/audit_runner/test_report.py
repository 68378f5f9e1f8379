"""The audit section of report.md and the CLI text: every method beside its Retrain control."""

from __future__ import annotations

import sqlite3

from unlearnkit.audit.report import audit_section_md, format_audit_text
from unlearnkit.bench.store import ResultStore


def _section(path) -> str:
    with ResultStore(path / "results.db") as store:
        return audit_section_md(store)


def test_every_method_row_is_followed_by_its_retrain_control(audited):
    out, results = audited
    md = _section(out)
    assert md.count("### ") == 3
    lines = md.splitlines()
    method_rows = [i for i, line in enumerate(lines) if "| finetune" in line]
    assert len(method_rows) == 3
    for i in method_rows:
        assert "↳ Retrain (control)" in lines[i + 1]
    eps = results["epsilon"]
    row = lines[method_rows[0]]
    assert f"| {eps['metrics']['F']:.3f} |" in row
    assert f"| {eps['retrain']['F']:.3f} |" in lines[method_rows[0] + 1]
    assert "ε p50 / p90 / p99" in md and "attack acc" in md and "TPR @ 1 % FPR" in md


def test_footers_give_n_negatives_and_cp_level(audited):
    out, _ = audited
    md = _section(out)
    footers = [line for line in md.splitlines() if line.startswith("N (")]
    assert len(footers) == 3
    for line in footers:
        assert "negatives" in line and "Clopper–Pearson level 95 %" in line
    assert "N (N per side): 4" in footers[0]
    assert "N (splits × M): 4 × 2" in footers[1]
    assert "N (references): 4" in footers[2] and "n_neg = 40" in footers[2]
    assert "† underpowered" in footers[2]


def test_missing_control_row_is_shown(audited, copy_of):
    out, results = audited
    run = copy_of(out)
    con = sqlite3.connect(run / "results.db")
    with con:
        con.execute("DELETE FROM cells WHERE key = ?", (results["epsilon"]["control_key"],))
    con.close()
    assert "missing: rerun the audit" in _section(run)


def test_empty_store_gives_no_section(tmp_path):
    assert _section(tmp_path) == ""


def test_cli_text_shows_scores_beside_retrain(audited):
    _, results = audited
    eps = results["epsilon"]
    text = format_audit_text(eps)
    assert "H-score" in text and "final score" in text and "Retrain (control)" in text
    h_line = next(line for line in text.splitlines() if line.startswith("H-score"))
    assert f"{eps['metrics']['F']:.3f}" in h_line and f"{eps['retrain']['F']:.3f}" in h_line
    assert "N = 4" in text
    ulira = format_audit_text(results["ulira"])
    assert "U-LiRA accuracy" in ulira and "TPR @ 0.1 % FPR" in ulira and "†" in ulira
    rmia = format_audit_text(results["rmia"])
    assert "Δauc" in rmia and "Retrain (control)" in rmia


def test_benchmark_report_includes_the_audit_section(audited):
    from unlearnkit.bench.report import render_markdown

    out, _ = audited
    with ResultStore(out / "results.db") as store:
        md = render_markdown(store)
    assert "## Audits" in md and "↳ Retrain (control)" in md


def test_an_audit_only_folder_describes_itself(audited, tiny_spec):
    """No benchmark ran here: the audits record the spec, data set and software the report's
    provenance prints, and the report is titled an audit report."""
    from unlearnkit.report.bench import bench_document

    out, _ = audited
    with ResultStore(out / "results.db") as store:
        assert store.get_meta("spec")["name"] == tiny_spec.name
        assert store.get_meta("dataset")["name"] == "synthetic"
        assert "torch" in store.get_meta("provenance")
        assert bench_document(store).title == f"unlearnkit audit report: {tiny_spec.name}"


def test_ulira_and_rmia_rows_keep_their_roc_curve(audited):
    _, results = audited
    for kind in ("ulira", "rmia"):
        for rec in (results[kind]["record"], results[kind]["retrain_record"]):
            curve = rec["roc"]["curve"]
            assert curve["fpr"] and len(curve["fpr"]) == len(curve["tpr"])
            assert curve["fpr"] == sorted(curve["fpr"]) and curve["tpr"] == sorted(curve["tpr"])
