"""Two-sample statistics behind the retrain-free target: forget set vs held-out set.

* :func:`delong_auc` — an AUC with DeLong's interval;
* :func:`membership_auc` — a cross-validated membership attack on per-sample features, its
  interval widened to the attack's simulated spread at chance;
* :func:`two_proportion_interval` — the Agresti–Caffo interval of a difference of accuracies;
* :func:`ks_distance` — the two-sample Kolmogorov–Smirnov statistic and its critical value.

The criteria built on them live in :mod:`unlearnkit.metrics.functional.proxy`, which also
re-exports these functions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats as _st

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.roc import auc as roc_auc

__all__ = ["delong_auc", "ks_distance", "membership_auc", "two_proportion_interval"]

# Size and replicates of the simulation that calibrates the attack's interval at chance.
_NULL_SIM_ROWS = 400
_NULL_SIM_REPS = 100


def _z(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie in (0, 1); got {level!r}")
    return float(_st.norm.ppf(0.5 + 0.5 * float(level)))


def delong_auc(
    scores_pos: Sequence[float] | np.ndarray,
    scores_neg: Sequence[float] | np.ndarray,
    *,
    level: float = 0.95,
) -> dict[str, float]:
    """Return the AUC of ``scores_pos`` over ``scores_neg`` with DeLong's interval.

    With ``V10_i`` the fraction of negatives below positive ``i`` (ties ½) and ``V01_j`` the
    fraction of positives above negative ``j``, ``AUC = mean(V10)`` and
    ``Var = var(V10)/m + var(V01)/n`` (sample variances, ddof = 1); the interval is
    ``AUC ± z * sqrt(Var)`` clipped to [0, 1] (DeLong, DeLong and Clarke-Pearson, 1988).

    Returns:
        ``auc``, ``se``, ``lo``, ``hi``.

    Raises:
        DataError: fewer than two scores on a side, or a non-finite score.

    Example:
        >>> delong_auc([1.0, 2.0, 3.0], [0.0, 1.5])["auc"]  # doctest: +ELLIPSIS
        0.833...
    """
    pos = np.asarray(scores_pos, dtype=np.float64).ravel()
    neg = np.asarray(scores_neg, dtype=np.float64).ravel()
    if pos.size < 2 or neg.size < 2:
        raise DataError(
            f"an AUC interval needs at least two scores per side; got {pos.size} and {neg.size}"
        )
    if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(neg))):
        raise DataError("attack scores contain inf/NaN; check the model's outputs")
    m, n = pos.size, neg.size
    both = _st.rankdata(np.concatenate([pos, neg]))  # midranks: ties count one half
    v10 = (both[:m] - _st.rankdata(pos)) / n
    v01 = 1.0 - (both[m:] - _st.rankdata(neg)) / m
    value = float(v10.mean())
    se = math.sqrt(max(v10.var(ddof=1) / m + v01.var(ddof=1) / n, 0.0))
    z = _z(level)
    return {
        "auc": value,
        "se": se,
        "lo": max(0.0, value - z * se),
        "hi": min(1.0, value + z * se),
    }


def membership_auc(
    forget_feats: np.ndarray,
    heldout_feats: np.ndarray,
    *,
    seed: int = 0,
    folds: int = 5,
    level: float = 0.95,
) -> dict[str, Any]:
    """Cross-validated membership attack: AUC of forget (positive) vs held-out samples.

    A linear discriminant on standardised features is fit on ``folds - 1`` folds (stratified,
    shuffled with ``seed``) and scores the remaining fold; the out-of-fold
    scores of all samples give the AUC. Its interval is ``AUC ± z * se`` with ``se`` the larger
    of DeLong's standard error and the spread of this same cross-validated attack at chance
    (a seeded simulation per set size: refitting the attack in every fold spreads a no-signal
    AUC 1.3-1.6 times wider than the Mann–Whitney null, which DeLong alone would miss). The
    attack learns its own direction, so an over-forgotten set (losses above held-out) is as
    visible as a remembered one. At chance the AUC is 0.5 (cross-validation biases a no-signal
    attack slightly below).

    Args:
        forget_feats: features (n_f, d) or (n_f,) of the forget set (see
            :func:`~unlearnkit.metrics.functional.proxy.attack_features`).
        heldout_feats: features (n_h, d) or (n_h,) of unseen samples.
        seed: fold assignment seed.
        folds: number of folds (reduced to the smaller side's size when needed).
        level: confidence level of the interval.

    Returns:
        ``auc``, ``lo``, ``hi``, ``se`` (the one used), ``se_delong``, ``folds`` (used),
        ``n_forget``, ``n_heldout``.

    Raises:
        ConfigError: ``folds`` below 2 or a bad seed.
        DataError: fewer than two samples on a side, non-finite features or mismatched widths.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ConfigError(f"folds must be an integer >= 2; got {folds!r}")
    xf = np.asarray(forget_feats, dtype=np.float64)
    xh = np.asarray(heldout_feats, dtype=np.float64)
    xf = xf[:, None] if xf.ndim == 1 else xf
    xh = xh[:, None] if xh.ndim == 1 else xh
    if xf.ndim != 2 or xh.ndim != 2 or xf.shape[1] != xh.shape[1]:
        raise DataError(f"feature arrays must be (n, d) with equal d; got {xf.shape}, {xh.shape}")
    n_f, n_h = xf.shape[0], xh.shape[0]
    if min(n_f, n_h) < 2:
        raise DataError(
            f"the membership attack needs at least two forget and two held-out samples; "
            f"got {n_f} and {n_h}"
        )
    if not (np.all(np.isfinite(xf)) and np.all(np.isfinite(xh))):
        raise DataError("attack features contain inf/NaN; check the model's outputs")
    k = int(min(folds, n_f, n_h))
    scores = _cv_scores(xf, xh, k, int(seed))
    res = delong_auc(scores[:n_f], scores[n_f:], level=level)
    # DeLong treats the out-of-fold scores as fixed and misses the spread the refitted attack
    # adds (about a quarter more at chance): widen the interval to the simulated null spread.
    null_se = _cv_null_factor(n_f, n_h, xf.shape[1], k) * _mw_null_se(n_f, n_h)
    se = max(res["se"], null_se)
    z = _z(level)
    value = roc_auc(scores[:n_f], scores[n_f:])  # sklearn's AUC of the same scores
    return {
        "auc": value,
        "lo": max(0.0, value - z * se),
        "hi": min(1.0, value + z * se),
        "se": se,
        "se_delong": res["se"],
        "folds": k,
        "n_forget": n_f,
        "n_heldout": n_h,
    }


def _cv_scores(xf: np.ndarray, xh: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Out-of-fold scores of a linear discriminant (forget rows first).

    Folds are stratified: each side is shuffled with ``seed`` and dealt round-robin. In each
    fold the direction is ``w = (S + ridge I)^-1 (mu_f - mu_h)`` on features standardised with
    the training part (``S`` the pooled within-side covariance), so both sides weigh equally
    whatever their sizes.
    """
    x = np.concatenate([xf, xh])
    y = np.concatenate([np.ones(len(xf), dtype=bool), np.zeros(len(xh), dtype=bool)])
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    for side in (y, ~y):
        idx = rng.permutation(np.flatnonzero(side))
        fold[idx] = np.arange(len(idx)) % k
    scores = np.empty(len(y), dtype=np.float64)
    d = x.shape[1]
    for f in range(k):
        test, train = fold == f, fold != f
        xt, yt = x[train], y[train]
        mu, sd = xt.mean(axis=0), xt.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        z1, z0 = (xt[yt] - mu) / sd, (xt[~yt] - mu) / sd
        m1, m0 = z1.mean(axis=0), z0.mean(axis=0)
        cov = ((z1 - m1).T @ (z1 - m1) + (z0 - m0).T @ (z0 - m0)) / max(len(xt) - 2, 1)
        w = np.linalg.solve(cov + 1e-3 * np.eye(d), m1 - m0)
        scores[test] = ((x[test] - mu) / sd) @ w
    return scores


def _mw_null_se(n_f: int, n_h: int) -> float:
    """Standard deviation of a fixed score's AUC between exchangeable sets (Mann–Whitney)."""
    return math.sqrt((n_f + n_h + 1) / (12.0 * n_f * n_h))


@functools.lru_cache(maxsize=64)
def _cv_null_factor(n_f: int, n_h: int, d: int, k: int) -> float:
    """How much wider the cross-validated AUC spreads at chance than a fixed score's.

    Simulated once per shape (seeded, Gaussian features, sizes scaled down to at most
    :data:`_NULL_SIM_ROWS` rows with the same forget/held-out ratio); at least 1.
    """
    scale = min(1.0, _NULL_SIM_ROWS / (n_f + n_h))
    m, n = max(2, round(n_f * scale)), max(2, round(n_h * scale))
    kk = int(min(k, m, n))
    rng = np.random.default_rng(20240601)
    aucs = []
    for rep in range(_NULL_SIM_REPS):
        s = _cv_scores(rng.normal(size=(m, d)), rng.normal(size=(n, d)), kk, rep)
        aucs.append(roc_auc(s[:m], s[m:]))
    return max(1.0, float(np.std(aucs, ddof=1)) / _mw_null_se(m, n))


def two_proportion_interval(
    k1: int, n1: int, k2: int, n2: int, *, level: float = 0.95
) -> dict[str, float]:
    """Agresti–Caffo interval of the difference of two proportions ``k1/n1 - k2/n2``.

    One success and one failure are added to each group, ``p~_i = (k_i + 1) / (n_i + 2)``, and
    ``(p~_1 - p~_2) ± z * sqrt(p~_1 (1 - p~_1)/(n_1 + 2) + p~_2 (1 - p~_2)/(n_2 + 2))``. Unlike
    the Wald interval it keeps a positive width when both accuracies are 100 %.

    Returns:
        ``diff`` (the raw difference), ``center``, ``half_width``, ``lo``, ``hi``.

    Example:
        >>> r = two_proportion_interval(9, 10, 5, 10)
        >>> round(r["lo"], 4), round(r["hi"], 4)
        (-0.0195, 0.6862)
    """
    for name, v in (("k1", k1), ("n1", n1), ("k2", k2), ("n2", n2)):
        if isinstance(v, bool) or int(v) != v or v < 0:
            raise DataError(f"{name} must be a non-negative count; got {v!r}")
    if n1 < 1 or n2 < 1 or k1 > n1 or k2 > n2:
        raise DataError(f"counts must satisfy 0 <= k <= n, n >= 1; got {k1}/{n1} and {k2}/{n2}")
    p1, p2 = (k1 + 1) / (n1 + 2), (k2 + 1) / (n2 + 2)
    hw = _z(level) * math.sqrt(p1 * (1 - p1) / (n1 + 2) + p2 * (1 - p2) / (n2 + 2))
    center = p1 - p2
    return {
        "diff": k1 / n1 - k2 / n2,
        "center": center,
        "half_width": hw,
        "lo": center - hw,
        "hi": center + hw,
    }


def ks_distance(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, alpha: float = 0.05
) -> dict[str, float]:
    """Two-sample Kolmogorov–Smirnov statistic with its asymptotic critical value.

    ``critical = sqrt(-ln(alpha / 2) / 2) * sqrt((n + m) / (n m))``; the distributions are
    judged different when ``stat > critical``.

    Returns:
        ``stat``, ``critical``, ``pvalue`` (scipy's, exact for small samples).

    Example:
        >>> r = ks_distance([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
        >>> r["stat"], round(r["critical"], 4)
        (1.0, 1.1089)
    """
    if not 0.0 < float(alpha) < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1); got {alpha!r}")
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise DataError(f"the KS test needs samples on both sides; got {a.size} and {b.size}")
    res = _st.ks_2samp(a, b)
    n, m = a.size, b.size
    crit = math.sqrt(-math.log(alpha / 2.0) / 2.0) * math.sqrt((n + m) / (n * m))
    return {"stat": float(res.statistic), "critical": crit, "pvalue": float(res.pvalue)}
