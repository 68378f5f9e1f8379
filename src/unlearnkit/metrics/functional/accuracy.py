"""Accuracies FA, UA, RA, TA and VA.

Every accuracy is sample-weighted, ``#correct / #samples`` over the whole set (see
docs/metrics.md, "Accuracies"). The per-batch mean that SSD/JiT log is available only through
:func:`batch_mean_accuracy` and the ``legacy_batch_mean`` switch, because it is biased when the
last batch is short.

Conventions of this module: an accuracy over an empty set is undefined and returned as NaN (the
gap helpers skip NaN keys), except for the forget set, where emptiness means there is nothing to
unlearn and :class:`~unlearnkit.errors.DataError` is raised.
"""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.signals import SplitSignals

__all__ = [
    "accuracy",
    "accuracy_metrics",
    "accuracy_on_classes",
    "batch_mean_accuracy",
    "neighbour_classes",
]


def _corr(sig: SplitSignals | np.ndarray) -> np.ndarray:
    if isinstance(sig, SplitSignals):
        return sig.corr
    corr = np.asarray(sig, dtype=np.float64)
    if corr.ndim != 1:
        raise DataError(f"expected a 1-D array of 0/1 correctness values; got shape {corr.shape}")
    return corr


def accuracy(sig: SplitSignals | np.ndarray) -> float:
    """Return the sample-weighted accuracy ``#correct / #samples`` of one split.

    Args:
        sig: the split's signals, or a 1-D array of per-sample correctness (1.0 / 0.0).

    Returns:
        The accuracy as a fraction in [0, 1]; NaN for an empty split.
    """
    corr = _corr(sig)
    if corr.size == 0:
        return float("nan")
    return float(corr.mean())


def batch_mean_accuracy(corr: SplitSignals | np.ndarray, batch_size: int) -> float:
    """Return the mean of per-batch accuracies, as SSD/JiT log it (``legacy_batch_mean``).

    Reference: if-loops/selective-synaptic-dampening ``src/metrics.py``. Batches are consecutive,
    unshuffled, and the last one keeps the remainder (``drop_last=False``), so a short last batch
    weighs as much as a full one; this is why the library default is :func:`accuracy`.

    Args:
        corr: the split's signals, or a 1-D array of per-sample correctness.
        batch_size: the evaluation batch size of the reference run.

    Returns:
        The mean of the per-batch accuracies; NaN for an empty split.

    Raises:
        ConfigError: if ``batch_size`` is not a positive integer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size!r}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer; got {batch_size}")
    c = _corr(corr)
    if c.size == 0:
        return float("nan")
    starts = np.arange(0, c.size, batch_size)
    sums = np.add.reduceat(c, starts)
    sizes = np.diff(np.append(starts, c.size))
    return float(np.mean(sums / sizes))


def accuracy_metrics(
    *,
    forget: SplitSignals,
    retain: SplitSignals,
    test: SplitSignals,
    test_full: SplitSignals | None = None,
    forget_test: SplitSignals | None = None,
    val: SplitSignals | None = None,
    legacy_batch_mean: bool = False,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Compute FA, UA, RA, TA and the optional accuracies.

    Args:
        forget: signals on ``D_f``.
        retain: signals on ``D_r`` (or its recorded ``retain_eval_cap`` subsample).
        test: signals on ``D_te^rem`` (the whole test set in ``random`` forgetting).
        test_full: signals on the whole ``D_te``; when omitted, ``acc_test_full = acc_test``,
            which is correct in ``random`` forgetting where ``D_te^rem = D_te``.
        forget_test: signals on ``D_te^fgt`` (``class``/``subclass`` only).
        val: signals on ``D_val``.
        legacy_batch_mean: average per-batch accuracies as SSD/JiT do; needs ``batch_size``.
        batch_size: evaluation batch size for ``legacy_batch_mean``.

    Returns:
        ``acc_forget``, ``ua`` (exactly ``1 - acc_forget``), ``acc_retain``, ``acc_test``,
        ``acc_test_full``; ``acc_forget_test`` only when ``forget_test`` is given and non-empty;
        ``acc_val`` only when ``val`` is given.

    Raises:
        DataError: if the forget set is empty.
        ConfigError: if ``legacy_batch_mean`` is set without a ``batch_size``.

    Example:
        >>> m = accuracy_metrics(forget=sig_f, retain=sig_r, test=sig_te)  # doctest: +SKIP
        >>> m["ua"] == 1.0 - m["acc_forget"]  # doctest: +SKIP
        True
    """
    if legacy_batch_mean:
        if batch_size is None:
            raise ConfigError("legacy_batch_mean=True needs the evaluation batch_size")

        def acc(s: SplitSignals) -> float:
            return batch_mean_accuracy(s, batch_size)
    else:
        acc = accuracy

    if len(forget) == 0:
        raise DataError("the forget set is empty; forget accuracy and UA are undefined")
    out: dict[str, float] = {}
    out["acc_forget"] = acc(forget)
    out["ua"] = 1.0 - out["acc_forget"]
    out["acc_retain"] = acc(retain)
    out["acc_test"] = acc(test)
    out["acc_test_full"] = out["acc_test"] if test_full is None else acc(test_full)
    if forget_test is not None and len(forget_test) > 0:
        out["acc_forget_test"] = acc(forget_test)
    if val is not None:
        out["acc_val"] = acc(val)
    return out


def neighbour_classes(original_forget_test: SplitSignals, k: int = 2) -> list[int]:
    """The ``k`` classes most confused with the forgotten class(es) by ``θ_o``.

    The confusion row is soft [lib]: ``θ_o``'s mean predicted probability of each class over
    ``D_te^fgt``, the forgotten samples' own labels excluded, so the ranking exists even when
    ``θ_o`` makes few hard errors there. Ties go to the lower class index.
    """
    if isinstance(k, bool) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if len(original_forget_test) == 0:
        raise DataError("neighbour classes need test samples of the forgotten class(es)")
    mean_prob = original_forget_test.prob.mean(0)
    own = set(np.unique(original_forget_test.labels).tolist())
    ranked = sorted(
        (c for c in range(len(mean_prob)) if c not in own), key=lambda c: (-mean_prob[c], c)
    )
    return ranked[:k]


def accuracy_on_classes(test: SplitSignals, classes: list[int]) -> float:
    """Accuracy on the test samples whose label is in ``classes`` (NaN when there are none)."""
    keep = np.isin(test.labels, np.asarray(classes, dtype=np.int64))
    if not keep.any():
        return float("nan")
    return float(test.corr[keep].mean())
