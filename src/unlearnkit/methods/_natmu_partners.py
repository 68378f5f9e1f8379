"""NatMU's label side: hybrid labels, capacity rebalancing and retain partners (Steps 1-3).

Pure functions, no training; re-exported by :mod:`unlearnkit.methods.natmu`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ._natmu_blend import check_n_hybrids

LABEL_RULES = ("topk", "topk_balanced", "random_other")
REBALANCE_MODES = ("guarded", "reference")
SAMPLE_WISE_SCENARIOS = ("random", "indices")

# Steps 1-3: label choice, rebalancing, partner selection


@dataclass
class PartnerPlan:
    """Who blends with whom.

    Attributes:
        targets: ``(n_f, n)`` hybrid labels; ``targets[j, k]`` pairs with mask ``M_{k+1}``.
        partners: ``(n_f, n)`` positions in the retain set; ``retain_labels[partners] ==
            targets``. A position appears twice only when the retain set ran out of partners
            (``info["partner_reuse"]`` counts the repeats).
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
    remaining capacity; when no usable class has room left (few classes, many forget samples)
    the target stays where it is (``info["kept_over_cap"]``) and Step 3 reuses partners.
    ``reference`` moves the whole overflow to the popped class.

    Returns:
        ``(targets, info)`` with the rebalanced ``(n_f, n)`` targets.

    Raises:
        DataError: ``reference`` mode finds no under-used class to take an overflow.
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
        "kept_over_cap": 0,
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
                    info["kept_over_cap"] += 1  # every usable class is full: stay at class i
                    continue
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
    still has partners. When no such class is left, which happens on problems with few classes
    (forgetting a class of a 2- or 3-class problem, or a large random share of one), the target
    class's pool is refilled with a fresh shuffle of all its retain images, so partners are
    reused: every hybrid keeps its mask and its partner's true label, only the same retain
    image may now appear in several hybrids (``info["partner_reuse"]``). The reference has no
    such rule (its partner search never ends when a class runs out).

    Args:
        probs: ``(n_f, K)`` softmax outputs of the original model on the forget set.
        labels: ``(n_f,)`` true labels; ``None`` falls back to ``argmax probs`` [lib].
        retain_labels: ``(n_r,)`` labels of the retain set.
        n_hybrids: hybrids per forget sample.

    Raises:
        ConfigError: ``n_hybrids`` exceeds the number of candidate classes of a sample.
        DataError: a hybrid's candidate classes have no retain image at all, or the retain set
            runs out of partners with the guards off (``rebalance_mode="reference"`` in a
            sample-wise scenario).
    """
    if label_rule not in LABEL_RULES:
        raise ConfigError(f"label_rule must be one of {LABEL_RULES}, got {label_rule!r}")
    if rebalance_mode not in REBALANCE_MODES:
        raise ConfigError(
            f"rebalance_mode must be one of {REBALANCE_MODES}, got {rebalance_mode!r}"
        )
    check_n_hybrids(n_hybrids)
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
    triggers = refills = 0
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
                    # Few classes: reuse the retain images of the target (or, when it has none,
                    # of the next preferred class that has some) in a fresh shuffle.
                    refill = [c] + [int(a) for a in order[s] if int(a) not in used]
                    alt = next((a for a in refill if int(supply[a]) > 0), None)
                    if alt is None:
                        raise DataError(
                            f"forget sample {s} has no partner for hybrid {j}: the retain set "
                            f"holds no image of class {c} nor of any other class it may blend "
                            "with; NatMU needs retain images of classes other than the forget "
                            "sample's own, so keep some in the retain set or use another method"
                        )
                    idx = torch.nonzero(r_labels == alt).flatten()
                    pools[alt] = idx[torch.randperm(len(idx), generator=generator)].tolist()
                    refills += 1
                if alt != c:
                    t[s, j] = c = alt
                    triggers += 1
            partners[s, j] = pools[c].pop()
    info["supply_guard_triggers"] = triggers
    info["pool_refills"] = refills
    info["partner_reuse"] = int(partners.size - len(np.unique(partners)))
    return PartnerPlan(
        targets=torch.from_numpy(t),
        partners=torch.from_numpy(partners),
        proposed=proposed,
        labels=labels,
        info=info,
    )
