"""Known-answer tests of gaps, Avg. Gap, ToW, retention and floors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.gaps import (
    AVG_GAP_PRESETS,
    avg_gap,
    avg_gap_paired,
    avg_gap_trial_mean,
    gaps,
    noise_floor,
    retention,
    rte_ratio,
    signed_gaps,
    tow,
    tow_mia,
)


def metrics(fa: float, ra: float, ta: float, eff: float, member: float = 0.5) -> dict:
    return {
        "acc_forget": fa,
        "ua": 1.0 - fa,
        "acc_retain": ra,
        "acc_test": ta,
        "acc_test_full": ta,
        "mia_svc_conf_nonmember_rate": eff,
        "mia_efficacy": eff,
        "mia_lr_entropy_member_rate": member,
        "mia_lr_loss_cv_acc": 0.55,
        "mia_lr_loss_cv_acc_std": 0.02,
    }


def test_presets():
    assert AVG_GAP_PRESETS == {
        "salun": ("ua", "acc_retain", "acc_test", "mia_svc_conf_nonmember_rate"),
        "natmu": ("acc_forget", "acc_retain", "acc_test", "mia_lr_entropy_member_rate"),
    }


def test_4_7a_identical_models():
    m = metrics(0.93, 0.99, 0.91, 0.12, 0.8)
    g = gaps(m, dict(m))
    assert g and all(v == 0.0 for v in g.values())
    assert avg_gap(m, m) == 0.0
    assert avg_gap(m, m, "natmu") == 0.0
    assert tow(m, m) == 1.0
    assert tow_mia(m, m) == 1.0


def test_4_7b_avg_gap_known_value():
    m_u = {"ua": 0.10, "acc_retain": 0.99, "acc_test": 0.90, "mia_svc_conf_nonmember_rate": 0.20}
    m_r = {"ua": 0.05, "acc_retain": 1.00, "acc_test": 0.92, "mia_svc_conf_nonmember_rate": 0.10}
    assert avg_gap(m_u, m_r) == pytest.approx(0.045, abs=1e-12)
    assert avg_gap(m_u, m_r, "salun") == pytest.approx(0.045, abs=1e-12)
    assert avg_gap(m_u, m_r, list(m_u)) == pytest.approx(0.045, abs=1e-12)


def test_4_7c_trial_mean_vs_paired():
    u1, r1 = metrics(0.80, 0.99, 0.90, 0.2), metrics(0.90, 0.99, 0.90, 0.2)  # UA diff +0.1
    u2, r2 = metrics(0.90, 0.99, 0.90, 0.2), metrics(0.80, 0.99, 0.90, 0.2)  # UA diff -0.1
    assert avg_gap_trial_mean([u1, u2], [r1, r2]) == pytest.approx(0.0, abs=1e-12)
    assert gaps(u1, r1)["gap_ua"] == pytest.approx(0.1, abs=1e-12)
    assert gaps(u2, r2)["gap_ua"] == pytest.approx(0.1, abs=1e-12)
    mean, std, n = avg_gap_paired([u1, u2], [r1, r2])
    assert (mean, std, n) == (pytest.approx(0.025, abs=1e-12), pytest.approx(0.0, abs=1e-12), 2)
    # paired >= trial mean (triangle inequality) on random replicates
    rng = np.random.default_rng(0)
    us = [metrics(*rng.random(4)) for _ in range(5)]
    rs = [metrics(*rng.random(4)) for _ in range(5)]
    assert avg_gap_paired(us, rs, "natmu")[0] >= avg_gap_trial_mean(us, rs, "natmu")


def test_4_7d_signed_gaps():
    out = signed_gaps(metrics(0.80, 1, 1, 0.9, 0.3), metrics(0.95, 1, 1, 0.1, 0.7))
    assert out["signed_fa"] == pytest.approx(-0.15, abs=1e-12)
    assert out["signed_mia_eff"] == pytest.approx(-0.8, abs=1e-12)
    assert out["signed_mia_member"] == pytest.approx(-0.4, abs=1e-12)
    assert set(out) == {"signed_fa", "signed_mia_member", "signed_mia_eff"}
    only_alias = {"mia_efficacy": 0.3}
    assert signed_gaps(only_alias, {"mia_efficacy": 0.1}) == {"signed_mia_eff": pytest.approx(-0.2)}
    assert signed_gaps({"acc_forget": float("nan")}, {"acc_forget": 0.5}) == {}


def test_4_8a_tow():
    m_u = {"acc_forget": 0.9, "acc_retain": 0.95, "acc_test": 0.85}
    m_r = {"acc_forget": 0.8, "acc_retain": 0.95, "acc_test": 0.90}
    assert tow(m_u, m_r) == pytest.approx(0.855, abs=1e-12)
    m_u["mia_svc_conf_nonmember_rate"], m_r["mia_svc_conf_nonmember_rate"] = 0.3, 0.1
    assert tow_mia(m_u, m_r) == pytest.approx(0.8 * 1.0 * 0.95, abs=1e-12)


def test_gaps_skip_missing_nan_and_derived_keys():
    m_u = {
        "a": 0.5,
        "b": float("nan"),
        "c": 0.2,
        "invalid_init": True,
        "gap_a": 0.1,
        "x_std": 0.3,
        "note": "text",
        "d": 1,
    }
    m_r = {
        "a": 0.25,
        "b": 0.1,
        "invalid_init": False,
        "gap_a": 0.0,
        "x_std": 0.1,
        "note": "text",
        "d": 3,
    }
    assert gaps(m_u, m_r) == {"gap_a": 0.25, "gap_d": 2.0}
    assert gaps(m_u, m_r, keys=["a", "b", "c"]) == {"gap_a": 0.25}


def test_avg_gap_weights_and_errors():
    m_u = metrics(0.80, 0.98, 0.90, 0.3, 0.6)
    m_r = metrics(0.90, 1.00, 0.92, 0.1, 0.2)
    # NatMU tuning weights: TA 1, RA 1, FA 1, MIA 0.5
    w = {"mia_lr_entropy_member_rate": 0.5}
    expected = (0.1 + 0.02 + 0.02 + 0.5 * 0.4) / 3.5
    assert avg_gap(m_u, m_r, "natmu", weights=w) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ConfigError):
        avg_gap(m_u, m_r, "salun", weights={"acc_forget": 1.0})
    with pytest.raises(ConfigError):
        avg_gap(m_u, m_r, "salun", weights={"ua": -1.0})
    with pytest.raises(ConfigError):
        avg_gap(m_u, m_r, "unknown")
    with pytest.raises(DataError, match="mia_svc_conf_nonmember_rate"):
        avg_gap({"ua": 0.1, "acc_retain": 1, "acc_test": 1}, m_r)
    nan_u = dict(m_u, acc_test=float("nan"))
    assert math.isnan(avg_gap(nan_u, m_r))
    with pytest.raises(DataError):
        avg_gap_trial_mean([], [m_r])
    with pytest.raises(DataError):
        avg_gap_paired([m_u], [m_r, m_r])


def test_4_6b_rte_ratio():
    assert rte_ratio(t_retrain=10, t_unlearn=2) == 5.0
    assert rte_ratio(10.0, 0.0) == math.inf
    with pytest.raises(DataError):
        rte_ratio(10.0, -1.0)
    with pytest.raises(DataError):
        rte_ratio(float("nan"), 1.0)


def test_4_11a_retention():
    m = metrics(0.9, 0.97, 0.88, 0.2)
    assert retention(m, m) == {"retention_ra": 1.0, "retention_ta": 1.0}
    out = retention({"acc_retain": 0.9, "acc_test": 0.96}, {"acc_retain": 1.0, "acc_test": 0.8})
    assert out["retention_ra"] == pytest.approx(0.9)
    assert out["retention_ta"] == pytest.approx(1.2)  # not capped at 1
    assert retention({"acc_retain": 0.5}, {"acc_retain": 0.0}) == {"retention_ra": math.inf}


def test_4_11c_noise_floor():
    m_r = metrics(0.93, 0.99, 0.91, 0.12, 0.8)
    floors = noise_floor(dict(m_r), m_r)
    assert set(floors) == {f"floor_{k}" for k in m_r if not k.endswith("_std")}
    assert all(v == 0.0 for v in floors.values())
    m_r2 = dict(m_r, acc_test=0.90, mia_efficacy=0.15, mia_svc_conf_nonmember_rate=0.15)
    floors = noise_floor(m_r2, m_r)
    assert floors["floor_acc_test"] == pytest.approx(0.01, abs=1e-12)
    assert floors["floor_mia_svc_conf_nonmember_rate"] == pytest.approx(0.03, abs=1e-12)
    assert floors["floor_ua"] == 0.0
