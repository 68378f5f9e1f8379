"""Known-answer and behaviour tests of JiT."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import unlearnkit.methods.jit as jit_module  # noqa: F401  (registers "jit")
from unlearnkit.api import build_views, run_unlearning
from unlearnkit.data import DataView, DataViews
from unlearnkit.datasets import Normalization
from unlearnkit.errors import ConfigError
from unlearnkit.methods import RunContext, get_method
from unlearnkit.methods.jit import (
    JiTConfig,
    lipschitz_loss,
    lipschitz_terms,
    sample_noise,
)
from unlearnkit.tasks import ForgetTask
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


def _ctx(
    model: nn.Module,
    *,
    seed: int = 0,
    normalization: Normalization | None = None,
    in_features: int = 4,
    num_classes: int = 3,
) -> RunContext:
    return RunContext(
        model=model,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
        seed=seed,
        num_classes=num_classes,
        input_shape=(in_features,),
        scenario="random",
        normalization=normalization,
    )


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def _accuracy(model: nn.Module, view: DataView) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


class _RetainTrap(DataViews):
    """Data views whose ``retain`` attribute raises on any access."""

    def __init__(self, forget: DataView) -> None:
        self.__dict__.update(forget=forget, val=None, train_full=None)

    @property
    def retain(self):  # noqa: D401
        raise AssertionError("JiT read data.retain")


# ---------------------------------------------------------------------------------------------
# Registration and config


def test_registration_access_and_presets() -> None:
    spec = get_method("jit")
    assert get_method("lipschitz") is spec and get_method("jit_lipschitz") is spec
    assert spec.access.level == "forget_only"
    assert spec.access.forget_labels is False and spec.access.uses_retain is False
    assert spec.access.needs_val is False
    cfg = spec.make_config()
    assert (cfg.sigma, cfg.lr, cfg.n_samples, cfg.batch_size, cfg.epochs, cfg.shuffle) == (
        0.5,
        3e-4,
        25,
        128,
        1,
        False,
    )
    assert spec.make_config(scenario="subclass").batch_size == 64
    digits = spec.make_config(preset="digits")
    assert (
        digits.mode,
        digits.batch_size,
        digits.sigma,
        digits.lr,
        digits.n_samples,
        digits.epochs,
    ) == ("original", 128, 0.1, 1e-3, 25, 1)
    vit = spec.make_config(preset="vit_fullclass")
    assert (vit.sigma, vit.lr, vit.batch_size) == (0.8, 1.5, 128)
    assert spec.make_config(preset="vgg_subclass").batch_size == 64
    assert set(spec.search_space) == {"sigma", "lr", "n_samples", "mode"}


def test_mode_sets_option_defaults_and_explicit_options_override() -> None:
    orig = JiTConfig()
    assert (
        orig.reduction,
        orig.clamp,
        orig.model_mode,
        orig.zero_grad_each_batch,
        orig.denominator,
    ) == ("sum", "batch_minmax", "train", False, "perturbed_diff")
    rob = JiTConfig(mode="robust")
    assert (
        rob.reduction,
        rob.clamp,
        rob.model_mode,
        rob.zero_grad_each_batch,
        rob.denominator,
    ) == ("mean", "pixel_range", "eval", True, "perturbed_diff")
    mixed = JiTConfig.from_dict({"mode": "robust", "clamp": "none", "reduction": "sum"})
    assert (mixed.clamp, mixed.reduction, mixed.model_mode) == ("none", "sum", "eval")
    assert mixed.explicit_options == {"clamp", "reduction"}
    # replace re-derives the non-explicit options from the new mode, keeps the explicit ones.
    back = mixed.replace(mode="original")
    assert (back.clamp, back.reduction, back.model_mode, back.zero_grad_each_batch) == (
        "none",
        "sum",
        "train",
        False,
    )
    assert JiTConfig().replace(mode="robust").clamp == "pixel_range"
    # The stored record round-trips.
    assert JiTConfig.from_dict(mixed.to_dict()) == mixed


def test_plain_sgd_is_recorded_and_other_optimizers_are_rejected() -> None:
    cfg = JiTConfig.from_dict({"lr": 0.05})
    assert (
        cfg.optimizer.name,
        cfg.optimizer.lr,
        cfg.optimizer.momentum,
        cfg.optimizer.weight_decay,
    ) == ("sgd", 0.05, 0.0, 0.0)
    assert cfg.replace(lr=0.2).optimizer.lr == 0.2
    for bad in (
        {"momentum": 0.9},
        {"weight_decay": 5e-4},
        {"optimizer.name": "adam"},
        {"scheduler.name": "cosine"},
    ):
        with pytest.raises(ConfigError):
            JiTConfig.from_dict(bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"sigma": 0.0},
        {"sigma": -1.0},
        {"lr": -1.0},
        {"n_samples": 0},
        {"mode": "fast"},
        {"reduction": "max"},
        {"clamp": "unit"},
        {"model_mode": "test"},
        {"denominator": "x"},
    ],
)
def test_bad_values_raise_config_error(bad: dict) -> None:
    with pytest.raises(ConfigError):
        JiTConfig.from_dict(bad)


# ---------------------------------------------------------------------------------------------
# Unit test 1: retain isolation


def test_1_retain_isolation_direct_call() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    before = _state(model)
    data = _RetainTrap(DataView("forget", torch.randn(10, 4), None))
    with pytest.raises(AssertionError):
        _ = data.retain
    cfg = JiTConfig(lr=0.05, n_samples=3, batch_size=4)
    out = get_method("jit").fn(model, data, cfg, ctx=_ctx(model))
    assert _changed(before, _state(out))


def test_1_retain_isolation_front_door(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle)
    spec = get_method("jit")
    views = build_views(spec.access, task.forget_only(), "jit")
    assert views.retain is None and views.train_full is None and views.val is None
    assert views.forget.y is None  # label-free forget view
    out = run_unlearning(model, task.forget_only(), "jit", {"lr": 0.01}, seed=0)
    assert out.access == "forget_only" and out.steps == 1
    assert _changed(_state(model), _state(out.model))

    # Even on a task that has a retain set, the front door never reads it for JiT.
    def _boom(self):
        raise AssertionError("the retain set was read")

    monkeypatch.setattr(ForgetTask, "retain", property(_boom))
    monkeypatch.setattr(ForgetTask, "train_full", property(_boom))
    full = run_unlearning(model, task, "jit", {"lr": 0.01}, seed=0)
    assert all(
        torch.equal(a, b) for a, b in zip(_state(full.model).values(), _state(out.model).values())
    )


# ---------------------------------------------------------------------------------------------
# Unit test 2: exact loss on f(x) = Wx


def test_2_exact_loss_and_gradient_through_the_clean_branch_only() -> None:
    model = nn.Linear(5, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(
            torch.tensor(
                [[1.0, -2.0, 0.5, 0.0, 3.0], [0.0, 1.0, -1.0, 2.0, 0.5], [2.0, 0.0, 1.0, -1.0, 1.0]]
            )
        )
    x = torch.tensor([[0.3, -1.0, 2.0, 0.5, -0.2]])
    xi = torch.tensor([[0.1, 0.4, -0.3, 0.2, -0.5]])
    w = model.weight.detach().clone()
    terms = lipschitz_terms(model, x, [xi], reduction="sum", bounds=None)
    w_xi = w @ xi[0]
    expected = torch.linalg.vector_norm(w_xi) / torch.linalg.vector_norm(xi)
    torch.testing.assert_close(terms.loss, expected, rtol=1e-6, atol=1e-7)
    assert terms.perturbed_outputs[0].requires_grad is False
    assert terms.perturbed_inputs[0].requires_grad is False
    assert terms.loss.requires_grad

    terms.loss.backward()
    # L = ||W x - sg[W(x + xi)]|| / ||xi||, u = W x - W(x + xi) = -W xi
    # dL/dW = (u / ||u||) x^T / ||xi||.
    u = -w_xi
    analytic = torch.outer(u / torch.linalg.vector_norm(u), x[0]) / torch.linalg.vector_norm(xi)
    torch.testing.assert_close(model.weight.grad, analytic, rtol=1e-5, atol=1e-6)
    # Through both branches: dL/dW = (u / ||u||) (x - (x + xi))^T / ||xi||.
    both = torch.outer(u / torch.linalg.vector_norm(u), -xi[0]) / torch.linalg.vector_norm(xi)
    assert not torch.allclose(model.weight.grad, both, atol=1e-3)

    # Without a clamp, the paper's denominator ||xi|| gives the same value; so does "mean".
    for kw in ({"denominator": "noise"}, {"reduction": "mean"}):
        torch.testing.assert_close(
            lipschitz_loss(model, x, [xi], **kw), expected, rtol=1e-6, atol=1e-7
        )


# ---------------------------------------------------------------------------------------------
# Unit test 3: reduction


def test_3_sum_doubles_and_mean_is_unchanged_under_duplication() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4)).eval()
    x = torch.randn(5, 6)
    noise = [0.3 * torch.randn(5, 6) for _ in range(3)]
    x2 = torch.cat([x, x])
    noise2 = [torch.cat([n, n]) for n in noise]
    for bounds in (None, (x.min(), x.max())):
        s1 = lipschitz_loss(model, x, noise, reduction="sum", bounds=bounds)
        s2 = lipschitz_loss(model, x2, noise2, reduction="sum", bounds=bounds)
        m1 = lipschitz_loss(model, x, noise, reduction="mean", bounds=bounds)
        m2 = lipschitz_loss(model, x2, noise2, reduction="mean", bounds=bounds)
        torch.testing.assert_close(s2, 2 * s1)
        torch.testing.assert_close(m2, m1)
        torch.testing.assert_close(s1, 5 * m1)
        assert float(s1.detach()) > 0


# ---------------------------------------------------------------------------------------------
# Unit test 4: clamp


def test_4_batch_minmax_keeps_perturbed_inputs_in_the_batch_range() -> None:
    torch.manual_seed(3)
    model = nn.Linear(6, 3)
    x = torch.rand(8, 6) * 2 - 0.5
    noise = sample_noise(x, 2.0, 4, torch.Generator().manual_seed(0))
    terms = lipschitz_terms(model, x, noise, bounds=(x.min(), x.max()))
    hit_lo = hit_hi = False
    for xt in terms.perturbed_inputs:
        assert float(xt.min()) >= float(x.min()) and float(xt.max()) <= float(x.max())
        hit_lo |= bool((xt == x.min()).any())
        hit_hi |= bool((xt == x.max()).any())
    assert hit_lo and hit_hi  # the clamp was active


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
    calls: list[tuple[torch.Tensor, list[torch.Tensor]]] = []
    real = jit_module.lipschitz_terms

    def spy(model, x, noise, **kw):
        terms = real(model, x, noise, **kw)
        calls.append((x.detach().clone(), [t.clone() for t in terms.perturbed_inputs]))
        return terms

    monkeypatch.setattr(jit_module, "lipschitz_terms", spy)
    return calls


def test_4_method_clamps_each_batch_to_its_own_min_max(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _recording(monkeypatch)
    model = nn.Linear(4, 3)
    x = torch.cat([torch.rand(4, 4), 5 + torch.rand(4, 4)])  # two batches, different ranges
    cfg = JiTConfig(sigma=3.0, n_samples=3, batch_size=4, lr=0.01)
    get_method("jit").fn(model, DataViews(forget=DataView("forget", x, None)), cfg, ctx=_ctx(model))
    assert len(calls) == 2
    for xb, perturbed in calls:
        for xt in perturbed:
            assert float(xt.min()) >= float(xb.min()) and float(xt.max()) <= float(xb.max())
            assert bool((xt == xb.min()).any()) and bool((xt == xb.max()).any())


def test_4_pixel_range_uses_the_normalization_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _recording(monkeypatch)
    norm = Normalization(raw_range=(0.0, 16.0), mean=(0.5,), std=(0.25,))  # range [-2, 2]
    model = nn.Linear(4, 3)
    x = norm.to_model(torch.randint(0, 17, (6, 4)).float())
    cfg = JiTConfig(mode="robust", sigma=3.0, n_samples=2, batch_size=6, lr=0.01)
    get_method("jit").fn(
        model,
        DataViews(forget=DataView("forget", x, None)),
        cfg,
        ctx=_ctx(model, normalization=norm),
    )
    ((_, perturbed),) = calls
    for xt in perturbed:
        assert float(xt.min()) == pytest.approx(-2.0) and float(xt.max()) == pytest.approx(2.0)


def test_4_pixel_range_without_normalization_raises_before_any_update() -> None:
    model = nn.Linear(4, 3)
    before = _state(model)
    cfg = JiTConfig(clamp="pixel_range", lr=0.1)
    data = DataViews(forget=DataView("forget", torch.randn(6, 4), None))
    with pytest.raises(ConfigError, match="normalization"):
        get_method("jit").fn(model, data, cfg, ctx=_ctx(model))
    assert not _changed(before, _state(model))
    # Robust mode defaults to pixel_range: the tiny synthetic data have no metadata either.
    bundle = tiny_bundle()
    with pytest.raises(ConfigError, match="clamp='batch_minmax'"):
        run_unlearning(trained_tiny_model(bundle), tiny_task(bundle), "jit", {"mode": "robust"})


# ---------------------------------------------------------------------------------------------
# Unit test 5: gradient accumulation


def _grad(model: nn.Module, x: torch.Tensor, noise: list[torch.Tensor]) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    lipschitz_loss(model, x, noise, reduction="sum", bounds=(x.min(), x.max())).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("zero_each", [False, True])
def test_5_gradient_accumulation(zero_each: bool) -> None:
    torch.manual_seed(4)
    model = nn.Linear(4, 3)
    theta0 = copy.deepcopy(model)
    x = torch.randn(8, 4)
    lr, sigma, n = 0.1, 0.3, 2
    cfg = JiTConfig(lr=lr, sigma=sigma, n_samples=n, batch_size=4, zero_grad_each_batch=zero_each)
    ctx = _ctx(model, seed=7)
    out = get_method("jit").fn(model, DataViews(forget=DataView("forget", x, None)), cfg, ctx=ctx)
    assert ctx.steps == 2

    # Replay: the same noise draws, in the same order, from a generator with the same seed.
    gen = torch.Generator().manual_seed(7)
    x1, x2 = x[:4], x[4:]
    noise1 = sample_noise(x1, sigma, n, gen)
    noise2 = sample_noise(x2, sigma, n, gen)
    ref = theta0
    g1 = _grad(ref, x1, noise1)
    with torch.no_grad():
        for p, g in zip(ref.parameters(), g1):
            p -= lr * g
    theta1 = [p.detach().clone() for p in ref.parameters()]
    g2 = _grad(ref, x2, noise2)  # at the parameters after step 1
    for p_out, p1, a, b in zip(out.parameters(), theta1, g1, g2):
        update = lr * b if zero_each else lr * (a + b)
        torch.testing.assert_close(p_out.detach(), p1 - update, rtol=1e-5, atol=1e-6)
    # The two settings really differ.
    assert any(float(a.abs().max()) > 1e-3 for a in g1)


# ---------------------------------------------------------------------------------------------
# Conformance and behaviour


def test_behaviour_smooths_forget_points_and_keeps_test_accuracy() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle)
    out = run_unlearning(model, task, "jit", {"lr": 0.01, "sigma": 0.5}, seed=0)
    assert out.steps == 1 and len(out.info["jit_loss"]) == 1
    assert _changed(_state(model), _state(out.model))
    assert _accuracy(out.model, task.test_full) >= _accuracy(model, task.test_full) - 0.1

    # The local Lipschitz ratio around the forget points (fixed noise, eval mode) went down.
    x = task.forget.x
    noise = sample_noise(x, 0.5, 10, torch.Generator().manual_seed(11))
    with torch.no_grad():
        before = lipschitz_loss(model.eval(), x, noise, reduction="mean")
        after = lipschitz_loss(out.model.eval(), x, noise, reduction="mean")
    assert float(after) < float(before)


# --------------------------------------------------------------------------------------------
# The optional safety guard [lib]: reads D_val, so the run is reported forget_only+val


def _val_acc(model, task) -> float:
    with torch.no_grad():
        return float((model(task.val.x).argmax(1) == task.val.y).float().mean())


@pytest.fixture(scope="module")
def guarded():
    task = tiny_task(tiny_bundle(), "class")
    return task, trained_tiny_model(task.bundle)


_WILD = {"lr": 20.0, "sigma": 1.0, "batch_size": 4, "mode": "robust", "clamp": "none"}


def test_the_guard_raises_the_access_and_is_reported(guarded):
    task, model = guarded
    spec = get_method("jit")
    assert spec.access_for(spec.make_config()).label == "forget_only"
    cfg = spec.make_config({"safety_guard": True})
    assert spec.access_for(cfg).needs_val and spec.access_for(cfg).label == "forget_only+val"
    assert build_views(spec.access_for(cfg), task, "jit").val is not None
    out = run_unlearning(model, task.forget_only(), "jit", {"safety_guard": True})
    assert out.access == "forget_only+val"  # a forget-only request: the guard reads D_val only
    plain = run_unlearning(model, task, "jit")
    assert plain.access == "forget_only" and "jit_guard" not in plain.info


def test_without_a_drop_the_guard_changes_nothing(guarded):
    task, model = guarded
    cfg = {"lr": 1e-4, "sigma": 0.1}
    a = run_unlearning(model, task, "jit", cfg, seed=1)
    b = run_unlearning(model, task, "jit", {**cfg, "safety_guard": True}, seed=1)
    assert b.info["jit_guard"]["rollbacks"] == []
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(p, q)


def test_a_collapse_rolls_back_halves_lr_once_then_stops(guarded):
    task, model = guarded
    start = _val_acc(model, task)
    wild = run_unlearning(model, task, "jit", _WILD, seed=0)
    assert _val_acc(wild.model, task) < start - 0.10  # unguarded, the model collapses
    out = run_unlearning(model, task, "jit", {**_WILD, "safety_guard": True}, seed=0)
    g = out.info["jit_guard"]
    assert g["val_acc"][0] == pytest.approx(start)
    assert g["lr_halved"] and len(g["rollbacks"]) == 2  # halved once, stopped at the second
    assert out.stop_reason.startswith("safety guard")
    assert _val_acc(out.model, task) == pytest.approx(g["val_acc"][g["best_step"]])
    assert _val_acc(out.model, task) >= start - 0.10


def test_the_guard_needs_a_validation_split_and_a_sane_tolerance(guarded):
    task, model = guarded
    import dataclasses

    from unlearnkit.errors import AccessError
    from unlearnkit.tasks import forget_task

    no_val = forget_task(dataclasses.replace(task.bundle, val=None), "class", classes=[0])
    with pytest.raises(AccessError, match="validation split"):
        run_unlearning(model, no_val, "jit", {"safety_guard": True})
    with pytest.raises(ConfigError, match="max_val_drop"):
        JiTConfig(max_val_drop=1.5)
