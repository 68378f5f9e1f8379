"""Known-answer tests of the accuracies."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.accuracy import (
    accuracy,
    accuracy_metrics,
    batch_mean_accuracy,
)
from unlearnkit.metrics.signals import SplitSignals


def signals_from_correct(correct: np.ndarray, num_classes: int = 3) -> SplitSignals:
    """Signals whose arg-max equals the label exactly where ``correct`` is True."""
    n = len(correct)
    labels = np.arange(n) % num_classes
    pred = np.where(correct, labels, (labels + 1) % num_classes)
    logits = np.zeros((n, num_classes), dtype=np.float32)
    logits[np.arange(n), pred] = 5.0
    return SplitSignals(logits, labels)


# 10 samples, batch size 4 (batches of 4, 4, 2): first two batches right, last batch wrong.
_CORR_4_1A = np.array([True] * 8 + [False] * 2)


def test_4_1a_sample_weighted_accuracy():
    sig = signals_from_correct(_CORR_4_1A)
    assert accuracy(sig) == pytest.approx(0.8, abs=1e-12)
    assert accuracy(_CORR_4_1A.astype(float)) == pytest.approx(0.8, abs=1e-12)


def test_4_1a_legacy_batch_mean():
    sig = signals_from_correct(_CORR_4_1A)
    assert batch_mean_accuracy(sig, 4) == pytest.approx(2 / 3, abs=1e-12)
    m = accuracy_metrics(forget=sig, retain=sig, test=sig, legacy_batch_mean=True, batch_size=4)
    assert m["acc_forget"] == pytest.approx(2 / 3, abs=1e-12)
    assert accuracy_metrics(forget=sig, retain=sig, test=sig)["acc_forget"] == pytest.approx(0.8)


def test_batch_mean_equals_accuracy_when_batches_are_equal():
    corr = np.random.default_rng(1).random(12) < 0.6
    assert batch_mean_accuracy(corr.astype(float), 4) == pytest.approx(corr.mean(), abs=1e-12)
    assert batch_mean_accuracy(corr.astype(float), 100) == pytest.approx(corr.mean(), abs=1e-12)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_batch_mean_rejects_bad_batch_size(bad):
    with pytest.raises(ConfigError):
        batch_mean_accuracy(np.ones(3), bad)


def test_legacy_batch_mean_needs_batch_size():
    sig = signals_from_correct(_CORR_4_1A)
    with pytest.raises(ConfigError, match="batch_size"):
        accuracy_metrics(forget=sig, retain=sig, test=sig, legacy_batch_mean=True)


def test_accuracy_matches_sklearn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(257, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 257)
    sig = SplitSignals(logits, labels)
    assert accuracy(sig) == pytest.approx(accuracy_score(labels, logits.argmax(1)), abs=1e-15)


def test_4_1c_ua_is_exactly_one_minus_fa():
    rng = np.random.default_rng(3)
    for _ in range(20):
        sig = signals_from_correct(rng.random(rng.integers(1, 50)) < rng.random())
        m = accuracy_metrics(forget=sig, retain=sig, test=sig)
        assert m["ua"] == 1.0 - m["acc_forget"]


def test_4_1c_class_wise_semantics():
    # Always wrong on class c = 2, always right elsewhere.
    num_classes, c = 5, 2
    labels = np.repeat(np.arange(num_classes), [10, 12, 7, 9, 11])
    logits = np.zeros((labels.size, num_classes), dtype=np.float32)
    pred = np.where(labels == c, (labels + 1) % num_classes, labels)
    logits[np.arange(labels.size), pred] = 3.0
    test_full = SplitSignals(logits, labels)
    rem = np.flatnonzero(labels != c)
    fgt = np.flatnonzero(labels == c)
    m = accuracy_metrics(
        forget=test_full.subset(fgt),
        retain=test_full.subset(rem),
        test=test_full.subset(rem),
        test_full=test_full,
        forget_test=test_full.subset(fgt),
    )
    assert m["acc_test"] == 1.0
    assert m["acc_forget_test"] == 0.0
    assert m["acc_test_full"] == pytest.approx(1 - fgt.size / labels.size, abs=1e-12)
    assert m["acc_forget"] == 0.0 and m["ua"] == 1.0 and m["acc_retain"] == 1.0


def test_optional_keys():
    sig = signals_from_correct(_CORR_4_1A)
    other = signals_from_correct(np.array([True, False, False, False]))
    m = accuracy_metrics(forget=sig, retain=sig, test=other)
    assert set(m) == {"acc_forget", "ua", "acc_retain", "acc_test", "acc_test_full"}
    assert m["acc_test_full"] == m["acc_test"] == 0.25
    empty = sig.subset(np.array([], dtype=np.int64))
    m = accuracy_metrics(forget=sig, retain=sig, test=sig, forget_test=empty, val=other)
    assert "acc_forget_test" not in m
    assert m["acc_val"] == 0.25


def test_empty_sets():
    sig = signals_from_correct(_CORR_4_1A)
    empty = sig.subset(np.array([], dtype=np.int64))
    assert math.isnan(accuracy(empty))
    assert math.isnan(batch_mean_accuracy(empty, 4))
    with pytest.raises(DataError, match="forget set is empty"):
        accuracy_metrics(forget=empty, retain=sig, test=sig)


# --------------------------------------------------------------------------------------------
# Collateral accuracy on the classes most confused with the forgotten one


def _sig(logits, labels):
    from unlearnkit.metrics.signals import SplitSignals

    return SplitSignals(np.asarray(logits, dtype=np.float32), np.asarray(labels))


def test_neighbour_classes_rank_the_soft_confusion_row():
    from unlearnkit.metrics.functional.accuracy import neighbour_classes

    # Forgotten class 1: theta_o puts most spare mass on class 3, then on 0 and 2 equally.
    fgt = _sig([[1.0, 5.0, 1.0, 3.0], [1.0, 5.0, 1.0, 2.0]], [1, 1])
    assert neighbour_classes(fgt, k=1) == [3]
    assert neighbour_classes(fgt, k=2) == [3, 0]  # tie between 0 and 2: the lower index
    assert neighbour_classes(fgt, k=9) == [3, 0, 2]  # never the forgotten class itself
    with pytest.raises(ConfigError, match="positive integer"):
        neighbour_classes(fgt, k=0)


def test_accuracy_on_classes_and_the_collateral_change():
    from unlearnkit.metrics.functional.accuracy import accuracy_on_classes
    from unlearnkit.metrics.suite import ModelSignals, collateral

    labels = [0, 0, 2, 2, 3]
    right = np.eye(4)[labels] * 5
    wrong = right.copy()
    wrong[0] = [0, 5, 0, 0]  # one class-0 sample now predicted as class 1
    test_o, test_u = _sig(right, labels), _sig(wrong, labels)
    assert accuracy_on_classes(test_u, [0]) == 0.5 and accuracy_on_classes(test_u, [2, 3]) == 1.0
    assert np.isnan(accuracy_on_classes(test_u, [1]))
    fgt = _sig([[3.0, 5.0, 1.0, 1.0]], [1])  # neighbours of class 1: 0, then 2
    o = ModelSignals(forget=fgt, retain=None, test=test_o, test_full=test_o, forget_test=fgt)
    u = ModelSignals(forget=fgt, retain=None, test=test_u, test_full=test_u, forget_test=fgt)
    assert collateral(o, o) == {"acc_neighbours": 1.0, "collateral_acc_neighbours": 0.0}
    got = collateral(u, o)
    assert got["acc_neighbours"] == pytest.approx(0.75)  # classes 0 and 2: 3 of 4 right
    assert got["collateral_acc_neighbours"] == pytest.approx(-0.25)
    random_task = ModelSignals(forget=fgt, retain=None, test=test_o, test_full=test_o)
    assert collateral(random_task, random_task) == {}
