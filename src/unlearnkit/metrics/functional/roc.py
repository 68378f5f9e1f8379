"""ROC curves, AUC, TPR at low FPR and Clopper–Pearson intervals for membership scores.

The TPR-at-FPR reading follows privacytrustlab/ml_privacy_meter ``audit.py``; ``legacy="lira"``
follows tensorflow/privacy ``research/mi_lira_2021/plot.py``. Scores are "larger = more likely
member": positives are members (or forgotten points), negatives are non-members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta
from sklearn.metrics import roc_auc_score, roc_curve

from unlearnkit.errors import ConfigError, DataError

__all__ = [
    "auc",
    "balanced_accuracy_max",
    "clopper_pearson",
    "low_fpr_report",
    "retrain_comparison",
    "roc",
    "roc_staircase",
    "tpr_at_fpr",
]

#: FPR budgets per decade kept by :func:`roc_staircase` (the stored curve of an audit row).
CURVE_PER_DECADE = 16

_LEGACY = (None, "lira")


def _scores(scores_pos: ArrayLike, scores_neg: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(scores_pos, dtype=np.float64).ravel()
    neg = np.asarray(scores_neg, dtype=np.float64).ravel()
    if pos.size == 0 or neg.size == 0:
        raise DataError(
            f"a ROC needs at least one positive and one negative score; got {pos.size} and "
            f"{neg.size}"
        )
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise DataError("membership scores contain NaN; check the signal that produced them")
    return pos, neg


def _labelled(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.concatenate([np.ones(pos.size, dtype=np.int8), np.zeros(neg.size, dtype=np.int8)])
    return y, np.concatenate([pos, neg])


def roc(scores_pos: ArrayLike, scores_neg: ArrayLike) -> dict[str, np.ndarray]:
    """Compute the ROC curve of member scores against non-member scores.

    Uses ``sklearn.metrics.roc_curve`` with its defaults (``drop_intermediate=True``); a point
    ``(fpr[i], tpr[i])`` is the rule "member iff score ≥ thresholds[i]".

    Args:
        scores_pos: scores of the positives (members / forgotten points), larger = member.
        scores_neg: scores of the negatives (non-members).

    Returns:
        ``{"fpr", "tpr", "thresholds"}``, float64 arrays of equal length, FPR non-decreasing.

    Raises:
        DataError: if a side is empty or a score is NaN.
    """
    pos, neg = _scores(scores_pos, scores_neg)
    y, s = _labelled(pos, neg)
    fpr, tpr, thresholds = roc_curve(y, s)
    return {"fpr": fpr, "tpr": tpr, "thresholds": thresholds}


def auc(scores_pos: ArrayLike, scores_neg: ArrayLike) -> float:
    """Return the ROC AUC of member scores against non-member scores (ties count ½).

    Args:
        scores_pos: scores of the positives, larger = member.
        scores_neg: scores of the negatives.

    Returns:
        ``sklearn.metrics.roc_auc_score`` of the pooled scores.

    Raises:
        DataError: if a side is empty or a score is NaN.
    """
    pos, neg = _scores(scores_pos, scores_neg)
    y, s = _labelled(pos, neg)
    return float(roc_auc_score(y, s))


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1]; got {alpha}")
    return alpha


def _check_legacy(legacy: str | None) -> None:
    if legacy not in _LEGACY:
        raise ConfigError(f"legacy must be one of {_LEGACY}; got {legacy!r}")


def _point_at(fpr: np.ndarray, tpr: np.ndarray, alpha: float, legacy: str | None) -> int | None:
    """Index of the ROC point read at ``alpha``: the highest TPR with FPR ≤ α (< α if lira)."""
    ok = fpr < alpha if legacy == "lira" else fpr <= alpha
    if not ok.any():
        return None
    idx = np.flatnonzero(ok)
    # The ROC is monotone, so the maximum TPR is the last admissible point; among points of equal
    # TPR the first one has the smallest realised FPR, which is the honest one to report.
    best = tpr[idx].max()
    return int(idx[np.flatnonzero(tpr[idx] == best)[0]])


def tpr_at_fpr(
    scores_pos: ArrayLike,
    scores_neg: ArrayLike,
    alpha: float,
    *,
    legacy: str | None = None,
) -> float:
    """Return the TPR at a false-positive-rate budget ``alpha``.

    ``tpr_at_fpr(α) = max{TPR(t) : FPR(t) ≤ α}``, the TPR of the last ROC point with FPR ≤ α
    (ml_privacy_meter ``audit.py``). ``legacy="lira"`` uses FPR < α (tensorflow/privacy
    ``plot.py``); with α = 0 nothing qualifies and the result is 0.

    Args:
        scores_pos: scores of the positives, larger = member.
        scores_neg: scores of the negatives.
        alpha: the FPR budget in [0, 1].
        legacy: ``None`` (default) or ``"lira"``.

    Returns:
        The TPR, a fraction in [0, 1].

    Raises:
        DataError: if a side is empty or a score is NaN.
        ConfigError: if ``alpha`` or ``legacy`` is invalid.
    """
    alpha = _check_alpha(alpha)
    _check_legacy(legacy)
    curve = roc(scores_pos, scores_neg)
    i = _point_at(curve["fpr"], curve["tpr"], alpha, legacy)
    return 0.0 if i is None else float(curve["tpr"][i])


def roc_staircase(
    fpr: ArrayLike, tpr: ArrayLike, n_neg: int, *, per_decade: int = CURVE_PER_DECADE
) -> dict[str, list[float]]:
    """Thin a ROC curve to the operating points read on a log grid of FPR budgets.

    For each budget ``b`` on a grid from ``1/n_neg`` (the smallest non-zero FPR the negatives
    can show) to 1 with ``per_decade`` points per decade, plus ``b = 0``, the point kept is the
    one :func:`tpr_at_fpr` reads at ``b``: the highest TPR with realised FPR ≤ ``b``, at its
    realised FPR. Repeated points are kept once, so the result is a monotone staircase of at
    most a few dozen points whatever the number of scores: what an audit row stores to draw its
    log-log ROC, and exact at every budget on the grid (the TPR at FPR ``b`` read from the
    staircase equals the full curve's).

    Args:
        fpr: the curve's false-positive rates (non-decreasing, as :func:`roc` returns them).
        tpr: its true-positive rates.
        n_neg: the number of negatives behind the curve.
        per_decade: grid points per decade of FPR.

    Returns:
        ``{"fpr": [...], "tpr": [...]}``, lists of floats of equal length, both non-decreasing.

    Raises:
        DataError: if the arrays differ in length or are empty, or ``n_neg`` < 1.
        ConfigError: if ``per_decade`` < 1.
    """
    fpr = np.asarray(fpr, dtype=np.float64).ravel()
    tpr = np.asarray(tpr, dtype=np.float64).ravel()
    if fpr.size == 0 or fpr.size != tpr.size:
        raise DataError(f"need equal, non-empty fpr and tpr; got {fpr.size} and {tpr.size}")
    if int(n_neg) < 1:
        raise DataError(f"n_neg must be at least 1; got {n_neg}")
    if int(per_decade) < 1:
        raise ConfigError(f"per_decade must be at least 1; got {per_decade}")
    decades = np.log10(float(n_neg))
    grid = np.logspace(-decades, 0.0, max(int(np.ceil(decades * per_decade)), 1) + 1)
    out_f: list[float] = []
    out_t: list[float] = []
    for b in np.concatenate([[0.0], grid]):
        i = _point_at(fpr, tpr, float(b), None)
        if i is None:
            continue
        f, t = float(fpr[i]), float(tpr[i])
        if not out_f or (f, t) != (out_f[-1], out_t[-1]):
            out_f.append(f)
            out_t.append(t)
    return {"fpr": out_f, "tpr": out_t}


def balanced_accuracy_max(scores_pos: ArrayLike, scores_neg: ArrayLike) -> float:
    """Return the best balanced accuracy ``max_t [1 − (FPR + FNR)/2]`` over all thresholds.

    This is the "accuracy" of tensorflow/privacy ``plot.py``.

    Args:
        scores_pos: scores of the positives, larger = member.
        scores_neg: scores of the negatives.

    Returns:
        The maximal balanced accuracy, in [0.5, 1].

    Raises:
        DataError: if a side is empty or a score is NaN.
    """
    curve = roc(scores_pos, scores_neg)
    fpr, tpr = curve["fpr"], curve["tpr"]
    return float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0))


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Return the Clopper–Pearson (exact binomial) interval for ``k`` successes in ``n`` trials.

    Reference: Clopper & Pearson (1934). ``lower = BetaInv(α/2; k, n−k+1)``
    (0 if k = 0), ``upper = BetaInv(1−α/2; k+1, n−k)`` (1 if k = n). Equals statsmodels'
    ``proportion_confint(k, n, alpha, method="beta")``.

    Args:
        k: number of successes, ``0 ≤ k ≤ n``.
        n: number of trials. ``n = 0`` carries no information and gives (0, 1).
        alpha: one minus the confidence level (default 0.05 for a 95 % interval).

    Returns:
        ``(lower, upper)``.

    Raises:
        DataError: if ``k`` or ``n`` is not a valid count.
        ConfigError: if ``alpha`` is not in (0, 1).
    """
    if int(k) != k or int(n) != n or n < 0 or not 0 <= k <= n:
        raise DataError(f"need integer counts with 0 <= k <= n; got k={k}, n={n}")
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must lie in (0, 1); got {alpha}")
    k, n = int(k), int(n)
    if n == 0:
        return 0.0, 1.0
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2.0, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - alpha / 2.0, k + 1, n - k))
    return lo, hi


def low_fpr_report(
    scores_pos: ArrayLike,
    scores_neg: ArrayLike,
    alphas: Sequence[float] = (0.01, 0.001),
    *,
    legacy: str | None = None,
    ci_alpha: float = 0.05,
) -> dict[str, Any]:
    """Report AUC and TPR at each low-FPR budget, with Clopper–Pearson intervals and power flags.

    A reading at FPR α needs at least ``1/α`` negatives, otherwise it is flagged
    ``underpowered``. The TPR interval counts ``k_pos`` positives at or above the chosen threshold
    out of ``n_pos``; the realised-FPR interval counts ``k_neg`` of ``n_neg``.

    Args:
        scores_pos: scores of the positives, larger = member.
        scores_neg: scores of the negatives.
        alphas: the FPR budgets to read (the budget 0 is always reported as ``tpr_at_fpr_0``).
        legacy: ``None`` or ``"lira"`` (strict FPR < α), as in :func:`tpr_at_fpr`.
        ci_alpha: level of the Clopper–Pearson intervals (0.05 → 95 %).

    Returns:
        A dict with ``n_pos``, ``n_neg``, ``auc``, ``balanced_acc``, ``tpr_at_fpr_0``,
        ``underpowered`` (True if any level is) and ``levels``: one dict per α with keys
        ``alpha``, ``tpr``, ``tpr_ci`` (lo, hi), ``k_pos``, ``fpr`` (realised), ``fpr_ci``,
        ``k_neg``, ``threshold`` (member iff score ≥ threshold; +inf when nothing is flagged) and
        ``underpowered``; and ``curve``, the ROC thinned by :func:`roc_staircase` (what a stored
        row keeps to draw it).

    Raises:
        DataError: if a side is empty or a score is NaN.
        ConfigError: if an α or ``legacy`` is invalid.
    """
    _check_legacy(legacy)
    pos, neg = _scores(scores_pos, scores_neg)
    y, s = _labelled(pos, neg)
    fpr, tpr, thresholds = roc_curve(y, s)
    n_pos, n_neg = pos.size, neg.size
    levels = []
    for a in alphas:
        a = _check_alpha(a)
        i = _point_at(fpr, tpr, a, legacy)
        thr = np.inf if i is None else float(thresholds[i])
        # Count directly rather than multiplying rates back, so the CP inputs are exact integers.
        k_pos = int(np.count_nonzero(pos >= thr))
        k_neg = int(np.count_nonzero(neg >= thr))
        levels.append(
            {
                "alpha": a,
                "tpr": k_pos / n_pos,
                "tpr_ci": clopper_pearson(k_pos, n_pos, ci_alpha),
                "k_pos": k_pos,
                "fpr": k_neg / n_neg,
                "fpr_ci": clopper_pearson(k_neg, n_neg, ci_alpha),
                "k_neg": k_neg,
                "threshold": thr,
                # n_neg < 1/alpha, written multiplicatively so that 1000 * 0.001 is not flagged.
                "underpowered": bool(a == 0.0 or n_neg * a < 1.0 - 1e-9),
            }
        )
    i0 = _point_at(fpr, tpr, 0.0, legacy)
    return {
        "n_pos": n_pos,
        "n_neg": n_neg,
        "auc": float(roc_auc_score(y, s)),
        "balanced_acc": float(np.max(1.0 - (fpr + (1.0 - tpr)) / 2.0)),
        "tpr_at_fpr_0": 0.0 if i0 is None else float(tpr[i0]),
        "underpowered": any(lv["underpowered"] for lv in levels),
        "levels": levels,
        "curve": roc_staircase(fpr, tpr, n_neg),
    }


def retrain_comparison(
    s_u_pos: ArrayLike,
    s_u_neg: ArrayLike,
    s_r_pos: ArrayLike,
    s_r_neg: ArrayLike,
    alphas: Sequence[float] = (0.01, 0.001),
) -> dict[str, Any]:
    """Compare an attack on θ_u with the same attack on θ_r (AUC and TPR at low FPR).

    Positives are the forget points, negatives held-out points; the
    ideal is identical curves, i.e. every difference 0.

    Args:
        s_u_pos: scores of the positives under θ_u (larger = member).
        s_u_neg: scores of the negatives under θ_u.
        s_r_pos: scores of the positives under θ_r.
        s_r_neg: scores of the negatives under θ_r.
        alphas: FPR budgets of the TPR readings.

    Returns:
        ``auc_u``, ``auc_r``, ``delta_auc``, per α ``tpr_at_fpr_{α}_u``, ``tpr_at_fpr_{α}_r``
        and ``delta_tpr_at_fpr_{α}`` (u minus r), ``n_pos``, ``n_neg``, ``underpowered`` and the
        full reports ``report_u`` / ``report_r``.

    Raises:
        DataError: if a side is empty or a score is NaN.
    """
    rep_u = low_fpr_report(s_u_pos, s_u_neg, alphas)
    rep_r = low_fpr_report(s_r_pos, s_r_neg, alphas)
    out: dict[str, Any] = {
        "auc_u": rep_u["auc"],
        "auc_r": rep_r["auc"],
        "delta_auc": rep_u["auc"] - rep_r["auc"],
        "n_pos": rep_u["n_pos"],
        "n_neg": rep_u["n_neg"],
        "underpowered": rep_u["underpowered"],
    }
    for lv_u, lv_r in zip(rep_u["levels"], rep_r["levels"]):
        key = f"tpr_at_fpr_{lv_u['alpha']:g}"
        out[f"{key}_u"] = lv_u["tpr"]
        out[f"{key}_r"] = lv_r["tpr"]
        out[f"delta_{key}"] = lv_u["tpr"] - lv_r["tpr"]
    out["report_u"] = rep_u
    out["report_r"] = rep_r
    return out
