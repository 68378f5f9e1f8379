"""Known-answer tests of LiRA and U-LiRA on synthetic φ."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import norm

from unlearnkit.errors import DataError
from unlearnkit.metrics.functional.lira import (
    SIGMA_EPS,
    LiraFit,
    Role,
    gaussian_llr,
    lira_fit,
    lira_loo,
    lira_offline,
    lira_online,
    lira_vs_retrain,
)
from unlearnkit.metrics.functional.ulira import ulira_posterior_legacy, ulira_score

PHI_HALF = norm.cdf(0.5)  # 0.6915: accuracy of the threshold 0 between N(1, 1) and N(0, 1)
AUC_UNIT = norm.cdf(1 / math.sqrt(2))  # 0.7602: AUC of N(1, 1) against N(0, 1)


def one_example_fit(mu_in, sigma_in, mu_out, sigma_out) -> LiraFit:
    def arr(v):
        return np.array([[v]], dtype=np.float64)

    return LiraFit(
        mu_in=arr(mu_in),
        sigma_in=arr(sigma_in),
        mu_out=arr(mu_out),
        sigma_out=arr(sigma_out),
        n_in=np.array([1]),
        n_out=np.array([1]),
        pooled_sigma_in=sigma_in,
        pooled_sigma_out=sigma_out,
        all_in_std=sigma_in,
        all_out_std=sigma_out,
    )


def bank(n_models=20, n_examples=100, shift=0.0, seed=0):
    """Complementary-pair bank: IN ~ N(mu_i + shift, 1), OUT ~ N(mu_i, 1) per example."""
    rng = np.random.default_rng(seed)
    half = rng.random((n_models // 2, n_examples)) < 0.5
    keep = np.empty((n_models, n_examples), dtype=bool)
    keep[0::2], keep[1::2] = half, ~half
    mu = rng.normal(0, 2, size=n_examples)
    phi = mu + rng.normal(size=(n_models, n_examples)) + shift * keep
    return phi, keep


# 4.13 (a)
def test_a_gaussian_llr_known_parameters():
    assert gaussian_llr(2.0, 2.0, 1.0, 0.0, 1.0) == pytest.approx(2.0, abs=1e-12)
    fit = one_example_fit(2.0, 1.0, 0.0, 1.0)
    assert lira_online(np.array([2.0]), fit)[0] == pytest.approx(2.0, abs=1e-6)
    # Against scipy's densities, with unequal scales.
    x, args = 0.3, (1.0, 0.5, -1.0, 2.0)
    expected = norm.logpdf(x, 1.0, 0.5) - norm.logpdf(x, -1.0, 2.0)
    assert gaussian_llr(x, *args) == pytest.approx(expected, abs=1e-12)


# 4.13 (b)
@pytest.mark.parametrize("mode", ["online", "offline"])
def test_b_same_distribution_gives_chance_auc(mode):
    # 40 targets x 50 examples = 2 000 pooled pairs.
    phi, keep = bank(n_models=40, n_examples=50, shift=0.0)
    rep = lira_loo(phi, keep, mode=mode)
    assert rep["n_pos"] + rep["n_neg"] == 2000
    assert rep["auc"] == pytest.approx(0.5, abs=0.03)


def test_b_control_shifted_in_distribution_is_detected():
    phi, keep = bank(shift=2.0)
    rep = lira_loo(phi, keep, mode="online")
    assert rep["auc"] > 0.85
    assert lira_loo(phi, keep, mode="online", fixed_variance=True)["auc"] > 0.85


def ulira_bank(n_splits=20, per_split=20, n_examples=100, unl_mean=1.0, p_unl=0.4, seed=0):
    """Unlearned-model bank: per model, each example is UNL (~N(1, 1)) or NEV (~N(0, 1))."""
    rng = np.random.default_rng(seed)
    n_models = n_splits * per_split
    group = np.repeat(np.arange(n_splits), per_split)
    role = np.where(rng.random((n_models, n_examples)) < p_unl, Role.UNL, Role.NEV)
    phi = rng.normal(size=(n_models, n_examples)) + unl_mean * (role == Role.UNL)
    return phi, role, group


# 4.13 (c)
@pytest.mark.parametrize("fixed_variance", [False, True])
def test_c_ulira_recovers_the_gaussian_answer(fixed_variance):
    phi, role, group = ulira_bank()
    out = ulira_score(phi, role, group, fixed_variance=fixed_variance, seed=0)
    assert out["ulira_acc"] == pytest.approx(PHI_HALF, abs=0.02)
    assert out["auc"] == pytest.approx(AUC_UNIT, abs=0.02)
    assert PHI_HALF == pytest.approx(0.6915, abs=1e-4) and AUC_UNIT == pytest.approx(0.7602, 1e-4)
    assert out["n_pos"] == out["n_neg"]  # the (more numerous) negatives are subsampled
    lo, hi = out["ulira_acc_ci"]
    assert lo < out["ulira_acc"] < hi
    assert 0.0 <= out["vulnerability_q50"] <= out["vulnerability_q90"] <= 1.0
    assert out["vulnerability_q90"] <= out["vulnerability_q99"] <= 1.0
    counts, edges = out["vulnerability_hist"]
    assert counts.sum() == 100 and edges[0] == 0.0 and edges[-1] == 1.0
    assert {"tpr_at_fpr_0.01", "tpr_at_fpr_0.001", "tpr_at_fpr_0.01_ci"} <= set(out)


def test_c_ulira_perfect_unlearning_is_at_chance():
    phi, role, group = ulira_bank(unl_mean=0.0)
    out = ulira_score(phi, role, group)
    assert out["ulira_acc"] == pytest.approx(0.5, abs=0.02)
    assert out["auc"] == pytest.approx(0.5, abs=0.02)


def test_ulira_is_seeded_and_skips_unscorable_examples():
    phi, role, group = ulira_bank(n_splits=4, per_split=5, n_examples=30)
    a = ulira_score(phi, role, group, seed=7)
    b = ulira_score(phi, role, group, seed=7)
    np.testing.assert_array_equal(a["scores"], b["scores"])
    role = role.copy()
    role[:, 0] = Role.NEITHER  # example 0 never appears
    out = ulira_score(phi, role, group)
    assert np.isnan(out["vulnerability"][0]) and 0 not in out["example"]
    with pytest.raises(DataError):  # nothing scorable
        ulira_score(phi, role, group, min_obs=10**6)


def test_ulira_bad_role_raises():
    phi, role, group = ulira_bank(n_splits=2, per_split=2, n_examples=5)
    with pytest.raises(DataError):
        ulira_score(phi, role + 5, group)
    with pytest.raises(DataError):
        ulira_score(phi, role, group[:-1])


def test_ulira_legacy_posterior_fits_in_sample():
    phi = np.array([[1.0], [1.0], [0.0], [0.0]])
    role = np.array([[Role.UNL], [Role.UNL], [Role.NEV], [Role.NEV]])
    out = ulira_posterior_legacy(phi, role)
    # Both groups constant: sigma floored at 1e-30, each UNL observation sits on its own mean.
    np.testing.assert_allclose(out["posterior"], 1.0)
    assert out["model"].tolist() == [0, 1]


# 4.13 (d)
def test_d_legacy_truncate_uses_min_in_count():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(8, 2))
    keep = np.zeros((8, 2), dtype=bool)
    keep[[1, 3, 6], 0] = True  # example 0: 3 IN models
    keep[[0, 2, 4, 5, 7], 1] = True  # example 1: 5 IN models
    full = lira_fit(phi, keep)
    assert full.n_in.tolist() == [3, 5] and full.n_out.tolist() == [5, 3]
    trunc = lira_fit(phi, keep, legacy_truncate=True)
    assert trunc.n_in.tolist() == [3, 3] and trunc.n_out.tolist() == [3, 3]
    # The first 3 IN models of example 1, in model order.
    assert trunc.mu_in[1, 0] == pytest.approx(np.median(phi[[0, 2, 4], 1]), abs=1e-12)
    assert trunc.sigma_in[1, 0] == pytest.approx(np.std(phi[[0, 2, 4], 1]), abs=1e-12)
    assert trunc.mu_out[0, 0] == pytest.approx(np.median(phi[[0, 2, 4], 0]), abs=1e-12)
    assert full.mu_in[1, 0] == pytest.approx(np.median(phi[[0, 2, 4, 5, 7], 1]), abs=1e-12)


def test_d_legacy_fixed_variance_online_uses_one_sigma():
    phi, keep = bank(n_models=16, n_examples=40, shift=1.0, seed=3)
    fit = lira_fit(phi[1:], keep[1:])
    x = phi[0]
    legacy = lira_online(x, fit, fixed_variance=True, legacy=True)
    s_all_in = np.std(phi[1:][keep[1:]])
    assert fit.all_in_std == pytest.approx(s_all_in, abs=1e-12)
    same = gaussian_llr(x, fit.mu_in[:, 0], s_all_in + SIGMA_EPS, fit.mu_out[:, 0], s_all_in)
    np.testing.assert_allclose(legacy, same, atol=1e-9)
    # The default pools per-example variances around per-example means, IN and OUT separately.
    var_in = [np.var(phi[1:][keep[1:, i], i]) for i in range(40)]
    var_out = [np.var(phi[1:][~keep[1:, i], i]) for i in range(40)]
    assert fit.pooled_sigma_in == pytest.approx(math.sqrt(np.mean(var_in)), abs=1e-12)
    assert fit.pooled_sigma_out == pytest.approx(math.sqrt(np.mean(var_out)), abs=1e-12)
    lib = lira_online(x, fit, fixed_variance=True)
    expected = gaussian_llr(
        x, fit.mu_in[:, 0], fit.pooled_sigma_in, fit.mu_out[:, 0], fit.pooled_sigma_out
    )
    np.testing.assert_allclose(lib, expected, atol=1e-9)
    # Between-example spread makes the legacy sigma larger than the pooled one.
    assert fit.all_in_std > fit.pooled_sigma_in


def test_offline_forms():
    phi, keep = bank(n_models=16, n_examples=30, seed=4)
    fit = lira_fit(phi[1:], keep[1:])
    x = phi[0]
    mu, sd = fit.mu_out[:, 0], fit.sigma_out[:, 0] + SIGMA_EPS
    np.testing.assert_allclose(lira_offline(x, fit), (x - mu) / sd, atol=1e-12)
    np.testing.assert_allclose(
        lira_offline(x, fit, legacy=True), -norm.logpdf(x, mu, sd), atol=1e-9
    )
    # Legacy is two-sided: an unusually low phi scores as high as an unusually high one.
    lo, hi = mu[:1] - 3 * sd[:1], mu[:1] + 3 * sd[:1]
    arrays = ("mu_in", "sigma_in", "mu_out", "sigma_out", "n_in", "n_out")
    fit1 = dataclasses.replace(fit, **{f: getattr(fit, f)[:1] for f in arrays})
    assert lira_offline(lo, fit1, legacy=True) == pytest.approx(lira_offline(hi, fit1, legacy=True))
    assert lira_offline(lo, fit1) < 0 < lira_offline(hi, fit1)
    # Legacy fixed variance offline: std of all OUT values.
    s_out = np.std(phi[1:][~keep[1:]])
    np.testing.assert_allclose(
        lira_offline(x, fit, fixed_variance=True, legacy=True),
        -norm.logpdf(x, mu, s_out),
        atol=1e-9,
    )


def test_augmentations_are_averaged():
    phi, keep = bank(n_models=10, n_examples=12, seed=5)
    phi3 = np.stack([phi, phi + 0.1], axis=-1)
    fit = lira_fit(phi3[1:], keep[1:])
    assert fit.mu_in.shape == (12, 2)
    per_aug = [lira_online(phi3[0, :, a], lira_fit(phi3[1:, :, a], keep[1:])) for a in range(2)]
    np.testing.assert_allclose(lira_online(phi3[0], fit), np.mean(per_aug, axis=0), atol=1e-9)


def test_lira_vs_retrain_identical_targets():
    phi, keep = bank(n_models=16, n_examples=200, shift=1.0, seed=6)
    fit = lira_fit(phi[1:], keep[1:])
    out = lira_vs_retrain(fit, phi[0], phi[0], keep[0])
    assert out["delta_auc"] == 0.0 and out["auc_u"] > 0.6
    assert "delta_tpr_at_fpr_0.01" in out


def test_fit_shape_errors():
    with pytest.raises(DataError):
        lira_fit(np.zeros((4, 3)), np.zeros((4, 2), dtype=bool))
    fit = lira_fit(np.zeros((4, 3)), np.eye(4, 3, dtype=bool))
    with pytest.raises(DataError):
        lira_online(np.zeros(5), fit)
