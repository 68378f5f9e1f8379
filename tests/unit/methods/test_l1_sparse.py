"""l1-sparse."""

from __future__ import annotations

import pytest
import torch

import unlearnkit as uk
import unlearnkit.methods.l1_sparse  # noqa: F401  (registers the method)
from unlearnkit.api import build_views
from unlearnkit.methods.l1_sparse import L1SparseConfig, l1_norm, l1_schedule
from unlearnkit.testing import TinyBNNet, tiny_bundle, tiny_task, trained_tiny_model


def _acc(model: torch.nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- Test 1: the gamma schedule ----------------------------------------------------------------


@pytest.mark.parametrize("gamma", [1.0, 1e-4, 0.3])
def test_schedule_for_ten_epochs_with_two_penalty_free_epochs(gamma: float) -> None:
    expected = [gamma * k / 8 for k in (8, 7, 6, 5, 4, 3, 2, 1)] + [0.0, 0.0]
    assert l1_schedule(gamma, 10, 2) == expected  # [g, 7g/8, 6g/8, ..., g/8, 0, 0]


def test_schedule_edge_cases() -> None:
    assert l1_schedule(1.0, 4) == [1.0, 0.75, 0.5, 0.25]
    assert l1_schedule(1.0, 3, 3) == [0.0, 0.0, 0.0]
    assert l1_schedule(1.0, 0) == []


def test_the_run_records_and_applies_the_schedule() -> None:
    bundle = tiny_bundle()
    out = uk.run_unlearning(
        trained_tiny_model(bundle),
        tiny_task(bundle),
        "l1",
        {"epochs": 4, "no_l1_epochs": 1, "gamma": 0.3, "batch_size": 32},
        seed=0,
    )
    assert out.info["l1_schedule"] == pytest.approx([0.3, 0.2, 0.1, 0.0], abs=1e-15)


# -- Test 2: gamma = 0 is fine-tuning with the same seed ---------------------------------------


@pytest.mark.parametrize("bn", [False, True])
def test_gamma_zero_equals_finetune_with_the_same_seed(bn: bool) -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle, bn=bn)
    shared = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 3, "batch_size": 16}
    a = uk.unlearn(model, task, "l1_sparse", {**shared, "gamma": 0.0}, seed=11)
    b = uk.unlearn(model, task, "finetune", shared, seed=11)
    assert _same(a, b)
    assert not _same(a, model)
    c = uk.unlearn(model, task, "l1_sparse", {**shared, "gamma": 1e-3}, seed=11)
    assert not _same(c, b)


def test_l1_norm_covers_every_parameter_including_biases_and_batchnorm() -> None:
    model = TinyBNNet()
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.fill_(-(i + 1.0))
    expected = sum((i + 1.0) * p.numel() for i, p in enumerate(model.parameters()))
    names = [n for n, _ in model.named_parameters()]
    assert "body.1.1.weight" in names and "body.1.1.bias" in names  # BN affine
    assert float(l1_norm(model).detach()) == expected
    # Its gradient is sign(theta) on every parameter.
    l1_norm(model).backward()
    assert all(bool((p.grad == -1).all()) for p in model.parameters())


def test_forget_set_is_never_given_to_the_method() -> None:
    spec = uk.get_method("ft_l1")
    assert not spec.access.uses_forget
    views = build_views(spec.access, tiny_task(), spec.name)
    assert views.forget is None and views.retain is not None


@pytest.mark.parametrize(
    "bad", [{"gamma": -1.0}, {"no_l1_epochs": -1}, {"epochs": 3, "no_l1_epochs": 4}]
)
def test_bad_config_values_are_rejected(bad: dict) -> None:
    with pytest.raises(uk.ConfigError):
        L1SparseConfig.from_dict(bad)


def test_defaults_and_presets() -> None:
    spec = uk.get_method("ft_prune")
    cfg = spec.make_config()
    assert (cfg.gamma, cfg.no_l1_epochs, cfg.epochs, cfg.batch_size) == (1e-4, 0, 10, 256)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (
        0.01,
        0.9,
        5e-4,
    )
    assert spec.make_config(preset="digits").batch_size == 64


# -- behaviour (conformance: tests/conformance) -----------------------------------------------


def test_behaviour_sparsifies_while_retain_accuracy_holds() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle)
    cfg = {"epochs": 5, "batch_size": 16}
    ft = uk.unlearn(model, task, "finetune", cfg, seed=0)
    sparse = uk.unlearn(model, task, "l1_sparse", {**cfg, "gamma": 1e-2}, seed=0)
    assert float(l1_norm(sparse).detach()) < 0.95 * float(l1_norm(ft).detach())
    assert _acc(sparse, task.retain) >= 0.95
    assert _acc(sparse, task.test) >= 0.9
