"""Known-answer tests of the NeurIPS-2023 ε / H-score.

Expected ε include the δ correction; the ε tolerance is 1e-5.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from unlearnkit.errors import ConfigError, DataError, DegenerateScoresError
from unlearnkit.metrics.functional.epsilon import (
    DELTA,
    h_score,
    n_bins,
    neurips23_score,
    per_example_epsilon,
)

EPS_TOL = 1e-5


def score(u, r, **kw):
    """Score column vectors (or (N, E) arrays) with unit accuracies."""
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    if u.ndim == 1:
        u, r = u[:, None], r[:, None]
    return neurips23_score(u, r, 1.0, 1.0, 1.0, 1.0, **kw)


# ---------------------------------------------------------------------------------------------
# A brute-force, tiled implementation written after the reference (metric.py), on CPU: every rule
# is compared with every model through [N, #rules] matrices and the rates are float32 means.


def _bf_single_rates(pos, neg):
    all_confs = torch.cat([pos, neg])
    lo, hi = all_confs.min(), all_confs.max()
    num = int(torch.ceil((hi - lo) * 100))
    thr = torch.linspace(lo, hi, num)[None, :]  # default dtype: float32
    tpr = (pos[:, None] >= thr).float().mean(0)
    fpr = (neg[:, None] >= thr).float().mean(0)
    tnr = (neg[:, None] < thr).float().mean(0)
    fnr = (pos[:, None] < thr).float().mean(0)
    return tpr, fnr, fpr, tnr


def _bf_double_rates(pos, neg):
    pos_diff = pos.max() - pos.min()
    neg_diff = neg.max() - neg.min()
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    if pos_diff >= neg_diff:
        pos, neg = neg, pos
    min_ = (pos.min() + smallest - 2.0).numpy()
    max_ = (pos.max() + 2.0).numpy()
    right = np.linspace(min_, max_, num=int(np.ceil((max_ - min_) * 100)))
    width = smallest.numpy()
    left = np.concatenate(
        [np.linspace(tr - width - 2.0, tr - width + 2.0, num=400) for tr in right]
    )
    left_t = torch.from_numpy(left)[None, :]
    right_t = torch.from_numpy(np.repeat(right, 400))[None, :]

    # Predicted positive iff left <= c <= right; rates are float32 means over the models.
    pp_pos = torch.logical_and(left_t <= pos[:, None], pos[:, None] <= right_t)
    pp_neg = torch.logical_and(left_t <= neg[:, None], neg[:, None] <= right_t)
    return (
        pp_pos.float().mean(0),
        torch.logical_not(pp_pos).float().mean(0),
        pp_neg.float().mean(0),
        torch.logical_not(pp_neg).float().mean(0),
    )


def brute_force_epsilon(u, r, family="both"):
    """ε of one example by exhaustive tiled comparison, following the reference step by step."""
    u = np.asarray(u, dtype=np.float64)
    r = np.asarray(r, dtype=np.float64)
    retrain_positive = np.median(r) > np.median(u)
    pos, neg = (r, u) if retrain_positive else (u, r)
    pos_diff = np.max(pos) - np.min(pos)
    neg_diff = np.max(neg) - np.min(neg)
    largest = pos_diff if pos_diff > neg_diff else neg_diff
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    with np.errstate(divide="ignore", invalid="ignore"):
        if smallest / largest < 0.01:
            return 50.0
    pos_t, neg_t = torch.from_numpy(pos), torch.from_numpy(neg)
    parts = []
    if family in ("both", "double"):
        parts.append(_bf_double_rates(pos_t, neg_t))
    if family in ("both", "single"):
        parts.append(_bf_single_rates(pos_t, neg_t))
    tpr, fnr, fpr, tnr = (torch.cat([p[i] for p in parts]) for i in range(4))

    thr_eps = torch.zeros(tpr.shape[0])
    perfect = torch.eq(fpr + fnr, 0) & torch.eq(tpr + tnr, 2)
    thr_eps = torch.where(perfect, torch.full_like(thr_eps, np.inf), thr_eps)
    discard = torch.eq(thr_eps, 0) & torch.eq(fpr * fnr, 0)
    thr_eps = torch.where(discard, torch.full_like(thr_eps, np.nan), thr_eps)
    fpr_n, fnr_n = fpr.numpy(), fnr.numpy()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eps = np.clip(
            np.nanmax(
                [
                    np.log(1 - DELTA - fpr_n) - np.log(fnr_n),
                    np.log(1 - DELTA - fnr_n) - np.log(fpr_n),
                ],
                axis=0,
            ),
            0,
            None,
        )
    thr_eps = torch.where(torch.eq(thr_eps, 0), torch.from_numpy(eps), thr_eps).numpy()
    kept = thr_eps[~np.isnan(thr_eps)]
    if kept.size == 0:
        raise DegenerateScoresError("no rule survives")
    return float(np.clip(np.nanmax(kept), 0, 50))


def _random_input(i: int) -> tuple[np.ndarray, np.ndarray]:
    """The i-th of 20 varied (N, E = 2) inputs: overlaps, shifts, scale changes, ties, caps."""
    rng = np.random.default_rng(1000 + i)
    n = (4, 5, 8, 16, 32)[i % 5]
    r = rng.normal(size=(n, 2))
    kind = i % 4
    if kind == 0:
        u = rng.normal(size=(n, 2))
    elif kind == 1:
        u = rng.normal(0.7, 0.4, size=(n, 2))
    elif kind == 2:  # coarse grid: many ties between and within the sides
        r = np.round(r * 2) / 2
        u = np.round(rng.normal(0.3, 1.0, size=(n, 2)) * 2) / 2
    else:
        u = r * rng.uniform(0.02, 3.0, size=2) + rng.uniform(-3, 3, size=2)
    if i in (11, 15):  # a collapsed unlearned side: the range valve fires on example 0
        u[:, 0] = 0.005 * r[:, 0] + 1.0
    if i in (7, 13):  # values at the phi cap
        u[0, :] = 103.6163292
        r[-1, :] = -103.6163292
    return u, r


# ---------------------------------------------------------------------------------------------
# 4.15 (a) - (k)


@pytest.mark.parametrize("n", [3, 8, 16])
def test_a_identical_populations(n):
    rng = np.random.default_rng(n)
    r = rng.normal(size=(n, 5))
    out = score(r, r.copy())
    np.testing.assert_allclose(out["eps"], 0.0, atol=EPS_TOL)
    assert out["F"] == 1.0


def test_b_separated():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(16, 4))
    out = score(r + 100, r)
    np.testing.assert_allclose(out["eps"], 50.0, atol=EPS_TOL)
    assert out["F"] == 0.0


def test_c_range_valve():
    r = np.arange(16.0)
    eps, diag = per_example_epsilon(0.009 * r, r)
    assert eps == pytest.approx(50.0, abs=EPS_TOL)
    assert diag["valve"] and diag["family"] == "valve"
    eps, diag = per_example_epsilon(0.011 * r + 3, r)
    assert not diag["valve"]
    assert eps == pytest.approx(math.log(15 - 16 * DELTA), abs=EPS_TOL)
    assert eps == pytest.approx(2.708040, abs=EPS_TOL)


@pytest.mark.parametrize(
    ("k", "expected", "approx", "h"),
    [
        (1, math.log(2 - 8 * DELTA), 0.693107, 0.5),
        (2, math.log(3 - 8 * DELTA), 1.098586, 0.25),
        (4, math.log(5 - 8 * DELTA), 1.609422, 0.125),
    ],
)
def test_d_single_threshold_tail(k, expected, approx, h):
    r = np.arange(8.0)
    out = score(r + k, r)
    assert out["eps"][0] == pytest.approx(expected, abs=EPS_TOL)
    assert out["eps"][0] == pytest.approx(approx, abs=EPS_TOL)
    assert out["H"][0] == h
    assert out["F"] == h


def test_d_disjoint():
    r = np.arange(8.0)
    out = score(r + 7.5, r)
    assert out["eps"][0] == pytest.approx(50.0, abs=EPS_TOL)
    assert out["F"] == 0.0


def test_e_double_threshold_family():
    r = np.arange(16.0)
    u = r / 2
    eps, diag = per_example_epsilon(u, r)
    assert eps == pytest.approx(math.log(9 - 16 * DELTA), abs=EPS_TOL)
    assert eps == pytest.approx(2.197207, abs=EPS_TOL)
    # Attained by the interval rule [0.5, 7.5] around the peakier (unlearned) side.
    assert diag["family"] == "double" and diag["rule_positive"] == "unlearned"
    assert 0.0 < diag["threshold_low"] <= 0.5 and 7.5 <= diag["threshold_high"] < 8.0
    assert diag["fnr"] == pytest.approx(1 / 16) and diag["fpr"] == pytest.approx(7 / 16)

    eps_single, diag_single = per_example_epsilon(u, r, family="single")
    assert eps_single == pytest.approx(math.log(8 - 16 * DELTA), abs=EPS_TOL)
    assert eps_single == pytest.approx(2.079422, abs=EPS_TOL)
    assert diag_single["family"] == "single" and diag_single["n_double"] == 0

    out = score(u, r)
    assert n_bins(16) == 6
    assert out["H"][0] == 2.0**-4 == 0.0625
    assert score(u, r, family="single")["eps"][0] == pytest.approx(eps_single, abs=0)


def test_f_bins():
    counts = [n_bins(n) for n in (2, 3, 8, 16, 32, 64, 128, 256, 512)]
    assert counts == [0, 2, 4, 6, 8, 10, 10, 12, 14]
    assert h_score([0.5], 8)[0] == 0.5
    assert h_score([0.4999999], 8)[0] == 1.0
    assert h_score([6.99], 512)[0] == 2.0**-13
    assert h_score([7.0], 512)[0] == 0.0
    assert h_score([50.0], 512)[0] == 0.0
    # N = 2 gives no bins, hence F = 0 even for identical populations.
    out = score([0.0, 1.0], [0.0, 1.0])
    assert out["eps"][0] == pytest.approx(0.0, abs=EPS_TOL) and out["F"] == 0.0
    with pytest.raises(DataError):
        n_bins(1)


def test_g_orientation_ties_make_unlearned_positive():
    u = np.array([0.0, 1.0, 2.0, 3.5])
    r = np.array([-1.0, 1.0, 2.0, 3.0])
    assert np.median(u) == np.median(r)
    out = score(u, r)
    assert out["diagnostics"]["positive"][0] == "unlearned"
    # A strictly larger retrain median makes the retrained side positive.
    assert score(u, r + 0.1)["diagnostics"]["positive"][0] == "retrain"


def test_h_degenerate():
    with pytest.raises(DegenerateScoresError):
        score(np.full(8, 1.5), np.full(8, 1.5))
    with pytest.raises(ValueError):  # DegenerateScoresError is also a ValueError
        per_example_epsilon(np.zeros(4), np.zeros(4))
    out = score(np.full(8, 1.0), np.full(8, 2.0))
    assert out["eps"][0] == pytest.approx(50.0, abs=EPS_TOL)


def test_i_final():
    rng = np.random.default_rng(3)
    r = rng.normal(size=(16, 2))
    u = r.copy()
    u[:, 1] += 100  # example 0: identical (H = 1); example 1: separated (H = 0)
    out = neurips23_score(u, r, np.full(16, 0.9), np.full(16, 1.0), [0.8] * 16, [0.8] * 16)
    assert out["F"] == pytest.approx(0.5, abs=1e-12)
    assert out["final"] == pytest.approx(0.45, abs=1e-6)
    assert out["ra_ratio"] == pytest.approx(0.9) and out["ta_ratio"] == pytest.approx(1.0)


def test_j_independent_samples_do_not_reach_one():
    rng = np.random.default_rng(2023)
    out = neurips23_score(rng.normal(size=(64, 50)), rng.normal(size=(64, 50)), 1.0, 1.0, 1.0, 1.0)
    assert out["F"] < 0.5
    assert np.all((out["eps"] > 0) & (out["eps"] < 50))


@pytest.mark.parametrize("i", range(20))
def test_k_port_equals_brute_force(i):
    u, r = _random_input(i)
    out = score(u, r)
    expected = [brute_force_epsilon(u[:, e], r[:, e]) for e in range(u.shape[1])]
    np.testing.assert_array_equal(out["eps"], expected)


@pytest.mark.parametrize("family", ["single", "double"])
@pytest.mark.parametrize("i", [3, 6, 8])
def test_k_port_equals_brute_force_per_family(i, family):
    u, r = _random_input(i)
    for e in range(u.shape[1]):
        got, _ = per_example_epsilon(u[:, e], r[:, e], family=family)
        assert got == brute_force_epsilon(u[:, e], r[:, e], family=family)


# ---------------------------------------------------------------------------------------------
# Contract


def test_outputs_and_diagnostics_shape():
    rng = np.random.default_rng(5)
    out = neurips23_score(rng.normal(size=(8, 6)), rng.normal(size=(8, 6)), 1, 1, 1, 1)
    assert {"F", "final", "eps", "H", "n_models", "n_bins", "diagnostics"} <= set(out)
    assert out["eps"].shape == (6,) and out["eps"].dtype == np.float64
    for key in ("positive", "family", "tpr", "fnr", "fpr", "tnr", "threshold_low"):
        assert out["diagnostics"][key].shape == (6,)
    fam = out["diagnostics"]["family"]
    assert set(fam) <= {"single", "double", "valve"}
    # The four rates of a rule are consistent float32 k/N values.
    d = out["diagnostics"]
    np.testing.assert_allclose(d["tpr"] + d["fnr"], 1.0, atol=1e-6)
    np.testing.assert_allclose(d["fpr"] + d["tnr"], 1.0, atol=1e-6)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(6)
    u, r = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))
    u0, r0 = u.copy(), r.copy()
    score(u, r)
    np.testing.assert_array_equal(u, u0)
    np.testing.assert_array_equal(r, r0)


def test_bad_inputs_raise():
    with pytest.raises(DataError):  # unequal N
        neurips23_score(np.zeros((8, 2)), np.zeros((9, 2)), 1, 1, 1, 1)
    with pytest.raises(DataError):
        neurips23_score(np.zeros(8), np.zeros(8), 1, 1, 1, 1)
    with pytest.raises(DataError):
        per_example_epsilon([0.0, np.nan], [0.0, 1.0])
    with pytest.raises(ConfigError):
        score(np.arange(8.0), np.arange(8.0), compat="fast")
    with pytest.raises(ConfigError):
        score(np.arange(8.0), np.arange(8.0), family="triple")


def test_degenerate_error_names_the_example():
    u = np.stack([np.arange(8.0), np.full(8, 2.0)], axis=1)
    with pytest.raises(DegenerateScoresError, match="forget example 1"):
        score(u, u.copy())


def test_row_wise_linspace_is_bit_identical_to_numpy():
    from unlearnkit.metrics.functional.epsilon import _linspace_rows

    rng = np.random.default_rng(9)
    starts = rng.normal(size=50) * 50
    stops = starts + 4.0
    stops[3] = starts[3]  # a zero step takes numpy's other branch
    got = _linspace_rows(starts, stops, 400)
    expected = np.stack([np.linspace(a, b, 400) for a, b in zip(starts, stops)])
    np.testing.assert_array_equal(got, expected)
