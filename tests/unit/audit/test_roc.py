"""Known-answer tests of the ROC helpers and Clopper–Pearson."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta
from sklearn.metrics import roc_auc_score

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.roc import (
    auc,
    balanced_accuracy_max,
    clopper_pearson,
    low_fpr_report,
    retrain_comparison,
    roc,
    roc_staircase,
    tpr_at_fpr,
)

MEMBERS = np.array([0.9, 0.8, 0.7, 0.3])
NON_MEMBERS = np.array([0.6, 0.5, 0.4, 0.2])


def test_auc_golden():
    assert auc(MEMBERS, NON_MEMBERS) == pytest.approx(0.8125, abs=1e-6)
    y = np.r_[np.ones(4), np.zeros(4)]
    assert auc(MEMBERS, NON_MEMBERS) == pytest.approx(
        roc_auc_score(y, np.r_[MEMBERS, NON_MEMBERS]), abs=1e-12
    )


def test_auc_ties_count_half():
    assert auc([1.0, 1.0], [1.0, 1.0]) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0.75), (0.25, 0.75), (0.75, 1.0)])
def test_tpr_at_fpr_golden(alpha, expected):
    assert tpr_at_fpr(MEMBERS, NON_MEMBERS, alpha) == pytest.approx(expected, abs=1e-6)


def test_tpr_at_fpr_legacy_lira_is_strict():
    assert tpr_at_fpr(MEMBERS, NON_MEMBERS, 0.75, legacy="lira") == pytest.approx(0.75, abs=1e-6)
    # Nothing has FPR < 0.
    assert tpr_at_fpr(MEMBERS, NON_MEMBERS, 0.0, legacy="lira") == 0.0
    with pytest.raises(ConfigError):
        tpr_at_fpr(MEMBERS, NON_MEMBERS, 0.1, legacy="ml_privacy_meter")


def test_roc_curve_points():
    curve = roc(MEMBERS, NON_MEMBERS)
    assert set(curve) == {"fpr", "tpr", "thresholds"}
    assert curve["fpr"][0] == 0.0 and curve["tpr"][-1] == 1.0
    assert np.all(np.diff(curve["fpr"]) >= 0)


def test_balanced_accuracy_max():
    # Best threshold 0.7: TPR 0.75, FPR 0 -> 1 - (0 + 0.25)/2.
    assert balanced_accuracy_max(MEMBERS, NON_MEMBERS) == pytest.approx(0.875, abs=1e-12)


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [(0, 10, 0.0, 0.3085), (10, 10, 0.6915, 1.0), (5, 10, 0.1871, 0.8129)],
)
def test_clopper_pearson_golden(k, n, lo, hi):
    got_lo, got_hi = clopper_pearson(k, n, alpha=0.05)
    assert got_lo == pytest.approx(lo, abs=5e-5)
    assert got_hi == pytest.approx(hi, abs=5e-5)


def test_clopper_pearson_matches_beta_quantiles():
    lo, hi = clopper_pearson(3, 40, 0.1)
    assert lo == pytest.approx(beta.ppf(0.05, 3, 38), abs=1e-12)
    assert hi == pytest.approx(beta.ppf(0.95, 4, 37), abs=1e-12)
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(DataError):
        clopper_pearson(11, 10)


def test_low_fpr_report_golden_and_flags():
    rep = low_fpr_report(MEMBERS, NON_MEMBERS, alphas=(0.25, 0.75))
    assert rep["auc"] == pytest.approx(0.8125, abs=1e-6)
    assert rep["tpr_at_fpr_0"] == pytest.approx(0.75, abs=1e-6)
    lv25, lv75 = rep["levels"]
    assert lv25["tpr"] == pytest.approx(0.75) and lv25["k_pos"] == 3 and lv25["k_neg"] == 0
    assert lv75["tpr"] == pytest.approx(1.0) and lv75["k_pos"] == 4 and lv75["k_neg"] == 3
    assert lv75["fpr"] == pytest.approx(0.75)
    assert lv25["tpr_ci"] == clopper_pearson(3, 4)
    assert lv75["fpr_ci"] == clopper_pearson(3, 4)
    # 4 negatives support alpha = 0.25 (1/alpha = 4) but not 0.01.
    assert not lv25["underpowered"]
    assert low_fpr_report(MEMBERS, NON_MEMBERS)["underpowered"]


def test_low_fpr_report_power_threshold():
    rng = np.random.default_rng(0)
    pos = rng.normal(1, 1, 500)
    assert not low_fpr_report(pos, rng.normal(size=1000))["underpowered"]
    rep = low_fpr_report(pos, rng.normal(size=999))
    assert [lv["underpowered"] for lv in rep["levels"]] == [False, True]


def test_empty_side_raises():
    with pytest.raises(DataError):
        auc([], [0.1])
    with pytest.raises(DataError):
        auc([np.nan], [0.1])


def test_retrain_comparison_identical_attacks_give_zero_deltas():
    rng = np.random.default_rng(1)
    pos, neg = rng.normal(0.5, 1, 200), rng.normal(size=300)
    out = retrain_comparison(pos, neg, pos, neg)
    assert out["delta_auc"] == 0.0
    assert out["delta_tpr_at_fpr_0.01"] == 0.0 and out["delta_tpr_at_fpr_0.001"] == 0.0
    assert out["auc_u"] == pytest.approx(auc(pos, neg))


def test_roc_staircase_golden():
    # Full ROC: TPR 0.75 at FPR 0 (threshold 0.7), then flat to FPR 0.75, where 0.3 lifts it
    # to 1. Read at every budget, only the two corners remain.
    curve = roc(MEMBERS, NON_MEMBERS)
    st = roc_staircase(curve["fpr"], curve["tpr"], n_neg=4)
    assert st == {"fpr": [0.0, 0.75], "tpr": [0.75, 1.0]}
    assert low_fpr_report(MEMBERS, NON_MEMBERS)["curve"] == st


def test_roc_staircase_reads_like_tpr_at_fpr_on_its_grid():
    rng = np.random.default_rng(3)
    pos, neg = rng.normal(0.4, 1.0, 300), rng.normal(0.0, 1.0, 5000)
    curve = roc(pos, neg)
    st = roc_staircase(curve["fpr"], curve["tpr"], n_neg=neg.size, per_decade=8)
    fs, ts = np.array(st["fpr"]), np.array(st["tpr"])
    assert np.all(np.diff(fs) > 0) and np.all(np.diff(ts) >= 0)
    # Bounded size: one point per budget at most (8 per decade over log10(5000) decades, + 0).
    assert len(fs) <= int(np.ceil(np.log10(5000) * 8)) + 2 < curve["fpr"].size
    for b in [0.0, *np.logspace(-np.log10(5000), 0, int(np.ceil(np.log10(5000) * 8)) + 1)]:
        ok = fs <= b
        thinned = ts[ok].max() if ok.any() else 0.0
        assert thinned == pytest.approx(tpr_at_fpr(pos, neg, b), abs=1e-12)
    # Every kept point is a point of the full curve.
    full = set(zip(curve["fpr"].tolist(), curve["tpr"].tolist()))
    assert set(zip(st["fpr"], st["tpr"])) <= full


def test_roc_staircase_errors():
    with pytest.raises(DataError):
        roc_staircase([0.0, 1.0], [1.0], n_neg=2)
    with pytest.raises(DataError):
        roc_staircase([0.0, 1.0], [0.0, 1.0], n_neg=0)
    with pytest.raises(ConfigError):
        roc_staircase([0.0, 1.0], [0.0, 1.0], n_neg=2, per_decade=0)
