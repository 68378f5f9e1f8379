"""NatMU: natural machine unlearning with forget/retain hybrids.

Each forget image is blended with retain images of *other* classes through smooth tent/V masks
and every hybrid carries the retain image's true label; the model is then fine-tuned with plain
cross-entropy on ``D_r`` plus the hybrids. The pure building blocks (masks, label choice with
capacity rebalancing, partner selection, blending) are public so that they can be tested and
reused without training; they live in ``_natmu_partners`` (labels, rebalancing, partners) and
``_natmu_blend`` (masks, blending) and are re-exported here.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import require_continuous_inputs
from ..data import DataViews
from ..errors import AccessError, ConfigError, DataError
from ..optim import OptimizerSpec, SchedulerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode
from ._natmu_blend import (
    MAX_HYBRIDS,
    QUANTIZE_MODES,
    VECTOR_MASK_RULES,
    blend_hybrids,
    hybrid_masks,
    natmu_masks,
    quantize_mode,
    tent_profiles,
    vector_masks,
)
from ._natmu_partners import (
    LABEL_RULES,
    REBALANCE_MODES,
    PartnerPlan,
    plan_partners,
    preference_order,
    rebalance_targets,
)
from ._registry import register_method
from .base import AccessSpec, RunContext, choice, int_range, loguniform, uniform
from .config import BaseConfig

__all__ = [
    "CLASS_SEARCH_SPACE",
    "DIGITS_SEARCH_SPACE",
    "LABEL_RULES",
    "QUANTIZE_MODES",
    "NatMUConfig",
    "PartnerPlan",
    "blend_hybrids",
    "hybrid_masks",
    "natmu",
    "natmu_masks",
    "plan_partners",
    "preference_order",
    "rebalance_targets",
    "reinit_linear_",
    "tent_profiles",
    "vector_masks",
]

# ---------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True)
class NatMUConfig(BaseConfig):
    """NatMU: AdamW lr 1e-3, wd 5e-4, per-step cosine to 0, 5 epochs, batch 128, 4 hybrids."""

    epochs: int = 5
    batch_size: int = 128
    optimizer: OptimizerSpec = OptimizerSpec(name="adamw", lr=1e-3, weight_decay=5e-4)
    scheduler: SchedulerSpec = SchedulerSpec(name="cosine", per_step=True)
    n_hybrids: int = field(
        default=4,
        metadata={
            "help": "hybrids per forget sample (1-4, masks G_1..G_n); capped at the number "
            "of usable wrong classes (K-1) at run time"
        },
    )
    delta: float = field(
        default=-0.053,
        metadata={"help": "shift of the forget weight: M_k = clip(G_k + delta, 0, 1)"},
    )
    label_rule: str = field(
        default="topk_balanced",
        metadata={
            "help": "topk | topk_balanced (capacity rebalancing, sample-wise scenarios) | "
            "random_other (ablation); default topk in class/subclass"
        },
    )
    balance_low: float = field(
        default=0.4, metadata={"help": "classes with fewer than low*m targets may take overflow"}
    )
    balance_high: float = field(
        default=0.98, metadata={"help": "a class keeps at most floor(high*m) targets, m = n_r/K"}
    )
    rebalance_mode: str = field(
        default="guarded",
        metadata={"help": "guarded: library supply guards [lib]; reference: the authors' loop"},
    )
    reinit_linear: bool = field(
        default=False,
        metadata={"help": "Xavier-normal (gain sqrt 2) re-init of every nn.Linear weight first"},
    )
    quantize: str | bool = field(
        default="truncate",
        metadata={
            "help": "truncate | round | none: put hybrids back on the integer grid of integer "
            "raw data by rounding down (the reference's uint8 cast), to the nearest value, "
            "or not at all (true = round, false = none)"
        },
    )
    augment_hybrids: bool = field(
        default=False, metadata={"help": "augment the hybrids too (breaks the mask geometry)"}
    )
    vector_mask_rule: str = field(
        default="auto",
        metadata={
            "help": "auto | image | index_perm: masks for vector inputs (auto uses "
            "ctx.image_shape when given)"
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.n_hybrids <= MAX_HYBRIDS:
            raise ConfigError(
                f"n_hybrids must lie in 1..{MAX_HYBRIDS} (one per mask G_1..G_4), "
                f"got {self.n_hybrids}"
            )
        if not math.isfinite(self.delta):
            raise ConfigError(f"delta must be a finite number, got {self.delta}")
        if self.label_rule not in LABEL_RULES:
            raise ConfigError(f"label_rule must be one of {LABEL_RULES}, got {self.label_rule!r}")
        if self.rebalance_mode not in REBALANCE_MODES:
            raise ConfigError(
                f"rebalance_mode must be one of {REBALANCE_MODES}, got {self.rebalance_mode!r}"
            )
        object.__setattr__(self, "quantize", quantize_mode(self.quantize))
        if self.vector_mask_rule not in VECTOR_MASK_RULES:
            raise ConfigError(
                f"vector_mask_rule must be one of {VECTOR_MASK_RULES}, "
                f"got {self.vector_mask_rule!r}"
            )
        if not 0.0 <= self.balance_low < self.balance_high:
            raise ConfigError(
                "need 0 <= balance_low < balance_high, got "
                f"balance_low={self.balance_low}, balance_high={self.balance_high}"
            )
        if self.balance_high > 1.0:
            raise ConfigError(f"balance_high must be <= 1, got {self.balance_high}")


# ---------------------------------------------------------------------------------------------
# Layer re-initialisation


def reinit_linear_(model: nn.Module, generator: torch.Generator | None = None) -> int:
    """Xavier-normal re-init (gain ``calculate_gain("relu")``) of every ``nn.Linear`` weight.

    Biases and every other module are untouched. Returns the number of layers re-initialised.
    """
    gain = nn.init.calculate_gain("relu")
    count = 0
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.Linear):
                w = torch.empty(mod.weight.shape, dtype=torch.float32)
                nn.init.xavier_normal_(w, gain=gain, generator=generator)
                mod.weight.copy_(w.to(mod.weight.dtype))
                count += 1
    return count


# ---------------------------------------------------------------------------------------------
# The method


@torch.no_grad()
def _predict_probs(net: nn.Module, x: torch.Tensor, batch_size: int, device) -> torch.Tensor:
    out = []
    for start in range(0, len(x), batch_size):
        logits = net(x[start : start + batch_size].to(device))
        out.append(torch.softmax(logits.float(), dim=1).cpu())
    return torch.cat(out)


def _n_candidates(k: int, labels: torch.Tensor | None, exclude: Sequence[int]) -> int:
    excl = {int(c) for c in exclude if 0 <= int(c) < k}
    if labels is None or len(labels) == 0:
        return k - 1 - len(excl)
    label_outside = any(int(c) not in excl for c in labels.unique().tolist())
    return k - len(excl) - (1 if label_outside else 0)


PRESETS: dict[str, dict[str, Any]] = {
    "cifar10_random": {"batch_size": 128, "lr": 1e-3, "weight_decay": 2e-3, "delta": -0.19},
    "cifar100_random": {"batch_size": 128, "lr": 1.1e-3, "weight_decay": 5e-4, "delta": -0.03},
    "tinyimagenet_random": {
        "batch_size": 256,
        "lr": 8.3e-4,
        "weight_decay": 7e-5,
        "delta": 0.045,
    },
    "cifar100_fullclass": {
        "batch_size": 128,
        "lr": 2.8e-4,
        "weight_decay": 0.0,
        "delta": -0.053,
        "reinit_linear": True,
        "label_rule": "topk",
    },
    "cifar20_subclass": {
        "batch_size": 128,
        "lr": 9e-4,
        "weight_decay": 3.7e-4,
        "delta": -0.053,
        "label_rule": "topk",
    },
    "digits": {
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 5e-4,
        "delta": 0.0,
        "epochs": 5,
        "augment_retain": False,
    },
}

SEARCH_SPACE = {
    "lr": loguniform(2e-4, 3e-3),
    "weight_decay": uniform(0.0, 1e-3),
    "delta": uniform(-0.2, 0.1),
    "epochs": int_range(3, 10),
}
#: Extra dimension of the library search space for the class scenario only.
CLASS_SEARCH_SPACE = {**SEARCH_SPACE, "reinit_linear": choice([False, True])}
#: The search space for the 8x8 digits benchmark (wider lr and epoch ranges, delta around 0).
DIGITS_SEARCH_SPACE = {
    "lr": loguniform(1e-4, 1e-2),
    "weight_decay": uniform(0.0, 1e-3),
    "delta": uniform(-0.15, 0.15),
    "epochs": int_range(2, 15),
}


@register_method(
    "natmu",
    config=NatMUConfig,
    access=AccessSpec(
        level="forget_and_retain",
        forget_labels=True,
        retain_labels=True,
        scenarios=("random", "class", "indices", "subclass"),
    ),
    presets=PRESETS,
    search_space=SEARCH_SPACE,
    identity_config={"max_steps": 0, "reinit_linear": False},
    scenario_defaults={"class": {"label_rule": "topk"}, "subclass": {"label_rule": "topk"}},
)
def natmu(model: nn.Module, data: DataViews, config: NatMUConfig, *, ctx: RunContext):
    """Fine-tune on the retain set plus forget/retain hybrids labelled with the retain class.

    Reference: He et al., "Towards Natural Machine Unlearning" (arXiv 2405.15495, TPAMI 2025);
    code ZhengbaoHe/NatMU ``sample-wise/natmu.py``, ``sample-wise/utils/generate_patch_data.py``,
    ``class-wise/natmu.py``. Before any update, ``theta_o`` (eval mode, no augmentation) picks
    for forget sample ``j`` the ``n`` most probable wrong classes ``c_{j,k}``; a retain image
    ``x_r`` of class ``c_{j,k}`` (each used once while the class has unused ones) gives the hybrid
    ``x~_{j,k} = M_k * x_{f,j} + (1 - M_k) * x_r`` with label ``c_{j,k}``, where
    ``M_k = clip(G_k + delta, 0, 1)`` and ``G_k`` are row/column tent and V profiles. Then

        min_theta  mean_{(x, y) in shuffle(D_r u H)} CE(f_theta(x), y)

    with AdamW, a per-step cosine schedule to 0, train mode, ``D_r`` augmented and the hybrids
    not.

    Notes ([lib] decisions):
        - ``rebalance_mode="guarded"`` adds the supply guards of Step 2 (per-class caps
          ``min(floor(0.98 m), n_r(i))``, no true-label or duplicate targets, fallback to the
          unused class with most room); class-wise scenarios get the supply guard of Step 3.
          Guard triggers are recorded in ``ctx.info``.
        - Capacity rebalancing runs only in sample-wise scenarios (``random``, ``indices``); in
          ``class``/``subclass`` ``topk_balanced`` acts as ``topk``. Other forget classes of a
          class scenario are excluded from the targets (they have no retain images).
        - ``n_hybrids`` larger than the number of usable wrong classes (``K-1``) is lowered to it
          with a warning (``info["n_hybrids_requested"]``), so the defaults run for any K >= 2.
        - Missing forget labels fall back to ``argmax p_theta_o(x)``.
        - ``label_rule="random_other"`` draws ``n`` *distinct* random wrong classes per sample
          (the reference's ablation gives all hybrids of a sample one random class).
        - Few classes: when a target class has no unused retain image left and no other
          candidate class has one, its retain images are reused in a fresh shuffle
          (``info["partner_reuse"]``, with a warning); in guarded rebalancing an overflowing
          target that no class has room for stays in place (``info["kept_over_cap"]``). So
          forgetting a class of a 2- or 3-class problem runs; the reference would not finish.
        - ``quantize`` (integer raw data, ``ctx.normalization.quantized``): ``"truncate"``
          (default) blends the raw values and rounds down, as the reference's ``astype(uint8)``
          does; ``"round"`` rounds to the nearest raw value; ``"none"`` keeps the exact blend.
          Quantized hybrids are stored as uint8 when the raw range allows it.
        - Vector inputs use ``ctx.image_shape`` when given, else the index-permutation rule
          (``vector_mask_rule``). Categorical one-hot inputs are not detected: blending them gives
          invalid one-hots, so do not use NatMU on such data.
        - ``reinit_linear`` draws from ``ctx.generator``; it happens before any update, hence the
          identity setting also turns it off.

    Raises:
        AccessError: no retain set or no retain labels.
        DataError: no class is left to label hybrids with, or no retain image of any class a
            forget sample may blend with (raised before any update).
    """
    forget, retain = data.forget, data.retain
    require_continuous_inputs(forget.x, "natmu")  # it blends forget and retain inputs
    if retain is None or forget is None:
        raise AccessError("natmu needs both the forget and the retain set (forget_and_retain)")
    if retain.y is None:
        raise AccessError("natmu needs retain labels: the hybrids take their partner's label")
    if len(forget) == 0:
        raise DataError("natmu needs at least one forget sample")
    if len(retain) == 0:
        raise DataError("natmu needs a non-empty retain set to draw partners from")

    # Step 1: theta_o's predictions on the forget set (eval mode, no augmentation).
    teacher = ctx.original_model
    if teacher is None or teacher.training:
        teacher = copy.deepcopy(teacher if teacher is not None else model).eval()
    probs = _predict_probs(teacher, forget.x, config.batch_size, ctx.device)
    k = probs.shape[1]
    exclude = tuple(ctx.forget_classes) if ctx.scenario == "class" else ()
    available = _n_candidates(k, forget.y, exclude)
    if available < 1:
        raise DataError(
            f"natmu needs a class other than the forget samples' own to label hybrids with, "
            f"but none is left (K = {k}, excluded {list(exclude)}); use a method that needs "
            "no partner class, e.g. finetune or gradient_ascent"
        )
    n = min(config.n_hybrids, available)
    if n < config.n_hybrids:
        ctx.logger.warning(
            "natmu: n_hybrids=%d exceeds the %d usable wrong classes; using %d",
            config.n_hybrids,
            available,
            n,
        )
        ctx.info["n_hybrids_requested"] = config.n_hybrids

    # Steps 1-3: targets, rebalancing and partners.
    plan = plan_partners(
        probs,
        forget.y,
        retain.y,
        n,
        generator=ctx.generator,
        label_rule=config.label_rule,
        scenario=ctx.scenario,
        rebalance_mode=config.rebalance_mode,
        balance_low=config.balance_low,
        balance_high=config.balance_high,
        exclude_classes=exclude,
    )
    if plan.info.get("rebalance_reassigned") or plan.info["supply_guard_triggers"]:
        ctx.logger.info(
            "natmu: rebalancing moved %d targets, the supply guard replaced %d",
            plan.info.get("rebalance_reassigned", 0),
            plan.info["supply_guard_triggers"],
        )
    if plan.info["partner_reuse"]:
        ctx.logger.warning(
            "natmu: the retain set has too few images of the partner classes; %d of %d hybrids "
            "reuse a retain image already blended with another forget sample",
            plan.info["partner_reuse"],
            plan.partners.numel(),
        )

    # Step 4: masks.
    masks, rule = hybrid_masks(
        tuple(forget.x.shape[1:]),
        config.delta,
        n,
        rule=config.vector_mask_rule,
        image_shape=ctx.image_shape,
        generator=ctx.generator,
    )

    # Step 5: hybrids, built once before training (uint8 raw storage when possible).
    norm = ctx.normalization
    quantized = config.quantize != "none" and bool(getattr(norm, "quantized", False))
    store_u8 = quantized and norm.raw_range[0] >= 0 and norm.raw_range[1] <= 255
    chunks = []
    chunk = max(1, 4096 // n)
    for start in range(0, len(forget), chunk):
        h = blend_hybrids(
            forget.x[start : start + chunk],
            retain.x,
            plan.partners[start : start + chunk],
            masks,
            normalization=norm,
            quantize=config.quantize,
        )
        if store_u8:
            h = norm.to_raw(h, round_=True).to(torch.uint8)
        chunks.append(h)
    hyb_x = torch.cat(chunks)
    hyb_y = retain.y[plan.partners.reshape(-1)].long()

    ctx.info.update(
        n_hybrids=int(len(hyb_y)),
        n_hybrids_per_sample=n,
        mean_forget_weight=float(masks.mean()),
        mask_rule=rule,
        quantized_hybrids=quantized,
        label_rule=config.label_rule,
        **plan.info,
    )

    if config.reinit_linear:
        ctx.info["reinit_linear_layers"] = reinit_linear_(model, ctx.generator)

    # Step 6: plain CE on shuffle(D_r u hybrids).
    n_r, n_h = len(retain), len(hyb_y)
    total = n_r + n_h
    bs = config.batch_size
    steps_per_epoch = -(-total // bs)
    opt = make_optimizer(model, config)
    sched = make_scheduler(opt, config, steps_per_epoch)
    set_train_mode(model, freeze_bn_stats=config.freeze_bn_stats)
    aug = retain.augment
    stop = False
    for _ in epochs(ctx, config.epochs):
        perm = torch.randperm(total, generator=ctx.generator)
        for start in range(0, total, bs):
            if not ctx.can_step():
                stop = True
                break
            idx = perm[start : start + bs]
            r_idx, h_idx = idx[idx < n_r], idx[idx >= n_r] - n_r
            xr = retain.x[r_idx]
            if config.augment_retain and aug is not None and len(r_idx):
                xr = aug(xr, ctx.generator)
            xh = hyb_x[h_idx]
            if store_u8:
                xh = norm.to_model(xh.to(torch.float32)).to(retain.x.dtype)
            if config.augment_hybrids and aug is not None and len(h_idx):
                xh = aug(xh, ctx.generator)
            xb = torch.cat([xr, xh]).to(ctx.device)
            yb = torch.cat([retain.y[r_idx].long(), hyb_y[h_idx]]).to(ctx.device)
            if not ctx.step(opt, F.cross_entropy(model(xb), yb)):
                stop = True
                break
            sched.after_step()
        if stop:
            break
        sched.after_epoch()
    ctx.info["epochs"] = config.epochs
    return model
