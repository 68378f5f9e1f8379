"""``unlearnkit forget``: the mechanics around a request, as an engineer meets them.

Equal trials for every ``auto`` candidate and resuming a stored study, the optional retrained
reference, sequential requests with their chain of hashes, forget-only (zero-shot) requests and
Ctrl-C. The acceptance runs themselves (``--method auto --budget-s 60`` on each kind of input,
checked against a model the test retrains) are in ``test_forget_acceptance.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import unlearnkit as uk

from .._helpers import run_cli
from ._forget_checks import check_outputs as _check_outputs
from .conftest import N_TRAIN

cli = run_cli


def test_auto_gives_every_candidate_the_same_trials(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    out = d / "out-auto"
    args = (
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.csv", "--held-out", "held.csv", "--forget-ids", "forget.txt",
        "--method", "auto", "--trials", "2", "--budget-s", "300", "--out", str(out), "--quiet",
    )  # fmt: skip
    code, err = cli(*args)
    ev = _check_outputs(out, code, err)
    rows = ev["calibration"]["rows"]
    assert len(rows) >= 10 and {r["trials"] for r in rows} == {2}
    assert ev["method"]["name"] == ev["calibration"]["best_method"]
    # the study is stored in the folder: the same request again resumes it, runs nothing new
    code, err = cli(*args)
    again = _check_outputs(out, code, err)
    assert {r["trials_run"] for r in again["calibration"]["rows"]} == {0}
    same = ("name", "config", "seed")
    assert {k: again["method"][k] for k in same} == {k: ev["method"][k] for k in same}


def test_reference_retrain_adds_the_retrain_referenced_gaps(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    (d / "recipe.yaml").write_text("epochs: 10\nlr: 0.01\nbatch_size: 32\n")
    code, err = cli(
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.csv", "--held-out", "held.csv", "--forget-ids", "forget.txt",
        "--method", "finetune", "--trials", "2", "--budget-s", "120",
        "--reference", "retrain", "--recipe", "recipe.yaml", "--out", "out-ref", "--quiet",
    )  # fmt: skip
    ev = _check_outputs(d / "out-ref", code, err)
    ref = ev["reference"]
    assert {"ua", "acc_test", "avg_gap_salun"} <= set(ref)
    assert 0.0 <= ref["avg_gap_salun"] <= 1.0
    assert "Against a retrained model" in (d / "out-ref" / "report.md").read_text()


def test_sequential_requests_chain_their_evidence(user, monkeypatch):
    """A second request on the first one's output: the chain of hashes, the cumulative IDs,
    the earlier rows left out of training and checked for relapse, repeats refused."""
    d = user["dir"]
    monkeypatch.chdir(d)
    ids = [f"cust-{i:05d}" for i in range(N_TRAIN)]
    (d / "first.txt").write_text("\n".join(ids[:40]) + "\n")
    (d / "second.txt").write_text("\n".join(ids[40:70]) + "\n")
    common = (
        "--model", "mymodels:TabNet", "--data", "train.csv", "--held-out", "held.csv",
        "--method", "neggrad_plus", "--trials", "4", "--budget-s", "120", "--quiet",
    )  # fmt: skip
    code, err = cli("forget", *common, "--checkpoint", "model.pt", "--forget-ids", "first.txt",
                    "--out", "seq-1")  # fmt: skip
    first = _check_outputs(d / "seq-1", code, err)
    assert "chain" not in first and first["cumulative"]["n_ids"] == 40
    ckpt = str(d / "seq-1" / "model.safetensors")  # found beside its evidence: chained
    code, err = cli("forget", *common, "--checkpoint", ckpt, "--forget-ids", "second.txt",
                    "--out", "seq-2")  # fmt: skip
    second = _check_outputs(d / "seq-2", code, err)
    link = second["chain"]
    assert link["previous_output_sha256"] == first["output"]["sha256"]
    assert link["previous_cumulative_ids_sha256"] == first["cumulative"]["ids_sha256"]
    assert second["cumulative"]["n_ids"] == 70 and second["request"]["n_ids"] == 30
    assert (d / "seq-2" / "forget-ids.txt").read_text().split() == sorted(ids[:70])
    assert link["relapse"]["n_rows"] == 40 and "no_relapse" in second["verdict"]["criteria"]
    assert second["input"]["data"]["rows"] == N_TRAIN - 40  # the earlier rows were left out
    # an ID deleted before is refused; a checkpoint that is not the chain's output is refused
    code, err = cli("forget", *common, "--checkpoint", ckpt, "--forget-ids", "first.txt",
                    "--out", "seq-x")  # fmt: skip
    assert code == 2 and "already deleted" in err and not (d / "seq-x").exists()
    code, err = cli("forget", *common, "--checkpoint", "model.pt", "--previous", "seq-1",
                    "--forget-ids", "second.txt", "--out", "seq-y")  # fmt: skip
    assert code == 2 and "not the model" in err
    (d / "seq-1" / "forget-ids.txt").write_text("\n".join(ids[:39]) + "\n")  # tampered
    code, err = cli("forget", *common, "--checkpoint", ckpt, "--previous", "seq-1",
                    "--forget-ids", "second.txt", "--out", "seq-z")  # fmt: skip
    assert code == 2 and "altered" in err


def test_zero_shot_gets_only_forget_only_methods(user):
    """--data holding only the rows to delete: no retain data, so only forget-only methods
    (JiT, gradient ascent, the boundary methods) compete, and nothing grades retain data."""
    from unlearnkit.methods import get_method

    f = user["forget"]
    res = uk.forget(
        user["model"], data=(user["x"][f], user["y"][f]), held_out=(user["xh"], user["yh"]),
        forget_ids=list(range(len(f))), zero_shot=True, trials=2, budget_s=120, seed=0,
    )  # fmt: skip
    rows = res.evidence["calibration"]["rows"]
    assert rows and all(get_method(r["method"]).access.level == "forget_only" for r in rows)
    assert "jit" in {r["method"] for r in rows}
    assert "retain_acc" not in res.evidence["after"]["criteria"]


def _finished_trials(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # the schema is still being written
        return 0


def test_ctrl_c_keeps_the_calibration_and_the_same_command_resumes(user, monkeypatch):
    """A real process interrupted mid-calibration: exit 130 with a line saying how to resume;
    the study in DIR/calibration.db is kept, and running the command again finishes."""
    import os
    import signal
    import subprocess
    import time

    d = user["dir"]
    args = [
        sys.executable, "-c", "from unlearnkit.cli import main; main()", "forget",
        "--model", "mymodels:TabNet", "--checkpoint", "model.pt", "--data", "train.csv",
        "--held-out", "held.csv", "--forget-ids", "forget.txt", "--method", "neggrad_plus",
        "--budget-s", "900", "--out", "out-int", "--quiet",
    ]  # fmt: skip
    # The budget is far longer than the test waits: on a loaded machine, where two trials can
    # take a minute, the search is still running when Ctrl-C comes.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # A test run started in the background of a script inherits SIGINT ignored, and Python
    # turns SIGINT into KeyboardInterrupt only where it is not ignored: give the command the
    # default disposition a user's terminal gives it.
    proc = subprocess.Popen(
        args,
        cwd=d,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    db = d / "out-int" / "calibration.db"
    deadline = time.time() + 300
    while _finished_trials(db) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # until a few trials are stored in the study
    assert proc.poll() is None, proc.communicate()[1]
    assert _finished_trials(db) >= 2, "no two trials finished in 300 s"
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()  # never leave the search running after the test
        raise
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err.strip().splitlines()[-1]
    assert db.exists() and not (d / "out-int" / "evidence.json").exists()
    monkeypatch.chdir(d)
    code, err = cli(*args[3:-5], "--trials", "6", "--budget-s", "60", "--out", "out-int", "--quiet")
    ev = _check_outputs(d / "out-int", code, err)
    row = ev["calibration"]["rows"][0]
    assert row["trials_run"] < row["trials"]  # the trials finished before Ctrl-C were kept
