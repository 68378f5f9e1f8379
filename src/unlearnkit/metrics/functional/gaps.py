"""Comparisons of an unlearned model with Retrain.

Retrain is the anchor (docs/metrics.md, "Retrain is the anchor"): a forgetting metric is read as
its distance to Retrain's value, never maximised. Every function here takes plain metric dicts
(as returned by the Tier-A functions) of the unlearned model ``m_u`` and of the *paired* Retrain
``m_r`` (same split, same replicate).

Conventions: functions returning a dict of per-key results skip keys that are missing, NaN or
not numeric on either side; functions returning one number raise
:class:`~unlearnkit.errors.DataError` when a key they need is missing, and return NaN when one
of its values is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real

import numpy as np

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.stats import mean_std

__all__ = [
    "AVG_GAP_PRESETS",
    "avg_gap",
    "avg_gap_paired",
    "avg_gap_trial_mean",
    "gaps",
    "noise_floor",
    "retention",
    "rte_ratio",
    "signed_gaps",
    "tow",
    "tow_mia",
]

Metrics = Mapping[str, object]

#: Metric sets of the Avg. Gap. |dUA| = |dFA|, so they differ only in the MIA.
AVG_GAP_PRESETS: dict[str, tuple[str, ...]] = {
    "salun": ("ua", "acc_retain", "acc_test", "mia_svc_conf_nonmember_rate"),
    "natmu": ("acc_forget", "acc_retain", "acc_test", "mia_lr_entropy_member_rate"),
}

# Keys that are themselves comparisons or spreads; a gap of a gap or of a std means nothing.
_DERIVED_PREFIXES = ("gap_", "floor_", "signed_", "retention_")
_DERIVED_SUFFIXES = ("_std",)

_MIA_EFF_KEYS = ("mia_svc_conf_nonmember_rate", "mia_efficacy")


def _number(m: Metrics, key: str) -> float | None:
    """The value of ``key`` as a float, or None when missing or not a real number (bools too)."""
    v = m.get(key)
    if v is None or isinstance(v, (bool, np.bool_)) or not isinstance(v, (Real, np.number)):
        return None
    return float(v)


def _valid(m: Metrics, key: str) -> float | None:
    v = _number(m, key)
    return None if v is None or math.isnan(v) else v


def _required(m: Metrics, key: str, side: str) -> float:
    v = _number(m, key)
    if v is None:
        raise DataError(f"metric {key!r} is missing from the {side} results; compute it first")
    return v


def _mia_eff_key(m_u: Metrics, m_r: Metrics) -> str:
    for k in _MIA_EFF_KEYS:
        if _number(m_u, k) is not None and _number(m_r, k) is not None:
            return k
    return _MIA_EFF_KEYS[0]


def _default_keys(m_u: Metrics, m_r: Metrics) -> list[str]:
    return [
        k
        for k in m_u
        if k in m_r and not k.startswith(_DERIVED_PREFIXES) and not k.endswith(_DERIVED_SUFFIXES)
    ]


def _abs_diffs(m_a: Metrics, m_b: Metrics, keys: Iterable[str] | None, prefix: str) -> dict:
    keys = _default_keys(m_a, m_b) if keys is None else list(keys)
    out: dict[str, float] = {}
    for k in keys:
        a, b = _valid(m_a, k), _valid(m_b, k)
        if a is not None and b is not None:
            out[f"{prefix}{k}"] = abs(a - b)
    return out


def gaps(m_u: Metrics, m_r: Metrics, keys: Iterable[str] | None = None) -> dict[str, float]:
    """Return ``gap_<m> = |m(theta_u) - m(theta_r)|`` for every metric.

    Args:
        m_u: metrics of the unlearned model.
        m_r: metrics of the paired Retrain.
        keys: metrics to compare; default every numeric key present on both sides except derived
            ones (``gap_``/``floor_``/``signed_``/``retention_`` prefixes, ``_std`` suffix).

    Returns:
        ``gap_<m>`` per key; keys missing, NaN or non-numeric on either side are skipped.
    """
    return _abs_diffs(m_u, m_r, keys, "gap_")


def noise_floor(m_r2: Metrics, m_r: Metrics, keys: Iterable[str] | None = None) -> dict[str, float]:
    """Return ``floor_<m> = |m(theta_r') - m(theta_r)|`` between two Retrains.

    A method whose gap is within about the floor is indistinguishable from retraining.

    Args:
        m_r2: metrics of the second Retrain ``theta_r'`` (same ``D_r``, other training seed).
        m_r: metrics of ``theta_r``.
        keys: as in :func:`gaps`.

    Returns:
        ``floor_<m>`` per key, skipping keys missing or NaN on either side.
    """
    return _abs_diffs(m_r2, m_r, keys, "floor_")


def _preset_keys(preset: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(preset, str):
        if preset not in AVG_GAP_PRESETS:
            raise ConfigError(
                f"unknown Avg. Gap preset {preset!r}; use one of {sorted(AVG_GAP_PRESETS)} "
                "or a sequence of metric keys"
            )
        return AVG_GAP_PRESETS[preset]
    keys = tuple(preset)
    if not keys or len(set(keys)) != len(keys):
        raise ConfigError(f"an Avg. Gap metric list must be non-empty and unique; got {keys}")
    return keys


def _weights(keys: tuple[str, ...], weights: Mapping[str, float] | None) -> np.ndarray:
    if weights is None:
        return np.ones(len(keys))
    unknown = sorted(set(weights) - set(keys))
    if unknown:
        raise ConfigError(f"weights name metrics {unknown} that are not in the Avg. Gap set {keys}")
    w = np.array([float(weights.get(k, 1.0)) for k in keys])
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(f"weights must be finite, non-negative and not all 0; got {weights}")
    return w


def avg_gap(
    m_u: Metrics,
    m_r: Metrics,
    preset: str | Sequence[str] = "salun",
    weights: Mapping[str, float] | None = None,
) -> float:
    """Return the Avg. Gap of one paired replicate: ``(1/|M|) sum_m |m_u - m_r|``.

    This is the per-replicate term of the paired variant [lib]; report its mean +- std over
    replicates (:func:`avg_gap_paired`). The paper-compatible trial-mean variant is
    :func:`avg_gap_trial_mean`. RTE is never part of the set.

    Args:
        m_u: metrics of the unlearned model.
        m_r: metrics of the paired Retrain.
        preset: ``"salun"`` (UA, RA, TA, SVC MIA-Efficacy), ``"natmu"`` (FA, RA, TA, entropy-LR
            member rate), or an explicit sequence of metric keys.
        weights: optional non-negative weight per metric (unlisted metrics weigh 1); the result
            is the weighted mean ``sum w |d| / sum w``. NatMU tuned with FA/RA/TA 1 and MIA 0.5.
            Any non-uniform weighting must be labelled in tables.

    Returns:
        The (weighted) mean absolute gap; NaN when a component is NaN.

    Raises:
        ConfigError: on an unknown preset or bad weights.
        DataError: if a component is missing on either side.

    Example:
        >>> avg_gap({"ua": .10, "acc_retain": .99, "acc_test": .90,
        ...          "mia_svc_conf_nonmember_rate": .20},
        ...         {"ua": .05, "acc_retain": 1.0, "acc_test": .92,
        ...          "mia_svc_conf_nonmember_rate": .10})  # doctest: +ELLIPSIS
        0.045...
    """
    keys = _preset_keys(preset)
    w = _weights(keys, weights)
    d = np.array([abs(_required(m_u, k, "unlearned") - _required(m_r, k, "retrain")) for k in keys])
    return float(np.sum(w * d) / np.sum(w))


def _replicate_means(results: Sequence[Metrics], keys: tuple[str, ...], side: str) -> dict:
    if len(results) == 0:
        raise DataError(f"no {side} replicates given")
    return {k: float(np.mean([_required(m, k, side) for m in results])) for k in keys}


def avg_gap_trial_mean(
    list_u: Sequence[Metrics],
    list_r: Sequence[Metrics],
    preset: str | Sequence[str] = "salun",
    weights: Mapping[str, float] | None = None,
) -> float:
    """Return the paper-compatible Avg. Gap ``(1/|M|) sum_m |mean_s m_u - mean_s m_r|``.

    Means over replicates are taken first, so errors of opposite sign cancel; it has no std and
    is never larger than the mean of the paired variant (triangle inequality).

    Args:
        list_u: per-replicate metrics of the unlearned model.
        list_r: per-replicate metrics of Retrain (need not be the same length).
        preset: as in :func:`avg_gap`.
        weights: as in :func:`avg_gap`.

    Returns:
        The trial-mean Avg. Gap.

    Raises:
        ConfigError: on an unknown preset or bad weights.
        DataError: if a side has no replicates or a replicate lacks a component.
    """
    keys = _preset_keys(preset)
    mean_u = _replicate_means(list_u, keys, "unlearned")
    mean_r = _replicate_means(list_r, keys, "retrain")
    return avg_gap(mean_u, mean_r, keys, weights)


def avg_gap_paired(
    list_u: Sequence[Metrics],
    list_r: Sequence[Metrics],
    preset: str | Sequence[str] = "salun",
    weights: Mapping[str, float] | None = None,
) -> tuple[float, float, int]:
    """Return mean, std (ddof=1) and count of the per-replicate paired Avg. Gap [lib].

    Args:
        list_u: per-replicate metrics of the unlearned model.
        list_r: per-replicate metrics of the paired Retrain, in the same replicate order.
        preset: as in :func:`avg_gap`.
        weights: as in :func:`avg_gap`.

    Returns:
        ``(mean, std, n)``; std is NaN for a single replicate.

    Raises:
        DataError: if the lists differ in length or are empty.
    """
    if len(list_u) != len(list_r) or len(list_u) == 0:
        raise DataError(
            f"the paired Avg. Gap needs one Retrain per replicate; got {len(list_u)} unlearned "
            f"and {len(list_r)} retrain results"
        )
    return mean_std([avg_gap(u, r, preset, weights) for u, r in zip(list_u, list_r)])


def signed_gaps(m_u: Metrics, m_r: Metrics) -> dict[str, float]:
    """Return the signed over-forgetting keys (negative = over-forgetting).

    * ``signed_fa = FA_u - FA_r``
    * ``signed_mia_member = member_rate_u - member_rate_r`` (entropy-LR)
    * ``signed_mia_eff = MIAeff_r - MIAeff_u`` (flipped: MIA-Efficacy counts non-members)

    No signed form of the loss-CV attack accuracy exists (it is non-directional).

    Args:
        m_u: metrics of the unlearned model.
        m_r: metrics of the paired Retrain.

    Returns:
        The keys whose inputs are present and not NaN on both sides.
    """
    out: dict[str, float] = {}
    fa_u, fa_r = _valid(m_u, "acc_forget"), _valid(m_r, "acc_forget")
    if fa_u is not None and fa_r is not None:
        out["signed_fa"] = fa_u - fa_r
    key = "mia_lr_entropy_member_rate"
    mem_u, mem_r = _valid(m_u, key), _valid(m_r, key)
    if mem_u is not None and mem_r is not None:
        out["signed_mia_member"] = mem_u - mem_r
    key = _mia_eff_key(m_u, m_r)
    eff_u, eff_r = _valid(m_u, key), _valid(m_r, key)
    if eff_u is not None and eff_r is not None:
        out["signed_mia_eff"] = eff_r - eff_u
    return out


def _product_of_closeness(m_u: Metrics, m_r: Metrics, keys: Sequence[str]) -> float:
    result = 1.0
    for k in keys:
        result *= 1.0 - abs(_required(m_u, k, "unlearned") - _required(m_r, k, "retrain"))
    return result


def tow(m_u: Metrics, m_r: Metrics) -> float:
    """Return ToW ``(1 - |dFA|)(1 - |dRA|)(1 - |dTA|)`` of one paired replicate.

    Reference: Zhao et al. (2024), "What makes unlearning hard and what to do about it"; code
    kairanzhao/RUM ``surgical_plugins/analysis.py``. Ideal 1. Aggregate over replicates with
    :func:`unlearnkit.metrics.functional.stats.t_interval`.

    Raises:
        DataError: if ``acc_forget``, ``acc_retain`` or ``acc_test`` is missing.
    """
    return _product_of_closeness(m_u, m_r, ("acc_forget", "acc_retain", "acc_test"))


def tow_mia(m_u: Metrics, m_r: Metrics) -> float:
    """Return ToW-MIA: ToW with the FA factor replaced by ``1 - |dMIA-Efficacy|`` (SVC conf).

    Reference code: kairanzhao/RUM ``surgical_plugins/analysis_mia.py``.

    Raises:
        DataError: if the MIA-Efficacy, ``acc_retain`` or ``acc_test`` key is missing.
    """
    key = _mia_eff_key(m_u, m_r)
    return _product_of_closeness(m_u, m_r, (key, "acc_retain", "acc_test"))


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return float("nan") if num == 0 else math.copysign(math.inf, num)
    return num / den


def retention(m_u: Metrics, m_r: Metrics) -> dict[str, float]:
    """Return ``retention_ra = RA_u / RA_r`` and ``retention_ta = TA_u / TA_r``.

    Not capped at 1. Reference code: xcadet/deepunlearn ``munl/evaluation/retention.py``.

    Returns:
        The ratios whose inputs are present and not NaN; a zero Retrain accuracy gives +inf
        (NaN when both are 0).
    """
    out: dict[str, float] = {}
    for name, key in (("retention_ra", "acc_retain"), ("retention_ta", "acc_test")):
        u, r = _valid(m_u, key), _valid(m_r, key)
        if u is not None and r is not None:
            out[name] = _ratio(u, r)
    return out


def rte_ratio(t_retrain: float, t_unlearn: float) -> float:
    """Return ``t_retrain / t_unlearn``; higher is better.

    Reference code: xcadet/deepunlearn ``munl/evaluation/run_time_efficiency.py``. Both times
    must be measured the same way, on the same hardware.

    Raises:
        DataError: if a time is negative or not finite.
    """
    for name, t in (("t_retrain", t_retrain), ("t_unlearn", t_unlearn)):
        if not math.isfinite(float(t)) or float(t) < 0:
            raise DataError(f"{name} must be a finite, non-negative number of seconds; got {t!r}")
    return _ratio(float(t_retrain), float(t_unlearn))
