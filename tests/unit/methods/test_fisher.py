"""Fisher Forgetting."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit.methods.fisher  # noqa: F401
from unlearnkit.api import run_unlearning
from unlearnkit.data import DataViews
from unlearnkit.errors import AccessError, ConfigError
from unlearnkit.methods import RunContext, get_method
from unlearnkit.methods.fisher import (
    FisherConfig,
    auto_chunk_size,
    classwise_override,
    fisher,
    fisher_diagonal,
    fisher_variances,
)
from unlearnkit.models import build
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


@pytest.fixture(scope="module")
def tiny():
    bundle = tiny_bundle()
    return bundle, trained_tiny_model(bundle)


@pytest.fixture(scope="module")
def tiny_bn():
    bundle = tiny_bundle()
    return bundle, trained_tiny_model(bundle, bn=True)


def _acc(model: nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


def _bits(model: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().clone().view(torch.int32)
        for k, v in model.state_dict().items()
        if v.dtype == torch.float32
    }


def slow_fisher(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference loop: batch size 1, one backward pass per class, p from sg[softmax]."""
    model = copy.deepcopy(model).eval()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    acc = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in named}
    for i in range(x.shape[0]):
        out = model(x[i : i + 1])
        prob = F.softmax(out, dim=-1).detach()
        for k in range(out.shape[1]):
            loss = F.cross_entropy(out, torch.tensor([k]))
            grads = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True)
            for (n, _), g in zip(named, grads):
                acc[n] += prob[0, k].double() * g.double().square()
    return {n: (v / x.shape[0]).float() for n, v in acc.items()}


def _noise(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The eps the method draws: one randn per trainable tensor, in parameter order."""
    gen = torch.Generator().manual_seed(seed)
    return {
        n: torch.randn(p.shape, generator=gen, dtype=p.dtype)
        for n, p in model.named_parameters()
        if p.requires_grad
    }


# -- registry (conformance: tests/conformance, for every registered method) ---------------


def test_registry_access_presets_and_validation() -> None:
    spec = get_method("ff")
    assert spec.name == "fisher" and get_method("fisher_forgetting") is spec
    acc = spec.access
    assert acc.level == "forget_and_retain"
    assert not acc.uses_forget and acc.uses_retain and not acc.retain_labels
    assert spec.identity_config == {"alpha": 0.0, "classwise": False}
    assert str(spec.search_space["alpha"]) == "loguniform(1e-09, 0.0001)"
    cfg = spec.make_config()
    assert (cfg.alpha, cfg.variant, cfg.classwise, cfg.max_samples, cfg.chunk_size) == (
        1e-6,
        "ssd",
        None,
        None,
        None,
    )
    assert spec.make_config(preset="digits").alpha == 1e-6
    assert spec.make_config(preset="sparse_scrub").variant == "sparse_scrub"
    for bad in (
        {"alpha": -1e-6},
        {"alpha": float("inf")},
        {"variant": "bogus"},
        {"max_samples": 0},
        {"chunk_size": 0},
    ):
        with pytest.raises(ConfigError):
            FisherConfig.from_dict(bad)


# -- spec test 1: alpha = 0 leaves the model unchanged, bit for bit -------------------------------


def test_alpha_zero_is_bit_exact_identity(tiny) -> None:
    bundle, model = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():  # -0.0 + 0 * eps is +0.0 wherever eps > 0: keep mu as it is
        model.head.bias.fill_(-0.0)
        model.head.weight[0].fill_(-0.0)
    before = _bits(model)
    out = run_unlearning(model, tiny_task(bundle), "fisher", {"alpha": 0.0}, seed=1)
    after = _bits(out.model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert out.info["mean_variance"] == 0.0 and out.steps == 0


def test_alpha_zero_with_classwise_changes_only_the_forgotten_rows(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")  # class 0
    out = run_unlearning(model, task, "fisher", {"alpha": 0.0}, seed=2).model
    for (name, p0), p1 in zip(model.named_parameters(), out.parameters()):
        if name.startswith("head."):
            assert torch.equal(p0[1:], p1[1:]) and not torch.equal(p0[0], p1[0])
        else:
            assert torch.equal(p0, p1)


# -- spec test 2: the clamps and multipliers of the variance ---------------------------------


def _shapes() -> dict[str, torch.Tensor]:
    # K = 3: "head.weight" and "head.bias" have shape[0] == K; the others do not.
    return {
        "hidden.weight": torch.zeros(2, 4),
        "hidden.bias": torch.zeros(2),
        "conv.weight": torch.zeros(2, 2, 3),
        "head.weight": torch.zeros(3, 2),
        "head.bias": torch.zeros(3),
    }


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        # F = 0: var = 1e3 (clamp), 1e2 where shape[0] == K, x10 for 1-D (ssd) ...
        (
            "ssd",
            {
                "hidden.weight": 1e3,
                "hidden.bias": 1e4,
                "conv.weight": 1e3,
                "head.weight": 1e2,
                "head.bias": 1e3,
            },
        ),
        # ... or x10 once where shape[0] == K or ndim == 1 (sparse_scrub).
        (
            "sparse_scrub",
            {
                "hidden.weight": 1e3,
                "hidden.bias": 1e4,
                "conv.weight": 1e3,
                "head.weight": 1e3,
                "head.bias": 1e3,
            },
        ),
    ],
)
def test_variance_clamps_for_zero_fisher(variant: str, expected: dict[str, float]) -> None:
    params = _shapes()
    fisher_zero = {k: torch.zeros_like(v) for k, v in params.items()}
    alpha = 2e-6
    var = fisher_variances(fisher_zero, params, alpha, 3, variant)
    for name, p in params.items():
        assert var[name].shape == p.shape
        torch.testing.assert_close(var[name], torch.full_like(p, alpha * expected[name]))


def test_variance_inversion_averaging_and_bounds() -> None:
    params = _shapes()
    g = torch.Generator().manual_seed(0)
    fisher_vals = {k: torch.rand(v.shape, generator=g) * 1e-2 for k, v in params.items()}
    fisher_vals["hidden.weight"] = torch.tensor([[1.0, 3.0, 1e9, 0.0], [0.5, 0.5, 0.5, 0.5]])
    alpha = 1e-6
    var = fisher_variances(fisher_vals, params, alpha, 3, "ssd")
    # Row 0: mean of [1/(1+1e-8), 1/(3+1e-8), 1/(1e9+1e-8), min(1e8, 1e3)], times alpha.
    row0 = (1 / (1 + 1e-8) + 1 / (3 + 1e-8) + 1 / (1e9 + 1e-8) + 1e3) / 4 * alpha
    row1 = 1 / (0.5 + 1e-8) * alpha
    torch.testing.assert_close(
        var["hidden.weight"], torch.tensor([[row0] * 4, [row1] * 4]), rtol=1e-6, atol=0
    )
    # The conv tensor is averaged over dim 1 only (keepdim), then expanded back.
    inv = (1 / (fisher_vals["conv.weight"].double() + 1e-8)).clamp(max=1e3) * alpha
    torch.testing.assert_close(
        var["conv.weight"], inv.mean(1, keepdim=True).expand(2, 2, 3).float(), rtol=1e-6, atol=0
    )
    bias = (1 / (fisher_vals["hidden.bias"].double() + 1e-8)).clamp(max=1e3) * alpha * 10
    torch.testing.assert_close(var["hidden.bias"], bias.float(), rtol=1e-6, atol=0)
    # The clamps hold everywhere: 1e3 * alpha (x10 for 1-D); 1e2 * alpha where shape[0] == K.
    assert float(var["hidden.weight"].max()) <= 1e3 * alpha * (1 + 1e-6)
    assert float(var["conv.weight"].max()) <= 1e3 * alpha * (1 + 1e-6)
    assert float(var["head.weight"].max()) <= 1e2 * alpha * (1 + 1e-6)
    assert float(var["head.bias"].max()) <= 1e3 * alpha * (1 + 1e-6)
    assert float(var["hidden.bias"].max()) <= 1e4 * alpha * (1 + 1e-6)


def test_the_method_uses_exactly_these_variances(tiny_bn) -> None:
    bundle, model = tiny_bn
    task = tiny_task(bundle)
    seed, alpha = 5, 3e-5
    out = run_unlearning(model, task, "fisher", {"alpha": alpha}, seed=seed)
    params = dict(model.named_parameters())
    fish = fisher_diagonal(model, task.retain.x)
    var = fisher_variances(fish, params, alpha, bundle.num_classes, "ssd")
    eps = _noise(model, seed)
    for name, p in out.model.named_parameters():
        expected = params[name] + var[name].sqrt() * eps[name]
        torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-7)
    total = sum(float(v.double().sum()) for v in var.values())
    count = sum(v.numel() for v in var.values())
    assert out.info["mean_variance"] == pytest.approx(total / count, rel=1e-6)
    assert out.info["fisher_samples"] == len(task.retain)
    # BN running statistics are buffers: never perturbed.
    for (k, b0), b1 in zip(model.named_buffers(), out.model.buffers()):
        assert torch.equal(b0, b1), k


def test_mean_variance_is_linear_in_alpha(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    m1 = run_unlearning(model, task, "fisher", {"alpha": 1e-6}).info["mean_variance"]
    m4 = run_unlearning(model, task, "fisher", {"alpha": 4e-6}).info["mean_variance"]
    assert m4 == pytest.approx(4 * m1, rel=1e-6) and m1 > 0


# -- spec test 3: the closed form on a 2-parameter logistic model ---------------------------------


class Logistic(nn.Module):
    """Logits ``[0, w*x + b]``: ``p(1|x) = sigmoid(w*x + b)``, two parameters."""

    def __init__(self, w: float, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([w]))
        self.b = nn.Parameter(torch.tensor([b]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x[:, 0] * self.w + self.b
        return torch.stack([torch.zeros_like(z), z], dim=1)


def test_fisher_matches_the_logistic_closed_form() -> None:
    # With s = w*x + b and p = sigmoid(s): dCE(., 1)/ds = p - 1 and dCE(., 0)/ds = p, so
    # sum_k p_k (dCE_k/ds)^2 = p (1-p)^2 + (1-p) p^2 = p (1-p). Since ds/dw = x and ds/db = 1:
    # F_w = mean_x p(1-p) x^2 and F_b = mean_x p(1-p).
    x = torch.tensor([[-2.0], [-0.5], [0.0], [1.0], [3.0]])
    model = Logistic(0.7, -0.3)
    p = torch.sigmoid(0.7 * x[:, 0] - 0.3)
    fish = fisher_diagonal(model, x, chunk_size=2)
    torch.testing.assert_close(fish["w"], (p * (1 - p) * x[:, 0] ** 2).mean().reshape(1))
    torch.testing.assert_close(fish["b"], (p * (1 - p)).mean().reshape(1))


# -- the vectorised Fisher equals the slow loop ---------------------------------------------------


@pytest.mark.parametrize("arch", ["mlp", "bn", "cnn"])
def test_vectorised_fisher_equals_the_slow_loop(arch: str, tiny, tiny_bn) -> None:
    bundle, model = tiny_bn if arch == "bn" else tiny
    if arch == "cnn":
        model = build("cnn_small", bundle, seed=0, width=4).eval()
    x = tiny_task(bundle).retain.x[:40]
    ref = slow_fisher(model, x)
    for chunk in (None, 1, 7):
        fast = fisher_diagonal(model, x, chunk_size=chunk)
        assert fast.keys() == ref.keys()
        for name in ref:
            torch.testing.assert_close(fast[name], ref[name], rtol=1e-4, atol=1e-9)
    assert model.training is False


def test_fisher_restores_mode_and_skips_frozen_parameters(tiny_bn) -> None:
    bundle, model = tiny_bn
    model = copy.deepcopy(model).train()
    model.head.weight.requires_grad_(False)
    x = tiny_task(bundle).retain.x[:10]
    fish = fisher_diagonal(model, x)
    assert "head.weight" not in fish and "head.bias" in fish
    assert model.training and all(p.grad is None for p in model.parameters())
    ref = slow_fisher(model, x)  # BN in eval mode in both
    torch.testing.assert_close(fish["head.bias"], ref["head.bias"], rtol=1e-4, atol=1e-9)
    out = run_unlearning(model, tiny_task(bundle), "fisher", {"alpha": 1e-4}).model
    assert torch.equal(out.head.weight, model.head.weight)  # frozen: untouched
    assert not torch.equal(out.head.bias, model.head.bias)


def test_auto_chunk_size() -> None:
    assert auto_chunk_size(85_002, 10) == 2**23 // 850_020 == 9
    assert auto_chunk_size(10**9, 10) == 1


# -- class-wise variant, subsampling, labels ------------------------------------------------------


def test_classwise_override_is_exact() -> None:
    mu, var = torch.ones(4, 3), torch.full((4, 3), 0.5)
    mu2, var2 = classwise_override(mu, var, 4, (1, 3))
    assert torch.equal(mu2[[1, 3]], torch.zeros(2, 3)) and torch.equal(mu2[[0, 2]], mu[[0, 2]])
    assert torch.equal(var2[[1, 3]], torch.full((2, 3), 1e-4)) and torch.equal(var2[0], var[0])
    assert torch.equal(mu, torch.ones(4, 3))  # inputs untouched
    hidden = torch.ones(5, 3)  # shape[0] != K: unchanged
    assert classwise_override(hidden, var, 4, (1,))[0] is hidden


def test_classwise_variant_zeroes_the_forgotten_head_row(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle, "class")  # forgets class 0
    seed = 4
    out = run_unlearning(model, task, "fisher", seed=seed)
    assert out.info["classwise"] is True
    eps = _noise(model, seed)
    head_w, head_b = out.model.head.weight, out.model.head.bias
    # mu = 0 and var = 1e-4 on row 0: exactly 0.01 * eps there.
    torch.testing.assert_close(head_w[0], 0.01 * eps["head.weight"][0])
    torch.testing.assert_close(head_b[0], 0.01 * eps["head.bias"][0])
    row_mean = float(head_w[0].detach().mean())
    assert abs(row_mean) < 0.01 < float(model.head.weight[0].detach().abs().mean())
    assert _acc(out.model, task.forget) < _acc(model, task.forget)
    # Off by default in random scenarios; forcing it there is an error.
    assert run_unlearning(model, tiny_task(bundle), "fisher").info["classwise"] is False
    with pytest.raises(ConfigError, match="classwise"):
        run_unlearning(model, tiny_task(bundle), "fisher", {"classwise": True})
    off = run_unlearning(model, task, "fisher", {"classwise": False}, seed=seed).model
    assert not torch.allclose(off.head.weight[0], head_w[0])


def test_max_samples_subsamples_deterministically(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    a = run_unlearning(model, task, "fisher", {"max_samples": 20}, seed=7)
    b = run_unlearning(model, task, "fisher", {"max_samples": 20}, seed=7)
    full = run_unlearning(model, task, "fisher", {"max_samples": 10_000}, seed=7)
    assert a.info["fisher_samples"] == 20 and full.info["fisher_samples"] == len(task.retain)
    assert all(torch.equal(x, y) for x, y in zip(a.model.parameters(), b.model.parameters()))
    default = run_unlearning(model, task, "fisher", seed=7)
    assert all(
        torch.equal(x, y) for x, y in zip(full.model.parameters(), default.model.parameters())
    )


def test_runs_without_labels_and_needs_the_retain_set(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    views = DataViews(retain=task.retain.without_labels())
    ctx = RunContext.for_task(copy.deepcopy(model), task, seed=0)
    out = fisher(ctx.model, views, FisherConfig(), ctx=ctx)
    ref = run_unlearning(model, task, "fisher", seed=0).model
    assert all(torch.equal(x, y) for x, y in zip(out.parameters(), ref.parameters()))
    ctx = RunContext.for_task(copy.deepcopy(model), task, seed=0)
    with pytest.raises(AccessError):
        fisher(ctx.model, DataViews(forget=task.forget), FisherConfig(), ctx=ctx)


# -- behaviour ------------------------------------------------------------------------------------


def test_default_alpha_perturbs_the_model_and_keeps_test_accuracy(tiny) -> None:
    bundle, model = tiny
    task = tiny_task(bundle)
    out = run_unlearning(model, task, "fisher", seed=0)
    with torch.no_grad():
        moved = sum(
            float((p1 - p0).abs().sum())
            for p0, p1 in zip(model.parameters(), out.model.parameters())
        )
    assert moved > 0 and math.isfinite(moved)
    assert _acc(out.model, bundle.test) >= _acc(model, bundle.test) - 0.1
    assert _acc(out.model, task.retain) >= _acc(model, task.retain) - 0.1
    # A much larger alpha destroys more (the noise scales with sqrt(alpha)).
    big = run_unlearning(model, task, "fisher", {"alpha": 1e-1}, seed=0).model
    assert _acc(big, task.retain) < _acc(out.model, task.retain)
