"""The RMIA audit: offline RMIA of the unlearned model against a Retrain.

``n_models = 2R`` reference models (the same complementary-pair bank as U-LiRA, see
:mod:`~unlearnkit.audit.plan`) and the population Z score ``θ_u`` (the unlearned original)
and ``θ_r`` (a Retrain) on the positives ``D_f`` and the negatives H. RMIA's negatives are H;
in ``class`` scenarios only H's points of the forgotten classes (like with like, as the
Tier-A loss attack does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..bench.runner import seeds_for
from ..datasets._lazy import take_rows
from ..errors import DataError
from ..metrics.functional.rmia import rmia_scores, rmia_vs_retrain, tune_offline_a
from ..metrics.functional.roc import low_fpr_report
from .plan import _SHADOW_SEED, ALPHAS, CI_ALPHA, _digest, _split_members
from .readouts import _roc_metrics, _roc_record

if TYPE_CHECKING:
    from .session import Part, _Audit


def key_parts(audit: _Audit) -> dict[str, Any]:
    """What, besides the shared audit key, determines an RMIA row."""
    return {
        **audit.pool_key_parts(),
        "task": audit.task.id,
        "negatives": _digest(_rmia_negatives(audit)),
        "a": audit.opts["a"],
        "replicate": audit.rep,
    }


def _rmia_negatives(audit: _Audit) -> np.ndarray:
    """Pool positions of the negatives H (forgotten classes only in class scenarios)."""
    plan = audit.plan
    pos = plan.h_positions
    classes = audit.task.forget_classes
    if classes:
        y = plan.pool.y.numpy()[pos]
        pos = pos[np.isin(y, np.asarray(classes))]
        if pos.size == 0:
            raise DataError(
                f"no held-out point of the forgotten class(es) {list(classes)} to serve as "
                "RMIA negatives; use a dataset with a validation split that has them"
            )
    return pos


def work(audit: _Audit, need_method: bool, need_control: bool) -> int:
    """Models :func:`compute` needs: N references and one retrain; the original and one
    unlearning run for the method."""
    return audit.n + 1 + (2 if need_method else 0)


def compute(
    audit: _Audit, need_method: bool, need_control: bool
) -> tuple[Part | None, Part | None]:
    """The method's part and the Retrain control's, each ``(metrics, record)``, as needed."""
    plan = audit.plan
    members = _split_members(len(plan.pool), audit.n, audit.spec.seed_attack)
    refs = audit.shadows(members)
    keep = np.zeros((audit.n, len(plan.pool)), dtype=bool)
    for k, idx in enumerate(members):
        keep[k, idx] = True
    px, py, z = plan.pool.x, plan.pool.y, plan.z
    ref_p = np.stack([audit.logits(m, px, py).conf for m in refs])
    ref_z = np.stack([audit.logits(m, z.x, z.y).conf for m in refs])
    a_opt = audit.opts["a"]
    with audit._timed("scoring"):
        if a_opt is None:
            a, grid_auc = tune_offline_a(ref_p, keep, ref_z)
        else:
            a, grid_auc = float(a_opt), None
    pos = audit.task.forget_idx  # pool positions of D_f (D_tr comes first in the pool)
    neg = _rmia_negatives(audit)
    x_idx = np.concatenate([pos, neg])
    is_forget = np.zeros(x_idx.size, dtype=bool)
    is_forget[: pos.size] = True
    xs, ys = take_rows(px, torch.as_tensor(x_idx)), py[torch.as_tensor(x_idx)]  # no read
    ref_x, out_x = ref_p[:, x_idx], ~keep[:, x_idx]
    theta_r = audit.retrains("retrain", [seeds_for(audit.rep)["seed_retrain"]])[0]
    r_x, r_z = audit.logits(theta_r, xs, ys).conf, audit.logits(theta_r, z.x, z.y).conf
    common = {
        "pool": plan.describe(),
        "a": a,
        "a_grid_mean_auc": grid_auc,
        "n_references": audit.n,
        "negatives": f"H = {plan.h_source}"
        + (" (forgotten classes only)" if audit.task.forget_classes else ""),
    }
    m_part = c_part = None
    if need_method:
        model, outcome = audit.unlearn(
            audit.original(), audit.task, seeds_for(audit.rep)["seed_unlearn"]
        )
        u_x, u_z = audit.logits(model, xs, ys).conf, audit.logits(model, z.x, z.y).conf
        with audit._timed("scoring"):
            res = rmia_vs_retrain(
                u_x, r_x, ref_x, out_x, is_forget, u_z, r_z, ref_z, a, alphas=ALPHAS
            )
        metrics = _roc_metrics(res["report_u"], audit.n)
        metrics.update(a=a, delta_auc=float(res["delta_auc"]))
        for al in ALPHAS:
            metrics[f"delta_tpr_at_fpr_{al:g}"] = float(res[f"delta_tpr_at_fpr_{al:g}"])
        metrics["diverged"] = float(outcome.diverged)
        m_part = (
            metrics,
            {
                **common,
                "roc": _roc_record(res["report_u"]),
                "seeds": {
                    "original": seeds_for(audit.rep)["seed_train"],
                    "unlearn": seeds_for(audit.rep)["seed_unlearn"],
                    "references": f"{_SHADOW_SEED}+k",
                },
            },
        )
        report_r = res["report_r"]
    elif need_control:
        with audit._timed("scoring"):
            s_r = rmia_scores(r_x, ref_x, out_x, r_z, ref_z, a)
            report_r = low_fpr_report(s_r[is_forget], s_r[~is_forget], ALPHAS, ci_alpha=CI_ALPHA)
    if need_control:
        c_metrics = _roc_metrics(report_r, audit.n)
        c_metrics["a"] = a
        c_part = (
            c_metrics,
            {
                **common,
                "roc": _roc_record(report_r),
                "seeds": {"retrain": seeds_for(audit.rep)["seed_retrain"]},
            },
        )
    return m_part, c_part
