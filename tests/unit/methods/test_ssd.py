"""SSD and LFSSD."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit.methods.ssd  # noqa: F401
from unlearnkit import forget_task
from unlearnkit.api import run_unlearning
from unlearnkit.data import DataView, DataViews
from unlearnkit.datasets import Split
from unlearnkit.errors import AccessError, ConfigError, DataError
from unlearnkit.methods import RunContext, get_method
from unlearnkit.methods.ssd import (
    LFSSDConfig,
    SSDConfig,
    compute_importances,
    dtr_importance_key,
    dtr_order,
    lfssd,
    ssd,
)
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


@pytest.fixture(scope="module")
def tiny():
    bundle = tiny_bundle()
    return bundle, trained_tiny_model(bundle)


@pytest.fixture(scope="module")
def tiny_bn():
    bundle = tiny_bundle()
    return bundle, trained_tiny_model(bundle, bn=True)


def _ctx(model: nn.Module, bundle, task, cache: dict | None = None) -> RunContext:
    return RunContext.for_task(model, task, cache=cache if cache is not None else {})


def _views(task) -> DataViews:
    return DataViews(forget=task.forget, retain=task.retain, train_full=task.train_full)


def _acc(model: nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -- registry (conformance: tests/conformance, for every registered method) ---------------


def test_registry_defaults_presets_and_scenario_batch_sizes() -> None:
    s, lf = get_method("ssd"), get_method("label_free_ssd")
    assert lf.name == "lfssd"
    assert s.access.level == lf.access.level == "full_train"
    assert s.access.forget_labels and not lf.access.forget_labels and not lf.access.retain_labels
    assert s.identity_config == {"selection_weighting": float("inf")}
    cfg = s.make_config(scenario="class")
    assert (cfg.selection_weighting, cfg.dampening_constant, cfg.importance_batch_size) == (
        10.0,
        1.0,
        64,
    )
    assert s.make_config(scenario="random").importance_batch_size == 128
    assert s.make_config(preset="digits", scenario="random").importance_batch_size == 64
    # Batch order of D_tr: the reference's for class-wise SSD, a seeded shuffle for sample-wise
    # forget sets and for LFSSD (which then reads no label at all).
    assert cfg.importance_order == "ssd_reference"
    assert s.make_config(scenario="random").importance_order == "shuffled"
    assert s.make_config(scenario="indices").importance_order == "shuffled"
    assert lf.make_config(scenario="class").importance_order == "shuffled"
    assert isinstance(lf.make_config(), LFSSDConfig)
    pins = s.make_config(preset="ssd_pins_fullclass")
    assert (pins.selection_weighting, pins.dampening_constant) == (50.0, 0.1)
    assert s.make_config(preset="ssd_vit_subclass").selection_weighting == 25.0
    for bad in (
        {"selection_weighting": 0},
        {"dampening_constant": -1},
        {"importance_batch_size": 0},
        {"importance_order": "sorted"},
    ):
        with pytest.raises(ConfigError):
            SSDConfig.from_dict(bad)


# -- importances against closed forms ----------------------------------------------------------


def _linear_case():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(3, 4)
    x = torch.randn(10, 3, generator=g)
    y = torch.randint(0, 4, (10,), generator=g)
    return lin, DataView("train_full", x, y)


def test_ssd_importance_is_the_mean_squared_batch_gradient() -> None:
    lin, view = _linear_case()
    imp = compute_importances(lin, view, 4)  # batches of 4, 4, 2
    w_exp, b_exp = torch.zeros(4, 3), torch.zeros(4)
    for sl in (slice(0, 4), slice(4, 8), slice(8, 10)):
        xb, yb = view.x[sl], view.y[sl]
        with torch.no_grad():
            err = (F.softmax(lin(xb), 1) - F.one_hot(yb, 4).float()) / len(xb)
        w_exp += (err.T @ xb) ** 2
        b_exp += err.sum(0) ** 2
    assert torch.allclose(imp["weight"], w_exp / 3, atol=1e-7)
    assert torch.allclose(imp["bias"], b_exp / 3, atol=1e-7)


def test_lfssd_importance_is_the_mean_abs_gradient_of_the_squared_logit_norm() -> None:
    lin, view = _linear_case()
    imp = compute_importances(lin, view.without_labels(), 4, label_free=True)
    w_exp, b_exp = torch.zeros(4, 3), torch.zeros(4)
    for sl in (slice(0, 4), slice(4, 8), slice(8, 10)):
        xb = view.x[sl]
        with torch.no_grad():
            z = lin(xb)
        w_exp += (2 * z.T @ xb / len(xb)).abs()
        b_exp += (2 * z.sum(0) / len(xb)).abs()
    assert torch.allclose(imp["weight"], w_exp / 3, atol=1e-6)
    assert torch.allclose(imp["bias"], b_exp / 3, atol=1e-6)


def test_importances_leave_no_grad_and_restore_the_mode(tiny_bn) -> None:
    bundle, model = tiny_bn
    model = copy.deepcopy(model).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compute_importances(model, tiny_task(bundle).forget, 8)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # eval mode


# -- Test 1 and 2: dampening -------------------------------------------------------------------


@pytest.mark.parametrize("label_free", [False, True])
def test_dampening_is_exact_and_never_grows_weights(tiny, label_free: bool) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    alpha, lam = 1.0, 0.5
    how = "shuffled" if label_free else "ssd_reference"  # each method's default
    gen = torch.Generator().manual_seed(0)  # the run's generator (seed 0), fresh
    order = dtr_order(task.train_full, task.forget, how, generator=gen)
    i_d = compute_importances(model, task.train_full, 64, label_free=label_free, order=order)
    i_f = compute_importances(model, task.forget, 64, label_free=label_free)
    work = copy.deepcopy(model)
    ctx = _ctx(work, bundle, task)
    cfg = SSDConfig(
        selection_weighting=alpha,
        dampening_constant=lam,
        importance_batch_size=64,
        importance_order=how,
    )
    (lfssd if label_free else ssd)(work, _views(task), cfg, ctx=ctx)
    n_sel = n_all = 0
    originals = dict(model.named_parameters())
    for name, p in work.named_parameters():
        p0 = originals[name].detach()
        sel = i_f[name] > alpha * i_d[name]
        assert torch.equal(p[~sel], p0[~sel]), f"{name}: unselected coordinates changed"
        factor = torch.clamp(lam * i_d[name] / i_f[name], max=1.0)
        assert torch.equal(p[sel], p0[sel] * factor[sel])
        assert bool((p[sel].abs() <= p0[sel].abs()).all())
        n_sel, n_all = n_sel + int(sel.sum()), n_all + sel.numel()
    assert 0 < n_sel < n_all
    assert ctx.info["selected_fraction"] == pytest.approx(n_sel / n_all)


@pytest.mark.parametrize("name", ["ssd", "lfssd"])
def test_infinite_alpha_leaves_the_model_unchanged(tiny, name: str) -> None:
    bundle, model = tiny
    out = run_unlearning(
        model, tiny_task(bundle), name, {"selection_weighting": float("inf")}, seed=0
    )
    assert _states_equal(out.model, model)
    assert out.info["selected_fraction"] == 0.0 and out.steps == 0


# -- Test 3: LFSSD never reads labels ----------------------------------------------------------


def test_lfssd_ignores_labels(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    cfg = LFSSDConfig(selection_weighting=1.0)  # default order: shuffled, label-free
    g = torch.Generator().manual_seed(9)

    def garbage(view: DataView) -> DataView:
        return DataView(view.name, view.x, torch.randint(0, 4, (len(view),), generator=g))

    outs = []
    for transform in (lambda v: v, garbage, lambda v: v.without_labels()):
        work = copy.deepcopy(model)
        views = DataViews(forget=transform(task.forget), train_full=transform(task.train_full))
        outs.append(lfssd(work, views, cfg, ctx=_ctx(work, bundle, task)))
    assert not _states_equal(outs[0], model)
    assert _states_equal(outs[0], outs[1]) and _states_equal(outs[0], outs[2])


# -- Test 4: the D_tr importance cache ---------------------------------------------------------


def test_cached_and_recomputed_importances_agree(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    cfg = {"selection_weighting": 1.0, "importance_order": "ssd_reference"}  # seed-free order
    cache: dict = {}
    first = run_unlearning(model, task, "ssd", cfg, seed=0, cache=cache)
    second = run_unlearning(model, task, "ssd", cfg, seed=1, cache=cache)
    fresh = run_unlearning(model, task, "ssd", cfg, seed=2, cache={})
    assert not first.info["importance_cached"] and second.info["importance_cached"]
    assert not fresh.info["importance_cached"]
    assert len(cache) == 1
    assert _states_equal(first.model, second.model) and _states_equal(first.model, fresh.model)
    # A different batch size, kind or model gets its own entry.
    run_unlearning(model, task, "ssd", {**cfg, "importance_batch_size": 32}, seed=0, cache=cache)
    run_unlearning(model, task, "lfssd", cfg, seed=0, cache=cache)
    run_unlearning(first.model, task, "ssd", cfg, seed=0, cache=cache)
    assert len(cache) == 4


def test_precomputed_importances_are_read_from_the_cache(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    bs, how = SSDConfig().importance_batch_size, SSDConfig().importance_order
    order = dtr_order(task.train_full, task.forget, how)
    key = dtr_importance_key(model, task.train_full, bs, importance_order=how, order=order)
    # I_D = 0 everywhere: every weight with I_f > 0 is selected and zeroed (lambda * 0 / I_f).
    zeros = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    work = copy.deepcopy(model)
    ctx = _ctx(work, bundle, task, cache={key: zeros})
    ssd(work, _views(task), SSDConfig(importance_batch_size=bs), ctx=ctx)
    assert ctx.info["importance_cached"]
    i_f = compute_importances(model, task.forget, bs)
    for name, p in work.named_parameters():
        assert bool((p[i_f[name] > 0] == 0).all())


def test_missing_full_train_is_refused(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    work = copy.deepcopy(model)
    with pytest.raises(AccessError, match="full training set"):
        ssd(work, DataViews(forget=task.forget), SSDConfig(), ctx=_ctx(work, bundle, task))


# -- behaviour ----------------------------------------------------------------------------------


# alpha depends on the batch order: with the reference's class-grouped D_tr batches (SSD's
# default here) I_D is larger and alpha 10 selects almost nothing on this tiny model.
@pytest.mark.parametrize(("name", "alpha"), [("ssd", 2.0), ("lfssd", 2.0)])
def test_forgets_the_class_and_keeps_the_rest(tiny_bn, name: str, alpha: float) -> None:
    bundle, model = tiny_bn
    task = tiny_task(bundle, "class")
    assert _acc(model.eval(), task.forget) == 1.0
    out = run_unlearning(model, task, name, {"selection_weighting": alpha}, seed=0)
    assert _acc(out.model, task.forget) < 0.2
    assert _acc(out.model, task.retain) > 0.9


# -- the batch order of D_tr (importance_order) ------------------------------------------------


def _restored(bundle, perm: torch.Tensor):
    """The same bundle with its training split stored in another order."""
    tr = bundle.train
    return dataclasses.replace(bundle, train=Split(tr.x[perm], tr.y[perm]))


@pytest.mark.parametrize("scenario", ["class", "random"])
def test_ssd_reference_order_is_retain_grouped_by_class_then_forget(tiny, scenario: str) -> None:
    bundle, _ = tiny
    task = tiny_task(bundle, scenario)
    order = dtr_order(task.train_full, task.forget, "ssd_reference").numpy()
    y = task.train_full.y.numpy()
    n_r = len(task.train_full) - len(task.forget)
    head, tail = order[:n_r], order[n_r:]
    assert np.array_equal(np.sort(order), np.arange(len(y)))  # a permutation of D_tr
    assert np.array_equal(tail, task.forget.indices)  # D_f last, in D_f's own order
    assert np.array_equal(np.sort(head), task.retain.indices)
    assert bool((np.diff(y[head]) >= 0).all())  # grouped by class, ascending
    for c in np.unique(y[head]):  # stable: stored order within a class
        assert bool((np.diff(head[y[head] == c]) > 0).all())
    assert dtr_order(task.train_full, task.forget, "stored") is None


@pytest.mark.parametrize(("name", "alpha"), [("ssd", 2.0), ("lfssd", 1.0)])
def test_ssd_reference_does_not_depend_on_how_d_tr_is_stored(tiny, name: str, alpha: float):
    """Storing D_tr sorted by class (or classes in reverse) changes nothing under the
    reference order; under "stored" it changes which weights are selected."""
    bundle, model = tiny
    y = bundle.train.y
    storages = {
        "as loaded": bundle,
        "sorted by class": _restored(bundle, torch.argsort(y, stable=True)),
        "classes reversed": _restored(bundle, torch.argsort(-y, stable=True)),
    }
    outs = {}
    for key, b in storages.items():
        task = forget_task(b, "class", classes=[1])
        for how in ("ssd_reference", "stored"):
            cfg = {"selection_weighting": alpha, "importance_order": how}
            outs[key, how] = run_unlearning(model, task, name, cfg, seed=0)
    ref = [outs[k, "ssd_reference"] for k in storages]
    assert ref[0].info["selected_weights"] > 0
    assert all(_states_equal(ref[0].model, o.model) for o in ref[1:])
    assert len({o.info["selected_weights"] for o in ref}) == 1
    stored = [outs[k, "stored"] for k in storages]
    assert len({o.info["selected_weights"] for o in stored}) > 1


def test_shuffled_order_is_drawn_from_the_run_seed(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")
    full, fgt = task.train_full, task.forget

    def order(seed: int) -> torch.Tensor:
        return dtr_order(full, fgt, "shuffled", generator=torch.Generator().manual_seed(seed))

    o0, o1 = order(0), order(1)
    assert torch.equal(o0, order(0)) and not torch.equal(o0, o1)
    assert torch.equal(o0.sort().values, torch.arange(len(full)))
    i0, i1 = (compute_importances(model, full, 16, order=o) for o in (o0, o1))
    assert not all(torch.equal(i0[n], i1[n]) for n in i0)  # other batches, other I_D
    keys = {
        dtr_importance_key(model, full, 16, importance_order="shuffled", order=o) for o in (o0, o1)
    }
    assert len(keys) == 2
    # Through the front door: the run's seed fixes the permutation, and the cache tells seeds apart.
    cfg = {"selection_weighting": 2.0, "importance_order": "shuffled"}
    cache: dict = {}
    a = run_unlearning(model, task, "ssd", cfg, seed=0, cache=cache)
    b = run_unlearning(model, task, "ssd", cfg, seed=0, cache={})
    c = run_unlearning(model, task, "ssd", cfg, seed=1, cache=cache)
    d = run_unlearning(model, task, "ssd", cfg, seed=0, cache=cache)
    assert _states_equal(a.model, b.model) and a.info["importance_order"] == "shuffled"
    assert not c.info["importance_cached"] and d.info["importance_cached"] and len(cache) == 2


def test_ssd_reference_needs_indices_labels_and_a_forget_set_inside_d_tr(tiny) -> None:
    bundle, _ = tiny
    task = tiny_task(bundle, "class")
    full, fgt = task.train_full, task.forget
    bare = DataView(fgt.name, fgt.x, fgt.y)  # no sample indices
    with pytest.raises(DataError, match="indices"):
        dtr_order(full, bare, "ssd_reference")
    with pytest.raises(DataError, match="labels"):
        dtr_order(full.without_labels(), fgt, "ssd_reference")
    stranger = DataView(fgt.name, fgt.x, fgt.y, indices=fgt.indices + len(full))
    with pytest.raises(DataError, match="not in D_tr"):
        dtr_order(full, stranger, "ssd_reference")
    with pytest.raises(ConfigError, match="importance_order"):
        dtr_order(full, fgt, "by_class")
    # The label-free default needs neither indices nor labels.
    assert dtr_order(full.without_labels(), bare, LFSSDConfig().importance_order) is not None
