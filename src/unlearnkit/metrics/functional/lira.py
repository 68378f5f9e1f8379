"""LiRA membership scores, on φ arrays only, and the Gaussian pieces shared with U-LiRA.

References: Carlini, Chien, Nasr, Song, Terzis, Tramèr (2022), "Membership Inference Attacks From
First Principles" (LiRA); Hayes, Shumailov, Triantafillou, Khalifa, Papernot (2024), "Inexact
Unlearning Needs More Careful Evaluations to Avoid a False Sense of Privacy" (U-LiRA).
Reference code: tensorflow/privacy ``research/mi_lira_2021/score.py`` and ``plot.py``;
xcadet/deepunlearn ``munl/lira/consolidate_predictions.py``.

No model is trained here: the φ arrays come from the model bank. Every score is
"larger = more likely member" (or, for U-LiRA, "more likely trained-then-unlearned").
The U-LiRA scores (:func:`ulira_score`, :func:`ulira_posterior_legacy`) live in
:mod:`unlearnkit.metrics.functional.ulira`, which builds on the pieces here.
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

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.roc import low_fpr_report, retrain_comparison

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
