"""Evaluation hygiene of the one forward pass and the model-side parts of
the ZRF teacher."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.metrics.signals import compute_signals
from unlearnkit.metrics.suite import model_signals


def test_dropout_model_in_train_mode_gives_identical_signals_and_mode_is_restored() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 3)).train()
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    a = compute_signals(model, x, y, batch_size=7)
    b = compute_signals(model, x, y, batch_size=7)
    assert np.array_equal(a.logits, b.logits)
    assert model.training


def test_batchnorm_outputs_do_not_depend_on_the_batch_size() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model.train()
    with torch.no_grad():  # give the running statistics non-trivial values
        for _ in range(5):
            model(torch.randn(32, 5) * 3 + 1)
    x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    one = compute_signals(model, x, y, batch_size=1)
    full = compute_signals(model, x, y, batch_size=64)
    np.testing.assert_allclose(one.logits, full.logits, rtol=1e-6, atol=1e-6)


def test_a_failing_forward_still_restores_the_mode() -> None:
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    model = Boom().train()
    try:
        compute_signals(model, torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    except RuntimeError:
        pass
    assert model.training


def test_zrf_teacher_is_identical_across_calls_for_a_fixed_seed() -> None:
    bundle = uk.datasets.load("digits")
    task = uk.forget_task(bundle, "class", classes=[1])
    factory = uk.models.ModelFactory.for_bundle("mlp", bundle, hidden=(32,))
    t1, t2 = model_signals(factory(7), task), model_signals(factory(7), task)
    assert np.array_equal(t1.forget.logits, t2.forget.logits)
    assert t1.forget_test is not None and len(t1.test) + len(t1.forget_test) == len(t1.test_full)
