"""LiRA membership scores and U-LiRA per-example unlearning audit scores, on φ arrays only.

References: Carlini, Chien, Nasr, Song, Terzis, Tramèr (2022), "Membership Inference Attacks From
First Principles" (LiRA); Hayes, Shumailov, Triantafillou, Khalifa, Papernot (2024), "Inexact
Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy" (U-LiRA).
Reference code: tensorflow/privacy ``research/mi_lira_2021/score.py`` and ``plot.py``;
xcadet/deepunlearn ``munl/lira/consolidate_predictions.py``.

No model is trained here: the φ arrays come from the model bank. Every score is
"larger = more likely member" (or, for U-LiRA, "more likely trained-then-unlearned").
"""

from __future__ import annotations

import enum
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.roc import (
    clopper_pearson,
    low_fpr_report,
    retrain_comparison,
)

__all__ = [
    "SIGMA_EPS",
    "LiraFit",
    "Role",
    "gaussian_llr",
    "gaussian_logpdf",
    "lira_fit",
    "lira_loo",
    "lira_offline",
    "lira_online",
    "lira_vs_retrain",
    "ulira_posterior_legacy",
    "ulira_score",
]

#: Added to every fitted standard deviation, as in the reference (``std + 1e-30``).
SIGMA_EPS = 1e-30

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_MODES = ("online", "offline")


class Role(enum.IntEnum):
    """Membership role of an example under one unlearned model of a U-LiRA bank."""

    NEITHER = 0  #: in D^k but not forgotten: retained, so neither group
    UNL = 1  #: trained, then unlearned (x ∈ S^{k,m})
    NEV = 2  #: never trained (x ∉ D^k)


def gaussian_logpdf(x: ArrayLike, mu: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """Return ``ln N(x; mu, sigma)`` element-wise (broadcasting), in float64.

    Args:
        x: observations.
        mu: means.
        sigma: standard deviations (> 0; callers add :data:`SIGMA_EPS`).

    Returns:
        The log-densities.
    """
    x = np.asarray(x, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    z = (x - mu) / sigma
    return -0.5 * z * z - np.log(sigma) - _HALF_LOG_2PI


def gaussian_llr(
    x: ArrayLike, mu_in: ArrayLike, sigma_in: ArrayLike, mu_out: ArrayLike, sigma_out: ArrayLike
) -> np.ndarray:
    """Return the Gaussian log-likelihood ratio ``ln N(x; μ_in, σ_in) − ln N(x; μ_out, σ_out)``.

    This is the LiRA online score for one observation and the U-LiRA score with
    ``in = UNL``, ``out = NEV``. No ``1e-30`` is added here.

    Args:
        x: observations.
        mu_in: location of the IN (member) Gaussian.
        sigma_in: scale of the IN Gaussian.
        mu_out: location of the OUT Gaussian.
        sigma_out: scale of the OUT Gaussian.

    Returns:
        The log-likelihood ratios, broadcast over the inputs; larger = more likely IN.

    Example:
        >>> float(gaussian_llr(2.0, 2.0, 1.0, 0.0, 1.0))
        2.0
    """
    return gaussian_logpdf(x, mu_in, sigma_in) - gaussian_logpdf(x, mu_out, sigma_out)


@dataclass(frozen=True)
class LiraFit:
    """Per-example IN/OUT Gaussians fitted on a bank.

    Arrays are (n, A) for n examples and A augmentations; a statistic over no model is NaN.

    Attributes:
        mu_in: median of the IN φ values.
        sigma_in: std (ddof 0) of the IN φ values, without the ``1e-30``.
        mu_out: median of the OUT φ values.
        sigma_out: std (ddof 0) of the OUT φ values.
        n_in: (n,) number of IN models used per example.
        n_out: (n,) number of OUT models used per example.
        pooled_sigma_in: fixed-variance σ_in [lib]: ``sqrt(mean_{i,a} var_in)``, the variance of
            each example around its own mean, averaged over examples (and augmentations).
        pooled_sigma_out: the same for OUT.
        all_in_std: std of all IN values pooled across examples [ref fixed variance].
        all_out_std: std of all OUT values pooled across examples [ref fixed variance].
    """

    mu_in: np.ndarray
    sigma_in: np.ndarray
    mu_out: np.ndarray
    sigma_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    pooled_sigma_in: float
    pooled_sigma_out: float
    all_in_std: float
    all_out_std: float


def _as_phi(phi: ArrayLike) -> np.ndarray:
    """φ as (K, n, A) float64, adding an augmentation axis of size 1 to (K, n) input."""
    arr = np.asarray(phi, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise DataError(
            f"phi must be (models, examples) or (models, examples, augs); got {arr.shape}"
        )
    return arr


def _first_k(mask: np.ndarray, k: int) -> np.ndarray:
    """Keep, per column, only the first ``k`` True entries of ``mask`` (in model order)."""
    return mask & (np.cumsum(mask, axis=0) <= k)


def _group_stats(
    values: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Median, std, count, pooled (mean-variance) σ and all-values std of masked columns."""
    m3 = np.broadcast_to(mask[:, :, None], values.shape)
    masked = np.where(m3, values, np.nan)
    count = mask.sum(axis=0)
    with warnings.catch_warnings():
        # Columns without any model give NaN statistics on purpose ("Mean of empty slice").
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(masked, axis=0)
        std = np.nanstd(masked, axis=0)
        var = np.nanvar(masked, axis=0)
        pooled = float(np.sqrt(np.nanmean(var))) if np.isfinite(var).any() else math.nan
    flat = values[m3]
    all_std = float(np.std(flat)) if flat.size else math.nan
    return med, std, count, pooled, all_std


def lira_fit(phi: ArrayLike, keep: ArrayLike, *, legacy_truncate: bool = False) -> LiraFit:
    """Fit the per-example IN and OUT Gaussians of LiRA on a bank of models.

    ``IN_i`` = φ of the models with ``keep[k, i]``, ``OUT_i`` = the rest; location = median,
    scale = std (ddof 0). Pooled scales for the fixed-variance variants are stored as well.

    Args:
        phi: array (K, n) or (K, n, A) of φ for K bank models, n examples, A augmentations.
        keep: boolean array (K, n), True when example i was in model k's training set.
        legacy_truncate: reproduce [ref]: use only the first ``min_i |IN_i|`` IN models (and
            the first ``min_i |OUT_i|`` OUT models) of every example, in model order.

    Returns:
        A :class:`LiraFit`.

    Raises:
        DataError: if the shapes disagree.
    """
    values = _as_phi(phi)
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != values.shape[:2]:
        raise DataError(f"keep must be (models, examples) = {values.shape[:2]}; got {keep.shape}")
    in_mask, out_mask = keep, ~keep
    if legacy_truncate:
        in_mask = _first_k(in_mask, int(in_mask.sum(axis=0).min()))
        out_mask = _first_k(out_mask, int(out_mask.sum(axis=0).min()))
    mu_in, sd_in, n_in, pooled_in, all_in = _group_stats(values, in_mask)
    mu_out, sd_out, n_out, pooled_out, all_out = _group_stats(values, out_mask)
    return LiraFit(
        mu_in, sd_in, mu_out, sd_out, n_in, n_out, pooled_in, pooled_out, all_in, all_out
    )


def _target(phi_target: ArrayLike, fit: LiraFit) -> np.ndarray:
    x = np.asarray(phi_target, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape != fit.mu_in.shape:
        raise DataError(
            f"phi_target must be (examples,) or (examples, augs) = {fit.mu_in.shape}; got {x.shape}"
        )
    return x


def lira_online(
    phi_target: ArrayLike,
    fit: LiraFit,
    *,
    fixed_variance: bool = False,
    legacy: bool = False,
) -> np.ndarray:
    """Return the online LiRA score, the mean log-likelihood ratio of IN over OUT.

    ``Λ = mean_a [ln N(φ_a; μ_in, σ_in) − ln N(φ_a; μ_out, σ_out)]``.

    Args:
        phi_target: φ of the target model, (n,) or (n, A).
        fit: the bank's :class:`LiraFit` (fitted without the target model).
        fixed_variance: use one σ_in and one σ_out for all examples (advised below ~64 models).
            Default [lib] pooling: ``fit.pooled_sigma_in`` / ``fit.pooled_sigma_out``.
        legacy: with ``fixed_variance``, reproduce [ref]: the std of all IN values pooled across
            examples is used for **both** σ_in and σ_out.

    Returns:
        float64 array (n,), larger = more likely member.

    Raises:
        DataError: if ``phi_target`` does not match the fit.
    """
    x = _target(phi_target, fit)
    if not fixed_variance:
        s_in, s_out = fit.sigma_in, fit.sigma_out
    elif legacy:
        # [ref] pools all IN values (between-example spread included) for both Gaussians.
        s_in = s_out = fit.all_in_std
    else:
        s_in, s_out = fit.pooled_sigma_in, fit.pooled_sigma_out
    llr = gaussian_llr(x, fit.mu_in, np.add(s_in, SIGMA_EPS), fit.mu_out, np.add(s_out, SIGMA_EPS))
    return llr.mean(axis=1)


def lira_offline(
    phi_target: ArrayLike,
    fit: LiraFit,
    *,
    fixed_variance: bool = False,
    legacy: bool = False,
) -> np.ndarray:
    """Return the offline LiRA score, which needs only OUT models.

    Default [lib], one-sided: ``Λ_off = mean_a (φ_a − μ_out)/σ_out``, monotone in the paper's
    one-sided test for one augmentation. ``legacy=True`` follows [ref]:
    ``Λ_off = −mean_a ln N(φ_a; μ_out, σ_out)``, a two-sided score that also flags unusually
    *low* φ.

    Args:
        phi_target: φ of the target model, (n,) or (n, A).
        fit: the bank's :class:`LiraFit`.
        fixed_variance: one σ_out for all examples; default [lib] ``fit.pooled_sigma_out``, with
            ``legacy`` [ref] the std of all OUT values pooled across examples.
        legacy: reproduce the reference code (two-sided score, legacy pooling).

    Returns:
        float64 array (n,), larger = more likely member.

    Raises:
        DataError: if ``phi_target`` does not match the fit.
    """
    x = _target(phi_target, fit)
    if fixed_variance:
        s_out = fit.all_out_std if legacy else fit.pooled_sigma_out
    else:
        s_out = fit.sigma_out
    s_out = np.add(s_out, SIGMA_EPS)
    if legacy:
        return -gaussian_logpdf(x, fit.mu_out, s_out).mean(axis=1)
    return ((x - fit.mu_out) / s_out).mean(axis=1)


def _score(
    phi_target: np.ndarray, fit: LiraFit, mode: str, fixed_variance: bool, legacy: bool
) -> np.ndarray:
    if mode == "online":
        return lira_online(phi_target, fit, fixed_variance=fixed_variance, legacy=legacy)
    return lira_offline(phi_target, fit, fixed_variance=fixed_variance, legacy=legacy)


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ConfigError(f"mode must be one of {_MODES}; got {mode!r}")


def lira_loo(
    phi: ArrayLike,
    keep: ArrayLike,
    *,
    mode: str = "online",
    fixed_variance: bool = False,
    legacy: bool = False,
    legacy_truncate: bool = False,
    targets: Sequence[int] | None = None,
    alphas: Sequence[float] = (0.01, 0.001),
) -> dict[str, Any]:
    """Evaluate LiRA leave-one-out over target models and pool every (example, target) pair.

    Protocol: each target model in turn is attacked with Gaussians fitted on the
    other bank models; all pairs enter one ROC (AUC, balanced accuracy, TPR at low FPR with
    Clopper–Pearson intervals). [ref] uses only the last model as target (``targets=[-1]``).

    Args:
        phi: array (K, n) or (K, n, A) of φ.
        keep: boolean array (K, n) of memberships.
        mode: ``"online"`` or ``"offline"``.
        fixed_variance: see :func:`lira_online` / :func:`lira_offline`.
        legacy: reference forms (see the score functions).
        legacy_truncate: see :func:`lira_fit`.
        targets: indices of the target models (default: every model).
        alphas: FPR budgets for :func:`~unlearnkit.metrics.functional.roc.low_fpr_report`.

    Returns:
        The :func:`low_fpr_report` dict plus ``scores`` and ``labels`` (pooled pairs) and
        ``n_targets``.

    Raises:
        ConfigError: if ``mode`` is unknown.
        DataError: if the shapes disagree or fewer than 2 models are given.
    """
    _check_mode(mode)
    values = _as_phi(phi)
    keep = np.asarray(keep, dtype=bool)
    n_models = values.shape[0]
    if n_models < 2:
        raise DataError("leave-one-out LiRA needs at least 2 bank models")
    if keep.shape != values.shape[:2]:
        raise DataError(f"keep must be (models, examples) = {values.shape[:2]}; got {keep.shape}")
    tgt = range(n_models) if targets is None else [int(t) % n_models for t in targets]
    scores, labels = [], []
    for t in tgt:
        others = np.arange(n_models) != t
        fit = lira_fit(values[others], keep[others], legacy_truncate=legacy_truncate)
        s = _score(values[t], fit, mode, fixed_variance, legacy)
        ok = ~np.isnan(s)  # examples with no IN (or OUT) model among the others cannot be scored
        scores.append(s[ok])
        labels.append(keep[t][ok])
    s_all = np.concatenate(scores)
    y_all = np.concatenate(labels)
    report = low_fpr_report(s_all[y_all], s_all[~y_all], alphas)
    report.update(scores=s_all, labels=y_all, n_targets=len(tgt))
    return report


def lira_vs_retrain(
    fit: LiraFit,
    phi_u: ArrayLike,
    phi_r: ArrayLike,
    is_forget: ArrayLike,
    *,
    mode: str = "online",
    fixed_variance: bool = False,
    legacy: bool = False,
    alphas: Sequence[float] = (0.01, 0.001),
) -> dict[str, Any]:
    """Run LiRA against θ_u and against θ_r on forget points (positives) vs held-out points.

    LiRA against an unlearned model is a cheap screen, ideally with identical curves; U-LiRA
    (:func:`ulira_score`) is the proper test. Both targets are scored with the same bank fit.

    Args:
        fit: :class:`LiraFit` of the bank on the audited points (D_f ∪ H).
        phi_u: φ of θ_u on the audited points, (n,) or (n, A).
        phi_r: φ of θ_r on the same points.
        is_forget: boolean (n,), True for D_f (positives), False for H (negatives).
        mode: ``"online"`` or ``"offline"``.
        fixed_variance: see :func:`lira_online`.
        legacy: reference forms.
        alphas: FPR budgets.

    Returns:
        ``auc_u``, ``auc_r``, ``delta_auc``, ``tpr_at_fpr_{α}_u``, ``tpr_at_fpr_{α}_r``,
        ``delta_tpr_at_fpr_{α}`` for each α, ``n_pos``, ``n_neg``, ``underpowered``, and the two
        full reports ``report_u`` / ``report_r``.

    Raises:
        ConfigError: if ``mode`` is unknown.
        DataError: if the shapes disagree.
    """
    _check_mode(mode)
    pos = np.asarray(is_forget, dtype=bool)
    s_u = _score(np.asarray(phi_u), fit, mode, fixed_variance, legacy)
    s_r = _score(np.asarray(phi_r), fit, mode, fixed_variance, legacy)
    if pos.shape != s_u.shape:
        raise DataError(f"is_forget must be (examples,) = {s_u.shape}; got {pos.shape}")
    return retrain_comparison(s_u[pos], s_u[~pos], s_r[pos], s_r[~pos], alphas)


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
