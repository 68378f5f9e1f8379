"""Retrain-free calibration (unlearnkit.deletion.calibrate) on the tiny data of the test kit."""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import optuna
import pytest
import torch

import unlearnkit.deletion._search as search
import unlearnkit.deletion.calibrate as cal
from unlearnkit import forget_task
from unlearnkit.api import run_unlearning
from unlearnkit.datasets import from_arrays, load
from unlearnkit.deletion.calibrate import (
    calibrate,
    candidates,
    optuna_distribution,
    original_stats,
    proxy_score,
)
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import get_method
from unlearnkit.methods._space import choice, int_range, loguniform, uniform
from unlearnkit.models import ModelFactory
from unlearnkit.tasks import ForgetTask
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model
from unlearnkit.training import TrainRecipe, train

METHODS = ["finetune", "gradient_ascent"]
BUDGET = 6.0


class _Sealed:
    """Any attribute read raises: stands in for data the search must never read."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read (.{name})")

    def __len__(self):
        raise AssertionError("the test split was read (len)")


class _NoTestTask(ForgetTask):
    @property
    def test(self):
        raise AssertionError("task.test was read")

    @property
    def test_full(self):
        raise AssertionError("task.test_full was read")

    @property
    def forget_test(self):
        raise AssertionError("task.forget_test was read")


def _sealed(task: ForgetTask) -> ForgetTask:
    bundle = dataclasses.replace(task.bundle)
    bundle.test = _Sealed()  # after validation: the bundle's own test split is sealed too
    fields = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
    return _NoTestTask(**{**fields, "bundle": bundle})


@pytest.fixture(scope="module")
def tiny():
    bundle = tiny_bundle()
    model = trained_tiny_model(bundle)
    return bundle, model, _sealed(tiny_task(bundle))


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# The search


def test_calibrate_budget_resume_default_and_no_test_reads(tiny, tmp_path, monkeypatch):
    _, model, task = tiny
    before = _state(model)
    db = tmp_path / "studies.db"
    calls = []
    real = search.run_unlearning
    monkeypatch.setattr(search, "run_unlearning", lambda *a, **k: calls.append(k) or real(*a, **k))
    events = []
    t0 = time.perf_counter()
    lb = calibrate(
        model, task, methods=METHODS, budget_s=BUDGET, storage=db, progress=events.append
    )
    wall = time.perf_counter() - t0
    assert wall <= 1.1 * BUDGET + 1.0 and lb.seconds <= 1.1 * BUDGET + 1.0
    assert [r["method"] for r in lb.rows] == METHODS
    assert all(r["trials"] >= 1 and r["trials_run"] == r["trials"] for r in lb.rows)
    assert lb.best_method in METHODS and lb.budget_s == BUDGET
    assert len(calls) == sum(r["trials_run"] for r in lb.rows)
    assert all(k["time_budget_s"] <= BUDGET for k in calls)  # each run capped by the remainder
    assert events and {"method", "trial", "objective", "remaining_s"} <= set(events[0])
    assert all(torch.equal(v, _state(model)[k]) for k, v in before.items())  # input untouched
    json.dumps(lb.to_dict())  # the leaderboard is JSON-able
    with pytest.raises(AssertionError, match="test"):  # the seal works: reading it would fail
        original_stats(model, task, split="test")

    url = f"sqlite:///{db.resolve()}"
    first = {}
    for row in lb.rows:
        study = optuna.load_study(study_name=row["study"], storage=url)
        t0_ = study.trials[0]
        assert t0_.user_attrs["default"] is True and t0_.user_attrs["config"] == {}
        spec = get_method(row["method"])
        cfg = spec.make_config(None, scenario=task.scenario)
        assert t0_.params == {k: search._default_value(cfg, k) for k in spec.search_space}
        first[row["method"]] = [(t.number, t.value, t.datetime_start) for t in study.trials]

    calls.clear()
    lb2 = calibrate(model, task, methods=METHODS, budget_s=BUDGET, storage=db)
    for row, row2 in zip(lb.rows, lb2.rows):
        assert row2["trials"] == row["trials"] + row2["trials_run"] > row["trials"]
        study = optuna.load_study(study_name=row2["study"], storage=url)
        old = first[row["method"]]
        assert [(t.number, t.value, t.datetime_start) for t in study.trials[: len(old)]] == old
        assert sum(bool(t.user_attrs.get("default")) for t in study.trials) == 1
        assert row2["best_objective"] <= row["best_objective"]
    assert len(calls) == sum(r["trials_run"] for r in lb2.rows)  # old trials not rerun


def test_a_time_budget_screens_every_method_then_gives_the_finalists_the_rest(tiny):
    """Budget only, >= 4 methods: every method is screened with an equal share of
    SCREEN_SHARE of the budget, then the best sixth (at least 2) continue their studies."""
    _, model, task = tiny
    methods = ["finetune", "gradient_ascent", "neggrad_plus", "ssd", "scrub"]
    budget = 10.0
    lb = calibrate(model, task, methods=methods, budget_s=budget)
    finals = [r for r in lb.rows if r["finalist"]]
    assert len(finals) == 2  # max(2, ceil(5 / 6))
    ranked = sorted(lb.rows, key=lambda r: (r["best_objective"], r["closeness"]))
    # non-finalists stop after screening, finalists only improve: they stay on top
    assert {r["method"] for r in finals} == {r["method"] for r in ranked[:2]}
    screen_share = cal.SCREEN_SHARE * budget / len(methods)
    for r in lb.rows:
        assert r["trials_run"] >= r["trials"] >= 1  # runs that raised count as run
        if not r["finalist"]:
            assert r["seconds"] <= screen_share + 1.0
    assert min(r["seconds"] for r in finals) > screen_share  # they got a second share
    assert lb.best_method in {r["method"] for r in finals}
    assert lb.seconds <= 1.1 * budget + 1.0
    # an equal trial cap instead: one round, every method a finalist
    capped = calibrate(model, task, methods=methods, budget_s=60.0, trials=2)
    assert all(r["finalist"] and r["trials"] == 2 for r in capped.rows)


def test_best_config_reproduces_best_model(tiny):
    _, model, task = tiny
    lb = calibrate(model, task, methods=["gradient_ascent"], budget_s=2.0, seed=3)
    assert lb.best_model is not None
    again = run_unlearning(model, task, lb.best_method, lb.best_config, seed=3).model
    s1, s2 = _state(lb.best_model), _state(again)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert lb.rows[0]["best_criteria"] and "best_passed" in lb.rows[0]


def test_diverged_runs_score_inf_and_count_failed(tiny, monkeypatch):
    _, model, task = tiny
    real = search.run_unlearning

    def diverging(*a, **k):
        out = real(*a, **k)
        if out.method == "gradient_ascent":
            out.diverged = True
        return out

    monkeypatch.setattr(search, "run_unlearning", diverging)
    lb = calibrate(model, task, methods=["gradient_ascent", "finetune"], budget_s=2.0)
    ga = lb.rows[0]
    assert ga["failed"] == ga["trials"] >= 1 and ga["best_objective"] == math.inf
    assert lb.best_method == "finetune"


def test_raising_runs_fail_and_stop_the_method(tiny, monkeypatch):
    _, model, task = tiny

    def boom(*a, **k):
        raise RuntimeError("planned failure")

    monkeypatch.setattr(search, "run_unlearning", boom)
    lb = calibrate(model, task, methods=["finetune"], budget_s=2.0)
    row = lb.rows[0]
    assert row["failed"] == search._MAX_ERRORS and row["trials"] == 0
    assert lb.best_method == "" and lb.best_config == {} and lb.best_model is None


def test_calibrate_argument_errors(tiny, tmp_path):
    _, model, task = tiny
    with pytest.raises(ConfigError, match="budget_s"):
        calibrate(model, task, methods=METHODS, budget_s=0)
    with pytest.raises(ConfigError, match="non-empty list"):
        calibrate(model, task, methods=[], budget_s=1)
    with pytest.raises(ConfigError, match="retrain"):
        calibrate(model, task, methods=["retrain"], budget_s=1)
    with pytest.raises(ConfigError, match="twice"):
        calibrate(model, task, methods=["finetune", "ft"], budget_s=1)
    with pytest.raises(ConfigError, match="is a folder"):
        calibrate(model, task, methods=METHODS, budget_s=1, storage=tmp_path)
    no_val = forget_task(dataclasses.replace(tiny_bundle(), val=None), "random", fraction=0.1)
    with pytest.raises(DataError, match="calibration split"):
        calibrate(model, no_val, methods=METHODS, budget_s=1)


# ---------------------------------------------------------------------------------------------
# The target on models


def test_proxy_tells_original_from_retrain():
    # A noisy-enough problem that the original memorises its training rows.
    recipe = TrainRecipe(epochs=40, batch_size=32, lr=0.1)
    bundle = load(
        "synthetic",
        n_train=200,
        n_val=120,
        n_test=40,
        num_classes=4,
        input_shape=(36,),
        separation=0.6,
        seed=0,
    )
    factory = ModelFactory("mlp", (36,), 4, None, {"hidden": (64,)})
    original = train(factory(0), bundle.train, recipe, seed=0)
    for seed in (0, 2):
        task = _sealed(forget_task(bundle, "random", fraction=0.25, seed=seed))
        stats = original_stats(original, task, seed=seed)
        retrained = run_unlearning(
            original, task, "retrain", recipe=recipe, model_factory=factory, seed=seed
        ).model
        score = proxy_score(retrained, task, original_stats=stats, seed=seed)
        assert score["objective"] < stats["objective"]


def test_original_stats_and_proxy_score_contract(tiny):
    bundle, model, _ = tiny
    task = tiny_task(bundle)
    stats = original_stats(model, task)
    assert stats["split"] == "val" and stats["n_heldout"] == len(bundle.val)
    assert stats["n_retain_sample"] == len(task.retain_idx)
    json.dumps(stats)
    same = proxy_score(model, task, original_stats=stats)
    assert same["objective"] == pytest.approx(stats["objective"])
    assert same["criteria"]["heldout_acc"]["ratio"] == 0.0
    assert isinstance(same["losses"]["forget"], np.ndarray)
    with pytest.raises(ConfigError, match="split 'val'"):
        proxy_score(model, task, original_stats=stats, split="test")
    test_stats = original_stats(model, task, split="test")
    assert test_stats["n_heldout"] == len(bundle.test)


def test_class_request_and_zero_shot(tiny):
    bundle, model, _ = tiny
    task = tiny_task(bundle, "class")
    stats = original_stats(model, task)
    assert set(stats["criteria"]) == {
        "forget_acc",
        "forget_heldout_acc",
        "heldout_acc",
        "retain_acc",
    }
    assert not stats["criteria"]["forget_acc"]["passed"]  # the original still knows class 0
    zs = tiny_task(bundle).forget_only()
    zstats = original_stats(model, zs)
    assert "retain_acc" not in zstats["criteria"] and zstats["n_retain_sample"] == 0
    with pytest.raises(ConfigError, match="subclass"):
        original_stats(model, tiny_task(tiny_bundle(fine=True), "subclass"))


def test_retain_sample_is_capped_and_seeded(tiny):
    bundle, model, _ = tiny
    task = tiny_task(bundle)
    a = original_stats(model, task, retain_cap=20, seed=1)
    b = original_stats(model, task, retain_cap=20, seed=1)
    assert a["n_retain_sample"] == 20 and a["acc_retain"] == b["acc_retain"]
    pos = cal._retain_positions(task, 20, 1)
    assert np.array_equal(pos, cal._retain_positions(task, 20, 1)) and len(set(pos)) == 20


# ---------------------------------------------------------------------------------------------
# Candidates and the distribution mapping


def test_candidates_follow_access_and_requirements(tiny):
    bundle, _, task = tiny
    full = candidates(task)
    assert "retrain" not in full and "fisher" not in full and "influence" not in full
    assert {"finetune", "jit", "ssd", "scrub_r"} <= set(full)
    assert {"fisher", "influence"} <= set(candidates(task, include_expensive=True))
    zero = candidates(task, zero_shot=True)
    assert zero and all(get_method(m).access.level == "forget_only" for m in zero)
    assert "jit" in zero and candidates(task.forget_only()) == zero
    no_val = forget_task(dataclasses.replace(bundle, val=None), "random", fraction=0.1)
    assert "scrub_r" not in candidates(no_val)
    x, y = torch.randint(0, 3, (40, 5)), torch.arange(40) % 2
    ints = from_arrays(x, y, x[:10], y[:10], keep_dtype=True)
    int_task = forget_task(ints, "random", fraction=0.1)
    assert not {"jit", "natmu", "boundary_shrink"} & set(candidates(int_task))


def test_optuna_distribution_mapping():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    d = optuna_distribution(loguniform(1e-3, 1e-1))
    assert isinstance(d, FloatDistribution) and d.log and (d.low, d.high) == (1e-3, 1e-1)
    d = optuna_distribution(uniform(0.0, 1.0), default=1.5)
    assert not d.log and (d.low, d.high) == (0.0, 1.5)  # widened to hold the default
    d = optuna_distribution(int_range(1, 10), default=20)
    assert isinstance(d, IntDistribution) and (d.low, d.high) == (1, 20)
    d = optuna_distribution(loguniform(1e-3, 1e-1), default=0.0)  # 0 cannot be log-scaled
    assert (d.low, d.high) == (1e-3, 1e-1)
    d = optuna_distribution(choice([10, 25]), default=50)
    assert isinstance(d, CategoricalDistribution) and d.choices == (10, 25, 50)
    assert optuna_distribution(choice(["a", "b"]), default="a").choices == ("a", "b")


def test_every_candidate_space_maps(tiny):
    _, _, task = tiny
    for name in candidates(task, include_expensive=True):
        spec = get_method(name)
        cfg = spec.make_config(None, scenario=task.scenario)
        for key, dist in spec.search_space.items():
            optuna_distribution(dist, search._default_value(cfg, key))
