"""ZRF, the Zero Retrain Forgetting score.

ZRF compares the unlearned model's predictions with those of a *freshly initialised* teacher of
the same architecture (not Retrain) through the Jensen-Shannon divergence. The library default is
the JS divergence in bits, so that ZRF lies in [0, 1] as the paper states; ``legacy=True``
reproduces the reference arithmetic, which is neither JS nor in those units (see :func:`zrf`).
This module only does the arithmetic on probabilities: building and seeding the teacher is the
caller's job.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import rel_entr, xlogy

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.signals import SplitSignals, log_softmax64

__all__ = ["probs_from_logits", "zrf"]

# Row sums of genuine probability vectors are 1 up to float32 rounding; anything further away is
# almost surely logits passed by mistake.
_ROW_SUM_TOL = 1e-4


def probs_from_logits(logits: np.ndarray, *, dtype: type = np.float64) -> np.ndarray:
    """Return ``softmax(logits)`` row-wise, computed in ``dtype``.

    ``np.float64`` (default) takes a float64 ``log_softmax`` then ``exp``, like every signal.
    ``np.float32`` reproduces ``torch.softmax`` on float32 logits (max-subtraction, ``exp``,
    divide, all in float32), which is what the ZRF reference feeds its divergence.

    Args:
        logits: array (n, K).
        dtype: ``np.float64`` or ``np.float32``.

    Returns:
        Probabilities (n, K) in ``dtype``.
    """
    if np.dtype(dtype) == np.float64:
        return np.exp(log_softmax64(logits))
    if np.dtype(dtype) != np.float32:
        raise ConfigError(f"dtype must be np.float64 or np.float32; got {dtype!r}")
    z = np.asarray(logits, dtype=np.float32)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _as_probs(x: SplitSignals | np.ndarray, dtype: type, what: str) -> np.ndarray:
    if isinstance(x, SplitSignals):
        return x.prob if dtype == np.float64 else probs_from_logits(x.logits, dtype=dtype)
    p = np.asarray(x, dtype=dtype)
    if p.ndim != 2:
        raise DataError(f"{what} probabilities must be (n, K); got shape {p.shape}")
    if p.size and (
        not np.all(np.isfinite(p))
        or np.any(p < 0)
        or np.any(np.abs(p.sum(axis=1, dtype=np.float64) - 1.0) > _ROW_SUM_TOL)
    ):
        raise DataError(
            f"{what} rows are not probability vectors; pass probabilities (use "
            "probs_from_logits for logits) or SplitSignals"
        )
    return p


def zrf(
    p: SplitSignals | np.ndarray,
    q: SplitSignals | np.ndarray,
    *,
    base: float = 2.0,
    legacy: bool = False,
) -> float:
    """Compute ZRF between the model's and a fresh teacher's predictions on one set.

    Reference: Chundawat et al. (2023), "Can Bad Teaching Induce Forgetting?". Code:
    vikram2000b/bad-teaching-unlearning ``metrics.py`` (``UnLearningScore``, ``JSDiv``).

    Default [lib], with ``m = (p + q) / 2``::

        ZRF = 1 - (1/n) sum_x JS_b(p(x), q(x)),
        JS_b(p, q) = 1/2 sum_c p_c log_b(p_c / m_c) + 1/2 sum_c q_c log_b(q_c / m_c)

    in float64, with ``0 log 0 = 0``. ``base=2`` gives ZRF in [0, 1]; ``base=e`` gives
    [1 - ln 2, 1].

    ``legacy=True`` [ref]: with float32 probabilities, no clipping, and means over all ``n*K``
    elements (so the divergence is scaled by 1/K and the score squeezed toward 1)::

        ZRF = 1 - [1/2 mean_{i,c} m (ln m - ln p) + 1/2 mean_{i,c} m (ln m - ln q)]

    i.e. ``KL(m||p)`` and ``KL(m||q)`` as ``torch.nn.functional.kl_div(log p, m)`` computes them
    (``xlogy(m, m) - m * log p``; a zero ``p`` where ``m > 0`` gives +inf, as in [ref]).
    ``base`` is ignored under ``legacy``.

    Args:
        p: the evaluated model's probabilities (n, K), or its signals.
        q: the fresh teacher's probabilities (n, K), or its signals, on the same samples.
        base: logarithm base of the default JS (2 = bits).
        legacy: reproduce the reference arithmetic.

    Returns:
        The ZRF score.

    Raises:
        ConfigError: if ``base`` is not a positive number other than 1.
        DataError: if the shapes differ, the set is empty, or arrays are not probabilities.

    Example:
        >>> zrf(np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]]))  # doctest: +ELLIPSIS
        0.8532...
    """
    if legacy:
        dtype: type = np.float32
    else:
        if (
            isinstance(base, bool)
            or not isinstance(base, (int, float))
            or not (base > 0 and base != 1 and math.isfinite(base))
        ):
            raise ConfigError(f"base must be a positive number other than 1; got {base!r}")
        dtype = np.float64
    pp = _as_probs(p, dtype, "model")
    qq = _as_probs(q, dtype, "teacher")
    if pp.shape != qq.shape:
        raise DataError(f"model and teacher outputs differ in shape: {pp.shape} vs {qq.shape}")
    if pp.shape[0] == 0:
        raise DataError("ZRF needs at least one sample; the evaluated set is empty")
    m = (pp + qq) / dtype(2)
    if legacy:
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_mp = np.mean(xlogy(m, m) - m * np.log(pp))
            kl_mq = np.mean(xlogy(m, m) - m * np.log(qq))
        half = np.float32(0.5)
        return float(np.float32(1) - (half * kl_mp + half * kl_mq))
    js_nats = 0.5 * rel_entr(pp, m).sum(axis=1) + 0.5 * rel_entr(qq, m).sum(axis=1)
    return float(1.0 - np.mean(js_nats) / math.log(base))
