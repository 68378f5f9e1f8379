"""``unlearnkit tune``'s Optuna studies (bench/tuning.py, bench/tune_store.py): trial 0, equal
and continued budgets, pruning, repeated proposals, and the identity that refuses to mix runs."""

from __future__ import annotations

import math

import pytest

from unlearnkit.bench import tuning
from unlearnkit.bench.identity import RunIdentityError
from unlearnkit.bench.tune_store import STORE_NAME, read_studies
from unlearnkit.bench.tuning import run_tuning
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods.base import choice, int_range, loguniform

from ..._helpers import one_line
from ._specs import tiny_spec

SPACES = {
    "finetune": {"epochs": int_range(1, 3), "lr": loguniform(1e-3, 1e-1)},
    "gradient_ascent": {"lr": loguniform(1e-4, 1e-2)},
}


def _spec():
    return tiny_spec(method_config={"gradient_ascent": {"epochs": 2}})


@pytest.fixture(scope="module", autouse=True)
def _shared_bank(tmp_path_factory):
    """One model bank for the module: theta_o and theta_r are trained once."""
    global BANK
    BANK = tmp_path_factory.mktemp("bank")


BANK = None


def _tune(out, spec=None, **kw):
    args = {
        "bank_dir": BANK,
        "methods": ["finetune", "gradient_ascent"],
        "scenarios": ["cls"],
        "n_trials": 3,
        "search_spaces": SPACES,
        "heartbeat_s": 1,
        **kw,
    }
    return run_tuning(spec or _spec(), out, **args)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    return out, _tune(out)


def test_trial0_is_the_current_config_and_every_method_gets_the_same_trials(tuned):
    _, results = tuned
    assert [(r.method, r.scenario) for r in results] == [
        ("finetune", "cls"),
        ("gradient_ascent", "cls"),
    ]
    for r in results:
        assert r.finished == 3 and not r.stale
        assert [t.number for t in r.trials] == [0, 1, 2]
        first = r.trials[0]
        assert first.default and r.default is first
        assert first.config == ({"epochs": 2} if r.method == "gradient_ascent" else {})
        assert all(math.isfinite(t.evaluation.mean) for t in r.trials)
        assert r.best.evaluation.mean == min(t.evaluation.mean for t in r.trials)
        for t in r.trials[1:]:
            assert set(t.config) == set(SPACES[r.method]) | set(first.config)
            assert 1e-4 <= t.config["lr"] <= 1e-1
            assert t.config["lr"] == float(f"{t.config['lr']:.3g}")  # stored as evaluated
    assert results[0].info["identity"]["space_source"] == "given"
    assert len(results[0].info["reference"]) == 1 and "noop" in results[0].info


def test_a_larger_budget_continues_the_study_and_the_same_one_adds_nothing(tuned, tmp_path):
    out, before = tuned
    lines = []
    more = _tune(out, n_trials=5, echo=lines.append)
    for old, new in zip(before, more):
        assert new.finished == 5
        assert [t.number for t in new.trials] == [0, 1, 2, 3, 4]
        assert [(t.config, t.evaluation) for t in new.trials[:3]] == [
            (t.config, t.evaluation) for t in old.trials
        ]
    lines.clear()
    again = _tune(out, n_trials=5, echo=lines.append)
    assert [len(r.trials) for r in again] == [5, 5]
    assert not any("training" in line or "retraining" in line for line in lines)
    assert sum("done: 5 trials stored" in line for line in lines) == 2


def test_time_budget_stops_each_study_after_the_default(tmp_path):
    (r,) = _tune(tmp_path, methods=["gradient_ascent"], n_trials=10, budget_s=1e-6)
    assert r.finished == 1 and r.trials[0].default


def test_repeated_proposals_reuse_the_stored_scores(tmp_path):
    results = _tune(
        tmp_path, methods=["finetune"], search_spaces={"finetune": {"epochs": choice([2])}}
    )
    (r,) = results
    assert [t.config for t in r.trials] == [{}, {"epochs": 2}, {"epochs": 2}]
    assert r.trials[2].duplicate_of == 1 and r.trials[2].evaluation.seconds == 0.0
    assert r.trials[2].evaluation.mean == r.trials[1].evaluation.mean


def test_a_hopeless_trial_is_pruned_after_its_first_replicate(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "N_STARTUP", 1)
    spec = tiny_spec(seeds=2)
    # max_steps = 0 leaves theta_o unchanged: far worse than fine-tuning on a forgotten class
    space = {"finetune": {"max_steps": choice([0])}}
    (r,) = _tune(tmp_path, spec, methods=["finetune"], n_trials=3, search_spaces=space)
    noop = sum(x["avg_gap_salun"] for x in r.info["noop"]) / 2
    assert r.default.evaluation.mean < noop  # the premise: the default does something
    assert r.finished == 3 and r.pruned == 2
    for t in r.trials[1:]:
        assert t.state == "pruned" and len(t.evaluation.objective) == 1
    assert r.best is r.default


def test_another_run_or_starting_point_is_refused_before_any_work(tuned):
    out, _ = tuned
    trials = sum(len(r.trials) for r in read_studies(out))
    other = tiny_spec(epochs=4, method_config={"gradient_ascent": {"epochs": 2}})
    msg = one_line(RunIdentityError, _tune, out, other, match="another run")
    assert "recipe.epochs 3 -> 4" in msg and "another --out" in msg
    one_line(RunIdentityError, _tune, out, seed=1, match="sampler_seed 0 -> 1")
    one_line(RunIdentityError, _tune, out, replicates=None, spec=tiny_spec(seeds=2))
    moved = tiny_spec(method_config={"gradient_ascent": {"epochs": 3}})
    msg = one_line(RunIdentityError, _tune, out, moved, match="another starting point")
    assert "gradient_ascent on scenario cls" in msg and "base.epochs 2 -> 3" in msg
    assert sum(len(r.trials) for r in read_studies(out)) == trials
    # A study of the changed starting point is stale: left out of the documents.
    stale = read_studies(out, moved, SPACES)
    assert [r.stale for r in stale] == [False, True]


def test_bad_requests_fail_in_one_line(tmp_path):
    one_line(ConfigError, _tune, tmp_path, methods=["nope"], match="unknown method 'nope'")
    one_line(ConfigError, _tune, tmp_path, scenarios=["nope"], match="no scenario 'nope'")
    one_line(ConfigError, _tune, tmp_path, n_trials=0, match="--trials must be")
    one_line(ConfigError, _tune, tmp_path, budget_s=-1.0, match="--budget-s must be")
    one_line(ConfigError, _tune, tmp_path, replicates=3, match="only 1 seed")
    one_line(ConfigError, _tune, tmp_path, methods=["retrain"], match="nothing to tune")
    one_line(ConfigError, _tune, tmp_path, methods=[], match="names no method")
    assert not (tmp_path / STORE_NAME).exists()
    (tmp_path / STORE_NAME).write_bytes(b"not a database at all" * 100)
    one_line(DataError, _tune, tmp_path, match="not a tuning study store")
