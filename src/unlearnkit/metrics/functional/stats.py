"""Summary statistics for replicates, sweeps and forget-set descriptions.

* :func:`mean_std` and :func:`t_interval` — replicate aggregation (ddof = 1 and ``n`` always
  reported; ToW's 95 % t-interval).
* :func:`sweep_summary` — the hyperparameter-sensitivity summary.
* :func:`signal_summary` — the optional descriptive forget-set statistics.

NaN inputs are not dropped: a failed replicate or grid point makes the summary NaN rather than
silently shrinking ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import stats as _st

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.signals import SplitSignals

__all__ = ["mean_std", "signal_summary", "sweep_summary", "t_interval"]


def _values(values: Iterable[float]) -> np.ndarray:
    x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if x.ndim != 1:
        raise DataError(f"expected a 1-D sequence of numbers; got shape {x.shape}")
    return x


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Return the mean, the sample std (ddof = 1) and the count of replicate values.

    Args:
        values: one number per replicate.

    Returns:
        ``(mean, std, n)``; the mean is NaN when ``n = 0`` and the std NaN when ``n < 2``.
    """
    x = _values(values)
    n = int(x.size)
    mean = float(x.mean()) if n else float("nan")
    std = float(x.std(ddof=1)) if n >= 2 else float("nan")
    return mean, std, n


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """Return the mean and the half-width of its Student-t confidence interval.

    ``half_width = t_{(1+level)/2, n-1} * sd / sqrt(n)`` with ``sd`` at ddof = 1, i.e.
    ``scipy.stats.t.interval(level, n - 1, loc=mean, scale=scipy.stats.sem(values))``.

    Args:
        values: one number per replicate.
        level: confidence level in (0, 1).

    Returns:
        ``(mean, half_width)``; the half-width is NaN when fewer than two values are given.

    Raises:
        ConfigError: if ``level`` is not in (0, 1).

    Example:
        >>> t_interval([0.80, 0.82, 0.84])  # doctest: +ELLIPSIS
        (0.82..., 0.04968...)
    """
    if not 0.0 < float(level) < 1.0:
        raise ConfigError(f"level must lie in (0, 1); got {level!r}")
    mean, sd, n = mean_std(values)
    if n < 2:
        return mean, float("nan")
    return mean, float(_st.t.ppf(0.5 + 0.5 * float(level), n - 1) * sd / math.sqrt(n))


def sweep_summary(
    values: Iterable[float],
    tau: float = 0.02,
    *,
    higher_is_better: bool = False,
) -> dict[str, float]:
    """Summarise a hyperparameter sweep, one value per grid point.

    Each value is the mean over seeds at one grid point, normally the paired Avg. Gap. A method
    whose good value exists only in a narrow lr/epoch window is fragile.

    Args:
        values: one value per grid point.
        tau: tolerance of ``frac_within_tau`` (default 0.02 = 2 pp).
        higher_is_better: set for ToW-like metrics (ideal 1): ``best`` becomes the maximum,
            ``worst`` the minimum, and ``frac_within_tau`` counts points with
            ``value >= 1 - tau``. For gap-like metrics (default, ideal 0) it counts
            ``value <= tau``.

    Returns:
        ``best``, ``median``, ``worst``, ``iqr`` (75th minus 25th percentile, NumPy linear
        interpolation), ``frac_within_tau`` and ``n_points``.

    Raises:
        DataError: if no values are given.
        ConfigError: if ``tau`` is negative or not finite.
    """
    x = _values(values)
    if x.size == 0:
        raise DataError("a sweep summary needs at least one grid point")
    if not math.isfinite(float(tau)) or tau < 0:
        raise ConfigError(f"tau must be a finite, non-negative number; got {tau!r}")
    q25, q75 = np.percentile(x, [25, 75])
    within = x >= 1.0 - tau if higher_is_better else x <= tau
    has_nan = bool(np.isnan(x).any())
    return {
        "best": float(np.max(x) if higher_is_better else np.min(x)),
        "median": float(np.median(x)),
        "worst": float(np.min(x) if higher_is_better else np.max(x)),
        "iqr": float(q75 - q25),
        "frac_within_tau": float("nan") if has_nan else float(np.mean(within)),
        "n_points": int(x.size),
    }


_SUMMARY_SIGNALS = ("conf", "entropy", "loss")
_QUANTILES = (10, 50, 90)


def signal_summary(
    sig: SplitSignals,
    suffix: str,
    *,
    signals: Sequence[str] = _SUMMARY_SIGNALS,
) -> dict[str, float]:
    """Describe per-sample signals of one split: mean and 10/50/90 % quantiles.

    Used for plots and for debugging MIA results; never ranked. For ``phi``, compute it with
    :func:`~unlearnkit.metrics.functional.phi.logit_scaled_confidence` and summarise it with
    NumPy directly.

    Args:
        sig: signals of the split (``D_f`` or ``D_te^rem``).
        suffix: split name appended to every key, e.g. ``"forget"``.
        signals: names of 1-column signals of :class:`SplitSignals` to describe.

    Returns:
        ``<signal>_mean_<suffix>``, ``<signal>_q10_<suffix>``, ``<signal>_q50_<suffix>`` and
        ``<signal>_q90_<suffix>`` per signal; NaN for an empty split.

    Raises:
        ConfigError: on an unknown signal name or an empty suffix.
    """
    if not isinstance(suffix, str) or not suffix:
        raise ConfigError(f"suffix must be a non-empty string such as 'forget'; got {suffix!r}")
    out: dict[str, float] = {}
    for name in signals:
        if name not in ("conf", "corr", "loss", "entropy", "m_entropy"):
            raise ConfigError(
                f"unknown signal {name!r}; use conf, corr, loss, entropy or m_entropy"
            )
        v = getattr(sig, name)
        empty = v.size == 0
        out[f"{name}_mean_{suffix}"] = float("nan") if empty else float(v.mean())
        qs = [float("nan")] * len(_QUANTILES) if empty else np.percentile(v, _QUANTILES)
        for q, val in zip(_QUANTILES, qs):
            out[f"{name}_q{q}_{suffix}"] = float(val)
    return out
