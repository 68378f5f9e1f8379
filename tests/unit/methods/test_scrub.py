"""SCRUB and SCRUB+R: losses, schedule, presets and rewinding, checked against the reference."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit.methods.scrub  # noqa: F401
from unlearnkit.api import run_unlearning
from unlearnkit.data import DataView, DataViews
from unlearnkit.errors import AccessError, ConfigError
from unlearnkit.methods import RunContext, get_method
from unlearnkit.methods.base import frozen_copy
from unlearnkit.methods.scrub import (
    ScrubConfig,
    _forget_validation,
    distill_kl,
    scrub,
    scrub_lr,
    select_rewind_checkpoint,
)
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


@pytest.fixture(scope="module")
def tiny():
    bundle = tiny_bundle()
    return bundle, trained_tiny_model(bundle)


def _ctx(model: nn.Module, bundle, task, seed: int = 0, teacher: nn.Module | None = None):
    return RunContext.for_task(
        model, task, seed=seed, original_model=frozen_copy(teacher) if teacher is not None else None
    )


def _acc(model: nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


def _same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# -- registry (conformance: tests/conformance, for every registered method) ---------------


def test_registry_defaults_and_presets() -> None:
    s, r = get_method("scrub"), get_method("scrub_r")
    assert not s.access.forget_labels and s.access.retain_labels and not s.access.needs_val
    assert r.access.needs_val and r.access.forget_labels
    assert not s.make_config().rewind and r.make_config().rewind
    cfg = s.make_config()  # large_scale
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == ("sgd", 5e-4, 5e-4)
    assert (cfg.ce_weight, cfg.kl_weight, cfg.temperature, cfg.msteps, cfg.epochs) == (
        0.99,
        0.001,
        4.0,
        2,
        3,
    )
    assert (cfg.lr_decay_epochs, cfg.batch_size, cfg.forget_batch_size) == ((3, 5, 9), 256, 512)
    assert not cfg.augment_retain
    small = s.make_config(preset="small_scale")
    assert (small.optimizer.name, small.optimizer.weight_decay, small.temperature) == (
        "adam",
        0.1,
        2.0,
    )
    assert (small.batch_size, small.forget_batch_size, small.lr_decay_epochs) == (32, 64, (5, 8, 9))
    digits = s.make_config(preset="digits")
    assert (digits.optimizer.lr, digits.ce_weight, digits.kl_weight, digits.temperature) == (
        5e-3,
        1.0,
        0.5,
        4.0,
    )
    assert (digits.msteps, digits.epochs, digits.lr_decay_epochs) == (2, 5, ())
    assert (digits.batch_size, digits.forget_batch_size) == (64, 32)
    assert s.make_config(preset="vgg").lr_decay_epochs == (3, 6, 9)
    for bad in (
        {"temperature": 0},
        {"kl_weight": -1},
        {"msteps": -1},
        {"forget_batch_size": 0},
        {"scheduler": {"name": "cosine"}},
    ):
        with pytest.raises(ConfigError):
            ScrubConfig.from_dict(bad)


# -- Test 1: the distillation loss --------------------------------------------------------------


@pytest.mark.parametrize("t", [1.0, 4.0])
def test_distill_kl_matches_a_hand_computation(t: float) -> None:
    zs = [[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]
    zt = [[0.0, 1.0, 3.0], [1.0, 1.0, -2.0]]

    def softmax(z):
        e = [math.exp(v / t) for v in z]
        return [v / sum(e) for v in e]

    kls = []
    for s_row, t_row in zip(zs, zt):
        q, s = softmax(t_row), softmax(s_row)
        kls.append(sum(qi * (math.log(qi) - math.log(si)) for qi, si in zip(q, s)))
    expected = t * t * sum(kls) / 2
    got = distill_kl(torch.tensor(zs), torch.tensor(zt), t)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(distill_kl(torch.tensor(zt), torch.tensor(zt), t)) == pytest.approx(0, abs=1e-7)


def test_lr_decay_schedule() -> None:
    lrs = [scrub_lr(1.0, e, (3, 5, 9), 0.1) for e in range(1, 11)]
    assert lrs == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.001])
    assert scrub_lr(0.5, 7, (), 0.1) == 0.5


# -- Test 2: degenerate SCRUB equals fine-tuning -----------------------------------------------


def test_no_max_steps_no_kl_equals_finetune(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    common = {"lr": 0.05, "epochs": 1, "batch_size": 16}
    ft = run_unlearning(model, task, "finetune", common, seed=4)
    sc = run_unlearning(
        model, task, "scrub", {**common, "msteps": 0, "kl_weight": 0.0, "ce_weight": 1.0}, seed=4
    )
    assert sc.steps == ft.steps > 1
    assert _same(sc.model, ft.model)
    assert not _same(sc.model, model)


def test_one_epoch_is_a_max_step_then_a_min_step_with_one_optimizer(tiny) -> None:
    # Full-batch loaders: one max step on D_f, then one min step on D_r, sharing SGD momentum.
    bundle, model = tiny
    task = tiny_task(bundle)
    cfg = ScrubConfig.from_dict(
        {
            "lr": 0.05,
            "epochs": 1,
            "msteps": 1,
            "kl_weight": 0.5,
            "ce_weight": 0.7,
            "temperature": 2.0,
            "batch_size": len(task.retain),
            "forget_batch_size": len(task.forget),
        }
    )
    work = copy.deepcopy(model)
    ctx = _ctx(work, bundle, task)
    scrub(work, DataViews(forget=task.forget, retain=task.retain), cfg, ctx=ctx)
    manual = copy.deepcopy(model)
    teacher = ctx.original_model
    opt = torch.optim.SGD(manual.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    manual.train()
    xf, xr, yr = task.forget.x, task.retain.x, task.retain.y
    for loss_fn in (
        lambda: -distill_kl(manual(xf), teacher(xf), 2.0),
        lambda: (
            0.7 * F.cross_entropy(manual(xr), yr) + 0.5 * distill_kl(manual(xr), teacher(xr), 2.0)
        ),
    ):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert ctx.steps == 2
    for a, b in zip(work.parameters(), manual.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


# -- Test 3: a max step moves away from the teacher --------------------------------------------


def test_max_step_increases_the_kl_on_the_forget_batch(tiny) -> None:
    bundle, teacher = tiny
    task = tiny_task(bundle)
    student = copy.deepcopy(teacher)
    with torch.no_grad():  # start off the teacher: at equality the KL gradient vanishes
        for p in student.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    xf = task.forget.x
    with torch.no_grad():
        before = float(distill_kl(student(xf), teacher(xf), 4.0))
    cfg = ScrubConfig.from_dict(
        {
            "lr": 0.01,
            "momentum": 0.0,
            "weight_decay": 0.0,
            "msteps": 1,
            "max_steps": 1,
            "forget_batch_size": len(task.forget),
        }
    )
    ctx = _ctx(student, bundle, task, teacher=teacher)
    ctx.max_steps = 1
    scrub(student, DataViews(forget=task.forget, retain=task.retain), cfg, ctx=ctx)
    assert ctx.steps == 1
    with torch.no_grad():
        after = float(distill_kl(student(xf), teacher(xf), 4.0))
    assert after > before > 0


# -- Test 4: SCRUB+R rewinding ------------------------------------------------------------------


def test_rewind_selection_on_a_scripted_trace() -> None:
    assert select_rewind_checkpoint([0.0, 0.05, 0.12, 0.30], 0.10) == 2
    assert select_rewind_checkpoint([0.0, 0.05, 0.12, 0.30], 0.29) == 3
    # c_0 is never chosen when a later checkpoint exists (the VGG notebook) ...
    assert select_rewind_checkpoint([0.10, 0.50, 0.90], 0.10) == 1
    assert select_rewind_checkpoint([0.10, 0.50, 0.90], 0.10, skip_initial=False) == 0
    # ... unless it is the only one (zero epochs); ties go to the earliest checkpoint.
    assert select_rewind_checkpoint([0.3], 0.0) == 0
    assert select_rewind_checkpoint([0.0, 0.2, 0.4, 0.2], 0.3) == 1
    with pytest.raises(ValueError):
        select_rewind_checkpoint([], 0.1)


def test_scrub_r_returns_the_aligned_epoch_checkpoint(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    cfg = {
        "lr": 0.05,
        "epochs": 4,
        "msteps": 4,
        "kl_weight": 0.5,
        "ce_weight": 1.0,
        "batch_size": 16,
        "forget_batch_size": 8,
        "lr_decay_epochs": [2],
    }
    out = run_unlearning(model, task, "scrub_r", cfg, seed=2)
    errors, idx = out.info["rewind_forget_errors"], out.info["rewind_selected"]
    assert len(errors) == 5 and errors[0] == pytest.approx(1 - _acc(model, task.forget))
    assert idx == select_rewind_checkpoint(errors, out.info["rewind_val_error"])
    assert 1 <= idx < 4  # here an earlier checkpoint than the final model
    # c_idx is the model after idx epochs: plain SCRUB run for idx epochs (same batches).
    plain = run_unlearning(model, task, "scrub", {**cfg, "epochs": idx}, seed=2)
    assert _same(out.model, plain.model)
    assert errors[idx] == pytest.approx(1 - _acc(plain.model, task.forget))
    final = run_unlearning(model, task, "scrub", cfg, seed=2).model
    assert not _same(out.model, final)
    assert errors[-1] == pytest.approx(1 - _acc(final, task.forget))


def test_forget_validation_is_val_restricted_to_the_forgotten_classes(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")
    views = DataViews(forget=task.forget, retain=task.retain, val=task.val)
    fv = _forget_validation(views, _ctx(copy.deepcopy(model), bundle, task))
    assert len(fv) == int((bundle.val.y == 0).sum()) > 0 and bool((fv.y == 0).all())
    rnd = tiny_task(bundle)
    views = DataViews(forget=rnd.forget, retain=rnd.retain, val=rnd.val)
    assert len(_forget_validation(views, _ctx(copy.deepcopy(model), bundle, rnd))) == len(
        bundle.val.y
    )


def test_rewind_without_validation_access_is_refused(tiny) -> None:
    bundle, model = tiny
    with pytest.raises(AccessError, match="scrub_r"):
        run_unlearning(model, tiny_task(bundle), "scrub", {"rewind": True}, seed=0)


# -- behaviour ----------------------------------------------------------------------------------


def test_scrub_forgets_the_class_and_keeps_the_rest(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")
    cfg = {
        "lr": 0.05,
        "epochs": 5,
        "msteps": 3,
        "kl_weight": 0.5,
        "ce_weight": 1.0,
        "batch_size": 16,
        "forget_batch_size": 8,
        "lr_decay_epochs": [],
    }
    out = run_unlearning(model, task, "scrub", cfg, seed=0)
    assert _acc(out.model, task.forget) < 0.2
    assert _acc(out.model, task.retain) > 0.9


# -- presets: the loaders the reference notebooks train with --------------------------------------


@pytest.mark.parametrize(
    ("preset", "retain_bs", "forget_bs"),
    [
        # meghdadk/SCRUB @98ffb11: the batch sizes of the forget/retain loaders that each
        # notebook passes to train_distill (not the unused sgda_batch_size/del_batch_size).
        ("large_scale", 256, 512),  # large_scale_unlearning.ipynb
        ("small_scale", 32, 64),  # small_scale_unlearning.ipynb
        ("mia", 32, 16),  # MIA_experiments.ipynb
        ("vgg", 128, 16),  # VGG_experiments.ipynb
        ("resnet50_cifar100", 128, 64),  # resnet50_cifar100.ipynb
        ("jit_repo", 128, 128),  # jwf40/Zeroshot-Unlearning-At-Scale @f7e3f20
        ("digits", 64, 32),  # library preset, unchanged
    ],
)
def test_preset_batch_sizes_are_the_reference_loaders(
    preset: str, retain_bs: int, forget_bs: int
) -> None:
    for method in ("scrub", "scrub_r"):
        cfg = get_method(method).make_config(preset=preset)
        assert (cfg.batch_size, cfg.forget_batch_size) == (retain_bs, forget_bs)
        assert not cfg.augment_retain  # every reference loads without augmentation


def test_ascent_steps_per_epoch_follow_the_forget_batch_size(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")
    n_f, n_r = len(task.forget), len(task.retain)
    assert (n_f, n_r) == (24, 72)
    # The mia preset: forget batches of 16 (2 ascent steps per epoch here, where the former
    # 32 gave 1) and retain batches of 32 (3 descent steps); msteps=2 of 3 epochs ascend.
    out = run_unlearning(model, task, "scrub", {"epochs": 3, "msteps": 2}, preset="mia", seed=0)
    assert out.info["max_steps_taken"] == 2 * math.ceil(n_f / 16) == 4
    assert out.info["min_steps_taken"] == 3 * math.ceil(n_r / 32) == 9
    assert out.steps == 13
    out = run_unlearning(
        model, task, "scrub", {"epochs": 1, "msteps": 1, "forget_batch_size": 5}, seed=0
    )
    assert out.info["max_steps_taken"] == math.ceil(n_f / 5) == 5
    assert out.info["min_steps_taken"] == 1  # the default retain batch (256) holds all of D_r


def test_no_augmentation_by_default(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    calls = {"forget": 0, "retain": 0}

    def shifting(name):
        def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
            calls[name] += 1
            return x + 10.0  # would change every input

        return augment

    def views(augmented: bool) -> DataViews:
        return DataViews(
            forget=DataView("forget", task.forget.x, None, augment=shifting("forget"))
            if augmented
            else DataView("forget", task.forget.x, None),
            retain=DataView("retain", task.retain.x, task.retain.y, augment=shifting("retain"))
            if augmented
            else DataView("retain", task.retain.x, task.retain.y),
        )

    base = {"lr": 0.05, "epochs": 2, "batch_size": 16, "forget_batch_size": 4}
    results = []
    for augmented in (True, False):
        work = copy.deepcopy(model)
        ctx = _ctx(work, bundle, task, seed=3, teacher=model)
        scrub(work, views(augmented), ScrubConfig.from_dict(base), ctx=ctx)
        results.append(work)
    assert calls == {"forget": 0, "retain": 0}
    assert _same(results[0], results[1])  # the augmentable views went through unchanged
    assert not _same(results[0], model)
    # The switch still turns it on, for both loaders.
    work = copy.deepcopy(model)
    ctx = _ctx(work, bundle, task, seed=3, teacher=model)
    scrub(work, views(True), ScrubConfig.from_dict({**base, "augment_retain": True}), ctx=ctx)
    assert calls == {"forget": 2 * 3, "retain": 2 * 6}


# -- one epoch against the reference train_distill ---------------------------------------------


def _golden_linear() -> nn.Linear:
    m = nn.Linear(4, 3)
    with torch.no_grad():
        m.weight.copy_(
            torch.tensor([[0.3, -0.2, 0.1, 0.05], [-0.1, 0.25, -0.3, 0.2], [0.15, 0.1, 0.2, -0.25]])
        )
        m.bias.copy_(torch.tensor([0.05, -0.05, 0.1]))
    return m


def test_one_max_and_one_min_step_match_the_reference_numbers() -> None:
    # Golden values: meghdadk/SCRUB, commit 98ffb1196ffbec2665092598c13ad3b6ec3d095d,
    # thirdparty/repdistiller/helper/loops.py::train_distill ("maximize" on the forget loader,
    # then "minimize" on the retain loader, one full batch each, distill="kd", gamma=0.7,
    # alpha=0.5, beta=0) with distiller_zoo/KD.py::DistillKL(T=2) and one
    # SGD(lr=0.1, momentum=0.9, weight_decay=5e-4), run on CPU on exactly these tensors.
    teacher, student = _golden_linear(), _golden_linear()
    with torch.no_grad():
        student.weight.add_(
            torch.tensor(
                [[0.02, 0.0, -0.01, 0.03], [0.0, -0.02, 0.01, 0.0], [0.01, 0.02, 0.0, -0.03]]
            )
        )
    xf = torch.tensor([[1.0, -0.5, 0.25, 2.0], [0.5, 1.5, -1.0, 0.0], [-1.0, 0.5, 0.75, 1.0]])
    xr = torch.tensor(
        [
            [0.2, 0.4, -0.6, 0.8],
            [-0.3, -1.2, 0.9, 0.1],
            [1.1, 0.0, -0.4, -0.7],
            [0.6, -0.8, 1.3, 0.5],
            [-0.9, 0.7, 0.2, -1.1],
        ]
    )
    yr = torch.tensor([2, 0, 1, 1, 0])
    cfg = ScrubConfig.from_dict(
        {
            "lr": 0.1,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "ce_weight": 0.7,
            "kl_weight": 0.5,
            "temperature": 2.0,
            "epochs": 1,
            "msteps": 1,
            "batch_size": 5,
            "forget_batch_size": 3,
        }
    )
    ctx = RunContext(
        model=student,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        seed=0,
        num_classes=3,
        input_shape=(4,),
        scenario="random",
        original_model=frozen_copy(teacher),
    )
    views = DataViews(forget=DataView("forget", xf, None), retain=DataView("retain", xr, yr))
    scrub(student, views, cfg, ctx=ctx)
    assert ctx.info["max_loss_last"] == pytest.approx(-0.0007429122924804688, rel=1e-4)
    assert ctx.info["min_loss_last"] == pytest.approx(0.9885556101799011, rel=1e-6)
    expected_w = [
        [0.29821881651878357, -0.1978309154510498, 0.09519203752279282, 0.06822916865348816],
        [-0.07835155725479126, 0.21729660034179688, -0.27780598402023315, 0.1976826936006546],
        [0.16007769107818604, 0.1305125653743744, 0.18261393904685974, -0.26591184735298157],
    ]
    expected_b = [0.054392553865909576, -0.041444480419158936, 0.08703741431236267]
    assert torch.allclose(student.weight.detach(), torch.tensor(expected_w), atol=1e-6)
    assert torch.allclose(student.bias.detach(), torch.tensor(expected_b), atol=1e-6)
