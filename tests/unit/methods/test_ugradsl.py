"""Known-answer and behaviour tests of UGradSL / UGradSL+ (Di et al., arXiv 2406.07698)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
import unlearnkit.methods.ugradsl  # noqa: F401  (registers ugradsl and ugradsl_plus)
from unlearnkit.errors import ConfigError
from unlearnkit.methods.ugradsl import (
    PRESET_HELP,
    UGradSLConfig,
    UGradSLPlusConfig,
    adaptive_alpha,
    gls_loss,
    gls_targets,
)
from unlearnkit.optim import build_optimizer
from unlearnkit.testing import check_method, tiny_bundle, tiny_task, trained_tiny_model

VARIANTS = ("ugradsl", "ugradsl_plus")


class Recorder(nn.Module):
    """Wraps a model and records every training-mode input batch, in order."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.seen.append(x.detach().clone())
        return self.inner(x)


def _rows_in(xb: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index into ``pool`` of each row of ``xb`` (-1 where a row is not in ``pool``)."""
    match = (xb.flatten(1)[:, None, :] == pool.flatten(1)[None, :, :]).all(-1)
    missing = torch.full((xb.shape[0],), -1, dtype=torch.long)
    return torch.where(match.any(1), match.float().argmax(1).long(), missing)


def _acc(model: nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


# --- 1. GLS targets ---------------------------------------------------------------------------


def test_gls_targets_known_vector_sums_to_one() -> None:
    t = gls_targets(torch.tensor(3), -0.5, 10, dtype=torch.float64)
    expected = torch.full((10,), -0.05, dtype=torch.float64)
    expected[3] = 1.45
    torch.testing.assert_close(t, expected, rtol=0, atol=1e-15)
    assert float(t.sum()) == pytest.approx(1.0, abs=1e-15)
    batch = gls_targets(torch.tensor([3, 0]), -0.5, 10)  # float32 batch form
    assert batch.shape == (2, 10) and batch.dtype == torch.float32
    torch.testing.assert_close(batch[0], expected.float())
    torch.testing.assert_close(batch.sum(1), torch.ones(2))


def test_gls_targets_per_sample_alpha_and_positive_smoothing() -> None:
    t = gls_targets(torch.tensor([1, 2]), torch.tensor([0.2, -1.0]), 4)
    torch.testing.assert_close(t[0], torch.tensor([0.05, 0.85, 0.05, 0.05]))
    torch.testing.assert_close(t[1], torch.tensor([-0.25, -0.25, 1.75, -0.25]))
    with pytest.raises(ValueError, match="per-sample alpha"):
        gls_targets(torch.tensor([1, 2]), torch.tensor([0.2, 0.1, 0.0]), 4)


# --- 2. GLS loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [-4.0, -1.0, -0.5, 0.0, 0.3, 1.0])
def test_gls_loss_uniform_logits_is_log_k(alpha: float) -> None:
    k = 10
    z = torch.full((5, k), 2.5)
    y = torch.tensor([0, 3, 9, 4, 4])
    assert float(gls_loss(z, y, alpha)) == pytest.approx(
        torch.log(torch.tensor(10.0)).item(), rel=1e-6
    )


def test_gls_loss_alpha_zero_is_cross_entropy_and_matches_decomposition() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(7, 5, generator=g)
    y = torch.randint(0, 5, (7,), generator=g)
    torch.testing.assert_close(gls_loss(z, y, 0.0), F.cross_entropy(z, y))
    a = -0.7  # (1 - a) CE_y + a * mean_k(-log p_k), batch mean
    nll = -F.log_softmax(z, dim=1)
    manual = ((1 - a) * nll[torch.arange(7), y] + a * nll.mean(1)).mean()
    torch.testing.assert_close(gls_loss(z, y, a), manual)


@pytest.mark.parametrize("alpha", [-0.5, 0.25, "per_sample"])
def test_gls_loss_gradient_is_softmax_minus_target(alpha) -> None:
    g = torch.Generator().manual_seed(1)
    n, k = 6, 8
    z = torch.randn(n, k, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, k, (n,), generator=g)
    a = torch.linspace(-1.0, 0.0, n, dtype=torch.float64) if alpha == "per_sample" else alpha
    gls_loss(z, y, a).backward()
    expected = (F.softmax(z.detach(), dim=1) - gls_targets(y, a, k, dtype=torch.float64)) / n
    torch.testing.assert_close(z.grad, expected, rtol=1e-12, atol=1e-14)


# --- 3. Driver / cycled loaders ---------------------------------------------------------------


def _counting_task():
    bundle = uk.datasets.load(
        "synthetic", n_train=704, n_val=0, n_test=32, num_classes=4, input_shape=(8,), seed=0
    )
    task = uk.forget_task(bundle, "random", count=64, seed=0)
    assert (len(task.forget), len(task.retain)) == (64, 640)
    return bundle, task


@pytest.mark.parametrize(("name", "per_epoch"), [("ugradsl", 2), ("ugradsl_plus", 20)])
def test_updates_per_epoch_and_one_forget_one_retain_batch_each(name: str, per_epoch: int) -> None:
    bundle, task = _counting_task()
    model = Recorder(uk.models.build("mlp", bundle, hidden=(16,), seed=0))
    out = uk.run_unlearning(model, task, name, {"batch_size": 32, "epochs": 2, "lr": 1e-3}, seed=0)
    assert out.steps == 2 * per_epoch and out.info["steps"] == 2 * per_epoch
    seen = out.model.seen
    assert len(seen) == 2 * out.steps  # exactly two forward passes per update
    f_x, r_x = task.forget.x, task.retain.x
    retain_rows, forget_rows = seen[0::2], seen[1::2]  # retain forward first, then forget
    for xb in retain_rows:
        assert xb.shape[0] == 32 and bool((_rows_in(xb, r_x) >= 0).all())
    for xb in forget_rows:
        assert xb.shape[0] == 32 and bool((_rows_in(xb, f_x) >= 0).all())
    # The driver's epoch visits every one of its samples exactly once.
    drv_rows, pool = (forget_rows, f_x) if name == "ugradsl" else (retain_rows, r_x)
    for e in range(2):
        idx = torch.cat(
            [_rows_in(xb, pool) for xb in drv_rows[e * per_epoch : (e + 1) * per_epoch]]
        )
        assert sorted(idx.tolist()) == list(range(len(pool)))


# --- 4. Adaptive alpha ------------------------------------------------------------------------


def _hand_built_features() -> tuple[torch.Tensor, torch.Tensor]:
    e1, e2 = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    feat_r = torch.stack([e1, e1 + torch.tensor([0.0, 0.0, 0.1]), 2.0 * e1, -e1])
    feat_f = torch.stack([e1, e2])  # sample 0: 3 of 4 retain neighbours; sample 1: none
    return feat_r, feat_f


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_adaptive_alpha_counts_retain_neighbours(scale: float) -> None:
    feat_r, feat_f = _hand_built_features()
    more = adaptive_alpha(feat_r, feat_f, 0.1, scale, "dense_more_negative")
    torch.testing.assert_close(more, torch.tensor([-0.75 * scale, 0.0]))
    less = adaptive_alpha(feat_r, feat_f, 0.1, scale, "dense_less_negative")
    torch.testing.assert_close(less, torch.tensor([-0.25 * scale, -scale]))
    assert bool((more <= 0).all()) and bool((less <= 0).all())


def test_adaptive_mode_runs_end_to_end_and_records_alpha() -> None:
    bundle = tiny_bundle()
    task, model = tiny_task(bundle, "random"), trained_tiny_model(bundle)
    out = uk.run_unlearning(
        model,
        task,
        "ugradsl",
        {"alpha": "adaptive", "adaptive_scale": 2.0, "batch_size": 16, "lr": 1e-3},
        seed=0,
    )
    assert out.steps == out.info["steps"] == 5 and not out.diverged
    assert -2.0 <= out.info["alpha_mean"] <= 0.0
    fixed = uk.run_unlearning(model, task, "ugradsl", {"batch_size": 16}, seed=0)
    assert fixed.info["alpha_mean"] == pytest.approx(-0.5)


class _NoLinear(nn.Module):
    def __init__(self, d: int, k: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, k) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.w


def test_adaptive_mode_needs_a_linear_head_or_feature_fn() -> None:
    bundle = tiny_bundle()
    task, model = tiny_task(bundle, "random"), _NoLinear(36, bundle.num_classes)
    with pytest.raises(ConfigError, match="feature_fn"):
        uk.run_unlearning(model, task, "ugradsl", {"alpha": "adaptive"}, seed=0)
    out = uk.run_unlearning(
        model,
        task,
        "ugradsl",
        {"alpha": "adaptive", "batch_size": 16},
        seed=0,
        feature_fn=lambda m, x: x.flatten(1),
    )
    assert out.steps == 5 and out.info["alpha_mean"] <= 0.0


# --- 5. p = 1 is fine-tuning ------------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_p_one_equals_finetune_on_the_paired_retain_batches(name: str) -> None:
    bundle = tiny_bundle()
    task, base = tiny_task(bundle, "random"), trained_tiny_model(bundle)  # MLP, no dropout
    cfg = {"p": 1.0, "lr": 0.05, "epochs": 2, "batch_size": 16}
    out = uk.run_unlearning(Recorder(copy.deepcopy(base)), task, name, cfg, seed=5)
    spec = uk.get_method(name).make_config(cfg)
    r_x, r_y = task.retain.x, task.retain.y
    retain_batches = [xb for xb in out.model.seen if bool((_rows_in(xb, r_x) >= 0).all())]
    assert len(retain_batches) == out.steps > 0
    ref = copy.deepcopy(base).train()
    opt = build_optimizer(ref.parameters(), spec.optimizer)
    for xb in retain_batches:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(ref(xb), r_y[_rows_in(xb, r_x)]).backward()
        if spec.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(list(ref.parameters()), spec.max_grad_norm)
        opt.step()
    got = dict(out.model.inner.named_parameters())
    for k, v in ref.named_parameters():
        torch.testing.assert_close(got[k], v, rtol=0, atol=1e-6)
    assert not torch.equal(got["head.weight"], dict(base.named_parameters())["head.weight"])


def test_plus_with_p_one_matches_the_finetune_method_for_one_epoch() -> None:
    bundle = tiny_bundle()
    task, model = tiny_task(bundle, "random"), trained_tiny_model(bundle)
    common = {"lr": 0.05, "epochs": 1, "batch_size": 16, "max_grad_norm": 5.0}
    ours = uk.run_unlearning(model, task, "ugradsl+", {**common, "p": 1.0}, seed=2)
    ft = uk.run_unlearning(model, task, "finetune", common, seed=2)
    assert ours.steps == ft.steps == 6
    for (k, a), (_, b) in zip(ours.model.named_parameters(), ft.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_concatenated_forward_equals_separate_forwards_without_batchnorm() -> None:
    bundle = tiny_bundle()
    task, model = tiny_task(bundle, "random"), trained_tiny_model(bundle)
    cfg = {"lr": 0.01, "batch_size": 16, "alpha": "adaptive", "adaptive_threshold": 0.3}
    sep = uk.run_unlearning(model, task, "ugradsl", cfg, seed=1)
    cat = uk.run_unlearning(model, task, "ugradsl", {**cfg, "concat_forward": True}, seed=1)
    assert sep.info["alpha_mean"] == pytest.approx(cat.info["alpha_mean"], abs=1e-6)
    for (k, a), (_, b) in zip(sep.model.named_parameters(), cat.model.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


# --- Config, registry, conformance, behaviour -------------------------------------------------


def test_defaults_follow_the_spec_table() -> None:
    a, b = UGradSLConfig(), UGradSLPlusConfig()
    # The default is the paper's update: no clipping, batch means.
    assert (a.alpha, a.p, a.epochs, a.batch_size, a.max_grad_norm) == (-0.5, 0.5, 5, 256, None)
    assert (b.alpha, b.p, b.epochs, b.batch_size, b.max_grad_norm) == (-0.5, 0.7, 10, 256, None)
    assert a.reduction == b.reduction == "mean"
    assert (a.optimizer.name, a.optimizer.lr, a.optimizer.momentum, a.optimizer.weight_decay) == (
        "sgd",
        1e-4,
        0.9,
        5e-4,
    )
    assert (b.optimizer.lr, b.optimizer.momentum, b.optimizer.weight_decay) == (0.01, 0.9, 5e-4)
    assert (a.adaptive_scale, a.adaptive_threshold, a.adaptive_direction) == (
        1.0,
        0.1,
        "dense_more_negative",
    )
    assert a.augment_retain and b.augment_retain and not a.concat_forward
    assert uk.get_method("ugradsl+").name == "ugradsl_plus"
    assert uk.get_method("ugradsl_plus").config_cls is UGradSLPlusConfig
    digits = uk.get_method("ugradsl").make_config(preset="digits")
    assert (digits.optimizer.lr, digits.epochs, digits.batch_size, digits.p) == (5e-3, 10, 64, 0.5)
    assert (digits.max_grad_norm, digits.reduction) == (5.0, "mean")  # the benchmark's guard


@pytest.mark.parametrize(
    "bad",
    [
        {"p": 1.5},
        {"p": -0.1},
        {"alpha": "adaptiv"},
        {"alpha": float("nan")},
        {"adaptive_threshold": 1.5},
        {"adaptive_scale": -1.0},
        {"adaptive_direction": "sideways"},
        {"reduction": "median"},
    ],
)
def test_bad_config_values_are_rejected(bad) -> None:
    with pytest.raises(ConfigError):
        UGradSLConfig.from_dict(bad)


def test_conformance_adaptive_with_batchnorm() -> None:
    check_method("ugradsl_plus", config={"alpha": "adaptive"}, scenario="class", bn=True)


@pytest.mark.parametrize(
    ("name", "cfg"),
    [
        ("ugradsl", {"lr": 0.01, "epochs": 5, "batch_size": 16, "p": 0.5}),
        ("ugradsl_plus", {"lr": 0.005, "epochs": 5, "batch_size": 16, "p": 0.7}),
    ],
)
def test_forgets_a_class_while_retain_accuracy_holds(name: str, cfg: dict) -> None:
    bundle = tiny_bundle()
    task, model = tiny_task(bundle, "class"), trained_tiny_model(bundle)
    assert _acc(model, task.forget) == 1.0
    out = uk.run_unlearning(model, task, name, cfg, seed=0)
    assert _acc(out.model, task.forget) <= 0.25
    assert _acc(out.model, task.retain) >= 0.9


# --- The paper's update (`reference`) and the library's guard (`guarded`) ----------------------

# Golden values from the reference GLS loss, UCSC-REAL/negative-label-smoothing ``loss.py``
# (``loss_gls``, commit 05078f675b42c13c89219eb8f2238bd4d794d83d), run on the inputs below: a
# 3-class ``nn.Linear(4, 3)`` with weights _W0/_B0, retain rows 0-5, forget rows 6-8. The
# UGradSL repository itself (UCSC-REAL/Label-Smoothing-Unlearn) could not be obtained, so the
# step is p * F.cross_entropy(retain) - (1 - p) * loss_gls(forget) with SGD (momentum 0.9, wd
# 5e-4), p 0.5, alpha -0.5, lr 0.1, two steps on the full batches, nothing clipped.
_X = [
    [0.5, -1.0, 2.0, 0.0],
    [1.5, 0.5, -0.5, 1.0],
    [-1.0, 2.0, 0.0, 0.5],
    [0.0, 0.0, 1.0, -1.5],
    [2.0, -0.5, 0.5, 0.5],
    [-0.5, 1.0, -1.0, 2.0],
    [1.0, 1.0, 1.0, 1.0],
    [-2.0, 0.5, 1.5, -0.5],
    [0.5, 0.5, -2.0, 1.0],
]
_Y = [0, 1, 2, 0, 1, 2, 0, 1, 2]
_W0 = [[0.3, -0.2, 0.1, 0.4], [-0.1, 0.5, -0.3, 0.2], [0.2, 0.1, 0.4, -0.5]]
_B0 = [0.1, -0.2, 0.05]
# Inputs x 10 (gradient norm 15.5 at the start, so a clip at 5 would change the step).
_GOLDEN_MEAN_X10 = (
    [
        [-0.5939605, -0.6803209, 0.3956576, -0.4942894],
        [2.5371521, 0.1449864, -1.89882, 0.9994893],
        [-1.5432497, 0.9352764, 1.7031339, -0.4052143],
    ],
    [0.0973114, -0.192429, 0.0451248],
)
# Eq. 8 with per-batch sums (reference loss_gls times the batch size), inputs x 1.
_GOLDEN_SUM = (
    [
        [-0.0787622, -0.4360894, 0.2224292, -0.0770722],
        [0.8589131, 0.270342, -0.6350186, 0.4079092],
        [-0.3802089, 0.5656894, 0.6125605, -0.2308515],
    ],
    [0.0706637, -0.1736443, 0.0529879],
)
# The x 10 run with torch's clip_grad_norm_(..., 5) before each step (the library's guard).
_GOLDEN_CLIP5_X10 = (
    [
        [-0.0223177, -0.3194618, 0.2076626, 0.117948],
        [0.8192388, 0.2877482, -0.8377596, 0.4345293],
        [-0.3969791, 0.4316556, 0.8300681, -0.4524918],
    ],
    [0.0989208, -0.2002848, 0.0513712],
)
# reference loss_gls(0, z, y_forget, smooth_rate=alpha) on z = x_forget @ _W0.T + _B0 (float64).
_GOLDEN_GLS = {-2.0: 2.1756355981214726, -0.5: 1.7089689170503501, 0.0: 1.5534133566933093}


def _golden_task(scale: float):
    x = torch.tensor(_X) * scale
    y = torch.tensor(_Y)
    bundle = uk.datasets.from_arrays(x.numpy(), y.numpy(), x[:3].numpy(), y[:3].numpy())
    return uk.forget_task(bundle, "indices", indices=[6, 7, 8])


def _golden_model() -> nn.Linear:
    m = nn.Linear(4, 3)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(_W0))
        m.bias.copy_(torch.tensor(_B0))
    return m


def _run_golden(name: str, scale: float, preset: str, **cfg):
    base = {"lr": 0.1, "p": 0.5, "alpha": -0.5, "epochs": 2, "batch_size": 16, **cfg}
    out = uk.run_unlearning(_golden_model(), _golden_task(scale), name, base, preset=preset)
    assert out.steps == 2 and not out.diverged  # one forget and one retain batch per epoch
    return out.model


def _assert_params(model: nn.Linear, golden) -> None:
    torch.testing.assert_close(model.weight.detach(), torch.tensor(golden[0]), rtol=0, atol=2e-6)
    torch.testing.assert_close(model.bias.detach(), torch.tensor(golden[1]), rtol=0, atol=2e-6)


def test_gls_loss_equals_the_reference_loss_gls() -> None:
    x, y = torch.tensor(_X), torch.tensor(_Y)
    z = (x[6:] @ torch.tensor(_W0).T + torch.tensor(_B0)).double()
    for alpha, want in _GOLDEN_GLS.items():
        assert float(gls_loss(z, y[6:], alpha)) == pytest.approx(want, rel=1e-12)
        got_sum = float(gls_loss(z, y[6:], alpha, reduction="sum"))
        assert got_sum == pytest.approx(3 * want, rel=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        gls_loss(z, y[6:], -0.5, reduction="none")


@pytest.mark.parametrize("name", VARIANTS)
def test_reference_preset_matches_the_reference_step(name: str) -> None:
    _assert_params(_run_golden(name, 10.0, "reference"), _GOLDEN_MEAN_X10)
    # The default config is the same update.
    default = uk.run_unlearning(
        _golden_model(),
        _golden_task(10.0),
        name,
        {"lr": 0.1, "p": 0.5, "alpha": -0.5, "epochs": 2, "batch_size": 16},
    )
    _assert_params(default.model, _GOLDEN_MEAN_X10)


@pytest.mark.parametrize("name", VARIANTS)
def test_sum_reduction_matches_eq8_with_batch_sums(name: str) -> None:
    _assert_params(_run_golden(name, 1.0, "reference", reduction="sum"), _GOLDEN_SUM)


@pytest.mark.parametrize("name", VARIANTS)
def test_guarded_preset_clips_at_norm_five(name: str) -> None:
    _assert_params(_run_golden(name, 10.0, "guarded"), _GOLDEN_CLIP5_X10)


@pytest.mark.parametrize("preset", ["reference", "guarded"])
def test_a_huge_gradient_is_clipped_only_by_the_guarded_preset(preset: str) -> None:
    lr, wd = 1e-3, 5e-4
    task = _golden_task(1e4)  # inputs x 1e4: a gradient norm in the tens of thousands
    cfg = {"lr": lr, "p": 0.5, "alpha": -0.5, "epochs": 1, "batch_size": 16}
    out = uk.run_unlearning(_golden_model(), task, "ugradsl", cfg, preset=preset)
    assert out.steps == 1 and not out.diverged
    # Gradient of the step, recovered from SGD's first update: delta = -lr * (g + wd * w0).
    w0 = torch.cat([torch.tensor(_W0).flatten(), torch.tensor(_B0)])
    w1 = torch.cat([out.model.weight.detach().flatten(), out.model.bias.detach()])
    g = -(w1 - w0) / lr - wd * w0
    m = _golden_model()
    z_r, z_f = m(task.retain.x), m(task.forget.x)
    loss = 0.5 * F.cross_entropy(z_r, task.retain.y) - 0.5 * gls_loss(z_f, task.forget.y, -0.5)
    loss.backward()
    full = torch.cat([m.weight.grad.flatten(), m.bias.grad])
    assert float(full.norm()) > 1e3
    if preset == "reference":
        torch.testing.assert_close(g, full, rtol=1e-3, atol=1e-2)
    else:
        assert float(g.norm()) == pytest.approx(5.0, rel=1e-3)
        torch.testing.assert_close(g, full * (5.0 / full.norm()), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_preset_has_one_line_of_help_and_pins_its_rule(name: str) -> None:
    spec = uk.get_method(name)
    assert set(spec.presets) == set(PRESET_HELP) >= {"reference", "guarded"}
    for text in PRESET_HELP.values():
        assert text and "\n" not in text and len(text) <= 100
    ref, guarded = spec.make_config(preset="reference"), spec.make_config(preset="guarded")
    assert (ref.max_grad_norm, ref.reduction) == (None, "mean")
    assert (guarded.max_grad_norm, guarded.reduction) == (5.0, "mean")
    # `reference` overrides a user-changed base only where the user does not set it.
    assert spec.make_config({"max_grad_norm": 1.0}, preset="reference").max_grad_norm == 1.0
