"""Known-answer tests of the population MIAs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.svm import SVC

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.functional.mia import (
    fit_svc_attack,
    indiscernibility,
    m_entropy_legacy,
    mia_lr_entropy,
    mia_lr_loss_cv,
    mia_svc,
    shadow_indices,
)
from unlearnkit.metrics.signals import SplitSignals

# ---------------------------------------------------------------------------------------------
# builders of hand-made signals
# ---------------------------------------------------------------------------------------------


def sig_from_probs(probs: np.ndarray, labels: np.ndarray) -> SplitSignals:
    with np.errstate(divide="ignore"):
        return SplitSignals(np.log(np.asarray(probs, dtype=np.float64)), labels)


def sig_from_conf(conf: np.ndarray) -> SplitSignals:
    """Two-class signals with ``p_y = conf`` (label 0)."""
    conf = np.asarray(conf, dtype=np.float64)
    return sig_from_probs(np.stack([conf, 1.0 - conf], axis=1), np.zeros(conf.size, np.int64))


def sig_from_loss(loss: np.ndarray) -> SplitSignals:
    return sig_from_conf(np.exp(-np.asarray(loss, dtype=np.float64)))


def sig_with_entropy(target: np.ndarray, labels: np.ndarray, k: int = 10) -> SplitSignals:
    """Signals with logits (s, 0, ..., 0) whose entropy equals ``target`` (found by bisection)."""
    target = np.asarray(target, dtype=np.float64)
    lo, hi = np.zeros_like(target), np.full_like(target, 60.0)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        z = np.zeros((target.size, k))
        z[:, 0] = mid
        ent = SplitSignals(z, labels).entropy
        # entropy decreases with s: too high -> increase s
        lo = np.where(ent > target, mid, lo)
        hi = np.where(ent > target, hi, mid)
    z = np.zeros((target.size, k))
    z[:, 0] = 0.5 * (lo + hi)
    return SplitSignals(z, labels)


def _svc(x_in: np.ndarray, x_out: np.ndarray) -> SVC:
    """An independent SVC fit, exactly as the spec describes it."""
    x = np.concatenate([x_in, x_out]).reshape(len(x_in) + len(x_out), -1)
    y = np.r_[np.ones(len(x_in)), np.zeros(len(x_out))]
    return SVC(C=3, kernel="rbf", gamma="auto").fit(x, y)


@pytest.fixture
def overlapping():
    rng = np.random.default_rng(0)
    retain = sig_from_conf(rng.beta(6, 1, 300))
    test = sig_from_conf(rng.beta(2, 1, 300))
    forget = sig_from_conf(rng.beta(4, 1, 120))
    return retain, test, forget


# ---------------------------------------------------------------------------------------------
# 4.2 SVC MIA-Efficacy
# ---------------------------------------------------------------------------------------------


def test_4_2a_forget_equal_test_gives_true_negative_rate(overlapping):
    retain, test, _ = overlapping
    out = mia_svc(retain, test, test)
    clf = _svc(retain.conf, test.conf)
    tnr = 1.0 - np.mean(clf.predict(test.conf[:, None]))
    assert 0.0 < tnr < 1.0  # a non-trivial case
    assert out["mia_svc_conf_nonmember_rate"] == tnr
    assert out["mia_efficacy"] == tnr


def test_4_2b_separable():
    rng = np.random.default_rng(1)
    retain = sig_from_conf(1.0 - rng.uniform(0, 1e-3, 200))
    test = sig_from_conf(0.2 + rng.uniform(-1e-3, 1e-3, 200))
    low = mia_svc(retain, test, sig_from_conf(np.full(50, 0.2)))
    high = mia_svc(retain, test, sig_from_conf(np.full(50, 1.0)))
    assert low["mia_svc_conf_nonmember_rate"] == 1.0
    assert high["mia_svc_conf_nonmember_rate"] == 0.0


def test_4_2c_direction(overlapping):
    retain, test, forget = overlapping
    idx_in, idx_out = shadow_indices(len(retain), len(test), seed=0)
    clf = fit_svc_attack(retain.subset(idx_in).conf[:, None], test.subset(idx_out).conf[:, None])
    member_rate = float(np.mean(clf.predict(forget.conf[:, None])))
    nonmember_rate = mia_svc(retain, test, forget)["mia_svc_conf_nonmember_rate"]
    assert 0.0 < member_rate < 1.0
    assert nonmember_rate + member_rate == pytest.approx(1.0, abs=1e-12)


def test_4_2d_first_n_sampling():
    idx_in, idx_out = shadow_indices(500, 120, sampling="first_n")
    np.testing.assert_array_equal(idx_in, np.arange(120))
    np.testing.assert_array_equal(idx_out, np.arange(120))
    with pytest.raises(ValueError, match="first_n"):
        shadow_indices(100, 120, sampling="first_n")
    with pytest.raises(DataError):
        shadow_indices(100, 120, sampling="first_n")


def test_4_2d_first_n_matches_reference_procedure():
    rng = np.random.default_rng(2)
    retain = sig_from_conf(np.r_[rng.beta(8, 1, 150), rng.beta(1, 1, 150)])  # sorted "classes"
    test = sig_from_conf(rng.beta(2, 1, 100))
    forget = sig_from_conf(rng.beta(4, 1, 60))
    out = mia_svc(retain, test, forget, sampling="first_n")
    clf = _svc(retain.conf[:100], test.conf)
    assert out["mia_svc_conf_nonmember_rate"] == 1.0 - np.mean(clf.predict(forget.conf[:, None]))
    with pytest.raises(DataError):
        mia_svc(test, retain, forget, sampling="first_n")


def test_4_2d_random_sampling_is_seeded():
    a = shadow_indices(1000, 300, seed=7)
    b = shadow_indices(1000, 300, seed=7)
    c = shadow_indices(1000, 300, seed=8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert len(a[0]) == len(a[1]) == 300  # n = min(|D_r|, |D_te^rem|, cap)
    assert len(np.unique(a[0])) == 300 and a[0].max() < 1000
    np.testing.assert_array_equal(a[1], np.arange(300))  # the whole smaller side
    i, o = shadow_indices(50_000, 20_000)
    assert len(i) == len(o) == 10_000  # default cap
    i, o = shadow_indices(1000, 300, n_shadow=40)
    assert len(i) == len(o) == 40
    with pytest.raises(DataError):
        shadow_indices(1000, 300, n_shadow=301)
    with pytest.raises(ConfigError):
        shadow_indices(1000, 300, sampling="first")
    with pytest.raises(ConfigError):
        shadow_indices(1000, 300, seed=None)  # type: ignore[arg-type]


def test_random_sampling_changes_with_seed():
    rng = np.random.default_rng(5)
    retain = sig_from_conf(rng.beta(3, 1, 2000))
    test = sig_from_conf(rng.beta(2, 1, 200))
    forget = sig_from_conf(rng.beta(2.5, 1, 300))
    r0 = mia_svc(retain, test, forget, seed=0)
    assert r0 == mia_svc(retain, test, forget, seed=0)
    values = {mia_svc(retain, test, forget, seed=s)["mia_efficacy"] for s in range(5)}
    assert len(values) > 1


def test_4_2e_m_entropy_values():
    onehot_true = sig_from_probs(np.array([[1.0, 0.0, 0.0]]), np.array([0]))
    onehot_wrong = sig_from_probs(np.array([[0.0, 1.0, 0.0]]), np.array([0]))
    assert onehot_true.m_entropy[0] == pytest.approx(0.0, abs=1e-12)
    assert onehot_wrong.m_entropy[0] == pytest.approx(2 * math.log(1e30), abs=1e-6)
    assert onehot_wrong.m_entropy[0] == pytest.approx(138.155106, abs=1e-6)
    uni2 = sig_from_probs(np.full((1, 2), 0.5), np.array([1]))
    assert uni2.m_entropy[0] == pytest.approx(math.log(2), abs=1e-12)
    uni10 = sig_from_probs(np.full((1, 10), 0.1), np.array([3]))
    assert uni10.m_entropy[0] == pytest.approx(2.167151, abs=1e-6)


def test_4_2e_legacy_m_entropy():
    rng = np.random.default_rng(4)
    k = 5
    probs = rng.dirichlet(np.ones(k), 40)
    probs[0] = [0.0, 0.2, 0.3, 0.5, 0.0]  # zeros are replaced by 1e-30 inside the log
    labels = np.r_[np.arange(k), rng.integers(0, k, 35)]  # every label occurs
    sig = sig_from_probs(probs, labels)
    p_tilde = np.where(sig.prob > 0, sig.prob, 1e-30)
    expected = -np.sum((1.0 - sig.prob) * np.log(p_tilde), axis=1)
    np.testing.assert_allclose(m_entropy_legacy(sig), expected, rtol=1e-12, atol=1e-12)
    # Label-independent on such a set ...
    shuffled = sig_from_probs(probs, rng.permutation(labels))
    np.testing.assert_allclose(m_entropy_legacy(shuffled), expected, rtol=1e-12)
    # ... but on a one-label set (class forgetting) only the label column is flipped.
    single = sig_from_probs(probs[5:], np.full(35, 2))
    p = single.prob
    exp_single = -(1 - p[:, 2]) * np.log(p[:, 2]) - np.sum(
        np.delete(p * np.log(np.where(p > 0, p, 1e-30)), 2, axis=1), axis=1
    )
    np.testing.assert_allclose(m_entropy_legacy(single), exp_single, rtol=1e-12)
    # The legacy feature is not the library's m_entropy.
    assert not np.allclose(m_entropy_legacy(sig), sig.m_entropy)


def _multiclass(rng, n, sharp, k=4):
    labels = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), labels] += sharp
    return SplitSignals(z, labels)


def test_every_feature_matches_an_independent_svc():
    rng = np.random.default_rng(6)
    retain, test, forget = (
        _multiclass(rng, 150, 4.0),
        _multiclass(rng, 150, 1.0),
        _multiclass(rng, 80, 2.5),
    )
    feats = ("corr", "conf", "entropy", "m_entropy", "prob")
    out = mia_svc(retain, test, forget, features=feats)
    assert set(out) == {f"mia_svc_{f}_nonmember_rate" for f in feats} | {"mia_efficacy"}
    for f in feats:
        clf = _svc(retain.feature(f), test.feature(f))
        expected = 1.0 - np.mean(clf.predict(forget.feature(f)))
        assert out[f"mia_svc_{f}_nonmember_rate"] == expected, f
    assert _svc(retain.prob, test.prob)._gamma == pytest.approx(1 / 4)  # gamma="auto" = 1/K


def test_legacy_m_entropy_switch_uses_the_per_set_feature():
    rng = np.random.default_rng(7)
    retain, test = _multiclass(rng, 150, 4.0), _multiclass(rng, 150, 1.0)
    forget = retain.subset(np.flatnonzero(retain.labels == 1))  # one class, like class forgetting
    out = mia_svc(retain, test, forget, features=["m_entropy"], legacy_m_entropy=True)
    clf = _svc(m_entropy_legacy(retain), m_entropy_legacy(test))
    expected = 1.0 - np.mean(clf.predict(m_entropy_legacy(forget)[:, None]))
    assert out["mia_svc_m_entropy_nonmember_rate"] == expected
    assert "mia_efficacy" not in out


def test_balanced_accuracy_with_target_nonmembers(overlapping):
    retain, test, forget = overlapping
    nonmembers = sig_from_conf(np.random.default_rng(8).beta(2, 1, 90))
    out = mia_svc(retain, test, forget, target_nonmembers=nonmembers)
    clf = _svc(retain.conf, test.conf)
    tpr = np.mean(clf.predict(forget.conf[:, None]))
    tnr = 1.0 - np.mean(clf.predict(nonmembers.conf[:, None]))
    assert out["mia_svc_conf_balacc"] == pytest.approx(0.5 * (tpr + tnr), abs=1e-15)
    assert out["mia_svc_conf_nonmember_rate"] == 1.0 - tpr


def test_mia_svc_rejects_bad_input(overlapping):
    retain, test, forget = overlapping
    empty = forget.subset(np.array([], dtype=np.int64))
    with pytest.raises(ConfigError):
        mia_svc(retain, test, forget, features=("confidence",))
    with pytest.raises(ConfigError):
        mia_svc(retain, test, forget, features=())
    with pytest.raises(DataError, match="forget set is empty"):
        mia_svc(retain, test, empty)
    with pytest.raises(DataError, match="shadow"):
        mia_svc(retain, test.subset(np.array([0])), forget)
    with pytest.raises(DataError):
        mia_svc(retain, test, forget, target_nonmembers=empty)


# ---------------------------------------------------------------------------------------------
# 4.3 entropy-LR member rate
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def entropy_sets():
    rng = np.random.default_rng(10)
    k = 10

    def make(level: float, n: int) -> SplitSignals:
        ent = np.clip(level + rng.normal(0, level * 0.02, n), 1e-4, math.log(k) - 1e-3)
        return sig_with_entropy(ent, rng.integers(0, k, n), k)

    return make(0.01, 400), make(2.0, 200), make(0.01, 60), make(2.0, 60)


def test_4_3a_entropy_lr_separable(entropy_sets):
    retain, test, forget_low, forget_high = entropy_sets
    assert retain.entropy.mean() == pytest.approx(0.01, rel=0.05)
    assert test.entropy.mean() == pytest.approx(2.0, rel=0.05)
    assert mia_lr_entropy(retain, test, forget_low) == {"mia_lr_entropy_member_rate": 1.0}
    assert mia_lr_entropy(retain, test, forget_high) == {"mia_lr_entropy_member_rate": 0.0}
    svc = mia_lr_entropy(retain, test, forget_low, classifier="svc")
    assert svc["mia_lr_entropy_member_rate"] == 1.0


def test_4_3b_label_independence(entropy_sets):
    retain, test, forget, _ = entropy_sets
    rng = np.random.default_rng(11)

    def relabel(s: SplitSignals) -> SplitSignals:
        return SplitSignals(s.logits, rng.permutation(s.labels))

    rng2 = np.random.default_rng(12)
    r2 = sig_from_conf(rng2.beta(5, 1, 300))
    t2 = sig_from_conf(rng2.beta(2, 1, 300))
    f2 = sig_from_conf(rng2.beta(3, 1, 100))
    base = mia_lr_entropy(r2, t2, f2)
    assert 0.0 < base["mia_lr_entropy_member_rate"] < 1.0
    flipped = [SplitSignals(s.logits, 1 - s.labels) for s in (r2, t2, f2)]
    assert mia_lr_entropy(*flipped) == base
    assert mia_lr_entropy(*(relabel(s) for s in (retain, test, forget))) == mia_lr_entropy(
        retain, test, forget
    )


def test_4_3c_determinism_and_sklearn_equivalence():
    rng = np.random.default_rng(13)
    retain = sig_from_conf(rng.beta(5, 1, 700))
    test = sig_from_conf(rng.beta(2, 1, 300))
    forget = sig_from_conf(rng.beta(3, 1, 150))
    a = mia_lr_entropy(retain, test, forget)
    assert a == mia_lr_entropy(retain, test, forget)
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs", max_iter=1000)
    clf.fit(np.r_[retain.entropy, test.entropy][:, None], np.r_[np.ones(700), np.zeros(300)])
    assert a["mia_lr_entropy_member_rate"] == np.mean(clf.predict(forget.entropy[:, None]))
    capped = mia_lr_entropy(retain, test, forget, cap=200, seed=3)
    assert capped == mia_lr_entropy(retain, test, forget, cap=200, seed=3)


def test_entropy_lr_rejects_bad_input():
    rng = np.random.default_rng(14)
    s = sig_from_conf(rng.beta(2, 1, 20))
    with pytest.raises(ConfigError):
        mia_lr_entropy(s, s, s, classifier="rf")
    with pytest.raises(DataError):
        mia_lr_entropy(s, s.subset(np.array([0])), s)
    with pytest.raises(DataError):
        mia_lr_entropy(s, s, s.subset(np.array([], dtype=np.int64)))


# ---------------------------------------------------------------------------------------------
# 4.4 loss-LR cross-validated attack
# ---------------------------------------------------------------------------------------------


def test_4_4a_separable_losses():
    out = mia_lr_loss_cv(np.full(500, 0.01), np.full(500, 5.0))
    assert out["mia_lr_loss_cv_acc"] == 1.0
    assert out["mia_lr_loss_cv_acc_std"] == 0.0
    assert out["indiscernibility"] == 0.0
    # the same through signals
    sig_out = mia_lr_loss_cv(sig_from_loss(np.full(500, 0.01)), sig_from_loss(np.full(500, 5.0)))
    assert sig_out["mia_lr_loss_cv_acc"] == 1.0


def test_4_4b_identical_multisets():
    rng = np.random.default_rng(20)
    unseen = rng.exponential(1.0, 1000)
    forget = rng.permutation(unseen)
    acc = mia_lr_loss_cv(forget, unseen)["mia_lr_loss_cv_acc"]
    assert 0.4 <= acc <= 0.6


def test_4_4c_balancing_and_sklearn_equivalence():
    rng = np.random.default_rng(21)
    forget = rng.exponential(0.5, 100)
    unseen = rng.exponential(1.0, 1000)
    out = mia_lr_loss_cv(forget, unseen, seed=4)
    assert out == mia_lr_loss_cv(forget, unseen, seed=4)
    # Reproduce the procedure by hand: shuffle each side with the seed, keep 100 + 100 = 200.
    g = np.random.default_rng(4)
    f = forget[g.permutation(100)]
    u = unseen[g.permutation(1000)][:100]
    x = np.r_[u, f][:, None]
    y = np.r_[np.zeros(100), np.ones(100)]
    cv = StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=0)
    scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    assert len(x) == 200
    assert out["mia_lr_loss_cv_acc"] == pytest.approx(scores.mean(), abs=1e-15)
    assert out["mia_lr_loss_cv_acc_std"] == pytest.approx(scores.std(ddof=1), abs=1e-15)
    assert out["indiscernibility"] == pytest.approx(1 - abs(scores.mean() - 0.5) / 0.5)
    other = mia_lr_loss_cv(forget, unseen, seed=4, n_splits=5, cv_seed=123)
    scores5 = cross_val_score(
        LogisticRegression(),
        x,
        y,
        cv=StratifiedShuffleSplit(n_splits=5, test_size=0.1, random_state=123),
    )
    assert other["mia_lr_loss_cv_acc"] == pytest.approx(scores5.mean(), abs=1e-15)


def test_4_4c_indiscernibility():
    assert indiscernibility(0.5) == 1.0
    assert indiscernibility(1.0) == 0.0
    assert indiscernibility(0.0) == 0.0
    assert indiscernibility(0.75) == 0.5
    assert math.isnan(indiscernibility(float("nan")))


def test_loss_cv_degenerate_inputs():
    with pytest.raises(DataError, match="only one class"):
        mia_lr_loss_cv(np.array([]), np.ones(10))
    with pytest.raises(DataError, match="too few samples"):
        mia_lr_loss_cv(np.ones(2), np.zeros(10))
    with pytest.raises(DataError, match="non-finite"):
        mia_lr_loss_cv(np.array([np.inf] + [1.0] * 50), np.ones(50))
    with pytest.raises(ConfigError):
        mia_lr_loss_cv(np.ones(50), np.zeros(50), n_splits=0)
