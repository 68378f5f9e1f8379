"""A tuning run killed mid-study (SIGKILL) resumes: finished trials are kept, numbers
continue, the killed trial runs again with the same values, and nothing runs twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnkit.bench.tune_store import STORE_NAME, read_studies
from unlearnkit.bench.tuning import run_tuning
from unlearnkit.methods.base import int_range, loguniform

from ._specs import tiny_spec

ROOT = Path(__file__).resolve().parents[3]
SPACE = {"finetune": {"epochs": int_range(2, 5), "lr": loguniform(1e-3, 1e-1)}}
CHILD = """
import sys
sys.path.insert(0, {root!r})
from tests.unit.bench_tune._specs import tiny_spec
from tests.unit.bench_tune.test_resume import SPACE
from unlearnkit.bench.tuning import run_tuning
run_tuning(tiny_spec(), {out!r}, methods=["finetune"], scenarios=["cls"], n_trials=60,
           search_spaces=SPACE, heartbeat_s=1)
"""


def _states(db: Path) -> tuple[int, bool]:
    """(completed trials, whether a trial is running its objective) of the stored study."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            done = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()
            running = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a "
                "ON a.trial_id = t.trial_id WHERE t.state = 'RUNNING' AND a.key = 'config'"
            ).fetchone()
            return int(done[0]), bool(running[0])
    except sqlite3.Error:  # not created yet, or busy
        return 0, False


@pytest.mark.slow  # a fresh Python process imports torch and trains its references first
def test_killed_study_resumes_without_losing_or_repeating_trials(tmp_path):
    out = tmp_path / "tune"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(root=str(ROOT), out=str(out))],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    try:
        while True:
            done, running = _states(out / STORE_NAME)
            if done >= 2 and running:
                os.kill(child.pid, signal.SIGKILL)
                break
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the child never got two trials done"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()
    (before,) = read_studies(out)
    killed = next(t for t in before.trials if t.state == "running")
    kept = [t for t in before.trials if t.state == "complete"]

    (after,) = run_tuning(
        tiny_spec(),
        out,
        methods=["finetune"],
        scenarios=["cls"],
        n_trials=len(kept) + 1,  # the killed trial's place: it has to run again
        search_spaces=SPACE,
        heartbeat_s=1,
    )
    numbers = [t.number for t in after.trials]
    assert numbers == list(range(len(numbers)))  # numbering continues, no gaps or repeats
    assert after.finished == len(kept) + 1
    assert [(t.config, t.evaluation) for t in after.trials[: len(kept)]] == [
        (t.config, t.evaluation) for t in kept
    ]
    # The killed trial is marked interrupted and run again, once, with the same values.
    assert after.trials[killed.number].state == "interrupted"
    retries = [t for t in after.trials if t.retry_of == killed.number]
    assert len(retries) == 1 and retries[0].state == "complete"
    if killed.config:
        assert retries[0].config == killed.config
    assert [t.state for t in after.trials].count("interrupted") == 1
    configs = [str(sorted(t.config.items())) for t in after.trials if t.state == "complete"]
    assert len(set(configs)) == len(configs)


def test_a_trial_whose_process_died_before_its_first_heartbeat_runs_again(tmp_path):
    import optuna

    from unlearnkit.bench.tune_store import open_storage, quiet_optuna

    spec, kw = tiny_spec(), {"methods": ["finetune"], "scenarios": ["cls"], "heartbeat_s": 1}
    run_tuning(spec, tmp_path, n_trials=1, search_spaces=SPACE, **kw)
    with quiet_optuna():  # a process that asked for a trial and died at once
        study = optuna.load_study(study_name="finetune@cls", storage=open_storage(tmp_path))
        orphan = study.ask()
    (after,) = run_tuning(spec, tmp_path, n_trials=2, search_spaces=SPACE, **kw)
    assert after.trials[orphan.number].state == "interrupted"
    assert after.finished == 2 and [t.retry_of for t in after.trials].count(orphan.number) == 1


def test_an_interrupted_trial_runs_again_with_the_same_values(tmp_path, monkeypatch):
    from unlearnkit.bench.tune import ValidationSetup

    real, calls = ValidationSetup.evaluate, []

    def ctrl_c_on_the_second_trial(self, method, preset, overrides, **kw):
        calls.append(dict(overrides))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, method, preset, overrides, **kw)

    monkeypatch.setattr(ValidationSetup, "evaluate", ctrl_c_on_the_second_trial)
    kw = {"methods": ["finetune"], "scenarios": ["cls"], "search_spaces": SPACE, "heartbeat_s": 1}
    with pytest.raises(KeyboardInterrupt):
        run_tuning(tiny_spec(), tmp_path, n_trials=3, **kw)
    (after,) = run_tuning(tiny_spec(), tmp_path, n_trials=3, **kw)
    assert [t.state for t in after.trials] == ["complete", "interrupted", "complete", "complete"]
    assert after.trials[2].retry_of == 1 and after.trials[2].config == calls[1]
