"""Relearn time and the Anamnesis Index."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.relearn import (
    anamnesis_index,
    forget_accuracy,
    mean_loss,
    relearn_steps_to_accuracy,
    relearn_time,
)
from unlearnkit.models import reinit_
from unlearnkit.testing import TINY_RECIPE, tiny_bundle, tiny_model, tiny_task, trained_tiny_model
from unlearnkit.training import train


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


@pytest.fixture(scope="module")
def task(bundle):
    return tiny_task(bundle)


@pytest.fixture(scope="module")
def original(bundle):
    return trained_tiny_model(bundle)


@pytest.fixture(scope="module")
def retrained(bundle, task):
    return train(tiny_model(bundle, seed=1), task.retain, TINY_RECIPE, seed=1)


@pytest.fixture
def fresh(bundle):
    return lambda seed: tiny_model(bundle, seed=seed)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_the_original_itself_needs_no_relearning(task, original):
    """4.11(b): θ_u = θ_o → relearn steps 0."""
    target = mean_loss(original, task.forget)
    res = relearn_time(original, task.train_full, task.forget, target)
    assert (res.steps, res.censored) == (0, False)


def test_steps_are_the_first_sgd_step_reaching_the_target(task, fresh):
    """The readout replayed by hand: plain SGD, lr 0.01, batches of 500 drawn with
    replacement from D_tr by a generator seeded with ``seed``; the count is the first step
    after which the forget loss is within tol of the target."""
    model = fresh(7)  # untrained: far above the original's forget loss
    x, y = task.train_full.x, task.train_full.y
    clone = fresh(7)
    opt = torch.optim.SGD(clone.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(3)
    losses = []
    for _ in range(30):
        idx = torch.randint(len(x), (500,), generator=gen)
        clone.train()
        loss = F.cross_entropy(clone(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(mean_loss(clone, task.forget))
    assert losses[-1] < losses[0]  # the fine-tune does relearn
    target = losses[19]  # reached after exactly 20 steps (or earlier if the loss dipped)
    want = next(i + 1 for i, v in enumerate(losses) if v <= target + 1e-5)
    res = relearn_time(model, task.train_full, task.forget, target, seed=3, max_steps=30)
    assert (res.steps, res.censored) == (want, False)
    assert want > 1  # a real count: the untrained model needed several steps, not one


def test_a_looser_target_is_reached_no_later(task, fresh):
    model = fresh(5)
    start = mean_loss(model, task.forget)
    steps = [
        relearn_time(model, task.train_full, task.forget, start * f, seed=0, max_steps=60).steps
        for f in (0.99, 0.9, 0.7)
    ]
    assert steps == sorted(steps) and steps[0] >= 1


def test_an_unreachable_target_is_censored_at_the_cap(task, fresh):
    model = fresh(5)
    res = relearn_time(model, task.train_full, task.forget, -1.0, max_steps=7)
    assert (res.steps, res.censored) == (7, True)


def test_the_model_and_the_global_rng_are_untouched(task, fresh):
    model = fresh(5)
    before, state = _params(model), torch.get_rng_state()
    relearn_time(model, task.train_full, task.forget, 0.0, max_steps=5)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert torch.equal(state, torch.get_rng_state())


def test_the_legacy_proximal_pull_slows_relearning(task, fresh):
    """With lr·λ = 1 the pull puts the weights back at the start before every gradient step,
    so the model never gets further than one step from where it began."""
    model = fresh(5)
    target = 0.8 * mean_loss(model, task.forget)
    free = relearn_time(model, task.train_full, task.forget, target, max_steps=80)
    pulled = relearn_time(
        model, task.train_full, task.forget, target, max_steps=80, legacy_proximal=100.0
    )
    assert not free.censored and free.steps >= 2
    assert pulled.censored


def test_ain_of_a_model_against_itself_is_one(task, original, fresh):
    """Same model, same batches: rt(θ_u) = rt(θ_r) > 0 → AIN exactly 1."""
    model = fresh(3)  # untrained: far below the original's forget accuracy
    out = anamnesis_index(model, model, original, task.forget, max_steps=300)
    assert out["ain_rt_r"] > 0 and out["ain_censored_r"] == 0.0
    assert out["ain_rt_u"] == out["ain_rt_r"]
    assert out["ain"] == 1.0


def test_ain_reads_the_original_accuracy_and_is_nan_without_relearning(task, original):
    """The original is at its own accuracy: rt = 0 on both sides → AIN undefined (NaN)."""
    out = anamnesis_index(original, original, original, task.forget, alpha=0.1)
    assert out["ain_target_acc"] == pytest.approx(0.9 * forget_accuracy(original, task.forget))
    assert out["ain_rt_u"] == out["ain_rt_r"] == 0
    assert math.isnan(out["ain"])


def test_ain_counts_steps_to_the_accuracy_target(task, original, fresh):
    """A re-initialised copy relearns D_f from scratch: rt > 0, and the step found really
    is the first at which the forget accuracy reaches the target."""
    model = reinit_(fresh(11), seed=11)
    target = 0.9 * forget_accuracy(original, task.forget)
    res = relearn_steps_to_accuracy(model, task.forget, task.forget, target, max_steps=200)
    assert not res.censored and res.steps >= 1
    again = relearn_steps_to_accuracy(
        model, task.forget, task.forget, target, max_steps=res.steps - 1
    )
    assert again.censored


@pytest.mark.parametrize(
    "kwargs,error",
    [
        ({"lr": 0}, ConfigError),
        ({"batch_size": 0}, ConfigError),
        ({"max_steps": -1}, ConfigError),
        ({"legacy_proximal": -1.0}, ConfigError),
    ],
)
def test_bad_settings(task, fresh, kwargs, error):
    with pytest.raises(error):
        relearn_time(fresh(0), task.train_full, task.forget, 0.1, **kwargs)


def test_unlabelled_or_empty_data(task, fresh):
    model = fresh(0)
    with pytest.raises(DataError, match="labels"):
        relearn_time(model, task.train_full.without_labels(), task.forget, 0.1)
    empty = (task.forget.x[:0], task.forget.y[:0])
    with pytest.raises(DataError, match="empty"):
        mean_loss(model, empty)


# --------------------------------------------------------------------------------------------
# Through uk.evaluate


def test_evaluate_adds_relearn_readouts_on_request(task, original, retrained):
    from unlearnkit import evaluate

    plain = evaluate(original, task, reference=retrained)
    assert not any(k.startswith(("relearn", "ain", "ref_relearn")) for k in plain)
    out = evaluate(original, task, reference=retrained, original=original, relearn=True)
    assert (out["relearn_steps"], out["relearn_censored"]) == (0.0, 0.0)  # 4.11(b)
    want = relearn_time(retrained, task.train_full, task.forget, mean_loss(original, task.forget))
    assert out["ref_relearn_steps"] == want.steps
    assert out["ain_rt_u"] == 0.0  # the original is at its own forget accuracy
    assert {"ain", "ain_rt_r", "ain_target_acc"} <= set(out)
    # The unchanged keys are unchanged.
    for key, value in plain.items():
        assert out[key] == value or (math.isnan(value) and math.isnan(out[key])), key


def test_evaluate_relearn_needs_the_original_and_the_training_set(task, original):
    from unlearnkit import evaluate

    with pytest.raises(ConfigError, match="original="):
        evaluate(original, task, relearn=True)
    with pytest.raises(ConfigError, match="forget-only"):
        evaluate(original, task.forget_only(), original=original, relearn=True)
