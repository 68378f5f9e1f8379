"""Known-answer tests of the logit-scaled confidence φ."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

from unlearnkit.errors import DataError
from unlearnkit.metrics.functional.phi import logit_scaled_confidence

CAP = 103.6163292  # -ln(1e-45)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equal_logits_give_zero(dtype):
    phi = logit_scaled_confidence(np.array([[0.0, 0.0]], dtype=dtype), np.array([0]))
    assert phi.dtype == np.float64
    assert phi[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ln3(dtype):
    phi = logit_scaled_confidence(np.array([[math.log(3.0), 0.0]], dtype=dtype), np.array([0]))
    assert phi[0] == pytest.approx(1.0986123, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cap_both_signs(dtype):
    logits = np.array([[1000.0, 0.0], [0.0, 1000.0]], dtype=dtype)
    phi = logit_scaled_confidence(logits, np.array([0, 0]))
    assert phi[0] == pytest.approx(CAP, abs=1e-6)
    assert phi[1] == pytest.approx(-CAP, abs=1e-6)
    assert -math.log(1e-45) == pytest.approx(CAP, abs=1e-6)


def test_caller_array_not_modified():
    logits = np.array([[3.0, 1.0, -2.0], [0.5, 7.0, 2.0]], dtype=np.float32)
    labels = np.array([2, 1])
    before_logits, before_labels = logits.copy(), labels.copy()
    logit_scaled_confidence(logits, labels)
    logit_scaled_confidence(logits, labels, exact=True)
    np.testing.assert_array_equal(logits, before_logits)
    np.testing.assert_array_equal(labels, before_labels)


def test_exp_runs_in_the_logits_dtype():
    # exp(-103) = 1.8e-45 underflows in float32 to the smallest subnormal 2**-149, but not in
    # float64: the reference arithmetic keeps that difference.
    labels = np.array([0])
    phi32 = logit_scaled_confidence(np.array([[0.0, -103.0]], dtype=np.float32), labels)
    phi64 = logit_scaled_confidence(np.array([[0.0, -103.0]], dtype=np.float64), labels)
    assert phi32[0] == pytest.approx(-math.log(2.0**-149 + 1e-45), abs=1e-6)
    assert phi64[0] == pytest.approx(-math.log(math.exp(-103.0) + 1e-45), abs=1e-6)
    assert abs(phi32[0] - phi64[0]) > 0.1


def test_p_wrong_is_a_sum_not_one_minus_p_correct():
    # With 1 - p_y the float64 cancellation would be off by ~4e-4 here.
    phi = logit_scaled_confidence(np.array([[30.0, 0.0]]), np.array([0]))
    assert phi[0] == pytest.approx(30.0, abs=1e-9)


def test_multiclass_matches_definition():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 10)) * 3
    labels = rng.integers(0, 10, size=50)
    rows = np.arange(50)
    others = logits.copy()
    others[rows, labels] = -np.inf
    expected = logits[rows, labels] - logsumexp(others, axis=1)
    np.testing.assert_allclose(logit_scaled_confidence(logits, labels), expected, atol=1e-9)
    np.testing.assert_allclose(
        logit_scaled_confidence(logits, labels, exact=True), expected, atol=1e-12
    )


def test_exact_has_no_cap():
    phi = logit_scaled_confidence(np.array([[1000.0, 0.0]], np.float32), np.array([0]), exact=True)
    assert phi[0] == pytest.approx(1000.0, abs=1e-9)


def test_bad_shapes_and_labels_raise():
    with pytest.raises(DataError):
        logit_scaled_confidence(np.zeros(3), np.array([0]))
    with pytest.raises(DataError):
        logit_scaled_confidence(np.zeros((2, 3)), np.array([0]))
    with pytest.raises(DataError):
        logit_scaled_confidence(np.zeros((1, 3)), np.array([3]))
