"""Known-answer tests of the distances to Retrain."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy
from torch import nn

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.distances import (
    actdist_l1,
    actdist_l2,
    js_to_retrain,
    kl_to_retrain,
    output_distances,
    weight_distance,
)
from unlearnkit.metrics.signals import SplitSignals


def _random_probs(seed: int, n: int = 40, k: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(k), n), rng.dirichlet(np.ones(k) * 0.3, n)


# ---------------------------------------------------------------------------------------------
# 4.9 output distances
# ---------------------------------------------------------------------------------------------


def test_4_9a_identical_outputs():
    p, _ = _random_probs(0)
    assert js_to_retrain(p, p) == 0.0
    assert kl_to_retrain(p, p) == 0.0
    assert actdist_l2(p, p) == 0.0
    assert actdist_l1(p, p) == 0.0
    rng = np.random.default_rng(0)
    sig = SplitSignals(rng.normal(size=(10, 3)).astype(np.float32), rng.integers(0, 3, 10))
    assert output_distances(sig, sig) == {
        "js_to_retrain_forget": 0.0,
        "kl_to_retrain_forget": 0.0,
        "actdist_l2_forget": 0.0,
        "actdist_l1_forget": 0.0,
    }


def test_4_9b_disjoint_one_hots():
    pu = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    pr = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert js_to_retrain(pu, pr) == pytest.approx(math.log(2), abs=1e-12)
    assert actdist_l2(pu, pr) == pytest.approx(math.sqrt(2), abs=1e-12)
    assert actdist_l1(pu, pr) == pytest.approx(2.0, abs=1e-12)
    # KL(p_r || p_u) with p_u clipped at 1e-12: ln(1 / 1e-12) per sample
    assert kl_to_retrain(pu, pr) == pytest.approx(-math.log(1e-12), abs=1e-9)
    # the same through signals built from the one-hots (logits with -inf)
    with np.errstate(divide="ignore"):
        su = SplitSignals(np.log(pu), np.array([0, 2]))
        sr = SplitSignals(np.log(pr), np.array([0, 2]))
    assert js_to_retrain(su, sr) == pytest.approx(math.log(2), abs=1e-12)
    assert kl_to_retrain(su, sr) == math.inf  # float64 log_softmax, no clipping


def test_4_9c_against_scipy():
    pu, pr = _random_probs(1)
    js = jensenshannon(pu, pr, axis=1) ** 2
    kl = entropy(pr, pu, axis=1)
    assert js_to_retrain(pu, pr) == pytest.approx(js.mean(), abs=1e-12)
    assert kl_to_retrain(pu, pr) == pytest.approx(kl.mean(), abs=1e-12)
    assert actdist_l2(pu, pr) == pytest.approx(np.linalg.norm(pu - pr, axis=1).mean(), abs=1e-15)
    assert actdist_l1(pu, pr) == pytest.approx(np.abs(pu - pr).sum(1).mean(), abs=1e-15)


def test_4_9c_signals_use_float64_log_softmax():
    rng = np.random.default_rng(2)
    zu = rng.normal(size=(25, 5)).astype(np.float32) * 4
    zr = rng.normal(size=(25, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 25)
    su, sr = SplitSignals(zu, labels), SplitSignals(zr, labels)
    expected_kl = entropy(sr.prob, su.prob, axis=1).mean()
    assert kl_to_retrain(su, sr) == pytest.approx(expected_kl, abs=1e-12)
    assert js_to_retrain(su, sr) == pytest.approx(
        (jensenshannon(su.prob, sr.prob, axis=1) ** 2).mean(), abs=1e-12
    )
    out = output_distances(su, sr, "test")
    assert out == {
        "js_to_retrain_test": js_to_retrain(su, sr),
        "kl_to_retrain_test": kl_to_retrain(su, sr),
        "actdist_l2_test": actdist_l2(su, sr),
        "actdist_l1_test": actdist_l1(su, sr),
    }


def test_4_9d_symmetry():
    pu, pr = _random_probs(3)
    assert js_to_retrain(pu, pr) == pytest.approx(js_to_retrain(pr, pu), abs=1e-15)
    assert kl_to_retrain(pu, pr) != pytest.approx(kl_to_retrain(pr, pu), abs=1e-3)
    assert 0.0 <= js_to_retrain(pu, pr) <= math.log(2)


def test_output_distances_edge_cases():
    pu, pr = _random_probs(4)
    assert all(math.isnan(v) for v in output_distances(pu[:0], pr[:0], "retain").values())
    with pytest.raises(DataError, match="shape"):
        js_to_retrain(pu, pr[:, :3])
    with pytest.raises(ConfigError):
        output_distances(pu, pr, "")
    a = SplitSignals(np.zeros((3, 2)), np.array([0, 1, 0]))
    b = SplitSignals(np.zeros((3, 2)), np.array([1, 1, 0]))
    with pytest.raises(DataError, match="labels"):
        js_to_retrain(a, b)


# ---------------------------------------------------------------------------------------------
# 4.10 weight distance
# ---------------------------------------------------------------------------------------------


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters())


def test_4_10a_same_model():
    m = _net(0)
    out = weight_distance(_params(m), _params(m), shared_init=True)
    assert out == {"wdist_rel": 0.0, "wdist_l2": 0.0, "invalid_init": False}


def test_4_10b_known_values():
    u = {"w": np.array([[1.0, -2.0], [3.0, 0.5]]), "b": np.array([0.25, -1.0])}
    zero = {k: np.zeros_like(v) for k, v in u.items()}
    double = {k: 2 * v for k, v in u.items()}
    assert weight_distance(u, zero, shared_init=True)["wdist_rel"] == pytest.approx(1.0)
    assert weight_distance(u, double, shared_init=True)["wdist_rel"] == pytest.approx(1.0)
    norm = math.sqrt(sum(float((v**2).sum()) for v in u.values()))
    assert weight_distance(u, zero, shared_init=True)["wdist_l2"] == pytest.approx(norm)
    # normalised by the first argument
    assert weight_distance(double, u, shared_init=True)["wdist_rel"] == pytest.approx(0.5)


def test_4_10b_matches_torch_formula():
    a, b = _net(0), _net(1)
    with torch.no_grad():
        diff = sum(((p - q) ** 2).sum() for p, q in zip(a.parameters(), b.parameters()))
        norm = sum((p**2).sum() for p in a.parameters())
    out = weight_distance(a, b, shared_init=True)
    assert out["wdist_rel"] == pytest.approx(float(torch.sqrt(diff / norm)), rel=1e-6)
    assert out["wdist_l2"] == pytest.approx(float(torch.sqrt(diff)), rel=1e-6)


def test_4_10c_batchnorm_statistics_are_ignored():
    a = _net(0)
    b = _net(0)
    bn = b[1]
    bn.running_mean.add_(5.0)
    bn.running_var.mul_(3.0)
    bn.num_batches_tracked.add_(7)
    assert weight_distance(_params(a), _params(b), shared_init=True)["wdist_rel"] == 0.0
    assert weight_distance(a, b, shared_init=True)["wdist_l2"] == 0.0  # modules too
    with torch.no_grad():
        b[0].weight[0, 0] += 1.0
    assert weight_distance(a, b, shared_init=True)["wdist_l2"] == pytest.approx(1.0, rel=1e-6)


def test_4_10d_no_shared_init():
    a, b = _net(0), _net(1)
    with pytest.raises(ConfigError, match="force=True"):
        weight_distance(a, b, shared_init=False)
    out = weight_distance(a, b, shared_init=False, force=True)
    assert out["invalid_init"] is True
    assert out["wdist_rel"] > 0


def test_weight_distance_mismatches_and_zero_norm():
    u = {"w": np.ones(3)}
    with pytest.raises(DataError, match="names"):
        weight_distance(u, {"v": np.ones(3)}, shared_init=True)
    with pytest.raises(DataError, match="shape"):
        weight_distance(u, {"w": np.ones(4)}, shared_init=True)
    z = {"w": np.zeros(3)}
    assert math.isnan(weight_distance(z, z, shared_init=True)["wdist_rel"])
    assert weight_distance(z, u, shared_init=True)["wdist_rel"] == math.inf
