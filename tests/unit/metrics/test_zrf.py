"""Known-answer tests of ZRF."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.zrf import probs_from_logits, zrf
from unlearnkit.metrics.signals import SplitSignals

P = np.array([[0.5, 0.5]])
Q = np.array([[0.9, 0.1]])


def _reference_zrf(model_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """vikram2000b/bad-teaching-unlearning ``UnLearningScore`` arithmetic, run with torch."""
    p = F.softmax(torch.from_numpy(model_logits), dim=1)
    q = F.softmax(torch.from_numpy(teacher_logits), dim=1)
    m = (p + q) / 2
    js = 0.5 * F.kl_div(torch.log(p), m, reduction="mean") + 0.5 * F.kl_div(
        torch.log(q), m, reduction="mean"
    )
    return float(1 - js)


def test_4_5a_model_equal_teacher():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), 50)
    assert zrf(probs, probs) == 1.0
    assert zrf(probs, probs, legacy=True) == 1.0
    logits = rng.normal(size=(50, 10)).astype(np.float32)
    sig = SplitSignals(logits, rng.integers(0, 10, 50))
    assert zrf(sig, sig) == 1.0
    assert zrf(sig, sig, legacy=True) == 1.0


def test_4_5b_known_values():
    assert zrf(P, Q) == pytest.approx(0.853207, abs=1e-6)
    assert zrf(P, Q, base=math.e) == pytest.approx(0.898251, abs=1e-6)
    assert zrf(P, Q, legacy=True) == pytest.approx(0.941013, abs=1e-6)
    # JS is symmetric, so is the default ZRF
    assert zrf(Q, P) == pytest.approx(zrf(P, Q), abs=1e-15)


def test_4_5c_disjoint_one_hots():
    p = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    q = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert zrf(p, q) == pytest.approx(0.0, abs=1e-12)
    assert zrf(p, q, base=math.e) == pytest.approx(1 - math.log(2), abs=1e-12)


def test_default_matches_scipy_jensenshannon():
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(7), 30)
    q = rng.dirichlet(np.ones(7) * 0.5, 30)
    js_bits = jensenshannon(p, q, base=2, axis=1) ** 2
    assert zrf(p, q) == pytest.approx(1 - js_bits.mean(), abs=1e-12)
    assert 0.0 <= zrf(p, q) <= 1.0


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides:UserWarning")
def test_legacy_matches_reference_torch_arithmetic():
    rng = np.random.default_rng(2)
    zu = (rng.normal(size=(64, 10)) * 3).astype(np.float32)
    zt = (rng.normal(size=(64, 10)) * 0.1).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    expected = _reference_zrf(zu, zt)
    got = zrf(SplitSignals(zu, labels), SplitSignals(zt, labels), legacy=True)
    assert got == pytest.approx(expected, abs=1e-6)
    pu, pt = probs_from_logits(zu, dtype=np.float32), probs_from_logits(zt, dtype=np.float32)
    assert zrf(pu, pt, legacy=True) == got
    # legacy squeezes toward 1 compared with the default (1/K scaling, KL(m||.))
    default = zrf(SplitSignals(zu, labels), SplitSignals(zt, labels))
    assert default < got < 1.0


def test_probs_from_logits_float32_matches_torch_softmax():
    rng = np.random.default_rng(3)
    z = (rng.normal(size=(20, 6)) * 5).astype(np.float32)
    ours = probs_from_logits(z, dtype=np.float32)
    assert ours.dtype == np.float32
    theirs = F.softmax(torch.from_numpy(z), dim=1).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probs_from_logits(z), theirs, rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError):
        probs_from_logits(z, dtype=np.float16)


def test_signals_and_probs_agree():
    rng = np.random.default_rng(4)
    zu, zt = rng.normal(size=(15, 4)), rng.normal(size=(15, 4))
    labels = rng.integers(0, 4, 15)
    su, st = SplitSignals(zu, labels), SplitSignals(zt, labels)
    assert zrf(su, st) == pytest.approx(zrf(su.prob, st.prob), abs=1e-15)


def test_zrf_rejects_bad_input():
    with pytest.raises(DataError, match="probability"):
        zrf(np.array([[3.0, -1.0]]), Q)  # logits passed as probabilities
    with pytest.raises(DataError, match="shape"):
        zrf(P, np.array([[0.2, 0.3, 0.5]]))
    with pytest.raises(DataError, match="empty"):
        zrf(np.zeros((0, 2)), np.zeros((0, 2)))
    for bad in (1, 0, -2.0, float("inf"), True):
        with pytest.raises(ConfigError):
            zrf(P, Q, base=bad)
