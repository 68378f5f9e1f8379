"""Bad Teacher."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import unlearnkit.methods.bad_teacher  # noqa: F401
from unlearnkit.api import run_unlearning
from unlearnkit.data import DataViews
from unlearnkit.errors import AccessError, ConfigError
from unlearnkit.methods import RunContext, get_method
from unlearnkit.methods.bad_teacher import (
    BadTeacherConfig,
    bad_teacher,
    bad_teacher_loss,
    draw_retain_subset,
)
from unlearnkit.testing import (
    tiny_bundle,
    tiny_factory,
    tiny_task,
    trained_tiny_model,
)


@pytest.fixture(scope="module")
def tiny():
    bundle = tiny_bundle()
    return bundle, trained_tiny_model(bundle)


def _ctx(model: nn.Module, bundle, task, seed: int = 0) -> RunContext:
    return RunContext.for_task(model, task, seed=seed, model_factory=tiny_factory(bundle))


def _acc(model: nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


def _states_equal(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -- registry (conformance: tests/conformance, for every registered method) ---------------


def test_registry_defaults_and_presets() -> None:
    spec = get_method("blindspot")
    assert spec.name == "bad_teacher" and get_method("bt") is spec
    acc = spec.access
    assert (acc.level, acc.retain_fraction, acc.needs_model_factory) == (
        "forget_and_retain",
        0.3,
        True,
    )
    assert not acc.forget_labels and not acc.retain_labels
    cfg = spec.make_config()
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("adam", 1e-4, 0.0)
    assert (cfg.epochs, cfg.temperature, cfg.batch_size, cfg.retain_fraction) == (1, 1.0, 256, 0.3)
    assert cfg.kl_reduction == "elementwise_mean"
    digits = spec.make_config(preset="digits")
    assert (digits.optimizer.name, digits.optimizer.lr, digits.epochs, digits.batch_size) == (
        "adam",
        1e-3,
        5,
        64,
    )
    natmu = spec.make_config(preset="natmu_cifar10")
    assert (natmu.optimizer.name, natmu.optimizer.lr, natmu.temperature) == ("adamw", 5e-5, 7.2)
    assert natmu.scheduler.name == "cosine" and natmu.epochs == 5
    for bad in ({"temperature": 0}, {"retain_fraction": 1.5}, {"kl_reduction": "sum"}):
        with pytest.raises(ConfigError):
            BadTeacherConfig.from_dict(bad)


# -- Test 2: the loss against a hand computation ----------------------------------------------


def test_loss_matches_a_hand_computed_two_sample_example() -> None:
    # Sample 0 is forget-tagged (teacher: the incompetent one), sample 1 retain-tagged (the
    # competent one). The student is uniform; the unused teacher rows are decoys.
    student = torch.zeros(2, 3)
    competent = torch.tensor([[9.0, -9.0, 0.0], [0.0, math.log(3.0), 0.0]])
    incompetent = torch.tensor([[math.log(2.0), 0.0, 0.0], [-5.0, 5.0, 1.0]])
    tags = torch.tensor([1, 0])
    q0, q1 = [0.5, 0.25, 0.25], [0.2, 0.6, 0.2]
    total = sum(q * math.log(q / (1 / 3)) for q in q0 + q1)
    got = bad_teacher_loss(student, competent, incompetent, tags)
    assert float(got) == pytest.approx(total / 6, rel=1e-5)  # mean over N*K = 6 elements
    got_bm = bad_teacher_loss(student, competent, incompetent, tags, reduction="batchmean")
    assert float(got_bm) == pytest.approx(total / 2, rel=1e-5)
    # Temperature divides every logit (no T^2 factor): T = 2 halves the log-odds.
    got_t = bad_teacher_loss(student, 2 * competent, 2 * incompetent, tags, temperature=2.0)
    assert float(got_t) == pytest.approx(total / 6, rel=1e-5)
    # A student that copies the selected teachers has zero loss.
    target = torch.stack([incompetent[0], competent[1]])
    assert float(bad_teacher_loss(target, competent, incompetent, tags)) == pytest.approx(
        0, abs=1e-7
    )


# -- Test 3: the retain subset -----------------------------------------------------------------


@pytest.mark.parametrize("n_r", [1, 3, 10, 86, 1000, 1437])
def test_retain_subset_has_floor_of_30_percent(n_r: int) -> None:
    idx = draw_retain_subset(n_r, 0.3, torch.Generator().manual_seed(0))
    assert len(idx) == math.floor(0.3 * n_r) == (3 * n_r) // 10
    assert len(set(idx.tolist())) == len(idx) and all(0 <= i < n_r for i in idx.tolist())


def test_run_uses_floor_of_30_percent_of_the_retain_set(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    out = run_unlearning(model, task, "bad_teacher", {"epochs": 0}, seed=0)
    assert out.info["retain_subset_size"] == (3 * len(task.retain)) // 10 == 25


def test_one_step_matches_the_reference_loss(tiny) -> None:
    # Full batch: one Adam step on L(student, competent, incompetent) over D_f + the subset.
    bundle, model = tiny
    task = tiny_task(bundle)
    n = len(task.forget) + (3 * len(task.retain)) // 10
    cfg = BadTeacherConfig.from_dict({"batch_size": n, "lr": 1e-2})
    work = copy.deepcopy(model)
    ctx = _ctx(work, bundle, task, seed=3)
    bad_teacher(work, DataViews(forget=task.forget, retain=task.retain), cfg, ctx=ctx)
    g = torch.Generator().manual_seed(3)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=g))
    assert ctx.info["incompetent_teacher_seed"] == seed
    sub = torch.randperm(len(task.retain), generator=g)[: (3 * len(task.retain)) // 10]
    x = torch.cat([task.forget.x, task.retain.x[sub]])
    tags = torch.cat([torch.ones(len(task.forget)), torch.zeros(len(sub))]).long()
    incompetent = tiny_factory(bundle)(seed).eval()
    manual = copy.deepcopy(model).train()
    opt = torch.optim.Adam(manual.parameters(), lr=1e-2, weight_decay=0.0)
    with torch.no_grad():
        z_good, z_bad = model(x), incompetent(x)
    bad_teacher_loss(manual(x), z_good, z_bad, tags).backward()
    opt.step()
    for a, b in zip(work.parameters(), manual.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


# -- Test 1: labels are never read --------------------------------------------------------------


def test_runs_unchanged_with_labels_withheld(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    cfg = BadTeacherConfig.from_dict({"lr": 1e-2, "epochs": 2, "batch_size": 16})
    outs = []
    for views in (
        DataViews(forget=task.forget, retain=task.retain),
        DataViews(forget=task.forget.without_labels(), retain=task.retain.without_labels()),
    ):
        work = copy.deepcopy(model)
        outs.append(bad_teacher(work, views, cfg, ctx=_ctx(work, bundle, task, seed=1)))
    assert not _states_equal(outs[0], model)
    assert _states_equal(outs[0], outs[1])


def test_missing_model_factory_is_refused(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    work = copy.deepcopy(model)
    ctx = _ctx(work, bundle, task)
    ctx.model_factory = None
    with pytest.raises(AccessError, match="model factory"):
        bad_teacher(
            work, DataViews(forget=task.forget, retain=task.retain), BadTeacherConfig(), ctx=ctx
        )


# -- behaviour ----------------------------------------------------------------------------------


def test_forgets_the_class_and_keeps_the_rest(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")
    out = run_unlearning(
        model, task, "bad_teacher", {"lr": 1e-2, "epochs": 5, "batch_size": 16}, seed=0
    )
    assert _acc(out.model, task.forget) < 0.3
    assert _acc(out.model, task.retain) > 0.9
