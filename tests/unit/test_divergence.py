"""Divergence is handled, not only detected: the returned model always gives finite outputs.

A diverged run rolls back to the last state whose outputs are finite (confirmed by the next
step's finite loss and checked on a fixed probe batch), else to the input model.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.methods import AccessSpec, BaseConfig, RunContext, register_method
from unlearnkit.methods._registry import unregister_method
from unlearnkit.methods.base import OUTPUT_LIMIT, outputs_finite, probe_inputs
from unlearnkit.testing import tiny_bundle, tiny_model, tiny_task, trained_tiny_model


def _finite_everywhere(model: nn.Module, bundle) -> bool:
    with torch.no_grad():
        return all(
            bool(torch.isfinite(model(split.x)).all()) for split in (bundle.train, bundle.test)
        )


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def tiny():
    b = tiny_bundle(image=False)
    return b, trained_tiny_model(b), trained_tiny_model(b, bn=True)


@pytest.mark.parametrize("lr", [100.0, 1e6, 1e30])
@pytest.mark.parametrize(
    "method", ["gradient_ascent", "neggrad_plus", "random_labels", "boundary_shrink"]
)
def test_a_diverged_run_returns_a_model_with_finite_outputs(tiny, method, lr) -> None:
    b, model, _ = tiny
    out = uk.run_unlearning(
        model, tiny_task(b), method, {"lr": lr, "epochs": 20, "batch_size": 4}, seed=0
    )
    assert out.diverged
    assert _finite_everywhere(out.model, b), f"{method} lr={lr}: non-finite outputs"
    rec = out.record()["info"]
    assert "non-finite" in rec["diverged_reason"]
    assert rec["rollback"] == "input model" or rec["rollback"].startswith("step ")
    if rec["rollback"] == "input model":
        assert _same_state(out.model, model)


@pytest.mark.parametrize("method", ["gradient_ascent", "random_labels"])
def test_batchnorm_model_diverges_to_finite_outputs(tiny, method) -> None:
    b, _, bn_model = tiny
    out = uk.run_unlearning(
        bn_model, tiny_task(b), method, {"lr": 1e6, "epochs": 20, "batch_size": 4}, seed=0
    )
    assert out.diverged and _finite_everywhere(out.model, b)


def test_when_no_step_qualifies_the_input_model_is_returned(tiny) -> None:
    b, model, _ = tiny
    out = uk.run_unlearning(model, tiny_task(b), "ga", {"lr": 1e30, "batch_size": 4}, seed=0)
    assert out.diverged and out.info["rollback"] == "input model"
    assert _same_state(out.model, model)


# -- methods that misbehave at the end of the run ------------------------------------------


@dataclass(frozen=True)
class _Cfg(BaseConfig):
    scale: float = 1e25


def _blow_up_in_place(model, data, config, *, ctx):
    """Scale the weights so the logits overflow while every weight stays finite."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(config.scale)
    return model


def _new_nan_module(model, data, config, *, ctx):
    """Return a fresh module whose outputs are NaN."""
    fresh = tiny_model(tiny_bundle(image=False), seed=1)
    with torch.no_grad():
        for p in fresh.parameters():
            p.fill_(float("nan"))
    return fresh


@pytest.fixture(scope="module", autouse=True)
def _methods():
    access = AccessSpec(level="forget_only")
    register_method("_div_inplace", config=_Cfg, access=access, no_identity=True)(_blow_up_in_place)
    register_method("_div_new", config=_Cfg, access=access, no_identity=True)(_new_nan_module)
    yield
    unregister_method("_div_inplace")
    unregister_method("_div_new")


@pytest.mark.parametrize("method", ["_div_inplace", "_div_new"])
def test_end_of_run_outputs_are_checked(tiny, method) -> None:
    b, model, _ = tiny
    out = uk.run_unlearning(model, tiny_task(b), method, seed=0)
    assert out.diverged
    assert "end of the run" in out.info["diverged_reason"]
    assert out.info["rollback"] == "input model"
    assert _same_state(out.model, model) and not out.model.training


def test_retrain_with_a_diverging_recipe_keeps_the_input_model(tiny) -> None:
    b, model, _ = tiny
    recipe = uk.TrainRecipe(epochs=2, batch_size=16, lr=1e30, augment=False)
    out = uk.run_unlearning(model, tiny_task(b), "retrain", recipe=recipe, seed=0)
    assert out.diverged and "non-finite" in out.info["diverged_reason"]
    assert _same_state(out.model, model)


# -- the probe -------------------------------------------------------------------------------


def test_probe_is_fixed_small_and_respects_forget_only(tiny) -> None:
    b, _, _ = tiny
    task = tiny_task(b)
    state = torch.get_rng_state()
    p1, p2 = probe_inputs(task), probe_inputs(task)
    assert torch.equal(torch.get_rng_state(), state)  # no global randomness drawn
    assert torch.equal(p1, p2) and p1.shape[0] == 64
    fo = probe_inputs(task.forget_only())
    assert fo.shape[0] == task.n_forget  # forget rows only when no retain data is granted
    assert torch.equal(fo, task.forget.x)


def test_probe_check_restores_modes_and_leaves_batchnorm_statistics(tiny) -> None:
    b, _, bn_model = tiny
    model = bn_model.train()
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    bn.eval()  # frozen BN statistics, as freeze_bn_stats sets them
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    assert outputs_finite(model, probe_inputs(tiny_task(b)))
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_outputs_near_the_float_limit_do_not_count_as_finite(tiny) -> None:
    b, model, _ = tiny
    x = probe_inputs(tiny_task(b))

    class Scaled(nn.Module):
        def forward(self, z):
            return torch.full((z.shape[0], 4), OUTPUT_LIMIT * 10)

    assert outputs_finite(model, x)
    assert not outputs_finite(Scaled(), x)


def test_the_state_that_gave_the_non_finite_loss_is_never_restored(tiny) -> None:
    """Step k's weights are good only once step k+1's loss (computed from them) is finite."""
    b, model, _ = tiny
    work = tiny_model(b)
    work.load_state_dict(model.state_dict())
    ctx = RunContext.for_task(work, tiny_task(b), seed=0)
    opt = torch.optim.SGD(work.parameters(), lr=0.1)
    x = probe_inputs(tiny_task(b))
    assert ctx.step(opt, work(x).square().mean())  # step 1: the input state is confirmed
    after_one = {k: v.clone() for k, v in work.state_dict().items()}
    assert ctx.step(opt, work(x).square().mean())  # step 2: state 1 confirmed
    assert not ctx.step(opt, work(x).square().mean() * float("inf"))  # state 2 gave inf
    assert ctx.diverged and ctx.info["rollback"] == "step 1"
    assert all(torch.equal(after_one[k], v) for k, v in work.state_dict().items())


# -- the guard's cost: no per-step weight check, one fused copy, no state_dict walk ---------


def _context(b, model, **fields):
    work = tiny_model(b)
    work.load_state_dict(model.state_dict())
    ctx = RunContext.for_task(work, tiny_task(b), seed=0, **fields)
    return work, ctx, torch.optim.SGD(work.parameters(), lr=0.1), probe_inputs(tiny_task(b))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _equal(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_non_finite_weights_are_caught_by_the_next_loss(tiny) -> None:
    """An update that leaves NaN weights is not checked on the spot; the next loss, computed
    from them, is non-finite, and the run rolls back to the state before that update."""
    b, model, _ = tiny
    work, ctx, opt, x = _context(b, model)
    assert ctx.step(opt, work(x).square().mean())
    after_one = _state(work)

    def poison() -> None:
        with torch.no_grad():
            next(work.parameters()).fill_(float("nan"))

    assert ctx.step(opt, work(x).square().mean(), after_step=poison)
    assert not ctx.step(opt, work(x).square().mean())
    assert ctx.diverged and ctx.info["rollback"] == "step 1"
    assert "non-finite loss at step 3" in ctx.info["diverged_reason"] and _equal(work, after_one)


def test_steps_do_not_walk_the_state_dict(tiny, monkeypatch) -> None:
    """The state tensors are read once; later steps copy them with one fused call."""
    b, model, _ = tiny
    work, ctx, opt, x = _context(b, model)
    calls = []
    real = type(work).state_dict
    monkeypatch.setattr(
        type(work), "state_dict", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    for _ in range(20):
        assert ctx.step(opt, work(x).square().mean())
    assert len(calls) == 1


def test_snapshot_every_k_rolls_back_to_the_last_kept_state(tiny) -> None:
    b, model, _ = tiny
    work, ctx, opt, x = _context(b, model, snapshot_every=3)
    states = {}
    for step in range(1, 6):
        assert ctx.step(opt, work(x).square().mean())
        states[step] = _state(work)
    assert not ctx.step(opt, work(x).square().mean() * float("nan"))
    # State 5 gave the NaN; state 3 was kept (at step 4, whose finite loss confirmed it).
    assert ctx.info["rollback"] == "step 3" and _equal(work, states[3])


def test_a_parameter_replaced_behind_the_guard_s_back_falls_back_to_the_input(tiny) -> None:
    """A method that swaps a parameter object without take_snapshot() leaves the kept copy
    out of date: the rollback then restores the input model, never a mix of states."""
    b, model, _ = tiny
    work, ctx, opt, x = _context(b, model)
    for _ in range(3):
        assert ctx.step(opt, work(x).square().mean())
    head = [m for m in work.modules() if isinstance(m, nn.Linear)][-1]
    head.weight = nn.Parameter(head.weight.detach() * 0.5)
    opt = torch.optim.SGD(work.parameters(), lr=0.1)
    assert not ctx.step(opt, work(x).square().mean() * float("inf"))
    assert ctx.info["rollback"] == "input model" and _same_state(work, model)


def test_take_snapshot_after_replacing_a_parameter_is_a_rollback_target(tiny) -> None:
    b, model, _ = tiny
    work, ctx, opt, x = _context(b, model)
    assert ctx.step(opt, work(x).square().mean())
    head = [m for m in work.modules() if isinstance(m, nn.Linear)][-1]
    head.weight = nn.Parameter(torch.zeros_like(head.weight))
    ctx.take_snapshot()
    kept = _state(work)
    opt = torch.optim.SGD(work.parameters(), lr=0.1)
    assert ctx.step(opt, work(x).square().mean())
    assert not ctx.step(opt, work(x).square().mean() * float("inf"))
    assert ctx.info["rollback"] == "step 1" and _equal(work, kept)
