"""``report.html`` of a benchmark, an ε audit and a ``forget`` run, opened in headless Chromium:
each draws its text and plots and logs nothing to the console.

Needs a ``chromium`` binary (Debian: ``apt-get install -y chromium``); skipped only without one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from unlearnkit.cli import app

from .._helpers import run_cli
from ..unit.audit_runner._tiny import TINY

BROWSER = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no chromium binary on this machine")

SPEC = {
    **TINY,
    "name": "html-check",
    "seeds": [0, 1],
    "methods": [
        {"method": "finetune", "config": {"epochs": 1}},
        {"method": "gradient_ascent", "config": {"epochs": 1}},
    ],
}


def _open(page: Path, tmp: Path) -> tuple[np.ndarray, list[str]]:
    """Screenshot ``page`` headless; returns the image (grey levels) and the console lines."""
    shot = tmp / f"{page.stem}.png"
    proc = subprocess.run(
        [
            str(BROWSER),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'profile'}",
            "--window-size=1280,2400",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return np.asarray(Image.open(shot).convert("L"), dtype=float), console


def test_bench_report_html_renders_in_chromium(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "run"
    got = CliRunner().invoke(app, ["bench", str(spec_file), "--out", str(out)])
    assert got.exit_code == 0, got.output
    page = out / "report.html"
    html = page.read_text(encoding="utf-8")
    assert html.count("data:image/png;base64,") == 4  # per scenario: Pareto and metric bars
    assert "<script" not in html and '<span class="sub">[' in html  # the 95 % intervals

    # the check itself can fail: a page with a script error is caught
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><p>x</p><script>undefinedFunction();</script>")
    _, console = _open(bad, tmp_path)
    assert any("Uncaught" in line for line in console), console

    _check_drawn(page, tmp_path)


def _check_drawn(page: Path, tmp: Path) -> None:
    """The page opens without console lines and its screenshot holds text and plots."""
    img, console = _open(page, tmp)
    assert console == []  # no script errors, no resource that failed to load
    assert img.shape == (2400, 1280)
    top, plots = img[:600], img[600:]
    assert top.std() > 20 and plots.std() > 20  # text and plots drawn, not a blank page
    assert (img < 100).mean() > 0.005  # dark text/lines are there


def _alts(page: Path) -> list[str]:
    return re.findall(r'<img alt="([^"]+)"', page.read_text(encoding="utf-8"))


def test_epsilon_audit_report_html_renders_in_chromium(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump({**TINY, "name": "html-audit"}))
    out = tmp_path / "audit"
    got = CliRunner().invoke(
        app,
        ["audit", "--spec", str(spec_file), "--method", "finetune", "--kind", "epsilon",
         "--models", "4", "--set", "epochs=1", "--out", str(out), "--quiet"],
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    page = out / "report.html"
    assert "histogram of per-example ε: finetune[epochs=1] and its Retrain control" in _alts(page)
    html = page.read_text(encoding="utf-8")
    # an audit-only folder is described by the audit itself: title, data set and model
    assert "unlearnkit audit report: html-audit" in html
    assert "dataset: synthetic (train 120" in html and '"hidden": [16]' in html
    _check_drawn(page, tmp_path)


def test_forget_report_html_renders_in_chromium(user, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(user["dir"])
    out = tmp_path / "forget"
    code, err = run_cli(
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.csv", "--held-out", "held.csv", "--forget-ids", "forget.txt",
        "--method", "finetune", "--trials", "2", "--budget-s", "60", "--out", str(out),
        "--quiet",
    )  # fmt: skip
    assert code in (0, 3), err  # 3: the verdict did not pass; the report is written either way
    page = out / "report.html"
    assert "forget vs held-out loss histograms" in _alts(page)
    _check_drawn(page, tmp_path)
