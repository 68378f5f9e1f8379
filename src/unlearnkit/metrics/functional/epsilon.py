"""NeurIPS-2023 unlearning-challenge score: per-example ε, H-score, forget quality F, final score.

Reference: Triantafillou, Pedregosa, Hayes, Kairouz, et al. (2023), NeurIPS 2023 Machine Unlearning
challenge; Triantafillou et al. (2024), "Are we making progress in unlearning?". Reference code:
google-deepmind/unlearning_evaluation ``metric.py`` (``compute_forget_score_from_confs``,
``_get_epsilons``, ``_get_single_threshold_rates``, ``_get_double_threshold_rates``) and
``main.py``.

This is the CPU ``searchsorted`` port. The reference tiles ``[N, #rules]`` boolean matrices on
CUDA; here each side of an example is sorted once and every rule's counts come from
``searchsorted``. Every rule's four rates are float32 ``k/N`` values, so its ε depends only on
the pair of counts (positives inside, negatives inside): the ε of all ``(N + 1)²`` count pairs is
computed once per N with the reference's float32 arithmetic, and an example's ε is the maximum of
that table over the count pairs its ~160 000 rules attain. This gives the same rates and ε as the
tiled reference, at a few milliseconds per example.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from unlearnkit.errors import ConfigError, DataError, DegenerateScoresError

__all__ = [
    "BUFFER",
    "DELTA",
    "EPSILON_CAP",
    "N_LEFT",
    "THRESHOLDS_PER_UNIT",
    "VALVE_RATIO",
    "h_score",
    "n_bins",
    "neurips23_score",
    "per_example_epsilon",
]

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0
N_LEFT = 400  # ceil(2 * BUFFER * THRESHOLDS_PER_UNIT) left edges per right edge
VALVE_RATIO = 0.01

Family = Literal["both", "single", "double"]
_FAMILIES = ("both", "single", "double")
_COMPAT = ("reference",)
_DISCARDED = np.float32(-1.0)  # sentinel below every surviving ε (which are clipped at 0)


def n_bins(n_models: int) -> int:
    """Return the number of H-score bins ``B = 2·ceil(ln(N − 1))`` for N models per side.

    Bins have width 0.5 and start at 0, e.g. N = 8 → 4, 64 → 10,
    512 → 14; N = 2 gives no bins.

    Args:
        n_models: N, the number of models on the unlearned side.

    Returns:
        The bin count B.

    Raises:
        DataError: if ``n_models < 2``.
    """
    n = int(n_models)
    if n < 2:
        raise DataError(f"the NeurIPS score needs at least 2 models per side; got {n_models}")
    return 2 * math.ceil(math.log(n - 1))


def h_score(eps: ArrayLike, n_models: int) -> np.ndarray:
    """Return the per-example H-score ``2^{−floor(2ε)}``, or 0 past the last bin.

    Reference: ``compute_forget_score_from_confs``. With
    ``k = floor(2ε)``, ``H = 2^{−k}`` if ``k < n_bins(N)`` else 0; a value exactly on an edge goes
    to the upper bin (ε = 0.5 → 0.5).

    Args:
        eps: per-example ε values (≥ 0).
        n_models: N, which fixes the number of bins.

    Returns:
        float64 array of H values in [0, 1], shaped like ``eps``.

    Raises:
        DataError: if ``n_models < 2`` or an ε is negative or NaN.
    """
    e = np.asarray(eps, dtype=np.float64)
    if np.isnan(e).any() or (e < 0).any():
        raise DataError("epsilon values must be non-negative numbers")
    b = n_bins(n_models)
    # 2*e is exact in binary floating point, so floor(2e) puts edge values in the upper bin
    # exactly like the reference's `e < start + 0.5` scan.
    k = np.floor(2.0 * np.minimum(e, 1e6))
    return np.where(k < b, np.exp2(-np.minimum(k, 1074.0)), 0.0)


@functools.lru_cache(maxsize=64)
def _epsilon_table(n: int) -> np.ndarray:
    """ε of a rule as a function of its counts, ``table[i, j]`` (read-only, float32).

    ``i`` = positives predicted positive (TPR = i/N, FNR = (N − i)/N) and ``j`` = negatives
    predicted positive (FPR = j/N, TNR = (N − j)/N). Entries: +inf for perfect separation,
    ``_DISCARDED`` for discarded rules, else the clipped float32 ε.
    """
    k = np.arange(n + 1, dtype=np.float32)
    nn = np.float32(n)
    # float32 k/N, as the reference's float32 mean of 0/1 indicators over N models.
    fnr = ((nn - k) / nn)[:, None]  # depends on i
    fpr = (k / nn)[None, :]  # depends on j
    # Contiguous copies, so np.log takes the same (SIMD) loop as on the reference's 1-D rate arrays.
    fnr, fpr = (np.ascontiguousarray(x) for x in np.broadcast_arrays(fnr, fpr))
    one_minus_delta = np.float32(1.0 - DELTA)  # rounded to float32 first, as in the reference
    with np.errstate(divide="ignore", invalid="ignore"):
        arg1 = one_minus_delta - fpr
        arg2 = one_minus_delta - fnr
        term1 = np.log(arg1) - np.log(fnr)
        term2 = np.log(arg2) - np.log(fpr)
    # A term whose log argument is <= 0 is undefined and ignored.
    term1 = np.where(arg1 > 0, term1, np.float32(np.nan))
    term2 = np.where(arg2 > 0, term2, np.float32(np.nan))
    both_undefined = np.isnan(term1) & np.isnan(term2)
    eps = np.fmax(term1, term2)  # nan-ignoring max, like np.nanmax over the two terms
    eps = np.maximum(np.where(both_undefined, np.float32(0.0), eps), np.float32(0.0))
    eps = eps.astype(np.float32)
    fpr_zero = fpr == 0
    fnr_zero = fnr == 0
    eps[fpr_zero | fnr_zero | both_undefined] = _DISCARDED
    eps[fpr_zero & fnr_zero] = np.float32(np.inf)
    eps.setflags(write=False)
    return eps


def _linspace_rows(starts: np.ndarray, stops: np.ndarray, num: int) -> np.ndarray:
    """Row-wise ``numpy.linspace(start, stop, num)``, bit-identical to one call per row."""
    if num < 2:
        return np.stack([np.linspace(a, b, num) for a, b in zip(starts, stops)])
    delta = stops - starts
    step = delta / (num - 1)
    # numpy.linspace computes arange(num) * step + start and then sets the last entry to stop.
    out = np.arange(num, dtype=np.float64)[None, :] * step[:, None]
    out += starts[:, None]
    out[:, -1] = stops
    zero = step == 0
    if zero.any():  # numpy takes a different (denormal-safe) branch for a zero step
        out[zero] = np.stack([np.linspace(a, b, num) for a, b in zip(starts[zero], stops[zero])])
    return out


def _best(
    table_flat: np.ndarray, n: int, k_pos: np.ndarray, k_neg: np.ndarray
) -> tuple[float, int]:
    """Max ε over rules with the given counts and the first rule attaining it (-1 if none)."""
    if k_pos.size == 0:
        return float(_DISCARDED), -1
    vals = table_flat[k_pos * (n + 1) + k_neg]
    i = int(np.argmax(vals))
    return float(vals[i]), i


def _rates(n: int, k_pos: int, k_neg: int) -> dict[str, float]:
    nn = np.float32(n)
    return {
        "tpr": float(np.float32(k_pos) / nn),
        "fnr": float(np.float32(n - k_pos) / nn),
        "fpr": float(np.float32(k_neg) / nn),
        "tnr": float(np.float32(n - k_neg) / nn),
    }


def _single_family(
    a_sorted: np.ndarray, b_sorted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts ``#{a ≥ t}``, ``#{b ≥ t}`` of the float32 single-threshold grid (step 3)."""
    n = a_sorted.size
    lo = min(a_sorted[0], b_sorted[0])
    hi = max(a_sorted[-1], b_sorted[-1])
    n_s = math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)
    # float32 grid from torch.linspace on CPU, compared with the float64 scores after promotion.
    t = torch.linspace(float(lo), float(hi), n_s, dtype=torch.float32).numpy().astype(np.float64)
    k_a = n - np.searchsorted(a_sorted, t, "left")
    k_b = n - np.searchsorted(b_sorted, t, "left")
    return t, k_a, k_b


def _double_family(
    p_sorted: np.ndarray, q_sorted: np.ndarray, w: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges and counts of the double-threshold family around the peakier side P (step 4)."""
    r_lo = (p_sorted[0] + w) - BUFFER
    r_hi = p_sorted[-1] + BUFFER
    n_r = math.ceil((r_hi - r_lo) * THRESHOLDS_PER_UNIT)
    right = np.linspace(r_lo, r_hi, n_r)
    left = _linspace_rows((right - w) - BUFFER, (right - w) + BUFFER, N_LEFT)

    def inside(v: np.ndarray) -> np.ndarray:
        # #{l <= v <= r} = #{v <= r} - #{v < l}, clipped at 0 for intervals with l > r.
        upto_r = np.searchsorted(v, right, "right")[:, None]
        below_l = np.searchsorted(v, left.ravel(), "left").reshape(left.shape)
        return np.maximum(upto_r - below_l, 0).ravel()

    return left, right, inside(p_sorted), inside(q_sorted)


def per_example_epsilon(
    u: ArrayLike, r: ArrayLike, *, family: Family = "both"
) -> tuple[float, dict[str, Any]]:
    """Return the ε of one forget example from its unlearned and retrained φ populations.

    Implements the reference computation (``compat="reference"``): orientation by strict ``>`` on
    medians, the float64 range valve, the float32 single-threshold grid (``torch.linspace``), the
    float64 double-threshold grid (``numpy.linspace``), float32 rates and ε, the discard rules and
    the cap at 50. Counts come from ``searchsorted`` on each sorted side.

    Args:
        u: φ of the example under the N unlearned models.
        r: φ of the example under the N retrained models (same N).
        family: ``"both"`` (default, the reference), or ``"single"`` / ``"double"`` to restrict
            the rule families (diagnostics).

    Returns:
        ``(eps, diag)``. ``eps`` is a float in [0, 50] (the float32 ε widened to float64).
        ``diag`` has ``positive`` (``"unlearned"`` or ``"retrain"``: the side A of step 1),
        ``valve`` (bool), ``family`` (``"single"``, ``"double"`` or ``"valve"``),
        ``rule_positive`` (the side the winning rule predicts: A for single, P for double),
        ``tpr``, ``fnr``, ``fpr``, ``tnr`` of the winning rule (NaN under the valve),
        ``threshold_low`` and ``threshold_high`` (the rule predicts ``rule_positive`` iff
        ``low ≤ value ≤ high``; single rules have ``high = +inf``), ``n_single`` and
        ``n_double`` (number of rules evaluated).

    Raises:
        DataError: if the inputs are not 1-D of equal length ≥ 2 or contain NaN/inf.
        ConfigError: if ``family`` is unknown.
        DegenerateScoresError: if no rule survives the discard rules (e.g. both sides constant
            and equal).
    """
    if family not in _FAMILIES:
        raise ConfigError(f"family must be one of {_FAMILIES}; got {family!r}")
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if u.ndim != 1 or u.shape != r.shape or u.size < 2:
        raise DataError(
            f"u and r must be 1-D with the same number (>= 2) of models; got {u.shape}, {r.shape}"
        )
    if not (np.isfinite(u).all() and np.isfinite(r).all()):
        raise DataError("phi values must be finite; check the signal (phi is capped at ±103.6)")
    n = u.size

    # Step 1: orientation; ties make the unlearned side positive.
    retrain_positive = bool(np.median(r) > np.median(u))
    a, b = (r, u) if retrain_positive else (u, r)
    side_a = "retrain" if retrain_positive else "unlearned"
    side_b = "unlearned" if retrain_positive else "retrain"
    nan = float("nan")
    diag: dict[str, Any] = {
        "positive": side_a,
        "valve": False,
        "family": "valve",
        "rule_positive": side_a,
        "tpr": nan,
        "fnr": nan,
        "fpr": nan,
        "tnr": nan,
        "threshold_low": nan,
        "threshold_high": nan,
        "n_single": 0,
        "n_double": 0,
    }

    # Step 2: range valve (float64). Both ranges 0 gives 0/0 = NaN, and the valve stays shut.
    rho_a = np.max(a) - np.min(a)
    rho_b = np.max(b) - np.min(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.float64(min(rho_a, rho_b)) / np.float64(max(rho_a, rho_b))
    if ratio < VALVE_RATIO:
        diag["valve"] = True
        return EPSILON_CAP, diag

    a_sorted = np.sort(a)
    b_sorted = np.sort(b)
    table = _epsilon_table(n).ravel()
    best_d = best_s = float(_DISCARDED)

    if family in ("both", "double"):
        # Step 4: P is the side with the strictly smaller range; equal ranges give P = B.
        p_is_a = bool(rho_a < rho_b)
        p_sorted, q_sorted = (a_sorted, b_sorted) if p_is_a else (b_sorted, a_sorted)
        left, right, k_p, k_q = _double_family(p_sorted, q_sorted, float(min(rho_a, rho_b)))
        best_d, i_d = _best(table, n, k_p, k_q)
        diag["n_double"] = int(k_p.size)
    if family in ("both", "single"):
        t, k_a, k_b = _single_family(a_sorted, b_sorted)
        best_s, i_s = _best(table, n, k_a, k_b)
        diag["n_single"] = int(t.size)

    # Step 6. The reference concatenates [double, single] and keeps the first maximum.
    if max(best_d, best_s) < 0:
        raise DegenerateScoresError(
            "no decision rule survives for this example (both phi populations constant and "
            "equal?); the per-example epsilon is undefined. Check that the unlearned and "
            "retrained phi arrays differ, or drop the example."
        )
    if best_d >= best_s:
        rows, cols = divmod(i_d, N_LEFT)
        diag.update(
            family="double",
            rule_positive=side_a if p_is_a else side_b,
            threshold_low=float(left[rows, cols]),
            threshold_high=float(right[rows]),
            **_rates(n, int(k_p[i_d]), int(k_q[i_d])),
        )
        eps = best_d
    else:
        diag.update(
            family="single",
            threshold_low=float(t[i_s]),
            threshold_high=float("inf"),
            **_rates(n, int(k_a[i_s]), int(k_b[i_s])),
        )
        eps = best_s
    # +inf (perfect separation) becomes the cap; the float32 value is widened to float64.
    return float(min(EPSILON_CAP, eps)), diag


def _mean_acc(x: ArrayLike, name: str) -> float:
    arr = np.asarray(x, dtype=np.float64)
    if arr.size == 0 or np.isnan(arr).any():
        raise DataError(f"{name} must hold at least one accuracy and no NaN")
    return float(np.mean(arr))


def neurips23_score(
    U_phi: ArrayLike,
    R_phi: ArrayLike,
    ra_u: ArrayLike,
    ra_r: ArrayLike,
    ta_u: ArrayLike,
    ta_r: ArrayLike,
    *,
    compat: str = "reference",
    family: Family = "both",
) -> dict[str, Any]:
    """Compute the NeurIPS-2023 challenge score: per-example ε, H-score, F and the final score.

    For each forget example, ε is the largest privacy loss that any single- or double-threshold
    rule reveals between the N unlearned and N retrained φ values. Then
    ``H_e = 2^{−floor(2ε_e)}`` over ``2·ceil(ln(N−1))`` bins, ``F = mean_e H_e`` and

        final = F · (mean RA_u / mean RA_r) · (mean TA_u / mean TA_r).

    Scores are comparable only at equal N; i.i.d. populations typically give F ≈ 0.1–0.3, so
    report the retrain-vs-retrain F at the same N beside it.

    Args:
        U_phi: array (N, E) of φ (the logit-scaled confidence of
            :func:`~unlearnkit.metrics.functional.phi.logit_scaled_confidence`) of the E forget
            examples under N unlearned models.
        R_phi: array (N, E) under N retrained models (same N).
        ra_u: retain accuracy of each unlearned model (or their mean).
        ra_r: retain accuracy of each retrained model (or their mean).
        ta_u: test accuracy of each unlearned model (or their mean).
        ta_r: test accuracy of each retrained model (or their mean).
        compat: ``"reference"``, the bit-for-bit port (the only mode).
        family: ``"both"`` (the reference), ``"single"`` or ``"double"`` rule families.

    Returns:
        A dict with ``F`` (forget quality), ``final``, ``eps`` (float64 array (E,)), ``H``
        (array (E,)), ``n_models`` (N), ``n_bins``, ``ra_ratio``, ``ta_ratio`` and
        ``diagnostics``: a dict of per-example arrays with the keys of
        :func:`per_example_epsilon`'s ``diag`` (``positive``, ``valve``, ``family``,
        ``rule_positive``, ``tpr``, ``fnr``, ``fpr``, ``tnr``, ``threshold_low``,
        ``threshold_high``, ``n_single``, ``n_double``).

    Raises:
        DataError: if the arrays are not (N, E) with the same N ≥ 2, or hold NaN/inf.
        ConfigError: if ``compat`` or ``family`` is unknown.
        DegenerateScoresError: if some example has no surviving rule (the message names it).

    Example:
        >>> r = np.arange(8.0)[:, None]
        >>> neurips23_score(r + 1, r, 1.0, 1.0, 1.0, 1.0)["eps"].round(6)
        array([0.693107])
    """
    if compat not in _COMPAT:
        raise ConfigError(f"compat must be one of {_COMPAT}; got {compat!r}")
    u_phi = np.asarray(U_phi, dtype=np.float64)
    r_phi = np.asarray(R_phi, dtype=np.float64)
    if u_phi.ndim != 2 or r_phi.ndim != 2:
        raise DataError(f"U_phi and R_phi must be (N, E); got {u_phi.shape} and {r_phi.shape}")
    if u_phi.shape[0] != r_phi.shape[0]:
        raise DataError(
            f"the number of models must be equal on both sides; got {u_phi.shape[0]} unlearned "
            f"and {r_phi.shape[0]} retrained. Train as many retrains as unlearning runs."
        )
    if u_phi.shape[1] != r_phi.shape[1] or u_phi.shape[1] == 0:
        raise DataError(
            f"U_phi and R_phi must cover the same, non-empty forget set; got {u_phi.shape[1]} "
            f"and {r_phi.shape[1]} examples"
        )
    # Bins come from the unlearned side's N, as in the reference.
    n_models = u_phi.shape[0]
    b = n_bins(n_models)

    eps = np.empty(u_phi.shape[1], dtype=np.float64)
    diags = []
    for e in range(u_phi.shape[1]):
        try:
            eps[e], d = per_example_epsilon(u_phi[:, e], r_phi[:, e], family=family)
        except DegenerateScoresError as exc:
            raise DegenerateScoresError(f"forget example {e}: {exc}") from exc
        diags.append(d)
    h = h_score(eps, n_models)
    # Sequential sum then division, as the reference accumulates its forget score.
    forget_quality = sum(float(x) for x in h) / eps.size

    ra_ratio = _mean_acc(ra_u, "ra_u") / _mean_acc(ra_r, "ra_r")
    ta_ratio = _mean_acc(ta_u, "ta_u") / _mean_acc(ta_r, "ta_r")
    diagnostics = {key: np.array([d[key] for d in diags]) for key in diags[0]}
    return {
        "F": forget_quality,
        "final": forget_quality * ra_ratio * ta_ratio,
        "eps": eps,
        "H": h,
        "n_models": n_models,
        "n_bins": b,
        "ra_ratio": ra_ratio,
        "ta_ratio": ta_ratio,
        "diagnostics": diagnostics,
    }
