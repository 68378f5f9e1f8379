"""The validation protocol of ``unlearnkit tune`` (bench/tune.py) and what it searches
(bench/tune_space.py): validation tasks, starting points, spaces and scoring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.tune import (
    VAL_SPLIT_SEED_OFFSET,
    ValidationSetup,
    validation_bundle,
    validation_task,
)
from unlearnkit.bench.tune_space import (
    DIGITS_SEARCH_SPACES,
    conditional_dist,
    resolve_search_space,
    space_order,
    space_text,
    starting_point,
)
from unlearnkit.datasets import load
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import get_method
from unlearnkit.methods.base import int_range, loguniform
from unlearnkit.tasks import forget_task

from ._specs import tiny_spec


@pytest.fixture(scope="module")
def spec():
    return tiny_spec(seeds=2)


@pytest.fixture(scope="module")
def setup(spec, tmp_path_factory):
    return ValidationSetup(spec, "cls", seeds=(0, 1), bank_dir=tmp_path_factory.mktemp("bank"))


def _shared_rows(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many rows of ``a`` equal some row of ``b`` exactly."""
    eq = (a.reshape(len(a), 1, -1) == b.reshape(1, len(b), -1)).all(dim=-1)
    return int(eq.any(dim=1).sum())


@pytest.mark.parametrize("name", ["rnd", "cls"])
def test_validation_task_never_reads_test_rows(spec, name):
    bundle = load(spec.dataset.name, **spec.dataset.options)
    task = validation_task(spec, name)
    views = [task.test, task.test_full, task.forget_test, task.val, task.forget, task.retain]
    for view in views:
        if view is not None and len(view):
            assert _shared_rows(view.x, bundle.test.x) == 0, view.name
    # The test side *is* the validation split, whole.
    assert torch.equal(task.test_full.x, bundle.val.x)
    assert torch.equal(task.bundle.test.y, bundle.val.y)
    # The forget set differs from the benchmark's.
    sc = next(s for s in spec.scenarios if s.name == name)
    bench = forget_task(bundle, **sc.task_kwargs())
    assert not np.array_equal(task.forget_idx, bench.forget_idx)
    assert task.n_forget > 0


def test_validation_forget_rules(spec):
    rnd = validation_task(spec, "rnd")
    assert rnd.params["seed"] == 0 + VAL_SPLIT_SEED_OFFSET
    assert rnd.n_forget == round(0.1 * 160)
    # Class 3 of K = 4 wraps around to class 0.
    assert validation_task(spec, "cls").forget_classes == (0,)
    two = spec_from_dict(
        {
            "dataset": {"name": "synthetic", "n_train": 80, "n_val": 16, "num_classes": 4},
            "scenarios": [{"name": "c", "scenario": "class", "classes": [1, 2]}],
        }
    )
    assert validation_task(two, "c").forget_classes == (0, 3)  # 1 -> 3 (2 is forgotten), 2 -> 0


def test_validation_needs_a_val_split():
    spec = tiny_spec(n_val=0)
    bundle = load(spec.dataset.name, **spec.dataset.options)
    with pytest.raises(DataError, match="validation split"):
        validation_bundle(bundle)
    with pytest.raises(DataError, match="validation split"):
        validation_task(spec, "rnd")


def test_validation_subclass_is_a_sibling_fine_class_the_benchmark_keeps():
    spec = spec_from_dict(
        {
            "dataset": {
                "name": "synthetic",
                "n_train": 120,
                "n_val": 60,
                "n_test": 60,
                "num_classes": 3,
                "fine_per_class": 3,
                "input_shape": [8],
            },
            "scenarios": [
                {"name": "sub", "scenario": "subclass", "subclasses": [4]},
                {"name": "two", "scenario": "subclass", "subclasses": [5, 3]},
            ],
            "methods": [{"method": "finetune"}],
        }
    )
    # Fine classes 3, 4, 5 make up super-class 1: 4 -> 5. Forgetting 3 and 5 leaves only 4,
    # one sibling for two forgotten fine classes.
    sub = validation_task(spec, "sub")
    assert sub.forget_subclasses == (5,)
    assert len(sub.test) + len(sub.forget_test) == len(sub.bundle.test)  # test := val split
    with pytest.raises(DataError, match="no fine class is left"):
        validation_task(spec, "two")


def test_space_fallback_to_registered(monkeypatch):
    assert resolve_search_space("finetune")[1] == "digits search space"
    monkeypatch.delitem(DIGITS_SEARCH_SPACES, "finetune")
    space, source = resolve_search_space("finetune")
    assert source == "registered" and space == dict(get_method("finetune").search_space)
    given, source = resolve_search_space("finetune", {"epochs": int_range(1, 2)})
    assert source == "given" and set(given) == {"epochs"}
    with pytest.raises(ConfigError, match="must be a Dist"):
        resolve_search_space("finetune", {"epochs": [1, 2]})


def test_scrub_msteps_is_drawn_within_the_drawn_epochs():
    space = DIGITS_SEARCH_SPACES["scrub"]
    order = space_order("scrub", space)
    assert order.index("msteps") > order.index("epochs")
    assert conditional_dist("scrub", "msteps", {"epochs": 4}) == int_range(1, 4)
    assert conditional_dist("scrub", "msteps", {}) is None
    assert conditional_dist("finetune", "epochs", {"lr": 0.1}) is None
    assert space_text("scrub", space)["msteps"] == "int(1, epochs)"
    text = space_text("finetune", DIGITS_SEARCH_SPACES["finetune"])
    assert text["lr"] == "loguniform(0.001, 0.1)"


def test_starting_point_is_the_preset_plus_the_spec_overrides():
    spec = tiny_spec(method_config={"gradient_ascent": {"epochs": 10}})
    sc = spec.scenarios[1]
    preset, base, config = starting_point(spec, sc, "gradient_ascent", {"lr": loguniform(1e-3, 1)})
    assert preset == "digits" and base == {"epochs": 10} and config.epochs == 10
    with pytest.raises(ConfigError, match="no_such_key"):
        starting_point(spec, sc, "finetune", {"no_such_key": loguniform(1e-3, 1e-1)})


def test_evaluate_scores_the_paired_avg_gap_and_no_op_is_theta_o(setup):
    ev = setup.evaluate("finetune", "digits", {"epochs": 2})
    assert len(ev.objective) == 2 and all(math.isfinite(v) for v in ev.objective)
    s = ev.summary()
    gaps = [s[f"gap_{k}"] for k in ("ua", "acc_retain", "acc_test", "mia_svc_conf_nonmember_rate")]
    assert s["avg_gap_salun"] == pytest.approx(sum(gaps) / 4)
    assert ev.std == pytest.approx(float(np.std(ev.objective, ddof=1)))
    assert type(ev).from_dict(ev.to_dict()) == ev
    # Zero steps leave theta_o unchanged: the trial scores the no-op point.
    noop = setup.noop()
    zero = setup.evaluate("finetune", "digits", {"max_steps": 0})
    assert zero.mean == pytest.approx(np.mean([r["avg_gap_salun"] for r in noop]))
    for ref, r in zip(setup.reference(), noop):
        assert r["gap_acc_test"] == pytest.approx(abs(r["acc_test"] - ref["acc_test"]))


def test_divergence_and_bad_configs_score_inf_and_stop(setup):
    calls = []
    ev = setup.evaluate(
        "gradient_ascent", "digits", {"lr": 1e8, "epochs": 10}, after_replicate=calls.append
    )
    assert math.isinf(ev.mean) and "diverged" in ev.error
    assert ev.objective == [math.inf, math.inf] and calls == []  # the second replicate never ran
    bad = setup.evaluate("finetune", "digits", {"epochs": -1})
    assert math.isinf(bad.mean) and bad.error.startswith("ConfigError")


def test_after_replicate_sees_each_replicate_but_the_last(setup):
    seen = []
    ev = setup.evaluate(
        "finetune",
        "digits",
        {"epochs": 1},
        after_replicate=lambda e: seen.append(list(e.objective)),
    )
    assert seen == [ev.objective[:1]]
