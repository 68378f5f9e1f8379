"""SalUn: the saliency mask, exact mask enforcement, presets and the training schedule."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import unlearnkit as uk
import unlearnkit.methods.random_labels  # noqa: F401  (registers random_labels)
import unlearnkit.methods.salun  # noqa: F401  (registers salun)
from unlearnkit.data import DataViews
from unlearnkit.methods._loop import make_optimizer
from unlearnkit.methods.base import RunContext
from unlearnkit.methods.random_labels import RandomLabelsConfig, train_with_random_labels
from unlearnkit.methods.salun import SalUnConfig, masked_update_hooks, saliency_mask
from unlearnkit.optim import OptimizerSpec, build_optimizer
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


def _acc(model: torch.nn.Module, view) -> float:
    with torch.no_grad():
        return float((model(view.x).argmax(1) == view.y).float().mean())


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _eval_saliency(model: torch.nn.Module, view, batch_size: int) -> dict[str, torch.Tensor]:
    """Slow reference: eval mode, backward per batch in order, sum the signed grads, abs."""
    ref = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    was = model.training
    model.eval()
    for start in range(0, len(view), batch_size):
        model.zero_grad()
        x, y = view.x[start : start + batch_size], view.y[start : start + batch_size]
        (-F.cross_entropy(model(x), y)).backward()
        for n, p in model.named_parameters():
            ref[n] += p.grad
    model.zero_grad(set_to_none=True)
    model.train(was)
    return {n: g.abs() for n, g in ref.items()}


# -- Test 2: exact density; computed in eval mode ---------------------------------------------


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.37, 0.5, 0.999])
def test_mask_density_is_floor_threshold_times_p(threshold: float) -> None:
    bundle = tiny_bundle()
    model = trained_tiny_model(bundle, bn=True)
    mask = saliency_mask(
        model, tiny_task(bundle).forget, threshold, 4, torch.Generator().manual_seed(0), "cpu"
    )
    total = sum(p.numel() for p in model.parameters())
    assert set(mask) == {n for n, _ in model.named_parameters()}  # biases and BN included
    assert all(
        m.dtype == torch.bool and m.shape == p.shape
        for (n, p), m in zip(model.named_parameters(), mask.values())
    )
    selected = sum(int(m.sum()) for m in mask.values())
    assert selected == math.floor(threshold * total)


def test_mask_is_computed_in_eval_mode_and_leaves_the_model_untouched() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle, bn=True)
    model.train()
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    params = _params(model)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    mask = saliency_mask(model, task.forget, 0.3, 8, None, "cpu")
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # BN stats
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())
    for n, p in model.named_parameters():  # no .grad accumulated, no flag changed
        assert p.requires_grad
        assert (p.grad is None) if grads[n] is None else torch.equal(p.grad, grads[n])
    # The selected coordinates are the top of the eval-mode saliency.
    ref = _eval_saliency(model, task.forget, 8)
    chosen = torch.cat([ref[n][mask[n]] for n in mask])
    rest = torch.cat([ref[n][~mask[n]] for n in mask])
    assert float(chosen.min()) >= float(rest.max())
    assert float(chosen.min()) > 0
    # A train-mode pass (batch statistics, dropout) would give another saliency.
    model.train()
    torch.manual_seed(0)
    x, y = task.forget.x, task.forget.y
    grads = torch.autograd.grad(-F.cross_entropy(model(x), y), list(model.parameters()))
    train_scores = torch.cat([g.abs().flatten() for g in grads])
    eval_scores = torch.cat([ref[n].flatten() for n in mask])
    assert not torch.allclose(train_scores, eval_scores)
    # ... and train-mode forward passes would have moved the BN running statistics.
    assert not all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())


def test_mask_needs_forget_labels_and_a_valid_threshold() -> None:
    bundle = tiny_bundle()
    model = trained_tiny_model(bundle)
    forget = tiny_task(bundle).forget
    with pytest.raises(uk.AccessError):
        saliency_mask(model, forget.without_labels(), 0.5)
    with pytest.raises(uk.ConfigError):
        saliency_mask(model, forget, 0.0)
    for bad in ({"threshold": 0.0}, {"threshold": 1.5}, {"mask_batch_size": 0}):
        with pytest.raises(uk.ConfigError):
            SalUnConfig.from_dict(bad)


# -- Test 1: every mask-0 coordinate stays bit-identical to theta_o ----------------------------


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "sgd", "lr": 0.2, "momentum": 0.9, "weight_decay": 5e-4},
        {"name": "adamw", "lr": 0.02, "weight_decay": 0.05},
        {"name": "adam", "lr": 0.02, "weight_decay": 5e-4},
    ],
    ids=["sgd-momentum-wd", "adamw", "adam-l2"],
)
def test_mask_zero_coordinates_are_bit_identical_to_theta_o(optimizer: dict) -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle, bn=True)  # BN affine parameters are masked too
    theta_o = _params(model)
    cfg = {"threshold": 0.3, "epochs": 6, "batch_size": 16, "optimizer": optimizer}
    out = uk.run_unlearning(model, task, "salun", cfg, seed=7)
    # Sequential (the default): ceil(24/16) forget + ceil(72/16) retain steps an epoch.
    assert out.steps == 6 * (2 + 5) and not out.diverged
    # The mask of the run: the first draws of the run's generator shuffle the mask batches.
    mask = saliency_mask(model, task.forget, 0.3, 16, torch.Generator().manual_seed(7), "cpu")
    total = sum(m.numel() for m in mask.values())
    assert out.info["mask_density"] == math.floor(0.3 * total) / total
    changed = 0
    for name, p in out.model.named_parameters():
        frozen = ~mask[name]
        assert torch.equal(p.detach()[frozen], theta_o[name][frozen]), name
        changed += int((p.detach() != theta_o[name])[mask[name]].sum())
    # The update was real: most selected coordinates moved.
    assert changed > 0.8 * out.info["mask_selected"]


def test_gradient_masking_alone_leaks_through_weight_decay_and_momentum() -> None:
    """Why enforcement is required: without it the frozen coordinates move."""
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle)
    theta_o = _params(model)
    mask = saliency_mask(model, task.forget, 0.3, 16)
    cfg = RandomLabelsConfig.from_dict({"epochs": 3, "batch_size": 16, "lr": 0.1})
    ctx = RunContext(
        model=model,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        seed=0,
        num_classes=4,
        input_shape=(1, 6, 6),
        scenario="random",
    )
    opt = make_optimizer(model, cfg)
    before, _after = masked_update_hooks(model, mask, opt)
    train_with_random_labels(
        model,
        DataViews(forget=task.forget, retain=task.retain),
        cfg,
        ctx,
        optimizer=opt,
        before_step=before,
    )
    leaked = sum(
        int((p.detach() != theta_o[n])[~mask[n]].sum()) for n, p in model.named_parameters()
    )
    assert leaked > 0


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
def test_hooks_zero_the_optimizer_state_outside_the_mask(name: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Linear(4, 3))
    mask = {n: torch.rand(p.shape) < 0.5 for n, p in model.named_parameters()}
    theta_o = _params(model)
    opt = build_optimizer(model.parameters(), OptimizerSpec(name=name, lr=0.05, weight_decay=0.01))
    before, after = masked_update_hooks(model, mask, opt)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        before()
        opt.step()
        after()
    for n, p in model.named_parameters():
        off = ~mask[n]
        assert torch.equal(p.detach()[off], theta_o[n][off])
        assert bool((p.detach() != theta_o[n])[mask[n]].all())
        state = opt.state[p]
        keys = ["momentum_buffer"] if name == "sgd" else ["exp_avg", "exp_avg_sq"]
        for key in keys:
            assert bool((state[key][off] == 0).all()), key
            assert bool((state[key][mask[n]] != 0).all()), key
        if name != "sgd":
            assert float(state["step"]) == 4.0  # the step counter is left alone


# -- Test 3: threshold 1 reproduces RL ---------------------------------------------------------


def test_threshold_one_reproduces_random_labels_with_the_same_seed() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    model = trained_tiny_model(bundle, bn=True)
    cfg = {"epochs": 3, "batch_size": 16, "lr": 0.05, "schedule": "sequential"}
    a = uk.run_unlearning(model, task, "salun", {**cfg, "threshold": 1.0}, seed=4)
    b = uk.run_unlearning(model, task, "random_labels", cfg, seed=4)
    assert a.info["mask_density"] == 1.0
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sb)
    assert a.steps == b.steps == 3 * (1 + 6)  # sequential: ceil(10/16) + ceil(86/16) a epoch


def test_a_full_mask_through_the_hooks_is_the_plain_rl_update() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle)
    views = DataViews(forget=task.forget, retain=task.retain)
    cfg = RandomLabelsConfig.from_dict({"epochs": 2, "batch_size": 16, "lr": 0.05})
    results = []
    for hooked in (False, True):
        model = trained_tiny_model(bundle)
        ctx = RunContext(
            model=model,
            device=torch.device("cpu"),
            generator=torch.Generator().manual_seed(1),
            seed=1,
            num_classes=4,
            input_shape=(1, 6, 6),
            scenario="random",
        )
        opt = make_optimizer(model, cfg)
        mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
        before, after = masked_update_hooks(model, mask, opt) if hooked else (None, None)
        train_with_random_labels(
            model, views, cfg, ctx, optimizer=opt, before_step=before, after_step=after
        )
        results.append(_params(model))
    assert all(torch.equal(results[0][n], results[1][n]) for n in results[0])


# -- presets, conformance, behaviour -----------------------------------------------------------


def test_presets() -> None:
    spec = uk.get_method("salun")
    default = spec.make_config()
    assert (default.threshold, default.optimizer.lr, default.epochs) == (0.5, 0.013, 10)
    # The reference's CIFAR-10 path (RL.py) is sequential; mixed is its CIFAR-100 path.
    assert default.schedule == "sequential" and default.batch_size == 256
    assert default == spec.make_config(preset="salun_cifar10_random")
    assert SalUnConfig().schedule == "sequential"
    c100 = spec.make_config(preset="salun_cifar100")
    assert c100.schedule == "mixed"
    assert (c100.threshold, c100.optimizer.lr, c100.epochs) == (0.5, 0.013, 10)
    natmu = spec.make_config(preset="natmu_cifar100")
    assert (natmu.threshold, natmu.optimizer.name, natmu.optimizer.lr) == (0.21, "adamw", 5.7e-5)
    assert natmu.scheduler.name == "cosine" and natmu.mask_batch_size == 500
    digits = spec.make_config(preset="digits")
    assert (digits.threshold, digits.optimizer.lr, digits.epochs, digits.batch_size) == (
        0.5,
        0.01,
        5,
        64,
    )
    assert digits.schedule == "mixed"  # what the digits benchmark was tuned with


def test_behaviour_forgets_the_class_while_retain_accuracy_holds() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle)
    out = uk.run_unlearning(
        model, task, "salun", {"epochs": 5, "batch_size": 16, "lr": 0.01}, seed=0
    )
    assert out.info["mask_density"] == pytest.approx(0.5, abs=1e-3)
    assert _acc(out.model, task.forget) <= 0.2
    assert _acc(out.model, task.retain) >= 0.95
    assert _acc(out.model, task.test) >= 0.9


# -- the default schedule: sequential, as the reference's CIFAR-10 path -------------------------


def _training_batches(task, config: dict, seed: int = 0) -> tuple[list[list[str]], dict]:
    """Run salun; label each train-mode batch's rows 'f' (forget) or 'r' (retain)."""
    model = trained_tiny_model(tiny_bundle())
    forget_rows = {tuple(r.tolist()) for r in task.forget.x.flatten(1)}
    batches: list[list[str]] = []

    def record(module, args):
        if module.training:  # the saliency pass runs in eval mode
            rows = args[0].flatten(1)
            batches.append(["f" if tuple(r.tolist()) in forget_rows else "r" for r in rows])

    model.register_forward_pre_hook(record)
    out = uk.run_unlearning(model, task, "salun", config, seed=seed)
    return batches, out.info


def test_default_schedule_runs_every_forget_batch_before_the_retain_batches() -> None:
    task = tiny_task(tiny_bundle())
    n_f, n_r, bs = len(task.forget), len(task.retain), 4
    per_epoch_f, per_epoch_r = math.ceil(n_f / bs), math.ceil(n_r / bs)
    batches, info = _training_batches(task, {"epochs": 2, "batch_size": bs, "lr": 0.01})
    assert len(batches) == 2 * (per_epoch_f + per_epoch_r)
    for e in range(2):
        epoch = batches[e * (per_epoch_f + per_epoch_r) : (e + 1) * (per_epoch_f + per_epoch_r)]
        # All forget batches of the epoch first (only forget rows), then only retain rows.
        assert all(set(b) == {"f"} for b in epoch[:per_epoch_f])
        assert all(set(b) == {"r"} for b in epoch[per_epoch_f:])
        assert sum(len(b) for b in epoch[:per_epoch_f]) == n_f
        assert sum(len(b) for b in epoch[per_epoch_f:]) == n_r
    assert info["label_draws"] == 2  # fresh random forget labels every epoch
    # The CIFAR-100 path (mixed) shuffles forget rows in among the retain rows.
    batches, _ = _training_batches(
        task, {"epochs": 2, "batch_size": bs, "lr": 0.01, "schedule": "mixed"}
    )
    assert len(batches) == 2 * math.ceil((n_f + n_r) / bs)
    assert any(set(b) == {"f", "r"} for b in batches)


# -- the saliency mask against the reference ---------------------------------------------------


def _golden_mlp() -> torch.nn.Sequential:
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3))
    with torch.no_grad():
        m[0].weight.copy_(
            torch.tensor([[0.3, -0.2, 0.1, 0.05], [-0.1, 0.25, -0.3, 0.2], [0.15, 0.1, 0.2, -0.25]])
        )
        m[0].bias.copy_(torch.tensor([0.05, -0.05, 0.1]))
        m[2].weight.copy_(torch.tensor([[0.4, -0.3, 0.2], [-0.25, 0.35, 0.1], [0.05, -0.15, 0.45]]))
        m[2].bias.copy_(torch.tensor([0.02, -0.04, 0.03]))
    return m


# Golden masks: OPTML-Group/Unlearn-Saliency, commit a6e89fd17ff737c24c6aa16c9574469a234ffd91,
# Classification/generate_mask.py::save_gradient_ratio run on CPU on _golden_mlp and the forget
# tensors below (an unshuffled loader of batch 2), read back from its with_{threshold}.pt files
# and flattened in named_parameters order (0.weight, 0.bias, 2.weight, 2.bias). The 27 saliency
# scores are distinct (smallest gap 3.5e-4), so tie-breaking plays no part.
_REFERENCE_MASKS = {
    0.1: "000001000000000000000000010",
    0.2: "010001000000100000000000110",
    0.3: "010011100000110000000000110",
    0.4: "010011100000110000010010110",
    0.5: "110011101100110000010010110",
    0.6: "110011111110110000011010110",
    0.7: "111011111110110001011010110",
    0.8: "111111111110111101011010110",
    0.9: "111111111110111101111111110",
    1.0: "111111111111111111111111111",
}


@pytest.mark.parametrize("threshold", sorted(_REFERENCE_MASKS))
def test_saliency_mask_matches_the_reference_generate_mask(threshold: float) -> None:
    from unlearnkit.data import DataView

    xf = torch.tensor(
        [
            [1.0, -0.5, 0.25, 2.0],
            [0.5, 1.5, -1.0, 0.0],
            [-1.0, 0.5, 0.75, 1.0],
            [0.3, -1.2, 0.6, -0.4],
            [0.9, 0.8, -0.2, 0.1],
        ]
    )
    yf = torch.tensor([0, 1, 2, 2, 1])
    mask = saliency_mask(_golden_mlp(), DataView("forget", xf, yf), threshold, batch_size=2)
    flat = "".join(str(int(v)) for v in torch.cat([m.flatten() for m in mask.values()]))
    assert flat == _REFERENCE_MASKS[threshold]
