"""The U-LiRA audit: a likelihood-ratio attack on unlearned shadow models, against Retrain.

``n_models`` shadow models are trained on complementary halves of the pool P (see
:mod:`~unlearnkit.audit.plan`), ``M`` forget sets are drawn per split (default 10, fraction
0.1), giving ``n_models·M`` unlearning runs, scored by
:func:`~unlearnkit.metrics.functional.ulira.ulira_score`. The Retrain control replaces each
unlearning run by a Retrain on ``D^k \\ S^{k,m}`` (the estimation floor at this bank size).

U-LiRA audits every point of P; its negatives are the (point, model) pairs whose point is
outside the model's split (``NEV``), subsampled to the number of positives. The unlearning run
of split ``k``'s forget set ``m`` uses seed ``k·M + m``; its Retrain control seed
``1000 + k·M + m``. A split's unlearning task sees Z as its validation data (never P).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..datasets import DatasetBundle, Split
from ..datasets._lazy import take_rows
from ..metrics.functional.lira import Role
from ..metrics.functional.phi import logit_scaled_confidence
from ..metrics.functional.ulira import ulira_score
from ..tasks import ForgetTask, forget_task
from .bank import bank_key
from .plan import _SHADOW_SEED, ALPHAS, CI_ALPHA, _digest, _split_members
from .readouts import _ci_metrics, _roc_record

if TYPE_CHECKING:
    from .session import Part, _Audit


def key_parts(audit: _Audit) -> dict[str, Any]:
    """What, besides the shared audit key, determines a U-LiRA row."""
    return {
        **audit.pool_key_parts(),
        "forget_sets": int(audit.opts["forget_sets"]),
        "forget_fraction": float(audit.opts["forget_fraction"]),
        "fixed_variance": audit.opts["fixed_variance"],
    }


def _split_bundle(audit: _Audit, k: int, members: np.ndarray) -> DatasetBundle:
    """Split ``k``'s training half of the pool as a bundle; Z serves as its validation."""
    plan = audit.plan
    idx = torch.as_tensor(members)
    return dataclasses.replace(
        audit.bundle,
        name=f"{audit.bundle.name}/pool-split{k}",
        train=Split(take_rows(plan.pool.x, idx), plan.pool.y[idx]),  # disk-backed: no read
        val=plan.z,
        split_info={"audit_split": k, "pool": plan.pool_digest},
    )


def _split_task(audit: _Audit, sub: DatasetBundle, k: int, m: int) -> ForgetTask:
    """Forget set ``S^{k,m}``: a uniformly random fraction f of split ``k``."""
    seq = np.random.SeedSequence([int(audit.spec.seed_attack), 2, k, m])
    seed = int(seq.generate_state(1)[0])
    return forget_task(sub, "random", fraction=float(audit.opts["forget_fraction"]), seed=seed)


def work(audit: _Audit, need_method: bool, need_control: bool) -> int:
    """Models :func:`compute` needs: a retrain per (split, forget set) for the control; the N
    shadows and an unlearning run per (split, forget set) for the method."""
    runs = audit.n * int(audit.opts["forget_sets"])
    return (runs if need_control else 0) + (audit.n + runs if need_method else 0)


def compute(
    audit: _Audit, need_method: bool, need_control: bool
) -> tuple[Part | None, Part | None]:
    """The method's part and the Retrain control's, each ``(metrics, record)``, as needed."""
    plan = audit.plan
    n_pool = len(plan.pool)
    n_sh, m_sets = audit.n, int(audit.opts["forget_sets"])
    f = float(audit.opts["forget_fraction"])
    members = _split_members(n_pool, n_sh, audit.spec.seed_attack)
    tasks, roles, groups = [], [], []
    for k, idx in enumerate(members):
        sub = _split_bundle(audit, k, idx)
        for m in range(m_sets):
            t = _split_task(audit, sub, k, m)
            role = np.full(n_pool, Role.NEITHER, dtype=np.int8)
            role[np.setdiff1d(np.arange(n_pool), idx, assume_unique=True)] = Role.NEV
            role[idx[t.forget_idx]] = Role.UNL
            tasks.append((k, m, t))
            roles.append(role)
            groups.append(k)
    role_mat, group = np.stack(roles), np.array(groups)
    expected_unl = (n_sh - 1) * m_sets * f / 2
    fv = audit.opts["fixed_variance"]
    fixed = bool(expected_unl < 32) if fv is None else fv
    px, py = plan.pool.x, plan.pool.y
    common = {
        "pool": plan.describe(),
        "forget_sets": m_sets,
        "forget_fraction": f,
        "fixed_variance": fixed,
        "expected_unl_per_example": expected_unl,
        "negatives": "(x, model) pairs with x outside the model's split (NEV), subsampled "
        "to the number of positives",
    }

    def phi_of(model: nn.Module) -> np.ndarray:
        s = audit.logits(model, px, py)
        with audit._timed("scoring"):
            return logit_scaled_confidence(s.logits, s.labels)

    def score(phi: np.ndarray) -> tuple[dict, dict]:
        with audit._timed("scoring"):
            res = ulira_score(
                phi,
                role_mat,
                group,
                fixed_variance=fixed,
                seed=audit.spec.seed_attack,
                alphas=ALPHAS,
                ci_alpha=CI_ALPHA,
            )
        return _ulira_metrics(res, n_sh), {**common, **_ulira_record(res)}

    m_part = c_part = None
    if need_control:
        keys, data, seeds, metas = [], [], [], []
        for j, (k, m, t) in enumerate(tasks):
            seed = 1000 + j
            keys.append(
                bank_key(
                    role="ulira_retrain",
                    dataset=audit.bundle.fingerprint,
                    pool=plan.pool_digest,
                    members=_digest(members[k][t.retain_idx]),
                    arch=audit.factory.describe(),
                    recipe=audit.spec.recipe.hash,
                    seed=seed,
                )
            )
            data.append(t.retain)
            seeds.append(seed)
            metas.append({"role": "ulira_retrain", "seed": seed, "split": k, "forget_set": m})
        phi_r = np.stack([phi_of(mod) for mod in audit._bank_many(keys, data, seeds, metas)])
        c_part = score(phi_r)
        c_part[1]["seeds"] = {"retrain of split k, forget set m": "1000 + k*M + m"}
    if need_method:
        shadows = audit.shadows(members)
        audit.say(f"  {len(tasks)} unlearning runs of {audit.label}")
        phis, diverged = [], 0
        for j, (k, _m, t) in enumerate(tasks):
            model, outcome = audit.unlearn(shadows[k], t, j)
            diverged += int(outcome.diverged)
            phis.append(phi_of(model))
        metrics, record = score(np.stack(phis))
        metrics["n_diverged"] = float(diverged)
        record["seeds"] = {
            "shadow k": f"{_SHADOW_SEED}+k",
            "unlearn split k, forget set m": "k*M + m",
        }
        m_part = (metrics, record)
    return m_part, c_part


def _ulira_metrics(res: dict[str, Any], n_models: int) -> dict[str, float]:
    out = {
        "ulira_acc": float(res["ulira_acc"]),
        **_ci_metrics("ulira_acc", res["ulira_acc_ci"]),
        "auc": float(res["auc"]),
    }
    for al in ALPHAS:
        key = f"tpr_at_fpr_{al:g}"
        out[key] = float(res[key])
        out.update(_ci_metrics(key, res[f"{key}_ci"]))
    out.update(
        underpowered=float(res["underpowered"]),
        vulnerability_q50=float(res["vulnerability_q50"]),
        vulnerability_q90=float(res["vulnerability_q90"]),
        vulnerability_q99=float(res["vulnerability_q99"]),
        n_pos=float(res["n_pos"]),
        n_neg=float(res["n_neg"]),
        n_skipped=float(res["n_skipped"]),
        n_models=float(n_models),
    )
    return out


def _ulira_record(res: dict[str, Any]) -> dict[str, Any]:
    counts, edges = res["vulnerability_hist"]
    return {
        "vulnerability": res["vulnerability"],
        "vulnerability_hist": {"counts": counts, "edges": edges},
        "roc": _roc_record(res["roc_report"]),
        "n_targets": res["n_targets"],
    }
