"""The guard's copy-free update: torch's SGD / Adam / AdamW step bit for bit, old weights kept.

With SGD, Adam or AdamW on CPU, :meth:`RunContext.step` writes each new weight into its
gradient's memory and keeps the buffer the update started from as the last good state, instead
of copying the weights before every update. These tests pin what makes that safe: the update is
exactly the optimizer's ``step()`` (weights and optimizer state, every option combination, over
several steps), the kept buffers hold the weights before the update, a configuration whose
arithmetic differs from torch's is caught by the per-process self-check, and every case the
update does not cover falls back to the copy.
"""

from __future__ import annotations

import copy
import itertools
import warnings

import pytest
import torch
from torch import nn

from unlearnkit.methods import RunContext, _swap_update
from unlearnkit.methods._swap_update import update_into_grads, update_into_grads_applies
from unlearnkit.methods.base import probe_inputs
from unlearnkit.testing import tiny_bundle, tiny_model, tiny_task, trained_tiny_model


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(7, 16), nn.ReLU(), nn.Linear(16, 3))


def _backward(model: nn.Module, step: int) -> None:
    g = torch.Generator().manual_seed(step)
    x, y = torch.randn(32, 7, generator=g), torch.randint(0, 3, (32,), generator=g)
    nn.functional.cross_entropy(model(x), y).backward()


SGD_OPTIONS = [
    dict(momentum=m, weight_decay=wd, nesterov=nest, dampening=damp)
    for m, wd, nest, damp in itertools.product((0.0, 0.9), (0.0, 5e-4), (False, True), (0.0, 0.1))
    if not (nest and (m == 0 or damp != 0))  # torch's own rule for Nesterov
]
ADAM_OPTIONS = [dict(weight_decay=wd, amsgrad=ams) for wd in (0.0, 1e-2) for ams in (False, True)]
CASES = (
    [(torch.optim.SGD, o) for o in SGD_OPTIONS]
    + [(torch.optim.Adam, o) for o in ADAM_OPTIONS]
    + [(torch.optim.AdamW, o) for o in ADAM_OPTIONS]
)


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a
    )


@pytest.mark.parametrize("kind, opts", CASES, ids=[f"{k.__name__}-{o}" for k, o in CASES])
def test_the_update_is_the_optimizer_step_bit_for_bit(kind, opts) -> None:
    ours, ref = _net(), _net()
    opt_ours, opt_ref = (
        kind(ours.parameters(), lr=0.05, **opts),
        kind(ref.parameters(), lr=0.05, **opts),
    )
    for step in range(6):
        for model, opt in ((ours, opt_ours), (ref, opt_ref)):
            opt.zero_grad(set_to_none=True)
            _backward(model, step)
        before = [p.detach().clone() for p in ours.parameters()]
        if step == 0 and kind is not torch.optim.SGD:
            # Adam's first step creates its state: torch's own step makes it
            assert not update_into_grads_applies(opt_ours)
            opt_ours.step()
            opt_ref.step()
            continue
        assert update_into_grads_applies(opt_ours)
        old = update_into_grads(opt_ours)
        opt_ref.step()
        for p, q, b in zip(ours.parameters(), ref.parameters(), before):
            assert torch.equal(p, q)  # the same weights as torch's step
            assert torch.equal(old[p], b)  # the kept buffer holds the weights before it
            assert p.grad is None  # its memory now holds the new weights
            assert _state_equal(opt_ours.state[p], opt_ref.state[q])


def test_a_configuration_that_differs_from_torch_keeps_torch_s_step(monkeypatch) -> None:
    """The first time a process meets a configuration, the update is checked against torch's
    own step on a small tensor; a mismatch (as another torch version might bring) is caught."""
    monkeypatch.setattr(_swap_update, "_VERIFIED", {})
    real = _swap_update._sgd

    def off_by_a_rounding(state, group, p, g):
        real(state, group, p, g)
        g.mul_(1 + 2**-20)

    monkeypatch.setattr(_swap_update, "_sgd", off_by_a_rounding)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _backward(model, 0)
    assert not update_into_grads_applies(opt)
    assert list(_swap_update._VERIFIED.values()) == [False]
    monkeypatch.setattr(_swap_update, "_sgd", real)
    monkeypatch.setattr(_swap_update, "_VERIFIED", {})
    assert update_into_grads_applies(opt)


def test_param_groups_schedulers_and_parameters_without_gradients() -> None:
    ours, ref = _net(), _net()
    frozen = [ours[2].bias, ref[2].bias]

    def groups(m: nn.Module) -> list[dict]:
        return [
            {"params": [m[0].weight, m[0].bias], "lr": 0.1, "momentum": 0.9},
            {"params": [m[2].weight, m[2].bias], "lr": 0.01, "weight_decay": 1e-3},
        ]

    opt_ours, opt_ref = torch.optim.SGD(groups(ours), lr=1.0), torch.optim.SGD(groups(ref), lr=1.0)
    scheds = [
        torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (opt_ours, opt_ref)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "scheduler stepped before the optimizer" warning
        for step in range(5):
            for model, opt in ((ours, opt_ours), (ref, opt_ref)):
                opt.zero_grad(set_to_none=True)
                _backward(model, step)
            for p in frozen:
                p.grad = None  # this parameter gets no update
            kept = frozen[0].detach().clone()
            update_into_grads(opt_ours)
            opt_ref.step()
            assert torch.equal(frozen[0], kept)  # no gradient, no update
            for s in scheds:
                s.step()
    assert all(torch.equal(p, q) for p, q in zip(ours.parameters(), ref.parameters()))


def test_cases_it_does_not_cover_take_the_copy() -> None:
    def ready(opt_cls=torch.optim.SGD, **kw) -> torch.optim.Optimizer:
        model = _net()
        opt = opt_cls(model.parameters(), lr=0.1, **kw)
        _backward(model, 0)
        return opt

    assert update_into_grads_applies(ready())
    assert not update_into_grads_applies(ready(torch.optim.RMSprop))
    assert not update_into_grads_applies(ready(torch.optim.Adam))  # no state before a step
    assert not update_into_grads_applies(ready(maximize=True))
    assert not update_into_grads_applies(ready(foreach=True))
    opt = ready()
    opt.param_groups[0]["lr"] = torch.tensor(0.1)
    assert not update_into_grads_applies(opt)
    opt = ready()
    handle = opt.register_step_post_hook(lambda *a: None)
    assert not update_into_grads_applies(opt)
    handle.remove()
    assert update_into_grads_applies(opt)
    p = opt.param_groups[0]["params"][0]
    p.grad = torch.zeros(p.numel() * 2)[: p.numel()].view_as(p)  # a view of a larger buffer
    assert not update_into_grads_applies(opt)
    p.grad = torch.zeros(p.shape[::-1]).t()  # laid out unlike the parameter
    assert not update_into_grads_applies(opt)


# -- through RunContext.step: the same run, the same rollback, fewer copies -------------------


@pytest.fixture(scope="module")
def tiny():
    b = tiny_bundle(image=False)
    return b, trained_tiny_model(b)


def _run(b, model, steps: int, swap: bool, monkeypatch, after_step=None, adamw=False):
    import unlearnkit.methods.base as base

    if not swap:
        monkeypatch.setattr(base, "update_into_grads_applies", lambda opt: False)
    work = tiny_model(b)
    work.load_state_dict(model.state_dict())
    ctx = RunContext.for_task(work, tiny_task(b), seed=0)
    if adamw:
        opt = torch.optim.AdamW(work.parameters(), lr=0.01, weight_decay=5e-4)
    else:
        opt = torch.optim.SGD(work.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x = probe_inputs(tiny_task(b))
    states = []
    for _ in range(steps):
        assert ctx.step(opt, work(x).square().mean(), after_step=after_step)
        states.append(copy.deepcopy(work.state_dict()))
    assert not ctx.step(opt, work(x).square().mean() * float("nan"))
    monkeypatch.undo()
    return work, ctx, states


@pytest.mark.parametrize("adamw", [False, True], ids=["sgd", "adamw"])
def test_a_guarded_run_is_the_same_with_or_without_the_copy(tiny, monkeypatch, adamw) -> None:
    b, model = tiny
    swapped, ctx_s, states_s = _run(b, model, 5, True, monkeypatch, adamw=adamw)
    copied, ctx_c, states_c = _run(b, model, 5, False, monkeypatch, adamw=adamw)
    for a, c in zip(states_s, states_c):  # every step's weights, bit for bit
        assert all(torch.equal(a[k], c[k]) for k in a)
    # state 5 gave the NaN: both roll back to state 4, exactly
    assert ctx_s.info["rollback"] == ctx_c.info["rollback"] == "step 4"
    for net in (swapped, copied):
        assert all(torch.equal(v, states_s[3][k]) for k, v in net.state_dict().items())


def test_the_copy_is_skipped_only_when_the_update_keeps_the_weights(tiny, monkeypatch) -> None:
    """No weight copy per step with plain SGD; an ``after_step`` callback (which may read
    the gradients) keeps torch's own step and the copy."""
    b, model = tiny
    copies = []
    real = RunContext._keep_good
    monkeypatch.setattr(RunContext, "_keep_good", lambda self: copies.append(1) or real(self))
    _run(b, model, 6, True, monkeypatch)
    assert len(copies) == 1  # the first keep binds the state; later ones swap
    monkeypatch.setattr(RunContext, "_keep_good", lambda self: copies.append(1) or real(self))
    copies.clear()
    _, ctx, _ = _run(b, model, 6, True, monkeypatch, after_step=lambda: None)
    assert len(copies) == 5 and ctx.info["rollback"] == "step 5"
