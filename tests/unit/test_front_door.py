"""The front door: copying, seeding, access checks, timing and the divergence guard."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit.errors import AccessError, ConfigError
from unlearnkit.methods import AccessSpec, BaseConfig, register_method
from unlearnkit.methods._loop import epochs, make_optimizer, steps
from unlearnkit.methods._registry import unregister_method
from unlearnkit.optim import OptimizerSpec
from unlearnkit.testing import TINY_RECIPE, tiny_bundle, tiny_task, trained_tiny_model


@dataclass(frozen=True)
class _ExplodeConfig(BaseConfig):
    factor: float = 1e30


def _explode(model, data, config, *, ctx):
    """Scale the loss until the weights overflow (exercises the divergence guard)."""
    opt = make_optimizer(model, config)
    model.train()
    for _ in epochs(ctx, 50):
        for xb, yb in steps(data.forget.loader(8, generator=ctx.generator), ctx):
            loss = -F.cross_entropy(model(xb), yb) * config.factor
            if not ctx.step(opt, loss):
                break
    return model


def _sleep(model, data, config, *, ctx):
    """Sleep 0.2 s (RTE known-answer test)."""
    time.sleep(0.2)
    return model


@pytest.fixture(autouse=True, scope="module")
def _test_methods():
    """Register two throw-away methods for this module only."""
    register_method("_test_explode", config=_ExplodeConfig, access=AccessSpec(level="forget_only"))(
        _explode
    )
    register_method(
        "_test_sleep", config=BaseConfig, access=AccessSpec(level="forget_only"), no_identity=True
    )(_sleep)
    yield
    unregister_method("_test_explode")
    unregister_method("_test_sleep")


def test_divergence_restores_the_last_finite_state() -> None:
    b = tiny_bundle()
    model = trained_tiny_model(b)
    out = uk.run_unlearning(model, tiny_task(b), "_test_explode", {"lr": 1.0}, seed=0)
    assert out.diverged
    assert "non-finite" in out.info["diverged_reason"]
    assert all(torch.isfinite(p).all() for p in out.model.parameters())


def test_rte_times_the_method_alone() -> None:
    b = tiny_bundle()
    out = uk.run_unlearning(trained_tiny_model(b), tiny_task(b), "_test_sleep", seed=0)
    assert 0.2 <= out.rte_seconds < 0.3


def test_unlearn_copies_unless_inplace_and_returns_eval_mode() -> None:
    b = tiny_bundle()
    model = trained_tiny_model(b)
    before = [p.clone() for p in model.parameters()]
    new = uk.unlearn(model, tiny_task(b), "ga", {"lr": 0.1, "epochs": 3}, seed=0)
    assert new is not model and not new.training
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    same = uk.unlearn(model, tiny_task(b), "ga", {"lr": 0.1, "epochs": 3}, seed=0, inplace=True)
    assert same is model
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_access_errors_name_the_missing_data() -> None:
    b = tiny_bundle()
    no_retain = tiny_task(b).forget_only()
    with pytest.raises(AccessError, match="retain set"):
        uk.unlearn(trained_tiny_model(b), no_retain, "finetune")
    with pytest.raises(AccessError, match="recipe"):
        uk.unlearn(trained_tiny_model(b), tiny_task(b), "retrain")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"epoch": 3}, "did you mean 'epochs'"),
        ({"lr": "fast"}, "lr"),
        ({"epochs": -1}, "epochs"),
        ({"batch_size": 2.5}, "integer"),
        ({"optimizer.name": "rmsprop"}, "optimizer.name"),
        ({"max_grad_norm": 0}, "max_grad_norm"),
    ],
)
def test_bad_configs_raise_config_errors(config, match) -> None:
    b = tiny_bundle()
    with pytest.raises(ConfigError, match=match):
        uk.unlearn(trained_tiny_model(b), tiny_task(b), "finetune", config)


def test_config_shortcuts_presets_and_dotted_keys() -> None:
    spec = uk.get_method("finetune")
    cfg = spec.make_config({"lr": 0.5, "optimizer.momentum": 0.0, "epochs": 3})
    assert cfg.optimizer.lr == 0.5 and cfg.optimizer.momentum == 0.0 and cfg.epochs == 3
    assert spec.make_config(preset="ssd").optimizer.lr == 0.02
    with pytest.raises(ConfigError, match="no preset"):
        spec.make_config(preset="nope")


def test_retrain_through_the_front_door_matches_the_engine() -> None:
    b = tiny_bundle()
    task = tiny_task(b)
    from unlearnkit.testing import tiny_factory

    out = uk.unlearn(
        trained_tiny_model(b),
        task,
        "retrain",
        recipe=TINY_RECIPE,
        model_factory=tiny_factory(b),
        seed=4,
    )
    direct = uk.train(tiny_factory(b)(4), task.retain, TINY_RECIPE, seed=4)
    assert all(
        torch.equal(a, c) for a, c in zip(out.state_dict().values(), direct.state_dict().values())
    )


def test_finetune_never_reads_the_forget_set_and_ga_never_reads_retain() -> None:
    views_ft = uk.api.build_views(uk.get_method("finetune").access, tiny_task(), "finetune")
    views_ga = uk.api.build_views(uk.get_method("ga").access, tiny_task(), "ga")
    assert views_ft.forget is None and views_ft.retain is not None
    assert views_ga.retain is None and views_ga.forget is not None


def test_gradient_ascent_raises_forget_loss_and_finetune_keeps_retain_accuracy() -> None:
    b = tiny_bundle()
    task = tiny_task(b)
    model = trained_tiny_model(b)

    def ce(m, view):
        with torch.no_grad():
            return F.cross_entropy(m(view.x), view.y).item()

    ga = uk.unlearn(model, task, "ga", {"lr": 1e-2, "epochs": 1, "batch_size": 64}, seed=0)
    assert ce(ga, task.forget) > ce(model, task.forget)
    ft = uk.unlearn(model, task, "ft", {"epochs": 5, "batch_size": 16}, seed=0)
    with torch.no_grad():
        acc = (ft(task.retain.x).argmax(1) == task.retain.y).float().mean().item()
    assert acc > 0.8


@dataclass(frozen=True)
class _AdamConfig(BaseConfig):
    optimizer: OptimizerSpec = OptimizerSpec(name="adamw", lr=1e-3, weight_decay=0.0)


def test_optimizer_shortcuts_keep_the_method_default_optimizer() -> None:
    cfg = _AdamConfig.from_dict({"lr": 0.5})
    assert cfg.optimizer.name == "adamw" and cfg.optimizer.lr == 0.5
    assert cfg.optimizer.weight_decay == 0.0
