"""Influence Unlearning / WoodFisher: the reference's steps and the library's guards."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
from unlearnkit.data import DataView, DataViews
from unlearnkit.methods.base import RunContext
from unlearnkit.methods.influence import (
    InfluenceConfig,
    _per_sample_gradients,
    influence,
    influence_direction,
    summed_gradient,
    woodfisher_recursion,
)
from unlearnkit.testing import tiny_bundle, tiny_model, tiny_task, trained_tiny_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def task():
    return tiny_task(tiny_bundle())


@pytest.fixture(scope="module")
def model(task):
    return trained_tiny_model(task.bundle)


def _flat_grad(model, x, y) -> torch.Tensor:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]).detach().clone()


def _params(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_recursion_is_the_hand_unrolled_loop():
    """Spec test 2: k and o updated exactly as written, the first gradient only seeds o."""
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(5, dtype=torch.float64, generator=gen)
    gs = torch.randn(4, 5, dtype=torch.float64, generator=gen)
    n = 3
    k, o = v.clone(), gs[0].clone()
    for g in gs[1:]:
        t = o @ g
        k = k - (k @ g) / (n + t) * o
        o = o - t / (n + t) * o
    torch.testing.assert_close(woodfisher_recursion(v, [gs[:2], gs[2:]], n), k)
    torch.testing.assert_close(woodfisher_recursion(v, list(gs), n), k)  # row by row alike
    assert torch.equal(woodfisher_recursion(v, [gs[:1]], n), v)  # one sample: only o is set


def test_direction_scaling_and_invariance_to_duplicated_data():
    """Spec test 3: v = (n_f/n)(mean g_f - mean g_r); duplicating D_f and D_r changes nothing."""
    gen = torch.Generator().manual_seed(1)
    g_f, g_r = torch.randn(7, generator=gen), torch.randn(7, generator=gen)
    v = influence_direction(g_f, g_r, 10, 90)
    torch.testing.assert_close(v, 10 / 100 * (g_f / 10 - g_r / 90))
    torch.testing.assert_close(influence_direction(2 * g_f, 2 * g_r, 20, 180), v)


def test_summed_gradient_is_the_sum_of_per_sample_gradients(task, model):
    view = task.forget
    want = sum(_flat_grad(model, view.x[i : i + 1], view.y[i : i + 1]) for i in range(len(view)))
    for batch in (1, 4, 1000):
        got = summed_gradient(model, view, batch, CPU)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_per_sample_gradients_are_autograd_on_single_samples_in_order(task, model):
    view = task.retain
    blocks = list(_per_sample_gradients(model.eval(), view, 7, 3, CPU))
    assert [b.shape[0] for b in blocks] == [3, 3, 1]
    rows = torch.cat(blocks)
    for i in range(7):
        want = _flat_grad(model, view.x[i : i + 1], view.y[i : i + 1])
        torch.testing.assert_close(rows[i], want, rtol=1e-5, atol=1e-6)


def _run(model, task, **cfg):
    m = uk.unlearn(model, task, "influence", cfg)
    return _params(m) - _params(model)


def test_the_step_is_alpha_times_the_recursion_over_n_plus_2_retain_samples(task):
    """θ_u − θ_o = α·k, k from v and the first N + 2 retain gradients in dataset order (an
    untrained model: its per-sample gradients are large enough for every one to matter)."""
    forget, retain = task.forget, task.retain
    model = tiny_model(task.bundle, seed=0)
    m = model.eval()
    g_f = sum(_flat_grad(m, forget.x[i : i + 1], forget.y[i : i + 1]) for i in range(len(forget)))
    g_r = sum(_flat_grad(m, retain.x[i : i + 1], retain.y[i : i + 1]) for i in range(len(retain)))
    v = influence_direction(g_f, g_r, len(forget), len(retain))
    grads = [_flat_grad(m, retain.x[i : i + 1], retain.y[i : i + 1]) for i in range(5)]
    k = woodfisher_recursion(v, grads, 3)
    delta = _run(model, task, alpha=2.5, n_samples=3)
    torch.testing.assert_close(delta, 2.5 * k, rtol=1e-4, atol=1e-7)
    # A sixth sample would have changed the step: the stop rule is really N + 2 samples.
    longer = woodfisher_recursion(v, [*grads, _flat_grad(m, retain.x[5:6], retain.y[5:6])], 3)
    assert not torch.allclose(2.5 * longer, delta, rtol=1e-4, atol=1e-7)


def test_n_is_capped_at_the_retain_size(task, model):
    """N = min(n_samples, n_r): a huge n_samples gives the same step as n_samples = n_r."""
    n_r = len(task.retain)
    torch.testing.assert_close(
        _run(model, task, alpha=1.0, n_samples=10**6),
        _run(model, task, alpha=1.0, n_samples=n_r),
    )


def test_alpha_zero_is_the_identity_and_the_step_is_linear_in_alpha(task, model):
    """Spec test 1, and the step scales with α."""
    assert torch.equal(_run(model, task, alpha=0.0), torch.zeros_like(_params(model)))
    torch.testing.assert_close(
        _run(model, task, alpha=3.0), 3.0 * _run(model, task, alpha=1.0), rtol=1e-4, atol=1e-7
    )


def test_a_non_finite_step_marks_the_run_diverged_and_keeps_the_model(task, model):
    bad = DataView("forget", task.forget.x * float("inf"), task.forget.y)
    data = DataViews(forget=bad, retain=task.retain)
    m = uk.unlearn(model, task, "finetune", {"epochs": 0})  # a private copy to work on
    ctx = RunContext.for_task(m, task, seed=0)
    before = _params(m)
    influence(m, data, InfluenceConfig(), ctx=ctx)
    assert ctx.diverged and torch.equal(_params(m), before)


def test_bad_config_is_refused():
    with pytest.raises(uk.ConfigError, match="n_samples"):
        InfluenceConfig(n_samples=0)
    with pytest.raises(uk.ConfigError, match="alpha"):
        InfluenceConfig(alpha=float("nan"))


def test_registered_with_its_aliases_and_access():
    spec = uk.get_method("woodfisher")
    assert spec.name == "influence" and uk.get_method("iu") is spec
    assert spec.access.level == "forget_and_retain"
    assert spec.make_config(preset="deepunlearn").alpha == 0.2
