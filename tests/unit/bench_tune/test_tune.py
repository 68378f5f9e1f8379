"""The validation-split search of the benchmark's method defaults (bench/tune.py)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.tune import (
    DIGITS_SEARCH_SPACES,
    VAL_SPLIT_SEED_OFFSET,
    draw_configs,
    original_gap,
    resolve_search_space,
    tune_method,
    validation_bundle,
    validation_task,
)
from unlearnkit.datasets import load
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import get_method
from unlearnkit.methods.base import choice, int_range, loguniform
from unlearnkit.tasks import forget_task

ROOT = Path(__file__).resolve().parents[3]


def tiny_spec(n_val: int = 64, **scenario_extra) -> object:
    return spec_from_dict(
        {
            "name": "tiny",
            "dataset": {
                "name": "synthetic",
                "n_train": 160,
                "n_val": n_val,
                "n_test": 64,
                "num_classes": 4,
                "input_shape": [8],
                "seed": 0,
            },
            "model": {"arch": "mlp", "hidden": [16]},
            "recipe": {"epochs": 3, "batch_size": 32, "lr": 0.05},
            "scenarios": [
                {"name": "rnd", "scenario": "random", "fraction": 0.1, "seed": 0},
                {"name": "cls", "scenario": "class", "classes": [3], **scenario_extra},
            ],
            "seeds": [0],
        }
    )


@pytest.fixture(scope="module")
def spec():
    return tiny_spec()


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    return str(tmp_path_factory.mktemp("bank"))


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


def test_search_trial0_is_the_preset_best_is_min_and_deterministic(spec, bank):
    a = tune_method(spec, "finetune", "rnd", n_trials=4, seeds=(0,), seed=3, bank_dir=bank)
    assert a.preset == "digits" and a.trials[0].overrides == {}
    ft = get_method("finetune")
    assert ft.make_config(a.trials[0].overrides, preset=a.preset) == ft.make_config(preset="digits")
    assert [t.index for t in a.trials] == [0, 1, 2, 3]
    assert a.space_source == "digits search space"
    for t in a.trials[1:]:
        assert set(t.overrides) == {"lr", "epochs"}
        assert 1e-3 <= t.overrides["lr"] <= 1e-1 and 1 <= t.overrides["epochs"] <= 30
    means = [t.mean for t in a.trials]
    assert all(math.isfinite(m) for m in means)
    assert a.best.mean == min(means)
    assert a.best_overrides == a.trials[a.best_index].overrides
    cmp = a.comparison()
    assert cmp["default"]["avg_gap_salun"] == a.trials[0].mean
    assert cmp["tuned"]["avg_gap_salun"] == min(means)
    assert len(a.reference) == 1 and 0.0 <= a.reference[0]["acc_test"] <= 1.0
    # Same seed: the same draws and the same objectives (models come from the bank now).
    b = tune_method(spec, "finetune", "rnd", n_trials=4, seeds=(0,), seed=3, bank_dir=bank)
    assert [t.overrides for t in b.trials] == [t.overrides for t in a.trials]
    assert [t.objective for t in b.trials] == [t.objective for t in a.trials]
    assert b.best_index == a.best_index
    # Round trip through JSON-able dicts (the script stores searches this way).
    assert type(a).from_dict(a.to_dict()).to_dict() == a.to_dict()


def test_draws_are_seeded_and_extendable():
    space = DIGITS_SEARCH_SPACES["finetune"]
    d5 = draw_configs("finetune", space, 5, seed=0)
    assert draw_configs("finetune", space, 5, seed=0) == d5
    assert draw_configs("finetune", space, 3, seed=0) == d5[:3]
    assert draw_configs("finetune", space, 5, seed=1) != d5
    # Continuous draws are stored with 3 significant digits (the evaluated value).
    assert all(float(f"{d['lr']:.3g}") == d["lr"] for d in d5)
    # SCRUB's msteps is drawn in [1, epochs].
    for d in draw_configs("scrub", DIGITS_SEARCH_SPACES["scrub"], 30, seed=0):
        assert 1 <= d["msteps"] <= d["epochs"]


def test_explicit_search_space_is_used(spec, bank):
    space = {"lr": choice([0.0123, 0.0456])}
    res = tune_method(
        spec, "finetune", "cls", n_trials=3, seeds=(0,), search_space=space, bank_dir=bank
    )
    assert res.space_source == "given"
    assert res.search_space == {"lr": "choice([0.0123, 0.0456])"}
    for t in res.trials[1:]:
        assert set(t.overrides) == {"lr"} and t.overrides["lr"] in (0.0123, 0.0456)


def test_space_fallback_to_registered(monkeypatch):
    monkeypatch.delitem(DIGITS_SEARCH_SPACES, "finetune")
    space, source = resolve_search_space("finetune")
    assert source == "registered" and space == dict(get_method("finetune").search_space)
    given, source = resolve_search_space("finetune", {"epochs": int_range(1, 2)})
    assert source == "given" and set(given) == {"epochs"}


def test_bad_search_space_key_is_rejected(spec, bank):
    with pytest.raises(ConfigError, match="no_such_key"):
        tune_method(
            spec,
            "finetune",
            "rnd",
            n_trials=2,
            seeds=(0,),
            search_space={"no_such_key": loguniform(1e-3, 1e-1)},
            bank_dir=bank,
        )
    with pytest.raises(ConfigError, match="no scenario"):
        tune_method(spec, "finetune", "nope", n_trials=1, bank_dir=bank)


def test_spec_overrides_form_trial0_and_divergence_scores_inf(bank):
    spec = tiny_spec(method_config={"gradient_ascent": {"epochs": 10}})
    res = tune_method(
        spec,
        "gradient_ascent",
        "cls",
        n_trials=2,
        seeds=(0,),
        search_space={"lr": choice([1e8])},
        bank_dir=bank,
    )
    assert res.trials[0].overrides == {"epochs": 10}
    assert res.trials[1].overrides == {"epochs": 10, "lr": 1e8}
    assert math.isinf(res.trials[1].mean) and "diverged" in res.trials[1].error
    assert res.best_index == 0 and not res.improved


def test_script_yaml_fragment_makes_a_valid_spec(spec, bank):
    path = ROOT / "benchmarks" / "tune_digits.py"
    mod_spec = importlib.util.spec_from_file_location("tune_digits_script", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    res = tune_method(
        spec,
        "finetune",
        "cls",
        n_trials=2,
        seeds=(0,),
        search_space={"lr": choice([1e-5])},
        bank_dir=bank,
    )
    res.best_index = 1  # pretend the draw won, so the fragment carries an override
    text, _ = mod.yaml_fragment(spec, [res])
    scenarios = yaml.safe_load(text)["scenarios"]
    assert scenarios[1]["method_config"] == {"finetune": {"lr": 1e-5}}
    rebuilt = spec_from_dict({"dataset": {"name": "synthetic"}, "scenarios": scenarios})
    entry = next(e for e in rebuilt.method_entries(rebuilt.scenarios[1]) if e.method == "finetune")
    assert entry.config == {"lr": 1e-5}


def test_original_gap_is_the_no_op_point(spec, bank):
    rows = original_gap(spec, "cls", seeds=(0,), bank_dir=bank)
    (row,) = rows
    gaps = [row[f"gap_{k}"] for k in ("ua", "acc_retain", "acc_test")]
    gaps.append(row["gap_mia_svc_conf_nonmember_rate"])
    assert row["avg_gap_salun"] == pytest.approx(sum(gaps) / 4)
    # A method run with zero steps leaves theta_o unchanged, so it scores the no-op point.
    res = tune_method(
        spec, "finetune", "cls", n_trials=1, seeds=(0,), search_space={}, bank_dir=bank
    )
    zero = tune_method(
        tiny_spec(method_config={"finetune": {"max_steps": 0}}),
        "finetune",
        "cls",
        n_trials=1,
        seeds=(0,),
        bank_dir=bank,
    )
    assert zero.trials[0].mean == pytest.approx(row["avg_gap_salun"])
    assert len(res.trials) == 1 and res.best_index == 0


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
