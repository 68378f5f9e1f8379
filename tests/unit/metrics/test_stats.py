"""Known-answer tests of the summary statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.stats import (
    mean_std,
    signal_summary,
    sweep_summary,
    t_interval,
)
from unlearnkit.metrics.signals import SplitSignals


def test_4_8b_t_interval():
    mean, half = t_interval([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82, abs=1e-12)
    assert half == pytest.approx(0.049683, abs=1e-6)


def test_t_interval_matches_scipy():
    x = np.random.default_rng(0).normal(0.8, 0.05, 7)
    lo, hi = stats.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    mean, half = t_interval(x, level=0.9)
    assert mean == pytest.approx(x.mean(), abs=1e-15)
    assert half == pytest.approx((hi - lo) / 2, abs=1e-12)
    assert math.isnan(t_interval([0.5])[1])
    with pytest.raises(ConfigError):
        t_interval(x, level=95)


def test_mean_std_ddof1():
    mean, std, n = mean_std([0.80, 0.82, 0.84])
    assert (mean, n) == (pytest.approx(0.82, abs=1e-12), 3)
    assert std == pytest.approx(0.02, abs=1e-12)
    x = np.random.default_rng(1).random(9)
    assert mean_std(x)[1] == pytest.approx(np.std(x, ddof=1), abs=1e-15)
    m1, s1, n1 = mean_std([0.3])
    assert (m1, n1) == (0.3, 1) and math.isnan(s1)
    m0, s0, n0 = mean_std([])
    assert n0 == 0 and math.isnan(m0) and math.isnan(s0)


def test_4_11d_sweep_summary():
    out = sweep_summary([0.01, 0.02, 0.03, 0.5])
    assert out["best"] == pytest.approx(0.01, abs=1e-12)
    assert out["median"] == pytest.approx(0.025, abs=1e-12)
    assert out["worst"] == pytest.approx(0.5, abs=1e-12)
    assert out["iqr"] == pytest.approx(0.13, abs=1e-12)
    assert out["frac_within_tau"] == 0.5
    assert out["n_points"] == 4
    q75, q25 = np.percentile([0.5, 0.03, 0.02, 0.01], [75, 25])
    assert out["iqr"] == pytest.approx(q75 - q25, abs=1e-15)


def test_sweep_summary_tow_direction_and_errors():
    out = sweep_summary([0.99, 0.95, 0.7], higher_is_better=True)
    assert out["best"] == 0.99 and out["worst"] == 0.7
    assert out["frac_within_tau"] == pytest.approx(1 / 3)
    assert math.isnan(sweep_summary([0.01, float("nan")])["frac_within_tau"])
    with pytest.raises(DataError):
        sweep_summary([])
    with pytest.raises(ConfigError):
        sweep_summary([0.1], tau=-0.1)


def test_signal_summary():
    rng = np.random.default_rng(2)
    sig = SplitSignals(rng.normal(size=(101, 4)), rng.integers(0, 4, 101))
    out = signal_summary(sig, "forget")
    assert len(out) == 12
    assert out["conf_mean_forget"] == pytest.approx(sig.conf.mean(), abs=1e-15)
    assert out["loss_q50_forget"] == pytest.approx(np.median(sig.loss), abs=1e-15)
    assert out["entropy_q90_forget"] == pytest.approx(np.percentile(sig.entropy, 90), abs=1e-15)
    empty = signal_summary(sig.subset(np.array([], dtype=np.int64)), "test", signals=["conf"])
    assert set(empty) == {"conf_mean_test", "conf_q10_test", "conf_q50_test", "conf_q90_test"}
    assert all(math.isnan(v) for v in empty.values())
    with pytest.raises(ConfigError):
        signal_summary(sig, "forget", signals=["phi"])
