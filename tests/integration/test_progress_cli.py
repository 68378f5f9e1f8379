"""Progress of a benchmark in a log (stderr is not a terminal): readable lines that name the
method and the total, and nothing but the final summary with --quiet."""

from __future__ import annotations

import yaml

from .._helpers import run_cli
from ..unit.audit_runner._tiny import TINY


def test_a_logged_run_names_the_cells_and_quiet_prints_only_the_summary(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    code, err = run_cli("bench", str(spec), "--out", str(tmp_path / "a"))
    assert code == 0, err
    lines = err.strip().splitlines()
    progress = [line for line in lines if line.startswith("bench: ")]
    assert progress and progress[-1].startswith("bench: 8/8 cells (100 %)")  # 2 scenarios x 4
    assert progress[-1].endswith("now [cls] finetune, replicate 0")
    assert not any("training the original" in line for line in lines)  # detail needs -v
    code, err = run_cli("bench", str(spec), "--out", str(tmp_path / "b"), "--quiet")
    assert code == 0, err
    assert err.strip().splitlines() == [err.strip().splitlines()[-1]]  # one line: the summary
    assert "cells computed" in err
    code, err = run_cli("bench", str(spec), "--out", str(tmp_path / "c"), "-v")
    assert code == 0 and "training the original model" in err


def test_an_audit_counts_the_models_it_needs(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    args = ("audit", "--method", "finetune", "--spec", str(spec), "--models", "4")
    code, err = run_cli(*args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    progress = [line for line in err.strip().splitlines() if line.startswith("audit: ")]
    # epsilon, N = 4: 4 retrains, 4 more for the Retrain control, the original, 4 unlearning runs
    assert progress and progress[-1].startswith("audit: 13/13 models (100 %)"), progress
    assert not any("training" in line for line in err.splitlines() if line not in progress)
    code, err = run_cli(*args, "--out", str(tmp_path / "a"), "--quiet")  # found in the store
    assert code == 0 and err.strip() == ""


def test_tune_counts_every_studys_trials(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    args = ("tune", str(spec), "--methods", "finetune", "--trials", "2", "--seeds", "1")
    code, err = run_cli(*args, "--out", str(tmp_path / "t"))
    assert code == 0, err
    progress = [line for line in err.strip().splitlines() if line.startswith("tune: ")]
    n = len(TINY["scenarios"]) * 2  # one study per scenario, 2 trials each
    assert progress and progress[-1].startswith(f"tune: {n}/{n} trials (100 %)"), progress
    assert not any("Avg. Gap" in line for line in err.splitlines())  # per-trial lines need -v
    code, err = run_cli(*args, "--trials", "3", "--out", str(tmp_path / "t"), "-v")
    assert code == 0 and "Avg. Gap" in err
