"""Known-answer tests of offline RMIA."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.rmia import (
    A_GRID,
    rmia_marginal,
    rmia_ratio,
    rmia_scores,
    rmia_vs_retrain,
    tune_offline_a,
)


def pair_bank(n_pairs=2, n_x=200, n_z=300, member_boost=0.3, seed=0):
    """Signals p_y of 2R complementary reference models; members get a higher p_y."""
    rng = np.random.default_rng(seed)
    half = rng.random((n_pairs, n_x)) < 0.5
    keep = np.empty((2 * n_pairs, n_x), dtype=bool)
    keep[0::2], keep[1::2] = half, ~half
    base_x = rng.uniform(0.2, 0.7, size=n_x)
    sig_x = np.clip(base_x + rng.normal(0, 0.05, keep.shape) + member_boost * keep, 1e-3, 1.0)
    base_z = rng.uniform(0.2, 0.7, size=n_z)
    sig_z = np.clip(base_z + rng.normal(0, 0.05, (2 * n_pairs, n_z)), 1e-3, 1.0)
    return sig_x, keep, sig_z


# 4.14 (a)
def test_a_zero_a_halves_the_out_mean():
    m = np.random.default_rng(0).uniform(0, 1, 100)
    np.testing.assert_allclose(rmia_marginal(m, 0.0), m / 2 + 1 / 2, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(rmia_marginal(m, 1.0), m)


def test_out_mean_uses_only_out_references():
    sig = np.array([[0.9, 0.2], [0.1, 0.4], [0.5, 0.6]])
    out = np.array([[False, True], [True, True], [True, False]])
    # a = 1: Pr = m_out; x0 OUT for refs 1, 2 -> 0.3; x1 OUT for refs 0, 1 -> 0.3.
    np.testing.assert_allclose(rmia_ratio([0.6, 0.3], sig, 1.0, out), [2.0, 1.0], atol=1e-12)
    with pytest.raises(DataError):
        rmia_ratio([0.6, 0.3], sig, 1.0, np.zeros_like(out))


# 4.14 (b)
def test_b_target_equal_to_references_scores_zero():
    rng = np.random.default_rng(1)
    s_x = rng.uniform(0.1, 0.9, 50)
    s_z = rng.uniform(0.1, 0.9, 80)
    refs_x = np.tile(s_x, (4, 1))
    refs_z = np.tile(s_z, (4, 1))
    out_mask = np.ones_like(refs_x, dtype=bool)
    scores = rmia_scores(s_x, refs_x, out_mask, s_z, refs_z, a=1.0)
    np.testing.assert_array_equal(scores, 0.0)
    members = rng.random(50) < 0.5
    assert roc_auc_score(members, scores) == pytest.approx(0.5, abs=1e-12)


# 4.14 (c)
def test_c_member_ratio_two_gives_perfect_auc_and_strict_comparison():
    n_x, n_z = 40, 60
    members = np.arange(n_x) % 2 == 0
    refs_x = np.full((4, n_x), 0.25)
    out_mask = np.ones((4, n_x), dtype=bool)
    s_x = np.where(members, 0.5, 0.25)  # ratio(x) = 2 for members, 1 for non-members
    refs_z = np.full((4, n_z), 0.25)
    s_z = np.full(n_z, 0.25)  # ratio(z) = 1
    scores = rmia_scores(s_x, refs_x, out_mask, s_z, refs_z, a=1.0)
    np.testing.assert_array_equal(scores[members], 1.0)
    # ratio(x)/ratio(z) exactly 1 is not counted (strict >).
    np.testing.assert_array_equal(scores[~members], 0.0)
    assert roc_auc_score(members, scores) == pytest.approx(1.0, abs=1e-12)
    # gamma = 2: a ratio of exactly 2 is not counted either.
    scores2 = rmia_scores(s_x, refs_x, out_mask, s_z, refs_z, a=1.0, gamma=2.0)
    np.testing.assert_array_equal(scores2, 0.0)


def test_scores_are_fractions_of_the_population():
    s_x = np.array([0.3])
    refs_x = np.full((2, 1), 0.3)
    s_z = np.array([0.1, 0.2, 0.3, 0.4])
    refs_z = np.full((2, 4), 0.3)
    # a = 1: ratio(x) = 1, ratio(z) = (1/3, 2/3, 1, 4/3) -> x beats the first two.
    scores = rmia_scores(s_x, refs_x, np.ones((2, 1), bool), s_z, refs_z, a=1.0)
    assert scores[0] == pytest.approx(0.5, abs=1e-12)


def test_chunked_pairwise_matches_dense(monkeypatch):
    import unlearnkit.metrics.functional.rmia as rmia

    sig_x, keep, sig_z = pair_bank(n_x=50, n_z=70)
    dense = rmia_scores(sig_x[0], sig_x[2:], ~keep[2:], sig_z[0], sig_z[2:], a=0.3)
    monkeypatch.setattr(rmia, "_CHUNK", 100)
    chunked = rmia_scores(sig_x[0], sig_x[2:], ~keep[2:], sig_z[0], sig_z[2:], a=0.3)
    np.testing.assert_array_equal(dense, chunked)


def test_tune_offline_a_grid_and_ties():
    assert A_GRID == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    sig_x, keep, sig_z = pair_bank()
    a, mean_auc = tune_offline_a(sig_x, keep, sig_z)
    assert mean_auc.shape == (11,)
    assert a == A_GRID[int(np.argmax(mean_auc))]
    assert mean_auc.max() > 0.7  # members are detectable in this bank
    # Every OUT signal equal makes Pr(v) the same for every point: the ranking, hence the AUC,
    # does not depend on a, and the first maximum (a = 0.0) is kept.
    flat_x = 0.4 + 0.2 * keep
    flat_z = np.full_like(sig_z, 0.4)
    a_tie, auc_tie = tune_offline_a(flat_x, keep, flat_z)
    np.testing.assert_array_equal(auc_tie, 1.0)
    assert a_tie == 0.0


def test_tune_offline_a_needs_two_pairs():
    sig_x, keep, sig_z = pair_bank(n_pairs=1)
    with pytest.raises(DataError):
        tune_offline_a(sig_x, keep, sig_z)


def test_rmia_vs_retrain():
    sig_x, keep, sig_z = pair_bank(n_pairs=2, n_x=400, n_z=500, seed=2)
    refs_x, refs_z, out_mask = sig_x[1:], sig_z[1:], ~keep[1:]
    target = sig_x[0]
    is_forget = keep[0]
    # theta_r ~ theta_u: identical curves, every delta is 0.
    same = rmia_vs_retrain(
        target, target, refs_x, out_mask, is_forget, sig_z[0], sig_z[0], refs_z, a=0.5
    )
    assert same["delta_auc"] == 0.0 and same["delta_tpr_at_fpr_0.01"] == 0.0
    assert same["auc_u"] > 0.7
    # A "retrain" whose forget points look like fresh data: auc_r falls to about 0.5.
    rng = np.random.default_rng(3)
    retrain = np.where(is_forget, target - 0.3, target) + rng.normal(0, 1e-3, target.shape)
    out = rmia_vs_retrain(
        target, retrain, refs_x, out_mask, is_forget, sig_z[0], sig_z[0], refs_z, a=0.5
    )
    assert out["auc_r"] < 0.65 and out["delta_auc"] > 0.1
    assert out["delta_auc"] == pytest.approx(out["auc_u"] - out["auc_r"])
    assert {"tpr_at_fpr_0.01_u", "tpr_at_fpr_0.01_r", "report_u", "scores_r"} <= set(out)


def test_bad_a_raises():
    with pytest.raises(ConfigError):
        rmia_scores([0.5], [[0.5]], [[True]], [0.5], [[0.5]], a=1.5)
