"""NegGrad+."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
import unlearnkit.methods.neggrad_plus  # noqa: F401  (registers the method)
from unlearnkit.methods.neggrad_plus import NegGradPlusConfig, l2_to_anchor
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


def _acc(model: torch.nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- Test 1: beta = 1, l2 = 0 is a fine-tuning step on the same retain batch (eval mode) --------


def test_beta_one_is_a_fine_tuning_step_on_the_same_retain_batch() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle, bn=True)  # eval vs train mode matters (BN, dropout)
    cfg = {
        "beta": 1.0,
        "l2": 0.0,
        "batch_size": 16,
        "lr": 0.1,
        "max_steps": 1,
        "augment_retain": False,
    }
    out = uk.run_unlearning(model, task, "neggrad_plus", cfg, seed=3)
    assert out.steps == 1
    # The same retain batch: the retain loader (the driver) draws the run's first permutation.
    perm = torch.randperm(len(task.retain), generator=torch.Generator().manual_seed(3))[:16]
    xr, yr = task.retain.x[perm], task.retain.y[perm]
    ft = copy.deepcopy(model).eval()
    opt = torch.optim.SGD(ft.parameters(), lr=0.1, momentum=0.9, weight_decay=0.0)
    opt.zero_grad()
    F.cross_entropy(ft(xr), yr).backward()
    opt.step()
    assert _same(out.model, ft)  # parameters and the (unchanged) BN statistics
    assert not _same(out.model, model)


def test_eval_mode_keeps_batchnorm_statistics_and_train_mode_does_not() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle, bn=True)
    stats = {n: b.clone() for n, b in model.named_buffers()}
    cfg = {"epochs": 2, "batch_size": 16}
    frozen = uk.unlearn(model, task, "neggrad_plus", cfg, seed=0)
    assert all(torch.equal(b, stats[n]) for n, b in frozen.named_buffers())
    moving = uk.unlearn(model, task, "neggrad_plus", {**cfg, "eval_mode": False}, seed=0)
    assert not all(torch.equal(b, stats[n]) for n, b in moving.named_buffers())


# -- Test 2: every step consumes exactly one retain batch and one forget batch -----------------


class _Recorder(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # an update's pass, not the front door's no-grad checks
            self.seen.append(x.detach().clone())
        return self.inner(x)


def _rows(batch: torch.Tensor, pool: torch.Tensor) -> list[int]:
    """Positions in ``pool`` of the rows of ``batch`` (-1 when absent)."""
    hit = (batch[:, None] == pool[None]).flatten(2).all(-1)
    return [int(h.nonzero()[0]) if bool(h.any()) else -1 for h in hit]


def test_each_step_uses_one_retain_batch_and_one_forget_batch() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)  # 86 retain (driver), 10 forget (cycled)
    rec = _Recorder(trained_tiny_model(bundle))
    out = uk.run_unlearning(
        rec, task, "neggrad_plus", {"epochs": 2, "batch_size": 8}, seed=0, inplace=True
    )
    per_epoch = 11  # ceil(86 / 8) retain batches define the epoch
    assert out.steps == 2 * per_epoch
    assert len(rec.seen) == 2 * out.steps  # one retain and one forget forward per step
    retain_rows = [_rows(b, task.retain.x) for b in rec.seen[0::2]]
    forget_rows = [_rows(b, task.forget.x) for b in rec.seen[1::2]]
    assert all(-1 not in r for r in retain_rows) and all(-1 not in f for f in forget_rows)
    for e in range(2):  # each epoch is exactly one pass over D_r
        epoch_rows = [i for r in retain_rows[e * per_epoch : (e + 1) * per_epoch] for i in r]
        assert sorted(epoch_rows) == list(range(86))
    # D_f is cycled within an epoch (batches of 8 and 2), re-shuffled on every new pass.
    assert [len(f) for f in forget_rows] == ([8, 2] * 5 + [8]) * 2
    passes = [
        forget_rows[e * 11 + i] + forget_rows[e * 11 + i + 1]
        for e in range(2)
        for i in range(0, 10, 2)
    ]
    assert all(sorted(p) == list(range(10)) for p in passes)
    assert len({tuple(p) for p in passes}) > 1


# -- Test 3: the L2 term is zero at the first step ---------------------------------------------


def test_l2_term_is_zero_at_the_first_step() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle)
    params = list(model.parameters())
    anchor = [p.detach().clone() for p in params]
    penalty = l2_to_anchor(params, anchor)
    assert float(penalty.detach()) == 0.0
    grads = torch.autograd.grad(penalty, params)
    assert all(bool((g == 0).all()) for g in grads)
    # So the first update is the same with or without the penalty ...
    one = {"batch_size": 16, "lr": 0.05, "max_steps": 1}
    a = uk.unlearn(model, task, "ngplus", {**one, "l2": 100.0}, seed=1)
    b = uk.unlearn(model, task, "ngplus", {**one, "l2": 0.0}, seed=1)
    assert _same(a, b)
    # ... and the penalty acts from the second step on.
    three = {**one, "max_steps": 3}
    a = uk.unlearn(model, task, "ngplus", {**three, "l2": 100.0}, seed=1)
    b = uk.unlearn(model, task, "ngplus", {**three, "l2": 0.0}, seed=1)
    assert not _same(a, b)


def test_l2_to_anchor_known_value() -> None:
    p = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    p0 = [torch.tensor([0.0, 4.0]), torch.tensor([[1.0]])]
    assert float(l2_to_anchor(p, p0)) == 1.0 + 4.0 + 4.0


# -- config, presets, conformance, behaviour ---------------------------------------------------


@pytest.mark.parametrize("bad", [{"beta": 1.5}, {"beta": -0.1}, {"l2": -1.0}])
def test_bad_config_values_are_rejected(bad: dict) -> None:
    with pytest.raises(uk.ConfigError):
        NegGradPlusConfig.from_dict(bad)


def test_defaults_and_presets() -> None:
    spec = uk.get_method("ng+")
    cfg = spec.make_config()
    assert (cfg.beta, cfg.l2, cfg.eval_mode, cfg.epochs, cfg.batch_size) == (
        0.95,
        0.0,
        True,
        10,
        256,
    )
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.momentum) == ("sgd", 0.01, 0.9)
    assert cfg.optimizer.weight_decay == 0.0
    assert spec.make_config(preset="scrub_notebook").optimizer.momentum == 0.0
    assert spec.make_config(preset="digits").batch_size == 64


def test_behaviour_forgets_the_class_while_retain_accuracy_holds() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle)
    cfg = {"beta": 0.5, "lr": 0.1, "epochs": 15, "batch_size": 16, "max_grad_norm": 1.0}
    out = uk.run_unlearning(model, task, "neggrad_plus", cfg, seed=0)
    assert not out.diverged
    assert _acc(out.model, task.forget) <= 0.2
    assert _acc(out.model, task.retain) >= 0.95
    assert _acc(out.model, task.test) >= 0.9
