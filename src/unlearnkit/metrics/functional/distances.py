"""Distances between the unlearned model and Retrain.

Output distances compare the two models' predictive distributions sample by sample on one split
(``D_f`` primarily; ``D_te^rem`` and a ``D_r`` subsample for collateral damage). The weight
distance compares parameters and is only meaningful when both networks share their
initialisation. The ideal of every distance is the retrain-vs-retrain noise floor (the
``floor_*`` keys of :func:`unlearnkit.evaluate` with ``reference_prime``), not 0.

Conventions: an empty split gives NaN (a mean over no samples is undefined); mismatched shapes,
or signals of the two models on different labels, raise :class:`~unlearnkit.errors.DataError`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import rel_entr

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.signals import SplitSignals

__all__ = [
    "actdist_l1",
    "actdist_l2",
    "js_to_retrain",
    "kl_to_retrain",
    "output_distances",
    "weight_distance",
]

_CLIP = 1e-12

ProbsLike = SplitSignals | np.ndarray


def _probs(x: ProbsLike, what: str) -> np.ndarray:
    if isinstance(x, SplitSignals):
        return x.prob
    p = np.asarray(x, dtype=np.float64)
    if p.ndim != 2:
        raise DataError(f"{what} probabilities must be (n, K); got shape {p.shape}")
    if p.size and (not np.all(np.isfinite(p)) or np.any(p < 0)):
        raise DataError(f"{what} probabilities must be finite and non-negative")
    return p


def _pair(u: ProbsLike, r: ProbsLike) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(u, SplitSignals) and isinstance(r, SplitSignals):
        if len(u) == len(r) and not np.array_equal(u.labels, r.labels):
            raise DataError(
                "the two models' signals carry different labels; compute both on the same split "
                "in the same order"
            )
    pu, pr = _probs(u, "unlearned"), _probs(r, "retrain")
    if pu.shape != pr.shape:
        raise DataError(f"unlearned and retrain outputs differ in shape: {pu.shape} vs {pr.shape}")
    return pu, pr


def _mean(per_sample: np.ndarray) -> float:
    return float(np.mean(per_sample)) if per_sample.size else float("nan")


def js_to_retrain(u: ProbsLike, r: ProbsLike) -> float:
    """Return ``mean_x JS_e(p_u(x), p_r(x))`` in nats, in [0, ln 2].

    ``JS_e(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2`` and ``0 ln 0 = 0``;
    per sample it equals ``scipy.spatial.distance.jensenshannon(p, q) ** 2``. Symmetric.

    Args:
        u: the unlearned model's signals or probabilities (n, K).
        r: Retrain's signals or probabilities on the same samples.

    Returns:
        The mean JS divergence; NaN for an empty split.
    """
    pu, pr = _pair(u, r)
    m = 0.5 * (pu + pr)
    js = 0.5 * rel_entr(pu, m).sum(axis=1) + 0.5 * rel_entr(pr, m).sum(axis=1)
    return _mean(js)


def kl_to_retrain(u: ProbsLike, r: ProbsLike) -> float:
    """Return ``mean_x KL(p_r(x) || p_u(x)) = mean_x sum_c p_r,c (ln p_r,c - ln p_u,c)``.

    Our definition of NatMU's "KL_avg". With signals the logarithms come from
    float64 ``log_softmax``; probabilities given directly are clipped at 1e-12 before the
    logarithm. Terms with ``p_r,c = 0`` are 0. Not symmetric.

    Args:
        u: the unlearned model's signals or probabilities (n, K).
        r: Retrain's signals or probabilities on the same samples.

    Returns:
        The mean KL divergence in nats; NaN for an empty split.
    """
    pu, pr = _pair(u, r)
    log_u = u.log_prob if isinstance(u, SplitSignals) else np.log(np.maximum(pu, _CLIP))
    log_r = r.log_prob if isinstance(r, SplitSignals) else np.log(np.maximum(pr, _CLIP))
    with np.errstate(invalid="ignore"):
        terms = np.where(pr > 0, pr * (log_r - log_u), 0.0)
    return _mean(terms.sum(axis=1))


def actdist_l2(u: ProbsLike, r: ProbsLike) -> float:
    """Return ``mean_x ||p_u(x) - p_r(x)||_2`` (bad-teaching ``metrics.py``, ``actv_dist``)."""
    pu, pr = _pair(u, r)
    return _mean(np.linalg.norm(pu - pr, ord=2, axis=1))


def actdist_l1(u: ProbsLike, r: ProbsLike) -> float:
    """Return ``mean_x ||p_u(x) - p_r(x)||_1`` (SelectiveForgetting ``activations_distance``)."""
    pu, pr = _pair(u, r)
    return _mean(np.abs(pu - pr).sum(axis=1))


def output_distances(
    sig_u: ProbsLike, sig_r: ProbsLike, suffix: str = "forget"
) -> dict[str, float]:
    """Compute every output distance on one split, keys suffixed by the split.

    Args:
        sig_u: the unlearned model's signals (or probabilities) on the split.
        sig_r: Retrain's signals (or probabilities) on the same split.
        suffix: split name: ``"forget"`` (``D_f``), ``"test"`` (``D_te^rem``) or ``"retain"``
            (the seeded ``D_r`` subsample); any non-empty identifier is accepted.

    Returns:
        ``js_to_retrain_<suffix>``, ``kl_to_retrain_<suffix>``, ``actdist_l2_<suffix>``,
        ``actdist_l1_<suffix>``.

    Raises:
        ConfigError: if ``suffix`` is empty.
        DataError: on mismatched shapes or labels.
    """
    if not isinstance(suffix, str) or not suffix:
        raise ConfigError(f"suffix must be a non-empty string such as 'forget'; got {suffix!r}")
    return {
        f"js_to_retrain_{suffix}": js_to_retrain(sig_u, sig_r),
        f"kl_to_retrain_{suffix}": kl_to_retrain(sig_u, sig_r),
        f"actdist_l2_{suffix}": actdist_l2(sig_u, sig_r),
        f"actdist_l1_{suffix}": actdist_l1(sig_u, sig_r),
    }


def _as_array(value: Any) -> np.ndarray:
    # torch tensors (possibly on GPU, possibly requiring grad) without importing torch here
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _named_parameters(params: Any, what: str) -> dict[str, np.ndarray]:
    if hasattr(params, "named_parameters") and callable(params.named_parameters):
        # A module: parameters only, so BatchNorm running statistics (buffers) are excluded.
        params = dict(params.named_parameters())
    if not isinstance(params, Mapping):
        raise DataError(f"{what} must be a dict name -> tensor/array or an nn.Module")
    return {str(k): _as_array(v) for k, v in params.items()}


def weight_distance(
    params_u: Mapping[str, Any] | Any,
    params_r: Mapping[str, Any] | Any,
    *,
    shared_init: bool,
    force: bool = False,
) -> dict[str, float | bool]:
    """Compute the relative and absolute L2 distance between two networks' parameters.

    Reference code: AdityaGolatkar/SelectiveForgetting ``Forgetting.ipynb`` (``distance``);
    xcadet/deepunlearn ``munl/evaluation/model_distances.py``::

        wdist_rel = sqrt( sum_params ||w_u - w_r||^2 / sum_params ||w_u||^2 )
        wdist_l2  = sqrt( sum_params ||w_u - w_r||^2 )

    Only parameters enter (pass ``dict(model.named_parameters())`` or the module itself);
    buffers such as BatchNorm running statistics are excluded. The distance means something only
    when Retrain started from the same initial weights as the original model (the retrain
    config's ``init="same_init"``; ``retrain_init: same_init`` in a benchmark spec) or a common
    pre-trained checkpoint: independently
    initialised networks are far apart in weight space even when they compute the same function.

    Args:
        params_u: the unlearned model's named parameters (normalising side), or the module.
        params_r: Retrain's named parameters, or the module.
        shared_init: whether both models share their initialisation.
        force: compute anyway without a shared initialisation; the result is flagged.

    Returns:
        ``wdist_rel`` (NaN when every ``w_u`` is 0 and the models are equal, +inf when only
        ``w_u`` is 0), ``wdist_l2`` and ``invalid_init`` (True when ``shared_init`` is False).

    Raises:
        ConfigError: if ``shared_init`` is False and ``force`` is not set.
        DataError: if the parameter names or shapes differ.
    """
    if not shared_init and not force:
        raise ConfigError(
            "weight distance is meaningless between independently initialised networks; "
            "retrain from theta_o's initial weights (retrain config init='same_init', or "
            "retrain_init: same_init in a benchmark spec), or pass force=True to get a "
            "result flagged invalid_init"
        )
    wu = _named_parameters(params_u, "params_u")
    wr = _named_parameters(params_r, "params_r")
    if wu.keys() != wr.keys():
        only_u = sorted(wu.keys() - wr.keys())
        only_r = sorted(wr.keys() - wu.keys())
        raise DataError(
            f"parameter names differ: only in params_u {only_u}, only in params_r {only_r}"
        )
    diff_sq = 0.0
    norm_sq = 0.0
    for name, a in wu.items():
        b = wr[name]
        if a.shape != b.shape:
            raise DataError(f"parameter {name!r} differs in shape: {a.shape} vs {b.shape}")
        diff_sq += float(np.sum((a - b) ** 2))
        norm_sq += float(np.sum(a**2))
    if norm_sq > 0:
        rel = math.sqrt(diff_sq / norm_sq)
    else:
        rel = float("nan") if diff_sq == 0 else float("inf")
    return {"wdist_rel": rel, "wdist_l2": math.sqrt(diff_sq), "invalid_init": not shared_init}
