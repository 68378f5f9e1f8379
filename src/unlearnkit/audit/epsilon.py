"""The epsilon audit: the NeurIPS-2023 challenge score of a method against Retrain.

From one original model (replicate 0 of the spec) the method runs N times (unlearning seeds
``0..N-1``) and N Retrains are trained on ``D_r`` (seeds ``1000+k``). ``φ`` of every forget
example under each model gives ``U_phi``/``R_phi`` ``[N, n_f]``;
:func:`~unlearnkit.metrics.functional.epsilon.neurips23_score` gives per-example ε, the H-score
``F`` and the final score. The Retrain control scores N more Retrains (seeds ``2000+k``, the
benchmark's Retrain′ seeds) against the same N Retrains: the practical ceiling at this N
(scores are comparable only at equal N).

**Attack accuracy** (this library's choice): for each forget example, the best balanced
accuracy ``max_t 1 − (FPR + FNR)/2`` of a single-threshold rule that tells its N unlearned φ
values from its N retrained ones (either orientation), i.e. ``0.5 + KS/2`` with ``KS`` the
two-sample Kolmogorov–Smirnov statistic; ``attack_acc`` is its mean over forget examples. It is
an in-sample (optimistic) reading: two i.i.d. populations give more than 0.5, which is why the
Retrain control is printed beside it. (The ε-maximising rule itself is usually a tail rule
with a balanced accuracy near 0.5, so it says little about accuracy.)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from ..bench.runner import seeds_for
from ..errors import DegenerateScoresError
from ..metrics.functional.epsilon import h_score, n_bins, neurips23_score, per_example_epsilon
from ..metrics.functional.phi import logit_scaled_confidence

if TYPE_CHECKING:
    from .session import Part, _Audit


def key_parts(audit: _Audit) -> dict[str, Any]:
    """What, besides the shared audit key, determines an epsilon row."""
    return {
        "task": audit.task.id,
        "original_seed": seeds_for(audit.rep)["seed_train"],
        "seeds": "unlearn k, retrain 1000+k, retrain' 2000+k",
    }


def _eval_eps(audit: _Audit, model: nn.Module) -> tuple[np.ndarray, float, float]:
    """φ of the forget examples, RA and TA of one model."""
    task = audit.task
    f = audit.logits(model, task.forget.x, task.forget.y)
    r = audit.logits(model, task.retain.x, task.retain.y)
    t = audit.logits(model, task.test.x, task.test.y)
    with audit._timed("scoring"):
        phi = logit_scaled_confidence(f.logits, f.labels)
    return phi, float(r.corr.mean()), float(t.corr.mean())


def _eval_all(audit: _Audit, models: list[nn.Module]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [_eval_eps(audit, m) for m in models]
    return (
        np.stack([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
    )


def work(audit: _Audit, need_method: bool, need_control: bool) -> int:
    """Models :func:`compute` needs: N retrains, N more for the control, and the original
    with N unlearning runs for the method."""
    n = audit.n
    return n + (n if need_control else 0) + (1 + n if need_method else 0)


def compute(
    audit: _Audit, need_method: bool, need_control: bool
) -> tuple[Part | None, Part | None]:
    """The method's part and the Retrain control's, each ``(metrics, record)``, as needed."""
    n = audit.n
    retrain_seeds = [seeds_for(k)["seed_retrain"] for k in range(n)]
    r_phi, ra_r, ta_r = _eval_all(audit, audit.retrains("retrain", retrain_seeds))
    m_part = c_part = None
    if need_control:
        prime_seeds = [seeds_for(k)["seed_retrain_prime"] for k in range(n)]
        p_phi, ra_p, ta_p = _eval_all(audit, audit.retrains("retrain_prime", prime_seeds))
        c_part = _epsilon_part(audit, p_phi, r_phi, ra_p, ra_r, ta_p, ta_r)
        c_part[1].update(seeds={"retrain": "1000+k", "retrain_prime (scored)": "2000+k"})
    if need_method:
        orig = audit.original()
        audit.say(f"  {n} unlearning runs of {audit.label}")
        phis, ras, tas, rtes, diverged = [], [], [], [], 0
        for k in range(n):
            model, outcome = audit.unlearn(orig, audit.task, k)
            phi, ra, ta = _eval_eps(audit, model)
            phis.append(phi)
            ras.append(ra)
            tas.append(ta)
            rtes.append(outcome.rte_seconds)
            diverged += int(outcome.diverged)
        u_phi = np.stack(phis)
        metrics, record = _epsilon_part(audit, u_phi, r_phi, ras, ra_r, tas, ta_r)
        metrics.update(rte_mean=float(np.mean(rtes)), n_diverged=float(diverged))
        record.update(
            rte_seconds=rtes,
            seeds={
                "original": seeds_for(audit.rep)["seed_train"],
                "unlearn": "k = 0..N-1",
                "retrain": "1000+k",
            },
        )
        m_part = (metrics, record)
    return m_part, c_part


def _epsilon_part(audit: _Audit, u_phi, r_phi, ra_u, ra_r, ta_u, ta_r) -> Part:
    with audit._timed("scoring"):
        res = _neurips_tolerant(u_phi, r_phi, ra_u, ra_r, ta_u, ta_r)
        acc = _ks_balanced_accuracy(u_phi, r_phi)
    eps = res["eps"]
    families = res["diagnostics"]["family"]
    fam, counts = np.unique(np.asarray(families, dtype=str), return_counts=True)
    metrics = {
        "F": float(res["F"]),
        "final": float(res["final"]),
        **_quantiles(eps, "eps"),
        "attack_acc": float(acc.mean()),
        "attack_acc_q90": float(np.quantile(acc, 0.9)),
        "ra_mean": float(np.mean(ra_u)),
        "ta_mean": float(np.mean(ta_u)),
        "ra_ratio": float(res["ra_ratio"]),
        "ta_ratio": float(res["ta_ratio"]),
        "n_models": float(audit.n),
        "n_examples": float(eps.size),
        "n_bins": float(res["n_bins"]),
        "n_valve": float(np.sum(res["diagnostics"]["valve"])),
        "n_degenerate": float(res["n_degenerate"]),
    }
    record = {
        "eps": eps,
        "H": res["H"],
        "attack_acc_per_example": acc,
        "winning_family": dict(zip(fam.tolist(), counts.tolist())),
        "forget_idx": audit.task.forget_idx,
        "ra": np.asarray(ra_u, dtype=float),
        "ta": np.asarray(ta_u, dtype=float),
        "ra_reference": np.asarray(ra_r, dtype=float),
        "ta_reference": np.asarray(ta_r, dtype=float),
        "attack_acc_definition": (
            "mean over forget examples of max_t 1-(FPR+FNR)/2 of a single-threshold rule "
            "separating the N unlearned from the N retrained phi values (0.5 + KS/2)"
        ),
        "negatives": f"{audit.n} retrained models per forget example",
    }
    return metrics, record


def _neurips_tolerant(u_phi, r_phi, ra_u, ra_r, ta_u, ta_r) -> dict[str, Any]:
    """``neurips23_score``; an example with no surviving rule gets ε = 0 and is counted.

    Both φ populations constant and equal (the only way no rule survives) means the two sides
    are indistinguishable for that example, so this library scores it ε = 0; the challenge's
    reference code fails an assertion instead.
    """
    try:
        res = neurips23_score(u_phi, r_phi, ra_u, ra_r, ta_u, ta_r)
        res["n_degenerate"] = 0
        return res
    except DegenerateScoresError:
        pass
    n = u_phi.shape[0]
    eps = np.empty(u_phi.shape[1])
    diags = []
    for e in range(u_phi.shape[1]):
        try:
            eps[e], d = per_example_epsilon(u_phi[:, e], r_phi[:, e])
        except DegenerateScoresError:
            eps[e], d = 0.0, {"family": "degenerate", "valve": False}
        diags.append(d)
    h = h_score(eps, n)
    f = sum(float(x) for x in h) / eps.size
    ra_ratio = float(np.mean(ra_u)) / float(np.mean(ra_r))
    ta_ratio = float(np.mean(ta_u)) / float(np.mean(ta_r))
    return {
        "F": f,
        "final": f * ra_ratio * ta_ratio,
        "eps": eps,
        "H": h,
        "n_bins": n_bins(n),
        "ra_ratio": ra_ratio,
        "ta_ratio": ta_ratio,
        "diagnostics": {
            "family": np.array([d["family"] for d in diags]),
            "valve": np.array([bool(d.get("valve", False)) for d in diags]),
        },
        "n_degenerate": int(sum(d["family"] == "degenerate" for d in diags)),
    }


def _ks_balanced_accuracy(u: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Per column, ``0.5 + KS/2``: the best single-threshold balanced accuracy (either way)."""
    n_u, n_r = u.shape[0], r.shape[0]
    out = np.empty(u.shape[1])
    for e in range(u.shape[1]):
        su, sr = np.sort(u[:, e]), np.sort(r[:, e])
        pts = np.concatenate([su, sr])
        cu = np.searchsorted(su, pts, "right") / n_u
        cr = np.searchsorted(sr, pts, "right") / n_r
        out[e] = 0.5 + 0.5 * float(np.max(np.abs(cu - cr)))
    return out


def _quantiles(values: np.ndarray, prefix: str) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {f"{prefix}_{q}": math.nan for q in ("q50", "q90", "q99", "mean")}
    q50, q90, q99 = np.quantile(v, [0.5, 0.9, 0.99])
    return {
        f"{prefix}_q50": float(q50),
        f"{prefix}_q90": float(q90),
        f"{prefix}_q99": float(q99),
        f"{prefix}_mean": float(v.mean()),
    }
