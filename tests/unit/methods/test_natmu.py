"""NatMU: masks, label choice, rebalancing, partners, hybrids, training."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import unlearnkit.methods.natmu  # noqa: F401  (registration)
from unlearnkit.api import run_unlearning
from unlearnkit.datasets import Normalization, from_arrays
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.methods import get_method
from unlearnkit.methods.natmu import (
    NatMUConfig,
    blend_hybrids,
    hybrid_masks,
    natmu_masks,
    plan_partners,
    rebalance_targets,
    tent_profiles,
)
from unlearnkit.tasks import forget_task
from unlearnkit.testing import (
    TinyBNNet,
    tiny_bundle,
    tiny_model,
    tiny_task,
    trained_tiny_model,
)

# ---------------------------------------------------------------------------------------------
# Unit test 1: masks


def test_masks_32_known_values() -> None:
    m = natmu_masks(32, 32, 0.0)
    assert m.shape == (4, 32, 32)
    col = m[0, :, 7]
    assert col[[0, 15, 16, 31]].tolist() == [0.0, 0.9375, 0.9375, 0.0]
    assert torch.all(m[0] == m[0][:, :1])  # G_1 is constant along each row
    assert torch.all(m[1] == m[0].T)  # G_2 is the column tent
    assert m[2, 0, 0].item() == 0.9375 and torch.all(m[2, 0] == 0.9375)
    for k in range(4):
        assert m[k].mean().item() == pytest.approx(0.46875, abs=1e-7)


@pytest.mark.parametrize(
    ("delta", "size", "mean"),
    [(-0.19, 32, 0.3028), (-0.053, 32, 0.4191), (-0.03, 32, 0.4406), (0.045, 64, 0.5289)],
)
def test_mask_means_match_the_reference_table(delta: float, size: int, mean: float) -> None:
    m = natmu_masks(size, size, delta)
    for k in range(4):
        assert m[k].mean().item() == pytest.approx(mean, abs=1e-4)


# Golden values from the reference's mask builders (generate_mask_cifar for 32 x 32 and
# generate_mask_tinyimagenet for 64 x 64 in sample-wise/utils/generate_patch_data.py,
# github.com/ZhengbaoHe/NatMU at commit f7b977eda29637261669b79607b58cac699c0948): the sum of each
# mask over one channel (all four masks share it; the channels are identical), G_1 down column 3
# and G_4 along row 3 at the rows/columns (0, 1, L/2 - 1, L/2, L - 2, L - 1).
REFERENCE_MASKS = {
    (32, 0.0): (480.0, [0.0, 0.0625, 0.9375, 0.9375, 0.0625, 0.0], [0.9375, 0.875, 0.0, 0.0]),
    (32, -0.19): (310.08, [0.0, 0.0, 0.7475, 0.7475, 0.0, 0.0], [0.7475, 0.685, 0.0, 0.0]),
    (32, 0.045): (526.08, [0.045, 0.1075, 0.9825, 0.9825, 0.1075, 0.045], [0.9825, 0.92]),
    (32, 0.7): (968.0, [0.7, 0.7625, 1.0, 1.0, 0.7625, 0.7], [1.0, 1.0, 0.7, 0.7, 1.0, 1.0]),
    (64, 0.0): (1984.0, [0.0, 0.03125, 0.96875, 0.96875, 0.03125, 0.0], [0.96875, 0.9375]),
    (64, -0.19): (1292.0, [0.0, 0.0, 0.77875, 0.77875, 0.0, 0.0], [0.77875, 0.7475, 0.0, 0.0]),
    (64, 0.045): (2166.5601, [0.045, 0.07625, 1.0, 1.0, 0.07625, 0.045], [1.0, 0.9825, 0.045]),
    (64, 0.7): (3892.0, [0.7, 0.73125, 1.0, 1.0, 0.73125, 0.7], [1.0, 1.0, 0.7, 0.7, 1.0, 1.0]),
}


@pytest.mark.parametrize(("size", "delta"), sorted(REFERENCE_MASKS))
def test_masks_equal_the_reference_builder(size: int, delta: float) -> None:
    total, g1, g4 = REFERENCE_MASKS[(size, delta)]
    m = natmu_masks(size, size, delta).double()
    assert m.sum(dim=(1, 2)).tolist() == pytest.approx([total] * 4, abs=1e-3)
    at = [0, 1, size // 2 - 1, size // 2, size - 2, size - 1]
    assert m[0, at, 3].tolist() == pytest.approx(g1, abs=1e-6)
    assert m[3, 3, at[: len(g4)]].tolist() == pytest.approx(g4, abs=1e-6)


def test_eight_by_eight_profile_and_odd_sizes() -> None:
    t, v = tent_profiles(8)
    assert t.tolist() == [0, 0.25, 0.5, 0.75, 0.75, 0.5, 0.25, 0]
    assert v.tolist() == [0.75, 0.5, 0.25, 0, 0, 0.25, 0.5, 0.75]
    assert natmu_masks(8, 8, 0.0).mean(dim=(1, 2)).tolist() == [0.375] * 4
    # Odd L: b = ceil(L/2), T(r) = min(r, L-1-r)/b; non-square images use each axis' length.
    t5, v5 = tent_profiles(5)
    assert torch.allclose(t5, torch.tensor([0, 1 / 3, 2 / 3, 1 / 3, 0]))
    assert torch.allclose(v5, t5.max() - t5)
    m = natmu_masks(5, 6, 0.0, n_hybrids=2)
    assert m.shape == (2, 5, 6)
    assert torch.allclose(m[1, 0], tent_profiles(6)[0])
    assert natmu_masks(8, 8, 2.0).min().item() == 1.0  # delta >= 1: plain relabelling
    with pytest.raises(ConfigError):
        natmu_masks(8, 8, 0.0, n_hybrids=5)


# ---------------------------------------------------------------------------------------------
# Unit test 2: partner plans on random data with K = 10


def random_problem(n_f: int = 60, n_r: int = 1000, k: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(2 * torch.randn(n_f, k, generator=g), dim=1)
    labels = torch.randint(0, k, (n_f,), generator=g)
    retain_labels = torch.randint(0, k, (n_r,), generator=g)
    return probs, labels, retain_labels


def assert_valid_plan(plan, labels, retain_labels, *, true_label_free: bool = True) -> None:
    t, p = plan.targets, plan.partners
    assert torch.equal(retain_labels[p], t), "a partner's label differs from its hybrid label"
    flat = p.flatten().tolist()
    assert len(flat) == len(set(flat)), "a retain image was used twice"
    if true_label_free:
        assert not (t == labels[:, None]).any(), "a hybrid carries its source's true label"
        for row in t.tolist():
            assert len(set(row)) == len(row), "targets of one sample repeat"


@pytest.mark.parametrize("label_rule", ["topk", "topk_balanced", "random_other"])
@pytest.mark.parametrize("mode", ["guarded", "reference"])
def test_partner_plan_invariants(label_rule: str, mode: str) -> None:
    probs, labels, retain_labels = random_problem()
    plan = plan_partners(
        probs,
        labels,
        retain_labels,
        4,
        generator=torch.Generator().manual_seed(1),
        label_rule=label_rule,
        rebalance_mode=mode,
    )
    assert plan.targets.shape == plan.partners.shape == (60, 4)
    assert_valid_plan(plan, labels, retain_labels)


def test_topk_targets_are_the_most_probable_wrong_classes_in_order() -> None:
    probs, labels, retain_labels = random_problem()
    plan = plan_partners(
        probs, labels, retain_labels, 4, generator=torch.Generator(), label_rule="topk"
    )
    masked = probs.clone()
    masked[torch.arange(len(labels)), labels] = 0
    expected = torch.topk(masked, 4, dim=1).indices
    assert torch.equal(plan.targets, expected)
    assert plan.info["supply_guard_triggers"] == 0 and not plan.info["rebalanced"]


def test_plans_are_reproducible_and_labels_fall_back_to_argmax() -> None:
    probs, labels, retain_labels = random_problem()
    a = plan_partners(probs, labels, retain_labels, 3, generator=torch.Generator().manual_seed(5))
    b = plan_partners(probs, labels, retain_labels, 3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.partners, b.partners) and torch.equal(a.targets, b.targets)
    c = plan_partners(probs, None, retain_labels, 3, generator=torch.Generator().manual_seed(5))
    assert c.info["label_source"] == "argmax"
    assert torch.equal(c.labels, probs.argmax(1))
    assert_valid_plan(c, probs.argmax(1), retain_labels)


def test_too_many_hybrids_for_k_is_rejected() -> None:
    probs, labels, retain_labels = random_problem(k=3)
    with pytest.raises(ConfigError, match="n_hybrids"):
        plan_partners(probs, labels, retain_labels, 3, generator=torch.Generator())


# ---------------------------------------------------------------------------------------------
# Unit test 3: class mode and reinit_linear


@pytest.mark.parametrize("forget_classes", [(2,), (2, 5)])
def test_class_mode_never_uses_a_forget_class(forget_classes: tuple[int, ...]) -> None:
    k, n_f = 10, 40
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n_f, k, generator=g)
    logits[:, 5] += 8.0  # the other forget class is the most probable wrong class
    labels = torch.full((n_f,), forget_classes[0])
    pool = torch.tensor([c for c in range(k) if c not in forget_classes])
    retain_labels = pool[torch.randint(0, len(pool), (800,), generator=g)]
    plan = plan_partners(
        torch.softmax(logits, 1),
        labels,
        retain_labels,
        4,
        generator=g,
        label_rule="topk",
        scenario="class",
        exclude_classes=forget_classes,
    )
    used = set(plan.targets.flatten().tolist())
    assert not used & set(forget_classes)
    assert_valid_plan(plan, labels, retain_labels)


def test_class_mode_supply_guard_takes_the_next_most_probable_class() -> None:
    # All 6 forget samples (class 0) prefer 1 > 2 > 3 > 4; class 1 has only 3 retain images.
    probs = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]).repeat(6, 1)
    labels = torch.zeros(6, dtype=torch.long)
    retain_labels = torch.tensor([1] * 3 + [2] * 10 + [3] * 10 + [4] * 10)
    plan = plan_partners(
        probs,
        labels,
        retain_labels,
        2,
        generator=torch.Generator().manual_seed(0),
        label_rule="topk_balanced",
        scenario="class",
        exclude_classes=(0,),
    )
    assert plan.targets.tolist() == [[1, 2]] * 3 + [[3, 2]] * 3
    assert plan.info["supply_guard_triggers"] == 3
    assert not plan.info["rebalanced"]  # no capacity rebalancing in class scenarios
    assert_valid_plan(plan, labels, retain_labels)


def test_running_out_of_partners_reuses_retain_images() -> None:
    # 3 forget samples x 2 hybrids need 3 partners of class 1 and 3 of class 2; each class has 2.
    probs = torch.tensor([[0.6, 0.3, 0.1]]).repeat(3, 1)
    labels = torch.zeros(3, dtype=torch.long)
    retain_labels = torch.tensor([1, 1, 2, 2])
    plan = plan_partners(
        probs,
        labels,
        retain_labels,
        2,
        generator=torch.Generator().manual_seed(0),
        label_rule="topk",
        scenario="class",
        exclude_classes=(0,),
    )
    assert plan.targets.tolist() == [[1, 2]] * 3  # every sample keeps its targets and masks
    assert torch.equal(retain_labels[plan.partners], plan.targets)
    assert plan.info["partner_reuse"] == 2 and plan.info["pool_refills"] == 2
    # The first pass through each class's pool still uses each image once.
    assert sorted(plan.partners[:2].flatten().tolist()) == [0, 1, 2, 3]


def test_no_retain_image_of_any_candidate_class_is_a_clear_data_error() -> None:
    probs = torch.tensor([[0.6, 0.3, 0.1]]).repeat(2, 1)
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(DataError, match="no image of class 2 nor of any other class"):
        plan_partners(
            probs,
            labels,
            torch.tensor([1, 1, 1]),
            2,
            generator=torch.Generator(),
            label_rule="topk",
            scenario="class",
            exclude_classes=(0,),
        )


def test_reinit_linear_changes_only_linear_weights() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = tiny_model(bundle, bn=True)
    assert isinstance(model, TinyBNNet)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = run_unlearning(model, task, "natmu", {"reinit_linear": True, "max_steps": 0}, seed=0)
    after = out.model.state_dict()
    linear_weights = {
        f"{name}.weight" for name, m in out.model.named_modules() if isinstance(m, nn.Linear)
    }
    assert linear_weights == {"body.1.0.weight", "head.weight"}
    for key, value in before.items():
        if key in linear_weights:
            assert not torch.equal(value, after[key]), f"{key} was not re-initialised"
        else:
            assert torch.equal(value, after[key]), f"{key} changed"
    assert out.info["reinit_linear_layers"] == 2
    # Xavier-normal with gain sqrt(2): std = sqrt(2) * sqrt(2 / (fan_in + fan_out)).
    std = math.sqrt(2.0) * math.sqrt(2.0 / (36 + 16))
    assert after["body.1.0.weight"].std().item() == pytest.approx(std, rel=0.2)


# ---------------------------------------------------------------------------------------------
# Unit test 4: blending and the vector rule


def test_constant_masks_give_the_forget_input_or_the_partner() -> None:
    g = torch.Generator().manual_seed(0)
    xf, xr = torch.randn(3, 1, 4, 4, generator=g), torch.randn(10, 1, 4, 4, generator=g)
    partners = torch.tensor([[4, 7], [0, 9], [2, 3]])
    masks = torch.stack([torch.ones(1, 4, 4), torch.zeros(1, 4, 4)])
    h = blend_hybrids(xf, xr, partners, masks).reshape(3, 2, 1, 4, 4)
    assert torch.equal(h[:, 0], xf)
    assert torch.equal(h[:, 1], xr[partners[:, 1]])
    # A real mask is the convex blend, sample-major.
    m = natmu_masks(4, 4, 0.0, 2)[:, None]
    h = blend_hybrids(xf, xr, partners, m).reshape(3, 2, 1, 4, 4)
    assert torch.allclose(h[1, 1], m[1] * xf[1] + (1 - m[1]) * xr[9])


def test_quantized_hybrids_are_integer_in_raw_space() -> None:
    norm = Normalization(raw_range=(0.0, 16.0), quantized=True)
    g = torch.Generator().manual_seed(0)
    raw_f = torch.randint(0, 17, (4, 1, 8, 8), generator=g).float()
    raw_r = torch.randint(0, 17, (12, 1, 8, 8), generator=g).float()
    xf, xr = norm.to_model(raw_f), norm.to_model(raw_r)
    partners = torch.arange(12).reshape(4, 3)
    masks = natmu_masks(8, 8, 0.0, 3)[:, None]
    exact = blend_hybrids(xf, xr, partners, masks, normalization=norm, quantize="none")
    rounded = blend_hybrids(xf, xr, partners, masks, normalization=norm, quantize="round")
    raw = norm.to_raw(rounded, round_=False)
    assert torch.allclose(raw, raw.round(), atol=1e-5)
    assert not torch.allclose(norm.to_raw(exact, round_=False), raw)
    assert (raw - norm.to_raw(exact, round_=False)).abs().max().item() <= 0.5 + 1e-5


def test_vector_rule_gives_every_feature_a_large_forget_weight() -> None:
    for dim in (36, 37):
        masks, rule = hybrid_masks(
            (dim,), 0.0, 4, rule="auto", generator=torch.Generator().manual_seed(0)
        )
        assert rule == "index_perm" and masks.shape == (4, dim)
        t, _ = tent_profiles(dim)
        assert bool((masks.max(0).values >= 0.5 * t.max()).all())
        assert torch.equal(masks[1].sort().values, masks[0].sort().values)  # permuted tent
        assert not torch.equal(masks[1], masks[0])
        assert torch.allclose(masks[0] + masks[2], torch.full((dim,), t.max().item()))
        assert masks[0].mean().item() == pytest.approx(0.5 * t.max().item(), abs=0.02)


def test_auto_rule_reshapes_flattened_images() -> None:
    masks, rule = hybrid_masks((64,), -0.1, 4, rule="auto", image_shape=(1, 8, 8))
    assert rule == "image"
    assert torch.equal(masks, natmu_masks(8, 8, -0.1).reshape(4, 64))
    masks, rule = hybrid_masks((3, 4, 6), 0.0, 2)
    assert rule == "image" and torch.equal(masks[:, 2], natmu_masks(4, 6, 0.0, 2))
    with pytest.raises(ConfigError, match="index_perm"):
        hybrid_masks((10,), 0.0, 2, rule="image")
    _, rule = hybrid_masks((64,), 0.0, 2, rule="index_perm", image_shape=(1, 8, 8))
    assert rule == "index_perm"


# ---------------------------------------------------------------------------------------------
# Unit test 5: capacity rebalancing


def skewed_problem():
    # K = 10; class 0 has only 60 retain images, the others 100 (n_r = 960, m = 96, cap = 94).
    k, n_f = 10, 200
    g = torch.Generator().manual_seed(0)
    retain_labels = torch.cat([torch.zeros(60), torch.arange(1, 10).repeat_interleave(100)])
    retain_labels = retain_labels.long()[torch.randperm(960, generator=g)]
    labels = torch.randint(1, k, (n_f,), generator=g)
    logits = torch.randn(n_f, k, generator=g)
    logits[: int(0.9 * n_f), 0] += 10.0  # 90 % of the top-1 votes go to class 0
    probs = torch.softmax(logits, 1)
    return probs, labels, retain_labels


def test_rebalancing_respects_every_capacity_and_partners_follow() -> None:
    probs, labels, retain_labels = skewed_problem()
    assert (probs.argmax(1) == 0).float().mean().item() >= 0.9
    plan = plan_partners(
        probs, labels, retain_labels, 4, generator=torch.Generator().manual_seed(2)
    )
    m = 960 / 10
    caps = torch.minimum(torch.full((10,), math.floor(0.98 * m)), torch.bincount(retain_labels))
    counts = torch.bincount(plan.targets.flatten(), minlength=10)
    assert bool((counts <= caps).all()), (counts, caps)
    assert counts[0].item() == 60  # class 0 keeps its first cap_0 = min(94, 60) targets
    assert plan.info["rebalanced"] and 0 in plan.info["rebalance_overflow_classes"]
    assert plan.info["rebalance_reassigned"] >= 180 - 60
    assert_valid_plan(plan, labels, retain_labels)


def test_reference_rebalancing_has_no_supply_guard() -> None:
    probs, labels, retain_labels = skewed_problem()
    with pytest.raises(DataError, match="guarded"):
        plan_partners(
            probs,
            labels,
            retain_labels,
            4,
            generator=torch.Generator().manual_seed(2),
            rebalance_mode="reference",
        )


def test_rebalancing_known_answer_reference_and_guarded() -> None:
    # K = 4, 10 retain images per class: m = 10, cap = 9, low = 4. Class 1 has 12 targets;
    # class 0 (count 0) is the only pool class. The last sample's true label is 0.
    targets = torch.ones(12, 1, dtype=torch.long)
    labels = torch.tensor([2] * 11 + [0])
    supply = torch.full((4,), 10)
    ref, info = rebalance_targets(
        targets, labels, supply, mode="reference", generator=torch.Generator()
    )
    assert ref.flatten().tolist() == [1] * 9 + [0] * 3  # the quirk: 0 is sample 11's label
    assert info["reassigned"] == 3 and info["overflow_classes"] == [1]
    ours, info = rebalance_targets(
        targets, labels, supply, mode="guarded", generator=torch.Generator()
    )
    # Sample 11 skips pool class 0 (its true label); the pool is then exhausted, so it takes the
    # unused class with the most remaining room (2 and 3 tie: the lower index).
    assert ours.flatten().tolist() == [1] * 9 + [0, 0, 2]
    assert info["fallbacks"] == 1


def test_reference_rebalancing_without_a_pool_raises() -> None:
    targets = torch.zeros(12, 1, dtype=torch.long)
    with pytest.raises(DataError, match="guarded"):
        rebalance_targets(
            targets,
            torch.ones(12, dtype=torch.long),
            torch.full((4,), 10),
            mode="reference",
            generator=torch.Generator(),
        )


# ---------------------------------------------------------------------------------------------
# Config, registration, the method end to end


def test_config_defaults_presets_and_scenario_defaults() -> None:
    cfg = NatMUConfig()
    assert (cfg.n_hybrids, cfg.delta, cfg.epochs, cfg.batch_size) == (4, -0.053, 5, 128)
    assert (cfg.optimizer.name, cfg.optimizer.lr, cfg.optimizer.weight_decay) == (
        "adamw",
        1e-3,
        5e-4,
    )
    assert (cfg.scheduler.name, cfg.scheduler.per_step, cfg.scheduler.warmup_steps) == (
        "cosine",
        True,
        0,
    )
    spec = get_method("natmu")
    assert spec.make_config(scenario="random").label_rule == "topk_balanced"
    assert spec.make_config(scenario="class").label_rule == "topk"
    full = spec.make_config(preset="cifar100_fullclass", scenario="class")
    assert full.reinit_linear and full.optimizer.lr == 2.8e-4 and full.optimizer.name == "adamw"
    digits = spec.make_config(preset="digits")
    assert (digits.batch_size, digits.delta, digits.augment_retain) == (64, 0.0, False)
    # The lr shortcut keeps NatMU's AdamW (not the generic SGD default).
    assert NatMUConfig.from_dict({"lr": 5e-3}).optimizer.name == "adamw"
    assert spec.identity_config == {"max_steps": 0, "reinit_linear": False}


@pytest.mark.parametrize(
    "bad",
    [
        {"n_hybrids": 0},
        {"n_hybrids": 5},
        {"label_rule": "top1"},
        {"rebalance_mode": "x"},
        {"vector_mask_rule": "pixels"},
        {"balance_low": 0.99},
        {"delta": float("nan")},
    ],
)
def test_bad_configs_are_rejected(bad: dict) -> None:
    with pytest.raises(ConfigError):
        NatMUConfig.from_dict(bad)


def test_diagnostics_and_quantized_vector_images() -> None:
    # Flattened 4x4 "images" with raw values 0..16 (like sklearn digits, smaller).
    g = torch.Generator().manual_seed(0)
    y = torch.arange(120) % 4
    raw = (torch.rand(120, 16, generator=g) * 8 + y[:, None] * 2).round().clamp(0, 16)
    norm = Normalization(raw_range=(0.0, 16.0), quantized=True)
    x = norm.to_model(raw)
    bundle = from_arrays(
        x[:90], y[:90], x[90:], y[90:], num_classes=4, image_shape=(1, 4, 4), normalization=norm
    )
    task = forget_task(bundle, "random", fraction=0.1, seed=0)
    model = tiny_model(bundle)
    out = run_unlearning(model, task, "natmu", {"max_steps": 3, "batch_size": 32}, seed=0)
    info = out.info
    assert out.steps == 3
    assert info["mask_rule"] == "image" and info["quantized_hybrids"]
    assert info["n_hybrids_per_sample"] == 3 and info["n_hybrids_requested"] == 4
    assert info["n_hybrids"] == 3 * task.n_forget
    assert info["mean_forget_weight"] == pytest.approx(natmu_masks(4, 4, -0.053, 3).mean().item())
    assert info["rebalanced"] and "supply_guard_triggers" in info


def test_natmu_forgets_a_class_while_retain_accuracy_holds() -> None:
    bundle = tiny_bundle()
    task = tiny_task(bundle, "class")
    model = trained_tiny_model(bundle)

    def acc(m: nn.Module, view) -> float:
        with torch.no_grad():
            return (m(view.x).argmax(1) == view.y).float().mean().item()

    assert acc(model, task.forget) == 1.0
    out = run_unlearning(model, task, "natmu", {"delta": 0.3, "lr": 1e-2, "epochs": 10}, seed=0)
    assert acc(out.model, task.forget) <= 0.25
    assert acc(out.model, task.retain) >= 0.95
    assert 0 not in set(out.info.get("rebalance_overflow_classes", []))


def test_only_the_retain_part_of_a_batch_is_augmented() -> None:
    seen: list[torch.Tensor] = []

    def recorder(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(x.clone())
        return x

    bundle = tiny_bundle()
    bundle.augment = recorder
    task = tiny_task(bundle, "random")
    retain_rows = {tuple(r.tolist()) for r in task.retain.x.flatten(1)}
    model = tiny_model(bundle)
    out = run_unlearning(model, task, "natmu", {"max_steps": 2, "batch_size": 64}, seed=0)
    assert out.steps == 2 and len(seen) == 2
    assert all(tuple(r.tolist()) in retain_rows for x in seen for r in x.flatten(1))
    seen.clear()
    run_unlearning(model, task, "natmu", {"max_steps": 2, "augment_retain": False}, seed=0)
    assert not seen
    run_unlearning(
        model,
        task,
        "natmu",
        {"max_steps": 1, "augment_retain": False, "augment_hybrids": True},
        seed=0,
    )
    assert seen and all(tuple(r.tolist()) not in retain_rows for r in seen[0].flatten(1))
