"""Mixed precision: fp32 exactly as before, bf16 on the CPU, fp16's loss scaling in the guard."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unlearnkit as uk
from tests._helpers import one_line
from unlearnkit.bench.identity import digest
from unlearnkit.checks import check_precision
from unlearnkit.data import BatchLoader
from unlearnkit.errors import ConfigError
from unlearnkit.methods import RunContext, get_method
from unlearnkit.methods.fisher import fisher_diagonal
from unlearnkit.methods.salun import saliency_mask
from unlearnkit.methods.ssd import compute_importances
from unlearnkit.optim import OptimizerSpec, build_optimizer
from unlearnkit.testing import (
    TINY_RECIPE,
    tiny_bundle,
    tiny_factory,
    tiny_model,
    tiny_task,
    trained_tiny_model,
)
from unlearnkit.training import MixedPrecision

#: Identity hashes computed before the precision and chunk fields existed: they must not move.
OLD_HASHES = {
    "recipe": "ce466f480468d70f",
    "influence": "a8ea76ef013312b9ae40",
    "salun": "e18c3e68d59099bdc8dc",
    "ssd": "4ff6a22fb43ba8afee20",
    "lfssd": "cb41f3cea2a0dafbbf8f",
    "finetune": "c8a5971ba675d1184c60",
}


@pytest.fixture(scope="module")
def task():
    return tiny_task(tiny_bundle())


@pytest.fixture(scope="module")
def model(task):
    return trained_tiny_model(task.bundle, bn=True)


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_old_identity_hashes_are_unchanged() -> None:
    assert uk.TrainRecipe().hash == OLD_HASHES["recipe"]
    assert uk.TrainRecipe(precision="fp32").hash == OLD_HASHES["recipe"]
    assert "precision" not in uk.TrainRecipe().to_dict()
    assert uk.TrainRecipe(precision="bf16").hash != OLD_HASHES["recipe"]
    assert uk.TrainRecipe(precision="bf16").to_dict()["precision"] == "bf16"
    for name in ("influence", "salun", "ssd", "lfssd", "finetune"):
        assert digest(get_method(name).make_config({}).to_dict()) == OLD_HASHES[name], name


def test_fp32_training_is_a_plain_loop_bit_for_bit() -> None:
    """The default engine is the loop it always was: no autocast, no scaler."""
    b = tiny_bundle()
    recipe = uk.TrainRecipe(epochs=2, batch_size=16, lr=0.05)
    engine = uk.train(tiny_model(b, bn=True), b.train, recipe, seed=4)
    by_hand = tiny_model(b, bn=True)
    opt = build_optimizer(by_hand.parameters(), recipe.optimizer_spec())
    loader = BatchLoader(
        b.train.x, b.train.y, 16, shuffle=True, generator=torch.Generator().manual_seed(4)
    )
    by_hand.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        for _ in range(2):
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(by_hand(xb), yb).backward()
                opt.step()
    assert _same(engine, by_hand)


def test_bf16_training_runs_its_forward_in_bfloat16() -> None:
    b = tiny_bundle()
    m = tiny_model(b)
    seen: list[torch.dtype] = []
    handle = m.head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    recipe = uk.TrainRecipe(epochs=1, batch_size=32, precision="bf16")
    uk.train(m, b.train, recipe, seed=0)
    handle.remove()
    assert seen[1:] and set(seen[1:]) == {torch.bfloat16}  # seen[0]: the fp32 shape probe
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in m.parameters())
    other = uk.train(tiny_model(b), b.train, recipe, seed=0, precision="fp32")
    assert not _same(m, other)  # the keyword overrides the recipe


def test_fp16_and_unknown_precisions_are_refused_on_cpu(task, model) -> None:
    msg = one_line(ConfigError, check_precision, "fp16", "cpu")
    assert "bf16" in msg and "CUDA" in msg
    b = tiny_bundle()
    one_line(ConfigError, uk.train, tiny_model(b), b.train, TINY_RECIPE, precision="fp16")
    one_line(ConfigError, uk.run_unlearning, model, task, "finetune", precision="fp16")
    one_line(ConfigError, check_precision, "half", "cpu", match="fp32, bf16, fp16")
    one_line(ConfigError, uk.TrainRecipe, precision="float16", match="recipe precision")
    assert check_precision(None) == "fp32"


def test_default_run_is_fp32_and_records_nothing_new(task, model) -> None:
    a = uk.run_unlearning(model, task, "finetune", {"epochs": 1}, seed=0)
    b = uk.run_unlearning(model, task, "finetune", {"epochs": 1}, seed=0, precision="fp32")
    assert _same(a.model, b.model)
    assert a.precision == "fp32" and "precision" not in a.record()


def test_a_callers_autocast_does_not_leak_into_an_fp32_run(task, model) -> None:
    plain = uk.run_unlearning(model, task, "finetune", {"epochs": 1}, seed=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = uk.run_unlearning(model, task, "finetune", {"epochs": 1}, seed=0)
    assert _same(plain.model, inside.model)


def test_precision_follows_the_recipe_and_reaches_retrain(task, model) -> None:
    recipe = uk.TrainRecipe(epochs=1, batch_size=16, precision="bf16")
    factory = tiny_factory(task.bundle)
    out = uk.run_unlearning(model, task, "finetune", {"epochs": 1}, seed=0, recipe=recipe)
    assert out.precision == "bf16" and out.record()["precision"] == "bf16"
    fp32 = uk.run_unlearning(model, task, "finetune", {"epochs": 1}, seed=0)
    assert not _same(out.model, fp32.model)
    kw = {"seed": 0, "model_factory": factory}
    r16 = uk.run_unlearning(model, task, "retrain", recipe=TINY_RECIPE, precision="bf16", **kw)
    r32 = uk.run_unlearning(model, task, "retrain", recipe=TINY_RECIPE, **kw)
    assert not _same(r16.model, r32.model)  # the run's precision, not the recipe's fp32


@pytest.mark.parametrize("name", uk.list_methods())
def test_every_method_runs_at_bf16_on_cpu(name, task, model) -> None:
    out = uk.run_unlearning(
        model,
        task,
        name,
        seed=0,
        recipe=TINY_RECIPE,
        model_factory=lambda s: tiny_model(task.bundle, seed=s, bn=True),
        precision="bf16",
    )
    assert not out.diverged, out.info
    assert all(p.dtype == torch.float32 for p in out.model.parameters())
    assert all(torch.isfinite(p).all() for p in out.model.parameters())


def test_statistics_stay_float32_under_bf16_autocast(task, model) -> None:
    x = task.retain.x[:12]
    plain_f = fisher_diagonal(model, x)
    plain_i = compute_importances(model, task.forget, 8)
    plain_m = saliency_mask(model, task.forget, 0.3, batch_size=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast_f = fisher_diagonal(model, x)
        cast_i = compute_importances(model, task.forget, 8)
        cast_m = saliency_mask(model, task.forget, 0.3, batch_size=8)
    for a, b in ((plain_f, cast_f), (plain_i, cast_i), (plain_m, cast_m)):
        assert all(torch.equal(a[k], b[k]) for k in a)


# -- fp16 loss scaling in RunContext.step (exercised on the CPU, where GradScaler works too) --


def _ctx(net: nn.Module, precision: str, **kw) -> RunContext:
    return RunContext(
        model=net,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        seed=0,
        num_classes=3,
        input_shape=(4,),
        scenario="random",
        precision=precision,
        **kw,
    )


def _steps(precision: str, *, zero_grad: bool = True, **kw) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    ctx = _ctx(net, precision, **kw)
    opt = build_optimizer(net.parameters(), OptimizerSpec(lr=0.1))
    x, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for _ in range(3):
        assert ctx.step(opt, F.cross_entropy(net(x), y) * 1e-3, zero_grad=zero_grad)
    assert ctx.info.get("fp16_skipped_steps", 0) == 0
    return net


def test_fp16_scaling_is_exact_for_plain_clipped_and_accumulated_steps() -> None:
    """Scaling by a power of two and unscaling before the update changes nothing."""
    assert _same(_steps("fp16"), _steps("fp32"))
    assert _same(_steps("fp16", max_grad_norm=1e-4), _steps("fp32", max_grad_norm=1e-4))
    assert _same(_steps("fp16", zero_grad=False), _steps("fp32", zero_grad=False))


def test_fp16_overflowing_gradients_skip_the_step_without_divergence() -> None:
    net = nn.Linear(4, 3)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    ctx = _ctx(net, "fp16")
    opt = build_optimizer(net.parameters(), OptimizerSpec(lr=0.1))
    loss = net.weight.sum() * 1e36  # finite, with gradients of 1e36
    assert torch.isfinite(loss)
    assert ctx.step(opt, loss)  # scaled by 65536 the gradients overflow: skipped
    assert not ctx.diverged and ctx.info["fp16_skipped_steps"] == 1
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert ctx.amp.scaler.get_scale() < 65536.0


def test_channels_last_only_for_mixed_precision_cuda_cnns() -> None:
    cnn = uk.models.build("cnn_small", input_shape=(1, 8, 8), num_classes=3)
    mlp = uk.models.build("mlp", input_shape=(4,), num_classes=3)
    assert MixedPrecision("cuda", "bf16").wants_channels_last(cnn)
    assert not MixedPrecision("cuda", "fp32").wants_channels_last(cnn)
    assert not MixedPrecision("cpu", "bf16").wants_channels_last(cnn)
    assert not MixedPrecision("cuda", "bf16").wants_channels_last(mlp)
