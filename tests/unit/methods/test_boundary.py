"""Boundary Shrink and Boundary Expanding."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit.methods.boundary_expanding  # noqa: F401
import unlearnkit.methods.boundary_shrink  # noqa: F401
from unlearnkit.api import run_unlearning
from unlearnkit.data import DataViews
from unlearnkit.datasets import Normalization, from_arrays
from unlearnkit.errors import ConfigError
from unlearnkit.methods import RunContext, get_method
from unlearnkit.methods.boundary_expanding import (
    BoundaryExpandingConfig,
    boundary_expanding,
    widen_head,
)
from unlearnkit.methods.boundary_shrink import BoundaryShrinkConfig, fgsm_neighbours
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model

NORM = Normalization(raw_range=(0.0, 16.0), mean=(0.5,), std=(0.25,), quantized=True)


def _pixel_bundle():
    """The tiny bundle mapped to quantized 0..16 pixels with a per-channel normalisation."""
    b = tiny_bundle()

    def conv(x: torch.Tensor) -> torch.Tensor:
        return NORM.to_model(torch.round(8 + 2 * x).clamp(0, 16))

    return from_arrays(
        conv(b.train.x),
        b.train.y,
        conv(b.test.x),
        b.test.y,
        x_val=conv(b.val.x),
        y_val=b.val.y,
        normalization=NORM,
        name="pixel_tiny",
    )


@pytest.fixture(scope="module")
def pixel():
    bundle = _pixel_bundle()
    return bundle, trained_tiny_model(bundle)


@pytest.fixture(scope="module")
def tiny():
    bundle = tiny_bundle()
    return bundle, trained_tiny_model(bundle)


def _ctx(model: nn.Module, bundle, task, seed: int = 0) -> RunContext:
    return RunContext.for_task(model, task, seed=seed)


def _acc(model: nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


# -- registry (conformance: tests/conformance) ------------------------------------------------


def test_registry_names_access_and_presets() -> None:
    bs, be = get_method("bs"), get_method("be")
    assert (bs.name, be.name) == ("boundary_shrink", "boundary_expanding")
    assert bs.access.level == be.access.level == "forget_only"
    assert bs.access.forget_labels and not be.access.forget_labels
    cfg = bs.make_config()
    assert (cfg.bound, cfg.optimizer.lr, cfg.optimizer.momentum, cfg.epochs) == (0.1, 1e-5, 0.9, 10)
    digits = bs.make_config(preset="digits")
    assert (digits.bound, digits.optimizer.lr, digits.epochs, digits.batch_size) == (
        0.1,
        1e-3,
        10,
        64,
    )
    assert be.make_config(preset="digits").optimizer.lr == 1e-3
    assert be.make_config().shadow_init == "xavier"
    with pytest.raises(ConfigError, match="pixel_grid"):
        BoundaryShrinkConfig(pixel_grid="1/256")
    with pytest.raises(ConfigError, match="bound"):
        BoundaryShrinkConfig(bound=-0.1)
    with pytest.raises(ConfigError, match="shadow_init"):
        BoundaryExpandingConfig(shadow_init="zeros")


# -- Boundary Shrink: the attack --------------------------------------------------------------


def _identity_teacher() -> nn.Module:
    lin = nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(2))
        lin.bias.zero_()
    return lin.eval()


def test_fgsm_known_answer_in_pixel_space() -> None:
    # logits = x, label 0: the CE gradient has sign (-, +), so the pixels move by (-eps, +eps).
    norm = Normalization(raw_range=(0.0, 16.0), mean=(0.5, 0.5), std=(0.25, 0.25), quantized=True)
    raw = torch.tensor([[8.0, 7.0], [16.0, 0.0]])
    x = norm.to_model(raw)
    y = torch.tensor([0, 1])
    teacher = _identity_teacher()
    x_adv, y_nbr = fgsm_neighbours(teacher, x, y, 0.1, norm, "auto")
    # sample 0: (0.5, 0.4375) -> (0.4, 0.5375) -> raw grid (6, 9); sample 1 clips to (1, 0).
    expected_raw = torch.tensor([[6.0, 9.0], [16.0, 0.0]])
    assert torch.allclose(x_adv, norm.to_model(expected_raw), atol=1e-6)
    assert torch.equal(norm.to_raw(x_adv), expected_raw)
    assert y_nbr.tolist() == [1, 0]
    x255, _ = fgsm_neighbours(teacher, x, y, 0.1, norm, "1/255")
    unit = torch.tensor([[round(0.4 * 255) / 255, round(0.5375 * 255) / 255], [1.0, 0.0]])
    assert torch.allclose(x255, norm.to_model(unit * 16), atol=1e-6)
    x_none, _ = fgsm_neighbours(teacher, x, y, 0.1, norm, "none")
    assert torch.allclose(
        x_none, norm.to_model(torch.tensor([[0.4, 0.5375], [1.0, 0.0]]) * 16), atol=1e-6
    )


def test_fgsm_without_normalization_steps_in_model_units_unclipped() -> None:
    x = torch.tensor([[2.0, 3.0]])
    x_adv, y_nbr = fgsm_neighbours(_identity_teacher(), x, torch.tensor([0]), 0.1, None)
    assert torch.allclose(x_adv, torch.tensor([[1.9, 3.1]]))
    assert y_nbr.tolist() == [1]


@pytest.mark.parametrize("use_norm", [True, False])
def test_zero_bound_gives_the_original_prediction(pixel, tiny, use_norm: bool) -> None:
    # Test 1 of 2.8: with eps = 0, y_nbr equals argmax f_o(x).
    bundle, model = pixel if use_norm else tiny
    model = copy.deepcopy(model).eval()
    x, y = bundle.train.x, bundle.train.y
    _, y_nbr = fgsm_neighbours(model, x, y, 0.0, bundle.normalization, "auto")
    with torch.no_grad():
        assert torch.equal(y_nbr, model(x).argmax(1))


def test_shrink_updates_on_clean_inputs_with_neighbour_labels(pixel) -> None:
    # One SGD step of CE(f(x_f), y_nbr) on the clean forget batch, reproduced by hand.
    bundle, model = pixel
    task = tiny_task(bundle, "class")
    cfg = get_method("bs").make_config(
        {"epochs": 1, "batch_size": len(task.forget), "bound": 0.3, "lr": 0.05}
    )
    work = copy.deepcopy(model)
    ctx = _ctx(work, bundle, task)
    boundary_shrink = get_method("bs").fn
    boundary_shrink(work, DataViews(forget=task.forget), cfg, ctx=ctx)
    manual = copy.deepcopy(model)
    x, y = task.forget.x, task.forget.y
    _, y_nbr = fgsm_neighbours(ctx.original_model, x, y, 0.3, NORM, "auto")
    opt = torch.optim.SGD(manual.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    manual.train()
    F.cross_entropy(manual(x), y_nbr).backward()
    opt.step()
    for (n, a), b in zip(work.named_parameters(), manual.parameters()):
        assert torch.allclose(a, b, atol=1e-6), n
    assert ctx.info["attack_success_rate"] == pytest.approx(float((y_nbr != y).float().mean()))
    assert ctx.info["attack_space"] == "pixel"


def test_shrink_never_reads_the_retain_set(pixel) -> None:
    # Test 3 of 2.8: a task without any retain data gives the same model.
    bundle, model = pixel
    task = tiny_task(bundle, "class")
    cfg = {"lr": 0.02, "bound": 0.3, "epochs": 2, "batch_size": 16}
    full = run_unlearning(model, task, "boundary_shrink", cfg, seed=1)
    alone = run_unlearning(model, task.forget_only(), "boundary_shrink", cfg, seed=1)
    for a, b in zip(full.model.state_dict().values(), alone.model.state_dict().values()):
        assert torch.equal(a, b)


def test_shrink_forgets_the_class_and_keeps_the_rest(pixel) -> None:
    bundle, model = pixel
    task = tiny_task(bundle, "class")
    assert _acc(model, task.forget) == 1.0
    out = run_unlearning(
        model, task, "boundary_shrink", {"lr": 0.02, "bound": 0.3, "batch_size": 16}, seed=0
    )
    assert out.info["attack_success_rate"] > 0.5
    assert _acc(out.model, task.forget) < 0.3
    assert _acc(out.model, task.retain) > 0.9


# -- Boundary Expanding -------------------------------------------------------------------------


def test_widen_head_copies_rows_and_initialises_the_shadow_row() -> None:
    head = nn.Linear(5, 3)
    for init in ("xavier", "default"):
        wide = widen_head(head, torch.Generator().manual_seed(0), init)
        assert (wide.in_features, wide.out_features) == (5, 4)
        assert torch.equal(wide.weight[:3], head.weight)
        assert torch.equal(wide.bias[:3], head.bias)
        again = widen_head(head, torch.Generator().manual_seed(0), init)
        assert torch.equal(wide.weight, again.weight)  # drawn from the generator
    xavier = widen_head(head, torch.Generator().manual_seed(0), "xavier")
    assert float(xavier.bias[3].detach()) == 0.0
    ref = torch.empty(4, 5)
    nn.init.xavier_normal_(ref, generator=torch.Generator().manual_seed(0))
    assert torch.equal(xavier.weight[3], ref[3])


def test_expanding_matches_a_hand_widened_training_step(tiny) -> None:
    # Test 2 of 2.8: a K-way model whose head rows differ from theta_o only through training
    # (one SGD step on the widened model, reproduced by hand) and whose features moved.
    bundle, model = tiny
    task = tiny_task(bundle, "class")
    work = copy.deepcopy(model)
    head_obj = work.head
    ctx = _ctx(work, bundle, task, seed=5)
    cfg = get_method("be").make_config({"epochs": 1, "batch_size": len(task.forget), "lr": 0.1})
    out = boundary_expanding(work, DataViews(forget=task.forget.without_labels()), cfg, ctx=ctx)
    assert out.head is head_obj and out.head.out_features == bundle.num_classes
    manual = copy.deepcopy(model)
    manual.head = widen_head(model.head, torch.Generator().manual_seed(5), "xavier")
    opt = torch.optim.SGD(manual.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    manual.train()
    target = torch.full((len(task.forget),), bundle.num_classes)
    F.cross_entropy(manual(task.forget.x), target).backward()
    opt.step()
    k = bundle.num_classes
    assert torch.allclose(out.head.weight, manual.head.weight[:k], atol=1e-6)
    assert torch.allclose(out.head.bias, manual.head.bias[:k], atol=1e-6)
    for a, b in zip(out.features.parameters(), manual.features.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(out.features.parameters(), model.features.parameters())
    ), "the feature extractor was not updated"


def test_expanding_with_zero_lr_returns_theta_o(tiny) -> None:
    bundle, model = tiny
    out = run_unlearning(model, tiny_task(bundle), "boundary_expanding", {"lr": 0.0}, seed=0)
    for a, b in zip(out.model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_expanding_without_a_linear_head_raises(tiny) -> None:
    bundle, _ = tiny
    model = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (4, 9)), nn.Flatten(1))
    task = tiny_task(bundle)
    ctx = _ctx(model, bundle, task)
    with pytest.raises(ConfigError, match=r"nn\.Linear"):
        boundary_expanding(model, DataViews(forget=task.forget), BoundaryExpandingConfig(), ctx=ctx)


def test_expanding_restores_the_head_after_a_failure(tiny) -> None:
    bundle, model = tiny
    work = copy.deepcopy(model)
    head = work.head
    task = tiny_task(bundle)
    ctx = _ctx(work, bundle, task)

    class Boom(RuntimeError):
        pass

    def fail(*_args):
        raise Boom

    work.features.register_forward_hook(fail)
    with pytest.raises(Boom):
        boundary_expanding(work, DataViews(forget=task.forget), BoundaryExpandingConfig(), ctx=ctx)
    assert work.head is head and head.out_features == bundle.num_classes
    assert torch.equal(head.weight, model.head.weight)


def test_expanding_forgets_the_class_and_keeps_the_rest(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")
    out = run_unlearning(model, task, "boundary_expanding", {"lr": 0.05, "batch_size": 16}, seed=0)
    assert _acc(out.model, task.forget) < 0.2
    assert _acc(out.model, task.retain) > 0.9
