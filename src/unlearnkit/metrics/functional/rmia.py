"""RMIA (offline) membership scores and the RMIA-vs-Retrain audit, on signal arrays only.

Reference: Zarifzadeh, Liu, Shokri (2024), "Low-Cost High-Power Membership Inference Attacks".
Reference code: privacytrustlab/ml_privacy_meter ``attacks.py`` (``run_rmia``, ``tune_offline_a``,
``get_rmia_out_signals``), ``audit.py``, ``documentation/mia.md``.

The signal is ``s(x; θ) = p_y(x)`` (softmax at temperature 1). For a point v,
``m_out(v)`` is the mean signal over the reference models with v OUT,
``Pr(v) = ((1 + a)/2)·m_out(v) + (1 − a)/2`` and ``ratio(v) = s(v; θ)/Pr(v)``; the score of x is
the fraction of population points z with ``ratio(x)/ratio(z) > γ`` (strict, as in the code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import roc_auc_score

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.roc import retrain_comparison

__all__ = [
    "A_GRID",
    "rmia_marginal",
    "rmia_ratio",
    "rmia_scores",
    "rmia_vs_retrain",
    "tune_offline_a",
]

#: The offline-``a`` grid {0.0, 0.1, …, 1.0}, written as exact decimals.
A_GRID: tuple[float, ...] = tuple(k / 10 for k in range(11))

_CHUNK = 1 << 22  # pairwise ratio entries evaluated per block (bounded memory for large n_z)


def rmia_marginal(m_out: ArrayLike, a: float) -> np.ndarray:
    """Return the offline estimate of ``Pr(v)``: ``((1 + a)/2)·m_out(v) + (1 − a)/2``.

    The operation order is the reference's ``(1 + a) / 2 * m_out + (1 - a) / 2``.

    Args:
        m_out: mean signal of v over the reference models with v OUT.
        a: the offline coefficient in [0, 1] (a = 1 uses ``m_out`` unchanged).

    Returns:
        float64 array shaped like ``m_out``.
    """
    m = np.asarray(m_out, dtype=np.float64)
    return (1 + a) / 2 * m + (1 - a) / 2


def _mean_out(signals: np.ndarray, out_mask: np.ndarray | None, name: str) -> np.ndarray:
    if signals.ndim != 2:
        raise DataError(f"{name} must be (reference models, points); got {signals.shape}")
    if out_mask is None:
        return signals.mean(axis=0)
    if out_mask.shape != signals.shape:
        raise DataError(f"the OUT mask of {name} must be {signals.shape}; got {out_mask.shape}")
    n_out = out_mask.sum(axis=0)
    if (n_out == 0).any():
        raise DataError(
            f"{int((n_out == 0).sum())} point(s) of {name} are IN for every reference model; "
            "offline RMIA needs at least one OUT reference per point (use complementary pairs)"
        )
    return np.where(out_mask, signals, 0.0).sum(axis=0) / n_out


def rmia_ratio(
    target_signal: ArrayLike,
    ref_signals: ArrayLike,
    a: float,
    ref_out_mask: ArrayLike | None = None,
) -> np.ndarray:
    """Return ``ratio(v) = s(v; θ)/Pr(v)`` for every point v.

    Args:
        target_signal: (n,) signal of the target model.
        ref_signals: (R_models, n) signals of the reference models.
        a: offline coefficient.
        ref_out_mask: (R_models, n) boolean, True where v is OUT for that reference; ``None``
            means every reference is OUT (population points).

    Returns:
        float64 array (n,).

    Raises:
        DataError: if the shapes disagree or a point has no OUT reference.
    """
    s = np.asarray(target_signal, dtype=np.float64)
    refs = np.asarray(ref_signals, dtype=np.float64)
    mask = None if ref_out_mask is None else np.asarray(ref_out_mask, dtype=bool)
    m_out = _mean_out(refs, mask, "ref_signals")
    if s.shape != m_out.shape:
        raise DataError(f"target signal must be ({m_out.size},); got {s.shape}")
    return s / rmia_marginal(m_out, a)


def _pairwise_fraction(ratio_x: np.ndarray, ratio_z: np.ndarray, gamma: float) -> np.ndarray:
    """Fraction of z with ``ratio_x / ratio_z > gamma``, per x (the reference's exact division)."""
    out = np.empty(ratio_x.size, dtype=np.float64)
    step = max(1, _CHUNK // max(1, ratio_z.size))
    for i in range(0, ratio_x.size, step):
        block = ratio_x[i : i + step, None] / ratio_z[None, :]
        out[i : i + step] = np.count_nonzero(block > gamma, axis=1) / ratio_z.size
    return out


def rmia_scores(
    target_signal_x: ArrayLike,
    ref_signals_x: ArrayLike,
    ref_out_mask_x: ArrayLike,
    target_signal_z: ArrayLike,
    ref_signals_z: ArrayLike,
    a: float,
    gamma: float = 1.0,
) -> np.ndarray:
    """Compute offline RMIA scores ``Score(x) = (1/n_z)·#{z ∈ Z : ratio(x)/ratio(z) > γ}``.

    Args:
        target_signal_x: (n_x,) ``p_y`` of the target model on the audited points x.
        ref_signals_x: (R_models, n_x) ``p_y`` of the reference models on x.
        ref_out_mask_x: (R_models, n_x) boolean, True where x is OUT for that reference.
        target_signal_z: (n_z,) ``p_y`` of the target model on the population Z.
        ref_signals_z: (R_models, n_z) ``p_y`` of the references on Z (every reference is OUT).
        a: offline coefficient in [0, 1] (see :func:`tune_offline_a`).
        gamma: the likelihood-ratio threshold γ (1 by default). The comparison is strict ``>``,
            as in the reference code (its documentation writes ≥).

    Returns:
        float64 array (n_x,) of scores in [0, 1], larger = more likely member.

    Raises:
        DataError: if the shapes disagree, Z is empty or a point has no OUT reference.
        ConfigError: if ``a`` is outside [0, 1].
    """
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"the offline coefficient a must lie in [0, 1]; got {a}")
    ratio_x = rmia_ratio(target_signal_x, ref_signals_x, a, ref_out_mask_x)
    ratio_z = rmia_ratio(target_signal_z, ref_signals_z, a)
    if ratio_z.size == 0:
        raise DataError("the population Z is empty; RMIA needs non-member reference points")
    return _pairwise_fraction(ratio_x, ratio_z, float(gamma))


def _pairs(n_models: int, pairs: ArrayLike | None) -> np.ndarray:
    if pairs is None:
        if n_models % 2:
            raise DataError(
                f"complementary pairs need an even number of reference models; got {n_models}. "
                "Pass `pairs` to name each model's partner."
            )
        return np.arange(n_models) ^ 1  # model 2j pairs with 2j+1
    partner = np.asarray(pairs, dtype=np.intp)
    if partner.shape != (n_models,) or (partner[partner] != np.arange(n_models)).any():
        raise DataError("pairs must map each reference model to its partner (an involution)")
    return partner


def tune_offline_a(
    ref_signals_x: ArrayLike,
    ref_keep_x: ArrayLike,
    ref_signals_z: ArrayLike,
    *,
    pairs: ArrayLike | None = None,
    grid: Sequence[float] = A_GRID,
    gamma: float = 1.0,
) -> tuple[float, np.ndarray]:
    """Choose the offline coefficient ``a`` by attacking each reference model in turn.

    [lib] Each reference model is the temporary target, attacked with the
    references of the *other* pairs; ``a`` maximises the mean AUC over temporary targets, and the
    first maximum of the grid is kept on ties. Needs R ≥ 2 pairs; with R = 1 pass ``a`` yourself.
    ([ref] tunes on the target's paired model with one reference.)

    Args:
        ref_signals_x: (2R, n_x) signals of the reference models on the audit points.
        ref_keep_x: (2R, n_x) boolean, True where the point is IN for that reference.
        ref_signals_z: (2R, n_z) signals of the references on the population Z.
        pairs: (2R,) index of each model's complementary partner (default: 2j ↔ 2j+1).
        grid: the candidate values of ``a``.
        gamma: the RMIA threshold γ.

    Returns:
        ``(a, mean_auc)``: the chosen coefficient and the mean AUC of every grid value.

    Raises:
        DataError: if fewer than 2 pairs are given, the shapes disagree, or a temporary target's
            points are all IN or all OUT.
    """
    sig_x = np.asarray(ref_signals_x, dtype=np.float64)
    keep_x = np.asarray(ref_keep_x, dtype=bool)
    sig_z = np.asarray(ref_signals_z, dtype=np.float64)
    if sig_x.ndim != 2 or keep_x.shape != sig_x.shape:
        raise DataError(
            f"ref_signals_x and ref_keep_x must be (2R, n_x); got {sig_x.shape}, {keep_x.shape}"
        )
    if sig_z.ndim != 2 or sig_z.shape[0] != sig_x.shape[0]:
        raise DataError(f"ref_signals_z must be ({sig_x.shape[0]}, n_z); got {sig_z.shape}")
    n_models = sig_x.shape[0]
    partner = _pairs(n_models, pairs)
    if n_models < 4:
        raise DataError(
            "tuning a needs at least 2 complementary pairs of reference models; with one pair, "
            "pass a (e.g. a = 1.0) to rmia_scores directly"
        )
    for j in range(n_models):
        if keep_x[j].all() or not keep_x[j].any():
            raise DataError(f"reference model {j} has only IN or only OUT points; cannot tune a")

    aucs = np.zeros((len(grid), n_models))
    for j in range(n_models):
        refs = (np.arange(n_models) != j) & (np.arange(n_models) != partner[j])
        for g, a in enumerate(grid):
            s = rmia_scores(
                sig_x[j], sig_x[refs], ~keep_x[refs], sig_z[j], sig_z[refs], float(a), gamma
            )
            aucs[g, j] = roc_auc_score(keep_x[j], s)
    mean_auc = aucs.mean(axis=1)
    best = int(np.argmax(mean_auc))  # argmax keeps the first maximum on ties
    return float(grid[best]), mean_auc


def rmia_vs_retrain(
    u_signal_x: ArrayLike,
    r_signal_x: ArrayLike,
    ref_signals_x: ArrayLike,
    ref_out_mask_x: ArrayLike,
    is_forget: ArrayLike,
    u_signal_z: ArrayLike,
    r_signal_z: ArrayLike,
    ref_signals_z: ArrayLike,
    a: float,
    *,
    gamma: float = 1.0,
    alphas: Sequence[float] = (0.01, 0.001),
) -> dict[str, Any]:
    """Attack θ_u and θ_r with offline RMIA on forget points (positives) vs held-out points.

    Unlearning use: ideal Δ = 0; ``auc_u`` clearly below ``auc_r`` (≈ 0.5)
    means the forget points look less member-like than fresh data (over-forgetting).

    Args:
        u_signal_x: (n_x,) ``p_y`` of θ_u on the audit points (D_f then H, in any order).
        r_signal_x: (n_x,) ``p_y`` of θ_r on the same points.
        ref_signals_x: (R_models, n_x) reference signals on the audit points.
        ref_out_mask_x: (R_models, n_x) boolean, True where the point is OUT for the reference.
        is_forget: (n_x,) boolean, True for D_f (positives), False for H (negatives).
        u_signal_z: (n_z,) ``p_y`` of θ_u on the population Z.
        r_signal_z: (n_z,) ``p_y`` of θ_r on Z.
        ref_signals_z: (R_models, n_z) reference signals on Z.
        a: offline coefficient (from :func:`tune_offline_a`, or given when R = 1).
        gamma: the RMIA threshold γ.
        alphas: FPR budgets of the TPR readings.

    Returns:
        ``auc_u``, ``auc_r``, ``delta_auc`` (= auc_u − auc_r), ``tpr_at_fpr_{α}_u``,
        ``tpr_at_fpr_{α}_r`` and ``delta_tpr_at_fpr_{α}`` per α, ``n_pos``, ``n_neg``,
        ``underpowered``, ``report_u`` / ``report_r`` (full low-FPR reports with CP intervals),
        ``scores_u``, ``scores_r``, ``a`` and ``gamma``.

    Raises:
        DataError: if the shapes disagree or a side is empty.
        ConfigError: if ``a`` is outside [0, 1].
    """
    pos = np.asarray(is_forget, dtype=bool)
    s_u = rmia_scores(
        u_signal_x, ref_signals_x, ref_out_mask_x, u_signal_z, ref_signals_z, a, gamma
    )
    s_r = rmia_scores(
        r_signal_x, ref_signals_x, ref_out_mask_x, r_signal_z, ref_signals_z, a, gamma
    )
    if pos.shape != s_u.shape:
        raise DataError(f"is_forget must be ({s_u.size},); got {pos.shape}")
    out = retrain_comparison(s_u[pos], s_u[~pos], s_r[pos], s_r[~pos], alphas)
    out.update(scores_u=s_u, scores_r=s_r, a=float(a), gamma=float(gamma))
    return out
