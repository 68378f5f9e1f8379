"""Random Labels / Amnesiac."""

from __future__ import annotations

import pytest
import torch

import unlearnkit as uk
import unlearnkit.methods.random_labels as rl  # noqa: F401  (registers the method)
from unlearnkit.data import DataViews
from unlearnkit.methods.base import RunContext
from unlearnkit.methods.random_labels import random_relabel, train_with_random_labels
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


def _acc(model: torch.nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


# -- Test 1: exclude_true_label never draws the true label ------------------------------------


def test_exclude_true_label_never_gives_the_true_label_in_10000_draws() -> None:
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 10, (10_000,), generator=g)
    labels = random_relabel(10_000, 10, generator=g, true_labels=y, exclude_true_label=True)
    assert labels.shape == (10_000,) and labels.dtype == torch.int64
    assert not bool((labels == y).any())
    # Uniform over the 9 other classes: every other class occurs, none dominates.
    for c in range(10):
        others = labels[y == c]
        counts = torch.bincount(others, minlength=10).float()
        assert counts[c] == 0
        share = counts[torch.arange(10) != c] / len(others)
        assert bool((share > 0.07).all()) and bool((share < 0.16).all())


def test_uniform_rule_without_exclusion_may_give_the_true_label() -> None:
    g = torch.Generator().manual_seed(2)
    y = torch.randint(0, 10, (10_000,), generator=g)
    labels = random_relabel(10_000, 10, generator=g, true_labels=y)
    assert 0.08 < float((labels == y).float().mean()) < 0.12  # about 1/K (SalUn RL)


def test_class_scenario_excludes_every_forgotten_class() -> None:
    g = torch.Generator().manual_seed(3)
    labels = random_relabel(
        10_000, 5, generator=g, exclude_true_label=False, excluded_classes=(0, 2)
    )
    assert set(labels.unique().tolist()) == {1, 3, 4}


def test_retain_image_rule_draws_only_classes_present_in_the_retain_set() -> None:
    g = torch.Generator().manual_seed(4)
    y = torch.randint(0, 4, (10_000,), generator=g)
    present = torch.tensor([True, True, False, True])
    labels = random_relabel(
        10_000, 4, generator=g, true_labels=y, exclude_true_label=True, candidates=present
    )
    assert not bool((labels == y).any())
    assert not bool((labels == 2).any())
    # A class-1 sample can only become 0 or 3, each with probability 1/2.
    share0 = float((labels[y == 1] == 0).float().mean())
    assert 0.45 < share0 < 0.55


def test_a_sample_without_any_allowed_class_is_an_actionable_error() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(uk.ConfigError, match="no class left"):
        random_relabel(
            3,
            2,
            generator=g,
            true_labels=torch.tensor([0, 1, 0]),
            exclude_true_label=True,
            excluded_classes=(1,),
        )
    with pytest.raises(uk.AccessError, match="forget labels"):
        random_relabel(3, 2, generator=g, exclude_true_label=True)


def test_the_method_never_relabels_with_the_forgotten_class(monkeypatch) -> None:
    drawn = _spy_draws(monkeypatch)
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    uk.run_unlearning(
        trained_tiny_model(bundle),
        task,
        "amnesiac",
        {"exclude_true_label": True, "epochs": 4, "batch_size": 32},
        seed=0,
    )
    assert len(drawn) == 4
    for labels in drawn:
        assert not bool(torch.isin(labels, torch.tensor(task.forget_classes)).any())


# -- Test 2: mixed redraws every epoch, fixed_labels draws once -------------------------------


def _spy_draws(monkeypatch) -> list[torch.Tensor]:
    drawn: list[torch.Tensor] = []
    real = rl.random_relabel

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        drawn.append(out.clone())
        return out

    monkeypatch.setattr(rl, "random_relabel", spy)
    return drawn


@pytest.mark.parametrize("schedule", ["mixed", "sequential"])
def test_mixed_and_sequential_draw_new_labels_every_epoch(monkeypatch, schedule: str) -> None:
    drawn = _spy_draws(monkeypatch)
    bundle = tiny_bundle()
    out = uk.run_unlearning(
        trained_tiny_model(bundle),
        tiny_task(bundle),
        "rl",
        {"schedule": schedule, "epochs": 3, "batch_size": 32},
        seed=0,
    )
    assert len(drawn) == 3 and out.info["label_draws"] == 3
    # Three independent draws of 10 labels in 4 classes: all equal with prob 4^-20.
    assert not torch.equal(drawn[0], drawn[1]) or not torch.equal(drawn[1], drawn[2])


def test_fixed_labels_draws_once(monkeypatch) -> None:
    drawn = _spy_draws(monkeypatch)
    bundle = tiny_bundle()
    out = uk.run_unlearning(
        trained_tiny_model(bundle),
        tiny_task(bundle),
        "rl",
        {"schedule": "fixed_labels", "epochs": 3, "batch_size": 32},
        seed=0,
    )
    assert len(drawn) == 1 and out.info["label_draws"] == 1
    assert out.steps == 3 * 3  # 96 samples / 32 -> 3 batches per epoch


class _Recorder(torch.nn.Module):
    """Records every training-mode input batch (to see which samples each update used; the
    front door's eval-mode checks of the model's outputs are not updates)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.inner(x)


def _membership(batch: torch.Tensor, forget_x: torch.Tensor) -> torch.Tensor:
    """True for the rows of ``batch`` that are forget samples."""
    return (batch[:, None] == forget_x[None]).flatten(2).all(-1).any(-1)


def test_sequential_runs_all_forget_batches_then_all_retain_batches() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)  # 10 forget, 86 retain samples
    rec = _Recorder(trained_tiny_model(bundle))
    uk.run_unlearning(
        rec,
        task,
        "rl",
        {"schedule": "sequential", "epochs": 2, "batch_size": 4},
        seed=0,
        inplace=True,
    )
    per_epoch = 3 + 22  # ceil(10 / 4) forget batches, then ceil(86 / 4) retain batches
    assert len(rec.seen) == 2 * per_epoch
    fx = task.forget.x
    for e in range(2):
        batches = rec.seen[e * per_epoch : (e + 1) * per_epoch]
        assert all(bool(_membership(b, fx).all()) for b in batches[:3])
        assert not any(bool(_membership(b, fx).any()) for b in batches[3:])


def test_mixed_shuffles_forget_samples_into_retain_batches() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    rec = _Recorder(trained_tiny_model(bundle))
    cfg = {"epochs": 1, "batch_size": 48, "schedule": "mixed"}
    uk.run_unlearning(rec, task, "rl", cfg, seed=0, inplace=True)
    assert [len(b) for b in rec.seen] == [48, 48]
    fx = task.forget.x
    assert sum(int(_membership(b, fx).sum()) for b in rec.seen) == len(fx)


def test_training_loop_uses_the_drawn_labels() -> None:
    """With lr > 0 on D_f alone the model learns exactly the drawn labels."""
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle)
    cfg = rl.RandomLabelsConfig.from_dict(
        {
            "schedule": "fixed_labels",
            "epochs": 60,
            "batch_size": 10,
            "lr": 0.1,
            "exclude_true_label": True,
        }
    )
    forget = task.forget
    views = DataViews(forget=forget, retain=task.retain.subset([]))
    ctx = RunContext(
        model=model,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(5),
        seed=5,
        num_classes=4,
        input_shape=(1, 6, 6),
        scenario="random",
    )
    expected = random_relabel(
        len(forget),
        4,
        generator=torch.Generator().manual_seed(5),
        true_labels=forget.y,
        exclude_true_label=True,
    )
    train_with_random_labels(model, views, cfg, ctx)
    model.eval()
    with torch.no_grad():
        pred = model(forget.x).argmax(1)
    assert torch.equal(pred, expected)
    assert not bool((pred == forget.y).any())


# -- presets, config, conformance, behaviour ---------------------------------------------------


def test_presets_resolve_to_the_reference_settings() -> None:
    spec = uk.get_method("random_labels")
    ssd = spec.make_config(preset="amnesiac_ssd")
    assert (ssd.optimizer.name, ssd.optimizer.lr, ssd.optimizer.weight_decay) == ("adam", 1e-4, 0)
    assert (ssd.epochs, ssd.batch_size, ssd.schedule) == (3, 128, "fixed_labels")
    assert ssd.exclude_true_label and not ssd.augment
    natmu = spec.make_config(preset="amnesiac_natmu")
    assert natmu.label_rule == "retain_image" and natmu.optimizer.name == "adamw"
    assert natmu.scheduler.name == "cosine" and natmu.epochs == 5
    default = spec.make_config()
    assert default == spec.make_config(preset="salun_rl")
    assert (default.optimizer.lr, default.epochs, default.batch_size) == (0.01, 10, 256)
    # the reference's RL runs CIFAR-10 sequentially and CIFAR-100 mixed (Unlearn-Saliency RL.py)
    assert not default.exclude_true_label and default.schedule == "sequential"
    assert spec.make_config(preset="salun_rl_cifar100").schedule == "mixed"
    assert spec.make_config(preset="digits").schedule == "mixed"  # what its tuning searched
    assert spec.make_config(preset="digits").batch_size == 64
    assert uk.get_method("srl") is spec and uk.get_method("amnesiac") is spec


@pytest.mark.parametrize("bad", [{"schedule": "random"}, {"label_rule": "other"}])
def test_bad_config_values_are_rejected(bad: dict) -> None:
    with pytest.raises(uk.ConfigError):
        rl.RandomLabelsConfig.from_dict(bad)


def test_behaviour_forgets_the_class_while_retain_accuracy_holds() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle)
    assert _acc(model, task.forget) == 1.0
    out = uk.unlearn(model, task, "rl", {"epochs": 5, "batch_size": 16}, seed=0)
    assert _acc(out, task.forget) <= 0.2
    assert _acc(out, task.retain) >= 0.95
    assert _acc(out, task.test) >= 0.9
