"""The command line end to end: user errors exit 2 with one line; bench resumes; reports."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from unlearnkit.cli import app

runner = CliRunner()

TINY_SPEC = {
    "name": "tiny",
    "dataset": {
        "name": "synthetic",
        "n_train": 160,
        "n_val": 40,
        "n_test": 80,
        "num_classes": 4,
        "input_shape": [1, 6, 6],
        "seed": 0,
    },
    "model": {"arch": "mlp", "hidden": [32]},
    "recipe": {"epochs": 8, "batch_size": 32, "lr": 0.05},
    "scenarios": [
        {"name": "random", "scenario": "random", "fraction": 0.1},
        {"name": "class-1", "scenario": "class", "classes": [1]},
    ],
    "methods": [
        {"method": "finetune", "config": {"epochs": 2, "batch_size": 32}},
        {"method": "gradient_ascent", "config": {"lr": 0.01, "epochs": 2, "batch_size": 16}},
    ],
    "seeds": [0, 1],
}


@pytest.fixture()
def spec_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY_SPEC))
    return p


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return sorted(con.execute("SELECT key, kind, scenario, label, seed, metrics FROM cells"))
    except sqlite3.OperationalError:  # created but the schema is not committed yet
        return []
    finally:
        con.close()


def _without_timing(rows: list[tuple]) -> list[tuple]:
    out = []
    for key, kind, sc, label, seed, metrics in rows:
        m = {k: v for k, v in json.loads(metrics).items() if "rte" not in k}
        out.append((key, kind, sc, label, seed, json.dumps(m, sort_keys=True)))
    return out


def _bad_spec(tmp_path: Path, **change) -> str:
    spec = {**TINY_SPEC, **change}
    p = tmp_path / f"bad-{'-'.join(change)}.yaml"
    p.write_text(yaml.safe_dump(spec))
    return str(p)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["describe", "no_such_method"], "unknown method 'no_such_method'"),
        (["bench", "--methods", "finetun", "--out", "{tmp}/o"], "did you mean 'finetune'"),
        (["bench", "{tmp}/missing.yaml", "--out", "{tmp}/o"], "spec file not found"),
        (["bench", "--set", "finetune.epoch=3", "--out", "{tmp}/o"], "did you mean 'epochs'"),
        (["bench", "--set", "finetune.lr=fast", "--out", "{tmp}/o"], "lr"),
        (["bench", "--set", "lr=0.1", "--out", "{tmp}/o"], "METHOD.FIELD"),
        (["report", "{tmp}/nowhere"], "no results store"),
        (["report", "{tmp}", "--format", "xml"], "unknown format"),
        (["bench", "{bad_key}", "--out", "{tmp}/o"], "unknown spec key"),
        (["bench", "{bad_indices}", "--out", "{tmp}/o"], "out of range"),
        (["bench", "{bad_class}", "--out", "{tmp}/o"], "do not exist"),
        (["bench", "{bad_value}", "--out", "{tmp}/o"], "epochs"),
        (["bench", "{hard_class}", "--out", "{tmp}/o"], "applies to scenario 'random'"),
        (["bench", "{no_fine}", "--out", "{tmp}/o"], "needs fine labels"),
        (["bench", "{no_files}", "--out", "{tmp}/o"], "download=True"),
        (["bench", "{bad_relearn}", "--out", "{tmp}/o"], "relearn must be true or false"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args, message) -> None:
    subs = {
        "tmp": str(tmp_path),
        "bad_key": _bad_spec(tmp_path, seedz=[0]),
        "bad_indices": _bad_spec(
            tmp_path, scenarios=[{"name": "x", "scenario": "indices", "indices": [100000]}]
        ),
        "bad_class": _bad_spec(
            tmp_path, name="c", scenarios=[{"name": "x", "scenario": "class", "classes": [9]}]
        ),
        "bad_value": _bad_spec(tmp_path, recipe={"epochs": -2}),
        "hard_class": _bad_spec(
            tmp_path,
            name="h",
            seeds=[0],
            scenarios=[{"name": "h", "scenario": "class", "classes": [1], "hard": True}],
        ),
        "no_fine": _bad_spec(
            tmp_path,
            name="s",
            methods=[{"method": "finetune"}],
            scenarios=[{"name": "s", "scenario": "subclass", "subclasses": [1]}],
        ),
        "no_files": _bad_spec(
            tmp_path, dataset={"name": "mnist", "root": str(tmp_path / "no-data")}
        ),
        "bad_relearn": _bad_spec(tmp_path, relearn="sometimes"),
    }
    result = runner.invoke(app, [a.format(**subs) for a in args])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), result.stderr
    assert message in err[0]
    assert "Traceback" not in result.output


def test_methods_and_describe() -> None:
    out = runner.invoke(app, ["methods"]).stdout
    assert "finetune" in out and "forget_only" in out
    d = runner.invoke(app, ["describe", "ga"])
    assert d.exit_code == 0 and "access: forget_only" in d.stdout and "epochs" in d.stdout


def test_bench_resumes_without_recomputing_and_reports(tmp_path: Path, spec_file: Path) -> None:
    out = tmp_path / "run"
    first = runner.invoke(app, ["bench", str(spec_file), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "| Retrain |" in first.stdout and "| finetune |" in first.stdout
    rows = _rows(out / "results.db")
    assert len(rows) == 2 * 2 * 5  # scenarios x seeds x (orig, retrain, retrain', 2 methods)
    second = runner.invoke(app, ["bench", str(spec_file), "--out", str(out)])
    assert second.exit_code == 0
    assert "0 cells computed, 20 reused, 0 models trained" in second.stderr
    assert _rows(out / "results.db") == rows
    assert (out / "report.md").read_text().count("### Scenario") == 2

    js = runner.invoke(app, ["report", str(out), "--format", "json"])
    records = json.loads(js.stdout)
    assert len(records) == 2 * 5
    one = next(r for r in records if r["method"] == "finetune" and r["scenario"] == "random")
    for key in ("ua", "ra", "ta", "mia_efficacy", "avg_gap", "rte_seconds"):
        assert one[f"{key}_mean"] is not None and one[f"{key}_std"] is not None
    retrain = next(r for r in records if r["method"] == "Retrain" and r["scenario"] == "random")
    assert retrain["avg_gap_mean"] == 0.0
    csv_out = runner.invoke(app, ["report", str(out), "--format", "csv"]).stdout
    assert csv_out.splitlines()[0].startswith("scenario,method")
    assert len(csv_out.strip().splitlines()) == 11


@pytest.mark.slow
def test_killed_bench_resumes_to_the_same_rows(tmp_path: Path, spec_file: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "unlearnkit", "bench", str(spec_file)]
    full = subprocess.run(
        [*cmd, "--out", str(tmp_path / "full")], env=env, capture_output=True, timeout=600
    )
    assert full.returncode == 0, full.stderr.decode()

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [*cmd, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    db = out / "results.db"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once some but not all cells are stored
        if db.exists() and 3 <= len(_rows(db)) < 20:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < len(_rows(db)) < 20
    again = subprocess.run([*cmd, "--out", str(out)], env=env, capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr.decode()
    assert _without_timing(_rows(db)) == _without_timing(_rows(tmp_path / "full" / "results.db"))
