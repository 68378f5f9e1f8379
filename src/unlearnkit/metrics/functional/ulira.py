"""U-LiRA per-example unlearning audit scores, on φ arrays only.

Reference: Hayes, Shumailov, Triantafillou, Khalifa, Papernot (2024), "Inexact Unlearning Needs
More Careful Evaluations to Avoid a False Sense of Privacy" (U-LiRA). Reference code:
xcadet/deepunlearn ``munl/lira/consolidate_predictions.py``.

No model is trained here: the φ arrays come from the model bank. Every score is "larger = more
likely trained-then-unlearned". The Gaussian pieces (:class:`~.lira.Role`,
:func:`~.lira.gaussian_llr`) are shared with LiRA in :mod:`unlearnkit.metrics.functional.lira`,
which also re-exports the functions of this module.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from unlearnkit.errors import DataError
from unlearnkit.metrics.functional.lira import SIGMA_EPS, Role, _group_stats, gaussian_llr
from unlearnkit.metrics.functional.roc import clopper_pearson, low_fpr_report

__all__ = ["ulira_posterior_legacy", "ulira_score"]


def _ulira_inputs(phi: ArrayLike, role: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(phi, dtype=np.float64)
    roles = np.asarray(role)
    if values.ndim != 2 or roles.shape != values.shape:
        raise DataError(
            f"phi and role must both be (models, examples); got {values.shape} and {roles.shape}"
        )
    if not np.isin(roles, [r.value for r in Role]).all():
        raise DataError("role entries must be Role.NEITHER (0), Role.UNL (1) or Role.NEV (2)")
    return values, roles.astype(np.int8)


def _masked_fit(
    values: np.ndarray, mask: np.ndarray, fixed_variance: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    med, std, count, pooled, _ = _group_stats(values[:, :, None], mask)
    sigma = np.full_like(std[:, 0], pooled) if fixed_variance else std[:, 0]
    return med[:, 0], sigma + SIGMA_EPS, count


def ulira_score(
    phi: ArrayLike,
    role: ArrayLike,
    group: ArrayLike,
    *,
    fixed_variance: bool = False,
    seed: int = 0,
    min_obs: int = 1,
    alphas: Sequence[float] = (0.01, 0.001),
    hist_bins: int = 10,
    ci_alpha: float = 0.05,
) -> dict[str, Any]:
    """Score a U-LiRA bank: leave one split out, fit per-example Gaussians, pool all targets.

    For target split ``t``, per-example Gaussians of the UNL and NEV
    φ values (median / std ddof 0 + 1e-30, or fixed variance) are fitted on the other splits;
    positives are the ``(x, θ^{t,m}_u)`` with role UNL, negatives those with role NEV, subsampled
    (seeded) to the number of positives; the score is
    ``Λ = ln N(φ; μ_unl, σ_unl) − ln N(φ; μ_nev, σ_nev)``.

    Args:
        phi: array (M, n) of φ of n audited examples under M unlearned models ``θ^{k,m}_u``.
        role: array (M, n) of :class:`Role` codes (UNL, NEV or NEITHER) per (model, example).
        group: array (M,) of the split id ``k`` of each model (its training half ``D^k``).
        fixed_variance: one pooled σ per group (mean of per-example variances) instead of
            per-example stds; advised below ~32 observations per group.
        seed: ``seed_attack`` for subsampling the negatives.
        min_obs: minimal number of UNL and of NEV observations (outside the target split) an
            example needs to be scored; pairs of other examples are skipped and counted.
        alphas: FPR budgets for the TPR readings.
        hist_bins: number of equal-width bins on [0, 1] of the vulnerability histogram.
        ci_alpha: level of the Clopper–Pearson intervals.

    Returns:
        A dict with ``ulira_acc`` (accuracy at threshold 0, Λ > 0 ⇒ UNL; ideal 0.5),
        ``ulira_acc_ci``, ``auc``, ``tpr_at_fpr_{α}`` and ``tpr_at_fpr_{α}_ci`` per α,
        ``underpowered``, ``roc_report`` (full :func:`low_fpr_report`), ``n_pos``, ``n_neg``,
        ``n_targets``, ``n_skipped`` (unscorable pairs, before subsampling), ``vulnerability``
        (per-example fraction of its target appearances predicted correctly; NaN if it never
        appeared),
        ``vulnerability_q50`` / ``_q90`` / ``_q99``, ``vulnerability_hist`` (counts, edges), and
        the pooled ``scores``, ``labels`` and ``example`` (index of each pair).

    Raises:
        DataError: if the shapes disagree, a role is invalid, or no pair can be scored.
    """
    values, roles = _ulira_inputs(phi, role)
    groups = np.asarray(group)
    if groups.shape != (values.shape[0],):
        raise DataError(f"group must be (models,) = ({values.shape[0]},); got {groups.shape}")
    rng = np.random.default_rng(seed)
    n_examples = values.shape[1]
    scores, labels, example = [], [], []
    n_skipped = 0
    split_ids = np.unique(groups)
    for t in split_ids:
        fit_rows = groups != t
        v_fit, r_fit = values[fit_rows], roles[fit_rows]
        mu_u, sd_u, n_u = _masked_fit(v_fit, r_fit == Role.UNL, fixed_variance)
        mu_n, sd_n, n_n = _masked_fit(v_fit, r_fit == Role.NEV, fixed_variance)
        scorable = (n_u >= min_obs) & (n_n >= min_obs)

        tgt_rows = np.flatnonzero(~fit_rows)
        r_t = roles[tgt_rows]
        pairs = []
        for code in (Role.UNL, Role.NEV):
            mm, xx = np.nonzero(r_t == code)
            ok = scorable[xx]
            n_skipped += int((~ok).sum())
            pairs.append((mm[ok], xx[ok]))
        (pos_m, pos_x), (neg_m, neg_x) = pairs
        if neg_m.size > pos_m.size:  # subsample the negatives to the number of positives
            pick = np.sort(rng.choice(neg_m.size, size=pos_m.size, replace=False))
            neg_m, neg_x = neg_m[pick], neg_x[pick]
        for mm, xx, lab in ((pos_m, pos_x, True), (neg_m, neg_x, False)):
            obs = values[tgt_rows[mm], xx]
            scores.append(gaussian_llr(obs, mu_u[xx], sd_u[xx], mu_n[xx], sd_n[xx]))
            labels.append(np.full(xx.size, lab))
            example.append(xx)
    s = np.concatenate(scores)
    y = np.concatenate(labels)
    ex = np.concatenate(example)
    if not y.any() or y.all():
        raise DataError(
            "U-LiRA needs scorable UNL and NEV pairs; add splits or forget sets, or lower min_obs"
        )

    correct = (s > 0) == y
    k_correct = int(correct.sum())
    report = low_fpr_report(s[y], s[~y], alphas, ci_alpha=ci_alpha)
    appear = np.bincount(ex, minlength=n_examples)
    hits = np.bincount(ex, weights=correct, minlength=n_examples)
    with np.errstate(invalid="ignore", divide="ignore"):
        vuln = np.where(appear > 0, hits / np.maximum(appear, 1), np.nan)
    seen = vuln[appear > 0]
    q50, q90, q99 = np.quantile(seen, [0.5, 0.9, 0.99])
    counts, edges = np.histogram(seen, bins=hist_bins, range=(0.0, 1.0))

    out: dict[str, Any] = {
        "ulira_acc": k_correct / y.size,
        "ulira_acc_ci": clopper_pearson(k_correct, y.size, ci_alpha),
        "auc": report["auc"],
    }
    for lv in report["levels"]:
        out[f"tpr_at_fpr_{lv['alpha']:g}"] = lv["tpr"]
        out[f"tpr_at_fpr_{lv['alpha']:g}_ci"] = lv["tpr_ci"]
    out.update(
        underpowered=report["underpowered"],
        roc_report=report,
        n_pos=int(y.sum()),
        n_neg=int((~y).sum()),
        n_targets=int(split_ids.size),
        n_skipped=n_skipped,
        vulnerability=vuln,
        vulnerability_q50=float(q50),
        vulnerability_q90=float(q90),
        vulnerability_q99=float(q99),
        vulnerability_hist=(counts, edges),
        scores=s,
        labels=y,
        example=ex,
    )
    return out


def ulira_posterior_legacy(phi: ArrayLike, role: ArrayLike) -> dict[str, Any]:
    """Return Deep Unlearn's per-observation membership posterior (``legacy="deepunlearn"``).

    Reproduces xcadet/deepunlearn ``consolidate_predictions.py``: per example, Gaussians (mean,
    std ddof 0, σ floored at 1e-30) are fitted on **all** UNL and NEV observations and evaluated
    on the same observations, and each forgotten observation gets ``N_unl/(N_unl + N_nev)``. The
    reference feeds 0/1 correctness as φ; pass that array to reproduce it. In-sample fitting makes
    this optimistic; prefer :func:`ulira_score`.

    Args:
        phi: array (M, n) of the per-observation signal.
        role: array (M, n) of :class:`Role` codes.

    Returns:
        ``posterior`` (one value per UNL observation, computed in the log domain), ``example``
        (its example index), ``model`` (its model index) and ``mean_posterior``.

    Raises:
        DataError: if the shapes disagree or there is no UNL observation.
    """
    values, roles = _ulira_inputs(phi, role)
    stats = []
    for code in (Role.UNL, Role.NEV):
        mask = roles == code
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            masked = np.where(mask, values, np.nan)
            stats.append((np.nanmean(masked, axis=0), np.maximum(np.nanstd(masked, axis=0), 1e-30)))
    (mu_u, sd_u), (mu_n, sd_n) = stats
    mm, xx = np.nonzero(roles == Role.UNL)
    if xx.size == 0:
        raise DataError("no UNL observation: nothing was forgotten")
    obs = values[mm, xx]
    # expit of the log-ratio equals N_unl / (N_unl + N_nev) without 0/0 when both densities vanish.
    post = expit(gaussian_llr(obs, mu_u[xx], sd_u[xx], mu_n[xx], sd_n[xx]))
    return {
        "posterior": post,
        "example": xx,
        "model": mm,
        "mean_posterior": float(np.nanmean(post)),
    }
