"""The attacks' cost stays bounded as the data grow, and evaluate() computes a Retrain's
attacks once however many models are evaluated against it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unlearnkit as uk
import unlearnkit.metrics.functional.mia as mia
import unlearnkit.metrics.suite as suite
from unlearnkit.metrics.functional.mia import SVC_CAP, mia_svc
from unlearnkit.metrics.signals import SplitSignals
from unlearnkit.testing import tiny_bundle, tiny_task, trained_tiny_model


def _signals(n: int, seed: int, shift: float = 0.0) -> SplitSignals:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 4))
    logits[:, 0] += shift
    return SplitSignals(logits, rng.integers(0, 4, n))


@pytest.fixture
def fit_rows(monkeypatch):
    """Record the rows each SVC attack is fit on (the fit itself is replaced by a threshold
    classifier: the shapes are what is tested, not libsvm)."""
    rows: list[tuple[int, int]] = []

    class Threshold:
        def __init__(self, t: float) -> None:
            self.t = t

        def predict(self, x):
            return (np.asarray(x)[:, 0] > self.t).astype(float)

    def fake_fit(x_in, x_out):
        rows.append((len(x_in), len(x_out)))
        return Threshold(float(np.median(np.concatenate([x_in, x_out]))))

    monkeypatch.setattr(mia, "fit_svc_attack", fake_fit)
    return rows


def test_the_svc_fit_is_bounded_whatever_the_data_size(fit_rows) -> None:
    for n in (2 * SVC_CAP, 4 * SVC_CAP):
        mia_svc(_signals(6 * n, 0, 1.0), _signals(n, 1), _signals(n // 10, 2))
    assert fit_rows == [(SVC_CAP, SVC_CAP)] * 2


def test_the_full_data_path_stays_available(fit_rows) -> None:
    n_test = SVC_CAP + 500
    mia_svc(_signals(3 * n_test, 0), _signals(n_test, 1), _signals(50, 2), cap=None)
    mia_svc(_signals(3 * n_test, 0), _signals(n_test, 1), _signals(50, 2), sampling="first_n")
    assert fit_rows == [(n_test, n_test)] * 2


def test_below_the_cap_the_estimate_is_unchanged() -> None:
    """The default draw is the same seeded draw as before the cap was lowered: sets smaller
    than the cap give exactly the numbers of the former default (10,000 per side)."""
    retain, test, forget = _signals(900, 0, 0.8), _signals(300, 1), _signals(120, 2, 0.4)
    for seed in (0, 3):
        assert mia_svc(retain, test, forget, seed=seed) == mia_svc(
            retain, test, forget, seed=seed, cap=10_000
        )


# -- evaluate(): the reference's attacks are computed once -----------------------------------


@pytest.fixture(scope="module")
def models():
    b = tiny_bundle(image=False)
    return tiny_task(b), trained_tiny_model(b), trained_tiny_model(b, seed=1)


@pytest.fixture
def attack_calls(monkeypatch):
    suite.clear_reference_cache()
    calls = []
    real = suite.mia_svc

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(suite, "mia_svc", counted)
    yield calls
    suite.clear_reference_cache()


def test_a_reference_is_attacked_once(models, attack_calls) -> None:
    task, model, reference = models
    first = uk.evaluate(model, task, reference=reference)
    assert len(attack_calls) == 2  # the model and the reference
    again = uk.evaluate(model, task, reference=reference)
    other = uk.evaluate(reference, task, reference=reference)
    assert len(attack_calls) == 4  # one per evaluated model: the reference's is remembered
    assert again == first
    assert other["gap_acc_forget"] == 0.0 and other["ref_acc_forget"] == first["ref_acc_forget"]


def test_cached_and_fresh_reference_metrics_agree(models, attack_calls, monkeypatch) -> None:
    task, model, reference = models
    uk.evaluate(reference, task, reference=reference)  # fills the cache
    cached = uk.evaluate(model, task, reference=reference, reference_prime=reference)
    monkeypatch.setattr(suite, "REFERENCE_CACHE_SIZE", 0)
    fresh = uk.evaluate(model, task, reference=reference, reference_prime=reference)
    assert cached == fresh


def test_the_cache_key_is_the_reference_content_and_the_settings(models, attack_calls) -> None:
    task, model, reference = models
    uk.evaluate(model, task, reference=reference)
    uk.evaluate(model, task, reference=reference, seed_attack=1)  # another attack seed
    assert len(attack_calls) == 4
    changed = trained_tiny_model(task.bundle, seed=1)  # same weights, another object: a hit
    uk.evaluate(model, task, reference=changed)
    assert len(attack_calls) == 5
    with torch.no_grad():
        next(changed.parameters())[0, 0] += 1.0  # changed in place: a miss
    out = uk.evaluate(model, task, reference=changed)
    assert len(attack_calls) == 7
    assert out["ref_acc_forget"] == uk.evaluate(changed, task)["acc_forget"]


def test_the_cache_is_bounded(models, attack_calls, monkeypatch) -> None:
    task, model, _ = models
    monkeypatch.setattr(suite, "REFERENCE_CACHE_SIZE", 2)
    refs = [trained_tiny_model(task.bundle, seed=s) for s in range(3)]
    for ref in refs:
        uk.evaluate(model, task, reference=ref)
    assert len(suite._REFERENCE_CACHE) == 2
    n = len(attack_calls)
    uk.evaluate(model, task, reference=refs[0])  # the oldest was dropped: computed again
    assert len(attack_calls) == n + 2


def test_a_reference_larger_than_the_byte_budget_is_not_kept(
    models, attack_calls, monkeypatch
) -> None:
    task, model, reference = models
    monkeypatch.setattr(suite, "REFERENCE_CACHE_BYTES", 1000)  # far below the tiny signals
    uk.evaluate(model, task, reference=reference)
    assert not suite._REFERENCE_CACHE
    uk.evaluate(model, task, reference=reference)
    assert len(attack_calls) == 4  # computed again: nothing was kept
