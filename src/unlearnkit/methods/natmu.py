"""NatMU: natural machine unlearning with forget/retain hybrids (METHODS.md section 1.2).

Each forget image is blended with retain images of *other* classes through smooth tent/V masks
and every hybrid carries the retain image's true label; the model is then fine-tuned with plain
cross-entropy on ``D_r`` plus the hybrids. The pure building blocks (masks, label choice with
capacity rebalancing, partner selection, blending) are public so that they can be tested and
reused without training.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DataViews
from ..errors import AccessError, ConfigError, DataError
from ..optim import OptimizerSpec, SchedulerSpec
from ._loop import epochs, make_optimizer, make_scheduler, set_train_mode
from ._registry import register_method
from .base import AccessSpec, BaseConfig, RunContext, choice, int_range, loguniform, uniform

__all__ = [
    "CLASS_SEARCH_SPACE",
    "DIGITS_SEARCH_SPACE",
    "LABEL_RULES",
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

LABEL_RULES = ("topk", "topk_balanced", "random_other")
REBALANCE_MODES = ("guarded", "reference")
VECTOR_MASK_RULES = ("auto", "image", "index_perm")
MAX_HYBRIDS = 4
SAMPLE_WISE_SCENARIOS = ("random", "indices")

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
    quantize: bool = field(
        default=True,
        metadata={"help": "round hybrids through the raw map when the raw data are integers"},
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
# Step 4: masks


def tent_profiles(length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The tent ``T_L`` and V ``V_L`` profiles of an axis of length ``L``.

    ``b = ceil(L/2)``, ``T_L(r) = min(r, L-1-r)/b``, ``V_L(r) = max T_L - T_L(r)``. For even
    ``L`` this is exactly the reference loop (peak ``(b-1)/b`` at the two centre rows).
    """
    if length < 1:
        raise ConfigError(f"mask axes need length >= 1, got {length}")
    b = -(-length // 2)
    r = torch.arange(length, dtype=torch.float64)
    t = torch.minimum(r, (length - 1) - r) / b
    v = t.max() - t
    return t.float(), v.float()


def _check_n(n_hybrids: int) -> None:
    if not 1 <= int(n_hybrids) <= MAX_HYBRIDS:
        raise ConfigError(f"n_hybrids must lie in 1..{MAX_HYBRIDS}, got {n_hybrids}")


def natmu_masks(height: int, width: int, delta: float = 0.0, n_hybrids: int = 4) -> torch.Tensor:
    """The forget-weight masks ``M_k = clip(G_k + delta, 0, 1)`` of an ``H x W`` image.

    ``G_1 = T_H`` over rows, ``G_2 = T_W`` over columns, ``G_3 = V_H`` over rows,
    ``G_4 = V_W`` over columns; the first ``n_hybrids`` are returned.

    Returns:
        A float32 tensor of shape ``(n_hybrids, H, W)``; the retain weight is ``1 - M_k``.

    Example:
        >>> natmu_masks(32, 32)[0, :, 0][[0, 15, 16, 31]].tolist()
        [0.0, 0.9375, 0.9375, 0.0]
    """
    _check_n(n_hybrids)
    t_h, v_h = tent_profiles(height)
    t_w, v_w = tent_profiles(width)
    ones = torch.ones(height, width)
    base = [
        t_h[:, None] * ones,
        t_w[None, :] * ones,
        v_h[:, None] * ones,
        v_w[None, :] * ones,
    ]
    return (torch.stack(base[:n_hybrids]) + delta).clamp(0.0, 1.0)


def vector_masks(
    dim: int, delta: float = 0.0, n_hybrids: int = 4, *, permutation: torch.Tensor | None = None
) -> torch.Tensor:
    """Masks for ``D``-dimensional vectors [lib]: ``t(i), t(pi(i)), v(i), v(pi(i))``.

    ``t = T_D`` and ``v = V_D`` over the feature index; ``pi`` is a fixed permutation (identity
    when ``None``). ``G_1``/``G_3`` and ``G_2``/``G_4`` are complementary, so every feature gets
    forget weight ``>= max T / 2`` in at least one of the first three hybrids.

    Returns:
        A float32 tensor of shape ``(n_hybrids, D)``.
    """
    _check_n(n_hybrids)
    t, v = tent_profiles(dim)
    pi = torch.arange(dim) if permutation is None else torch.as_tensor(permutation).long()
    if sorted(pi.tolist()) != list(range(dim)):
        raise ConfigError(f"permutation must be a permutation of 0..{dim - 1}")
    base = [t, t[pi], v, v[pi]]
    return (torch.stack(base[:n_hybrids]) + delta).clamp(0.0, 1.0)


def hybrid_masks(
    sample_shape: Sequence[int],
    delta: float,
    n_hybrids: int,
    *,
    rule: str = "auto",
    image_shape: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, str]:
    """Masks shaped like one model input, and the rule that made them (``image``/``index_perm``).

    ``auto`` uses image masks for ``(C, H, W)`` inputs, and for flattened inputs when
    ``image_shape`` has as many values (reshaping, identical across channels); otherwise the
    vector rule with a permutation drawn once from ``generator``. ``image`` requires an image
    layout; ``index_perm`` always uses the vector rule on the flattened input.

    Returns:
        ``(masks, rule_used)`` with ``masks`` of shape ``(n_hybrids, *sample_shape)``.
    """
    if rule not in VECTOR_MASK_RULES:
        raise ConfigError(f"vector_mask_rule must be one of {VECTOR_MASK_RULES}, got {rule!r}")
    shape = tuple(int(s) for s in sample_shape)
    dim = math.prod(shape)
    if rule in ("auto", "image"):
        chw: tuple[int, ...] | None = None
        if len(shape) == 3:
            chw = shape
        elif image_shape is not None and math.prod(image_shape) == dim:
            chw = tuple(int(s) for s in image_shape)
        if chw is not None:
            c, h, w = chw
            m = natmu_masks(h, w, delta, n_hybrids)[:, None].expand(n_hybrids, c, h, w)
            return m.reshape(n_hybrids, *shape).contiguous(), "image"
        if rule == "image":
            raise ConfigError(
                f"vector_mask_rule='image' needs (C, H, W) inputs or ctx.image_shape matching the "
                f"{dim} input values (inputs have shape {shape}); pass image_shape= to the "
                "dataset or use vector_mask_rule='index_perm'"
            )
    perm = torch.randperm(dim, generator=generator)
    m = vector_masks(dim, delta, n_hybrids, permutation=perm)
    return m.reshape(n_hybrids, *shape), "index_perm"


# ---------------------------------------------------------------------------------------------
# Steps 1-3: label choice, rebalancing, partner selection


@dataclass
class PartnerPlan:
    """Who blends with whom.

    Attributes:
        targets: ``(n_f, n)`` hybrid labels; ``targets[j, k]`` pairs with mask ``M_{k+1}``.
        partners: ``(n_f, n)`` positions in the retain set; ``retain_labels[partners] ==
            targets`` and no position appears twice.
        proposed: ``(n_f, n)`` the Step 1 targets before rebalancing and guards.
        labels: ``(n_f,)`` the true labels used (argmax of ``probs`` when withheld).
        info: diagnostics (guard triggers, rebalancing statistics, label source).
    """

    targets: torch.Tensor
    partners: torch.Tensor
    proposed: torch.Tensor
    labels: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


def preference_order(
    probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_rule: str = "topk",
    generator: torch.Generator | None = None,
    exclude_classes: Sequence[int] = (),
) -> list[np.ndarray]:
    """Each forget sample's candidate classes, most preferred first (Step 1).

    ``topk``/``topk_balanced``: descending probability, ties by class index. ``random_other``:
    a uniformly random order [lib]. The true label and ``exclude_classes`` never appear.
    """
    n_f, k = probs.shape
    if label_rule == "random_other":
        scores = torch.rand(n_f, k, generator=generator, dtype=torch.float64)
    else:
        scores = probs.detach().to(torch.float64).cpu().clone()
    scores[torch.arange(n_f), labels.long().cpu()] = -math.inf
    for c in exclude_classes:
        if 0 <= int(c) < k:
            scores[:, int(c)] = -math.inf
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices.numpy()
    valid = torch.isfinite(scores).sum(1).numpy()
    return [order[j, : valid[j]] for j in range(n_f)]


def rebalance_targets(
    targets: torch.Tensor,
    labels: torch.Tensor,
    retain_counts: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    mode: str = "guarded",
    balance_low: float = 0.4,
    balance_high: float = 0.98,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Capacity rebalancing of the targets (Step 2, [ref] with [lib] guards).

    With ``m = n_r / K``, ``cap = floor(high*m)`` and ``low = low*m``, classes are visited in
    order: a class with fewer than ``low`` targets joins the pool; a class with more than its cap
    keeps its first ``cap`` positions (sample-major order) and hands the rest to a class popped
    from the shuffled pool. ``guarded`` [lib] uses ``cap_i = min(cap, n_r(i))``, never gives a
    sample its true label or a duplicate target, never fills a class past its cap (next pool
    class instead) and, when the pool has nothing usable, takes the unused class with the most
    remaining capacity. ``reference`` moves the whole overflow to the popped class.

    Returns:
        ``(targets, info)`` with the rebalanced ``(n_f, n)`` targets.

    Raises:
        DataError: no class can take an overflowing target.
    """
    if mode not in REBALANCE_MODES:
        raise ConfigError(f"rebalance_mode must be one of {REBALANCE_MODES}, got {mode!r}")
    t = targets.detach().cpu().numpy().astype(np.int64).copy()
    n = t.shape[1]
    flat = t.reshape(-1)  # a view: writes show in t
    y = labels.detach().cpu().numpy().astype(np.int64)
    supply = retain_counts.detach().cpu().numpy().astype(np.int64)
    k = len(supply)
    m = supply.sum() / k
    cap_all = int(math.floor(balance_high * m))
    low = balance_low * m
    guarded = mode == "guarded"
    cap = np.minimum(cap_all, supply) if guarded else np.full(k, cap_all)
    counts = np.bincount(flat, minlength=k)
    pool: list[int] = []
    info: dict[str, Any] = {
        "cap": cap_all,
        "low": float(low),
        "overflow_classes": [],
        "reassigned": 0,
        "fallbacks": 0,
        "skipped": 0,
    }
    for i in range(k):
        if counts[i] < low:
            pool.append(i)
        if counts[i] <= cap[i]:
            continue
        info["overflow_classes"].append(i)
        j: int | None = None
        if pool:
            perm = torch.randperm(len(pool), generator=generator).tolist()
            pool = [pool[p] for p in perm]
            j = pool.pop()
        positions = np.flatnonzero(flat == i)[int(cap[i]) :]
        if not guarded:
            if j is None:
                raise DataError(
                    f"reference rebalancing: class {i} has {counts[i]} targets (cap {cap_all}) "
                    "but no under-used class is left to take the overflow; use "
                    "rebalance_mode='guarded' or lower n_hybrids"
                )
            flat[positions] = j
            counts[j] += len(positions)
            counts[i] -= len(positions)
            info["reassigned"] += len(positions)
            continue
        ordered = ([j] if j is not None else []) + pool[::-1]
        for p in positions:
            s = p // n
            used = set(t[s].tolist()) | {int(y[s])}
            pick = None
            for c in ordered:
                if c not in used and counts[c] < cap[c]:
                    pick = c
                    break
                info["skipped"] += 1
            if pick is None:
                room = (cap - counts).astype(np.float64)
                room[list(used)] = -np.inf
                best = int(np.argmax(room))
                if not room[best] > 0:
                    raise DataError(
                        f"capacity rebalancing: no class can take another target for forget "
                        f"sample {s} (class {i} is over its cap of {cap[i]}); the retain set is "
                        "too small for this many hybrids: lower n_hybrids or raise balance_high"
                    )
                pick = best
                info["fallbacks"] += 1
            flat[p] = pick
            counts[pick] += 1
            counts[i] -= 1
            info["reassigned"] += 1
    return torch.from_numpy(t), info


def plan_partners(
    probs: torch.Tensor,
    labels: torch.Tensor | None,
    retain_labels: torch.Tensor,
    n_hybrids: int,
    *,
    generator: torch.Generator | None = None,
    label_rule: str = "topk_balanced",
    scenario: str = "random",
    rebalance_mode: str = "guarded",
    balance_low: float = 0.4,
    balance_high: float = 0.98,
    exclude_classes: Sequence[int] = (),
) -> PartnerPlan:
    """Choose each forget sample's hybrid labels and retain partners (Steps 1-3), no training.

    Step 1 takes the ``n`` most probable wrong classes (``probs`` from ``theta_o``, the true label
    and ``exclude_classes`` removed). Step 2 rebalances them when ``label_rule`` is
    ``topk_balanced`` in a sample-wise scenario (``random``/``indices``). Step 3 draws one retain
    image of each target class without replacement from per-class pools shuffled by
    ``generator``. The supply guard [lib] (on in ``guarded`` mode and in every class-wise
    scenario) replaces a target whose pool is empty by the sample's next preferred class that
    still has partners.

    Args:
        probs: ``(n_f, K)`` softmax outputs of the original model on the forget set.
        labels: ``(n_f,)`` true labels; ``None`` falls back to ``argmax probs`` [lib].
        retain_labels: ``(n_r,)`` labels of the retain set.
        n_hybrids: hybrids per forget sample.

    Raises:
        ConfigError: ``n_hybrids`` exceeds the number of candidate classes of a sample.
        DataError: the retain set runs out of partners despite the guards.
    """
    if label_rule not in LABEL_RULES:
        raise ConfigError(f"label_rule must be one of {LABEL_RULES}, got {label_rule!r}")
    if rebalance_mode not in REBALANCE_MODES:
        raise ConfigError(
            f"rebalance_mode must be one of {REBALANCE_MODES}, got {rebalance_mode!r}"
        )
    _check_n(n_hybrids)
    probs = probs.detach().cpu()
    n_f, k = probs.shape
    if n_f == 0:
        raise DataError("NatMU needs at least one forget sample")
    label_source = "labels"
    if labels is None:
        labels, label_source = probs.argmax(1), "argmax"
    labels = labels.detach().cpu().long()
    if len(labels) != n_f:
        raise DataError(f"got {len(labels)} forget labels for {n_f} rows of probabilities")
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        raise DataError(f"forget labels must lie in [0, {k}) to match the model's {k} outputs")
    r_labels = retain_labels.detach().cpu().long()
    if len(r_labels) and (int(r_labels.min()) < 0 or int(r_labels.max()) >= k):
        raise DataError(f"retain labels must lie in [0, {k}) to match the model's {k} outputs")
    order = preference_order(
        probs,
        labels,
        label_rule=label_rule,
        generator=generator,
        exclude_classes=exclude_classes,
    )
    fewest = min(len(o) for o in order)
    if n_hybrids > fewest:
        raise ConfigError(
            f"n_hybrids={n_hybrids} needs that many distinct wrong classes per forget sample, but "
            f"some sample has only {fewest} (K-1 = {k - 1}, minus excluded classes); "
            f"set n_hybrids <= {fewest}"
        )
    t = np.stack([o[:n_hybrids] for o in order]).astype(np.int64)
    proposed = torch.from_numpy(t.copy())
    supply = torch.bincount(r_labels, minlength=k)
    sample_wise = scenario in SAMPLE_WISE_SCENARIOS
    info: dict[str, Any] = {"label_source": label_source, "rebalanced": False}
    if label_rule == "topk_balanced" and sample_wise:
        t_new, rb = rebalance_targets(
            proposed,
            labels,
            supply,
            generator=generator,
            mode=rebalance_mode,
            balance_low=balance_low,
            balance_high=balance_high,
        )
        t = t_new.numpy().copy()
        info.update(
            rebalanced=True,
            rebalance_reassigned=rb["reassigned"],
            rebalance_fallbacks=rb["fallbacks"],
            rebalance_skipped=rb["skipped"],
            rebalance_overflow_classes=rb["overflow_classes"],
            rebalance_cap=rb["cap"],
        )
    supply_guard = rebalance_mode == "guarded" or not sample_wise
    info["supply_guard"] = supply_guard

    # Step 3: per-class pools, shuffled once, consumed by pop().
    pools: list[list[int]] = []
    for c in range(k):
        idx = torch.nonzero(r_labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        pools.append(idx.tolist())
    y = labels.numpy()
    partners = np.empty_like(t)
    triggers = 0
    for s in range(n_f):
        for j in range(t.shape[1]):
            c = int(t[s, j])
            if not pools[c]:
                if not supply_guard:
                    raise DataError(
                        f"no retain image of class {c} is left for hybrid {j} of forget sample "
                        f"{s} ({int(supply[c])} in the retain set); use "
                        "rebalance_mode='guarded' or lower n_hybrids"
                    )
                used = set(t[s].tolist()) | {int(y[s])}
                alt = next((int(a) for a in order[s] if int(a) not in used and pools[int(a)]), None)
                if alt is None:
                    raise DataError(
                        f"the retain set ran out of partners for forget sample {s}: every "
                        "candidate class is used up (each retain image is used at most once); "
                        "lower n_hybrids or forget fewer samples at once"
                    )
                t[s, j] = c = alt
                triggers += 1
            partners[s, j] = pools[c].pop()
    info["supply_guard_triggers"] = triggers
    return PartnerPlan(
        targets=torch.from_numpy(t),
        partners=torch.from_numpy(partners),
        proposed=proposed,
        labels=labels,
        info=info,
    )


# ---------------------------------------------------------------------------------------------
# Step 5: hybrids


def blend_hybrids(
    x_forget: torch.Tensor,
    x_retain: torch.Tensor,
    partners: torch.Tensor,
    masks: torch.Tensor,
    *,
    normalization: Any = None,
    quantize: bool = True,
) -> torch.Tensor:
    """``x~_{j,k} = M_k * x_f[j] + (1 - M_k) * x_r[partners[j, k]]``, sample-major.

    Blending is done in model-input space (it commutes with per-channel affine maps); with
    ``quantize`` and integer raw data (``normalization.quantized``) each hybrid is mapped to raw
    values, rounded and mapped back, as the reference's uint8 images are.

    Returns:
        ``(n_f * n, *sample_shape)`` hybrids; their labels are ``retain_labels[partners]``.
    """
    n_f, n = partners.shape
    shape = tuple(x_forget.shape[1:])
    if tuple(masks.shape) != (n, *shape):
        raise ConfigError(f"masks must have shape {(n, *shape)}, got {tuple(masks.shape)}")
    if tuple(x_retain.shape[1:]) != shape:
        raise DataError(
            f"forget and retain inputs differ in shape ({shape} vs {tuple(x_retain.shape[1:])})"
        )
    m = masks.to(device=x_forget.device, dtype=x_forget.dtype).unsqueeze(0)
    xr = x_retain[partners.reshape(-1).to(x_retain.device)].reshape(n_f, n, *shape)
    out = (m * x_forget.unsqueeze(1) + (1 - m) * xr.to(x_forget.device)).reshape(n_f * n, *shape)
    if quantize and normalization is not None and getattr(normalization, "quantized", False):
        out = normalization.to_model(normalization.to_raw(out, round_=True)).to(x_forget.dtype)
    return out


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
#: METHODS.md section 4: the search space for 8x8 digits.
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
    ``x_r`` of class ``c_{j,k}`` (each used once) gives the hybrid
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
        - Blending happens in model-input space; ``quantize`` rounds through
          ``ctx.normalization``'s raw map for integer raw data (the reference stores uint8
          images), and such hybrids are kept as uint8 when the raw range allows it.
        - Vector inputs use ``ctx.image_shape`` when given, else the index-permutation rule
          (``vector_mask_rule``). Categorical one-hot inputs are not detected: blending them gives
          invalid one-hots, so do not use NatMU on such data.
        - ``reinit_linear`` draws from ``ctx.generator``; it happens before any update, hence the
          identity setting also turns it off.

    Raises:
        AccessError: no retain set or no retain labels.
        DataError: the retain set runs out of partners despite the guards.
    """
    forget, retain = data.forget, data.retain
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
            f"no class is left to label hybrids with (K = {k}, excluded {list(exclude)})"
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
    quantized = bool(config.quantize and norm is not None and getattr(norm, "quantized", False))
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
