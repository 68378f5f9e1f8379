"""``unlearnkit audit`` end to end on the tiny spec: prints the scores beside Retrain's."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from unlearnkit.cli import app

from ._tiny import TINY

cli = CliRunner()


def test_audit_command_runs_stores_and_reports(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    args = [
        "audit",
        "--method",
        "finetune",
        "--kind",
        "epsilon",
        "--models",
        "3",
        "--spec",
        str(spec),
        "--set",
        "epochs=1",
        "--out",
        str(out),
    ]
    res = cli.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "H-score" in res.stdout and "final score" in res.stdout
    assert "Retrain (control)" in res.stdout
    assert "## Audits" in (out / "report.md").read_text()
    again = cli.invoke(app, args)
    assert again.exit_code == 0 and "reused from" in again.stdout


def test_bad_request_exits_2_with_one_line(tmp_path):
    res = cli.invoke(
        app,
        [
            "audit",
            "--method",
            "finetune",
            "--kind",
            "rmia",
            "--models",
            "3",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 2
    assert "must be even" in res.output and "Traceback" not in res.output
