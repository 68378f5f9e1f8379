"""Logit-scaled confidence φ, the per-sample signal of LiRA, U-LiRA and the NeurIPS-2023 score.

Reference code: tensorflow/privacy ``research/mi_lira_2021/score.py``
and google-deepmind/unlearning_evaluation ``metric.py`` (``compute_logit_scaled_confidence``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp

from unlearnkit.errors import DataError

__all__ = ["PHI_TINY", "logit_scaled_confidence"]

#: Additive constant inside both logarithms of the reference arithmetic; it caps |φ| at
#: ``-ln(1e-45)`` ≈ 103.6163 once ``exp`` underflows in float32.
PHI_TINY = 1e-45


def logit_scaled_confidence(
    logits: ArrayLike, labels: ArrayLike, *, exact: bool = False
) -> np.ndarray:
    """Return the logit-scaled confidence φ = ln p_y − ln Σ_{c≠y} p_c of every sample.

    The default follows the reference arithmetic step by step, so that the
    NeurIPS-2023 score and LiRA reproduce the published numbers: max-subtraction and ``exp`` in
    the logits' own dtype (normally float32), normalisation in float64, ``p_wrong`` as the sum of
    the other entries (not ``1 − p_y``), and ``1e-45`` added inside both logarithms. Because
    ``exp`` underflows in float32, φ is bounded by about ±103.6163.

    Args:
        logits: array (n, K) of raw model outputs. It is never modified (the reference code
            subtracts the maximum in place; this function works on a copy).
        labels: array (n,) of integer labels in ``[0, K)``.
        exact: if True [lib], return ``z_y − logsumexp_{c≠y} z_c`` in float64 instead. It has no
            cap and is not used by any reference-compatible path.

    Returns:
        float64 array (n,) of φ values.

    Raises:
        DataError: if the shapes are not (n, K) and (n,), or a label is out of range.

    Example:
        >>> logit_scaled_confidence(np.array([[np.log(3.0), 0.0]]), np.array([0]))
        array([1.09861229])
    """
    z = np.array(logits, copy=True)  # a private copy: the caller's array must not change
    y = np.asarray(labels)
    if z.ndim != 2 or y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise DataError(
            f"logits must be (n, K) and labels (n,); got {z.shape} and {y.shape}. "
            "Reshape a single sample to (1, K)."
        )
    if not np.issubdtype(z.dtype, np.floating):
        z = z.astype(np.float64)
    n, k = z.shape
    if n and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= k):
        raise DataError(
            f"labels must be integers in [0, {k}); got values in [{y.min()}, {y.max()}]"
        )
    rows = np.arange(n)
    y = y.astype(np.intp)

    if exact:
        z64 = z.astype(np.float64)
        others = z64.copy()
        others[rows, y] = -np.inf
        return z64[rows, y] - logsumexp(others, axis=1)

    # Steps 1-2: the shift and exp stay in the logits' dtype, as in the reference; only the
    # result is widened to float64.
    z -= np.max(z, axis=1, keepdims=True)
    probs = np.array(np.exp(z), dtype=np.float64)
    probs /= np.sum(probs, axis=1, keepdims=True)
    p_corr = probs[rows, y]
    # Step 4: p_wrong is the sum of the remaining entries, not 1 - p_y (which would cancel).
    probs[rows, y] = 0.0
    p_wrong = np.sum(probs, axis=1)
    return np.log(p_corr + PHI_TINY) - np.log(p_wrong + PHI_TINY)
