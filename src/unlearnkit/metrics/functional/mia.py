"""Population membership-inference attacks of Tier A.

Three attack families are published under the name "MIA" and they count opposite things, so every
key says its direction:

* :func:`mia_svc` — SalUn / l1-sparse "MIA-Efficacy": an RBF SVC trained on retain (member) vs
  test (non-member) features; ``mia_svc_<feature>_nonmember_rate`` is the fraction of ``D_f``
  predicted *non-member* (alias ``mia_efficacy`` for the ``conf`` feature).
* :func:`mia_lr_entropy` — Bad Teacher / SSD / JiT / NatMU: a balanced logistic regression on
  prediction entropy; ``mia_lr_entropy_member_rate`` is the fraction of ``D_f`` predicted *member*.
* :func:`mia_lr_loss_cv` — NeurIPS-2023 kit / SCRUB / Deep Unlearn: cross-validated accuracy of a
  logistic regression separating ``D_f`` losses from unseen losses (``mia_lr_loss_cv_acc``).

Every function is a pure function of :class:`~unlearnkit.metrics.signals.SplitSignals`.
Degenerate inputs raise :class:`~unlearnkit.errors.DataError`: an empty target (forget) set, an
attack training side with fewer than two samples, or non-finite attack features. Bad options
(unknown feature, sampling or classifier names) raise :class:`~unlearnkit.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.svm import SVC

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.metrics.signals import SplitSignals

__all__ = [
    "SVC_CAP",
    "SVC_FEATURES",
    "fit_svc_attack",
    "indiscernibility",
    "m_entropy_legacy",
    "mia_lr_entropy",
    "mia_lr_loss_cv",
    "mia_svc",
    "shadow_indices",
]

#: Feature names accepted by :func:`mia_svc`, in the reference's order.
SVC_FEATURES: tuple[str, ...] = ("corr", "conf", "entropy", "m_entropy", "prob")

#: Default per-side cap of :func:`mia_svc`'s shadow sets, which bounds the kernel SVC's fit
#: (see :func:`mia_svc` for the measured effect on the estimate).
SVC_CAP = 2_000

_MIN_SIDE = 2
_TINY = 1e-30


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _check_seed(seed: int, name: str = "seed") -> int:
    # ``if seed:`` treating 0 as "no seed" is a known trap; only explicit integers are accepted.
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"{name} must be an integer; got {seed!r}")
    return int(seed)


def _check_positive_int(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be a positive integer or None; got {value!r}")
    return int(value)


def _check_finite(x: np.ndarray, what: str) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise DataError(
            f"{what} contains non-finite values (inf/NaN); check the logits (a probability of "
            "exactly 0 for the true label gives an infinite loss)"
        )
    return x


def _subsample(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of ``k`` of ``n`` items drawn without replacement (all when ``k >= n``)."""
    if k is None or k >= n:
        return np.arange(n)
    # Sorting keeps the original order inside the subsample, so SVC/LR see the same row order
    # as a caller who subsamples by hand; the fitted attack does not depend on the draw order.
    return np.sort(rng.choice(n, size=k, replace=False))


def m_entropy_legacy(sig: SplitSignals) -> np.ndarray:
    """Return the reference's (defective) ``m_entropy`` feature of every sample of a set.

    Reproduces OPTML-Group/Unlearn-Saliency ``Classification/evaluation/SVC_MIA.py``, which
    indexes columns with the whole label vector and takes ``ln p`` where ``ln(1 - p)`` is meant
    (the legacy ``m_entropy``). For a sample of the evaluated set ``S`` with
    ``L_S`` the labels occurring anywhere in ``S``::

        -sum_{c in L_S} (1 - p_c) ln p~_c  -  sum_{c not in L_S} p_c ln p~_c

    where ``p~`` is ``p`` with zeros replaced by 1e-30. The value therefore depends on the *set*
    a sample is evaluated with, not only on the sample. Use the library's correct form
    (:attr:`SplitSignals.m_entropy`) except to reproduce published numbers.

    Args:
        sig: signals of the whole evaluated set ``S``.

    Returns:
        Array (n,) of legacy feature values.
    """
    if len(sig) == 0:
        return np.zeros(0, dtype=np.float64)
    p = sig.prob
    in_labels = np.zeros(sig.num_classes, dtype=bool)
    in_labels[np.unique(sig.labels)] = True
    log_p = np.log(np.where(p > 0, p, _TINY))
    weight = np.where(in_labels[None, :], 1.0 - p, p)
    return -np.sum(weight * log_p, axis=1)


def _features(sig: SplitSignals, name: str, legacy: bool) -> np.ndarray:
    if name == "m_entropy" and legacy:
        x = m_entropy_legacy(sig)[:, None]
    else:
        x = sig.feature(name)
    return _check_finite(np.asarray(x, dtype=np.float64), f"the {name!r} attack feature")


def _check_features(features: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(features, str):
        features = (features,)
    feats = tuple(features)
    if not feats:
        raise ConfigError(f"features must name at least one of {SVC_FEATURES}")
    unknown = [f for f in feats if f not in SVC_FEATURES]
    if unknown:
        raise ConfigError(f"unknown MIA feature(s) {unknown}; choose from {SVC_FEATURES}")
    if len(set(feats)) != len(feats):
        raise ConfigError(f"features contains duplicates: {feats}")
    return feats


def shadow_indices(
    n_retain: int,
    n_test: int,
    *,
    n_shadow: int | None = None,
    sampling: str = "random",
    seed: int = 0,
    cap: int | None = 10_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Choose the shadow members (from ``D_r``) and non-members (from ``D_te^rem``) of the SVC.

    ``sampling="random"`` [lib]: ``n = min(|D_r|, |D_te^rem|, cap)`` per side (or ``n_shadow``),
    drawn uniformly without replacement with ``seed``, retain side first; positions are returned
    sorted. ``sampling="first_n"`` [ref]: members are retain positions ``0 .. |D_te^rem| - 1``
    and non-members all of ``D_te^rem``, with no cap, exactly as OPTML's ``main_forget.py``.

    Args:
        n_retain: ``|D_r|``.
        n_test: ``|D_te^rem|``.
        n_shadow: per-side size overriding the default ``n`` (``random`` sampling only).
        sampling: ``"random"`` or ``"first_n"``.
        seed: ``seed_attack``.
        cap: upper bound of the default per-side size; None for no cap. (:func:`mia_svc`
            passes its own default, :data:`SVC_CAP`.)

    Returns:
        ``(idx_in, idx_out)``: positions into the retain and test sets.

    Raises:
        ConfigError: on an unknown ``sampling``, a bad ``cap``/``n_shadow``/``seed``, or
            ``n_shadow`` combined with ``first_n``.
        DataError: if a side would hold fewer than two samples, ``n_shadow`` exceeds a side, or
            ``|D_r| < |D_te^rem|`` under ``first_n`` (where the reference fails).
    """
    seed = _check_seed(seed)
    cap = _check_positive_int(cap, "cap")
    n_shadow = _check_positive_int(n_shadow, "n_shadow")
    if sampling == "first_n":
        if n_shadow is not None:
            raise ConfigError("n_shadow is not used by sampling='first_n'; pass one or the other")
        if n_retain < n_test:
            raise DataError(
                f"sampling='first_n' needs |D_r| >= |D_te^rem| (got {n_retain} < {n_test}); "
                "use sampling='random'"
            )
        if n_test < _MIN_SIDE:
            raise DataError(f"the SVC attack needs >= {_MIN_SIDE} test samples; got {n_test}")
        return np.arange(n_test), np.arange(n_test)
    if sampling != "random":
        raise ConfigError(f"unknown sampling {sampling!r}; use 'random' or 'first_n'")
    if n_shadow is not None:
        if n_shadow > min(n_retain, n_test):
            raise DataError(
                f"n_shadow={n_shadow} exceeds a shadow side (|D_r|={n_retain}, "
                f"|D_te^rem|={n_test}); lower it or leave it None"
            )
        n = n_shadow
    else:
        n = min(n_retain, n_test) if cap is None else min(n_retain, n_test, cap)
    if n < _MIN_SIDE:
        raise DataError(
            f"the SVC attack needs >= {_MIN_SIDE} shadow samples per side; got {n} "
            f"(|D_r|={n_retain}, |D_te^rem|={n_test})"
        )
    rng = np.random.default_rng(seed)
    idx_in = _subsample(n_retain, n, rng)
    idx_out = _subsample(n_test, n, rng)
    return idx_in, idx_out


def fit_svc_attack(x_in: np.ndarray, x_out: np.ndarray) -> SVC:
    """Fit the SalUn/l1-sparse attack ``SVC(C=3, kernel="rbf", gamma="auto")``: in = 1, out = 0.

    No feature scaling is applied, as in [ref]; ``gamma="auto"`` is ``1 / n_features``.

    Args:
        x_in: member features (n_in, d).
        x_out: non-member features (n_out, d).

    Returns:
        The fitted classifier.
    """
    x_in = np.asarray(x_in, dtype=np.float64).reshape(len(x_in), -1)
    x_out = np.asarray(x_out, dtype=np.float64).reshape(len(x_out), -1)
    x = np.concatenate([x_in, x_out])
    y = np.concatenate([np.ones(len(x_in)), np.zeros(len(x_out))])
    return SVC(C=3, kernel="rbf", gamma="auto").fit(x, y)


# --------------------------------------------------------------------------------------------
# 1.2 SVC MIA-Efficacy
# --------------------------------------------------------------------------------------------


def mia_svc(
    retain: SplitSignals,
    test: SplitSignals,
    forget: SplitSignals,
    *,
    features: Sequence[str] | str = ("conf",),
    n_shadow: int | None = None,
    sampling: str = "random",
    seed: int = 0,
    cap: int | None = SVC_CAP,
    legacy_m_entropy: bool = False,
    target_nonmembers: SplitSignals | None = None,
) -> dict[str, float]:
    """Compute SalUn's MIA-Efficacy: the fraction of ``D_f`` an SVC attack calls non-member.

    Reference: Jia et al. (2023), "Model Sparsity Can Simplify Machine Unlearning", App. C.3;
    Fan et al. (2024), "SalUn". Code: OPTML-Group/Unlearn-Saliency
    ``Classification/evaluation/SVC_MIA.py``.

    For each feature ``f``, ``SVC(C=3, rbf, gamma="auto")`` is fit on shadow members (a sample of
    ``D_r``, label 1) and shadow non-members (a sample of ``D_te^rem``, label 0) and applied to
    every sample of ``D_f``::

        mia_svc_<f>_nonmember_rate = 1 - mean(SVC.predict(f(D_f)))

    Cost: the SVC's fit grows about quadratically with its rows, so by default each shadow set
    holds at most ``cap = SVC_CAP = 2,000`` samples, a seeded uniform draw (the same draw as
    below the cap, where nothing changes): the fit's cost is bounded and the prediction on
    ``D_f`` grows linearly with ``|D_f|``, so :func:`unlearnkit.evaluate` grows about linearly
    with the data. Measured effect (``benchmarks/svc_cap.py``: MNIST-shaped synthetic data,
    54,000 retain, 10,000 test, 6,000 forget samples; an MLP trained 10 epochs and the same
    model fine-tuned; 8 attack seeds): against all 10,000 per side the mean moved by −0.009
    and −0.005 (5,000 per side: −0.003 and −0.002), the std over attack seeds was 0.002–0.003
    (0.001 with all rows), and a call took 0.7–1.0 s of CPU instead of 9–10 s. Unlearned model
    and Retrain are scored with the same cap, so a shift they share cancels in the gap. For the
    reference's full-data computation pass ``cap=None`` (all of the smaller side, at quadratic
    cost) or ``sampling="first_n"`` (OPTML's exact shadow sets).

    In ``random`` forgetting the Retrain value is low (the attack's true-negative rate on unseen
    data), in ``class`` forgetting about 1; compare with Retrain, never maximise it.

    Args:
        retain: signals on ``D_r`` (shadow members are drawn from it).
        test: signals on ``D_te^rem`` (shadow non-members).
        forget: signals on ``D_f`` (the target).
        features: any of ``corr``, ``conf``, ``entropy``, ``m_entropy``, ``prob``.
        n_shadow: per-side shadow size overriding ``min(|D_r|, |D_te^rem|, cap)``.
        sampling: ``"random"`` (default, balanced and seeded) or ``"first_n"`` (legacy [ref]).
        seed: ``seed_attack`` for the shadow subsample.
        cap: per-side cap of the default shadow size (default :data:`SVC_CAP`; None: no cap,
            the full-data computation).
        legacy_m_entropy: use [ref]'s defective ``m_entropy`` (see :func:`m_entropy_legacy`),
            evaluated separately on each set the attack sees.
        target_nonmembers: optional target non-members; with it the balanced accuracy
            ``(TPR on forget + TNR on target_nonmembers) / 2`` is also returned (l1-sparse's
            "MIA-privacy", where ``forget`` holds the target members).

    Returns:
        ``mia_svc_<f>_nonmember_rate`` per feature, ``mia_efficacy`` (alias of the ``conf`` rate)
        when ``conf`` is requested, and ``mia_svc_<f>_balacc`` when ``target_nonmembers`` is
        given.

    Raises:
        ConfigError: on an unknown feature or sampling mode, or bad ``cap``/``n_shadow``/``seed``.
        DataError: on an empty forget set or target non-member set, fewer than two shadow samples
            per side, ``|D_r| < |D_te^rem|`` under ``first_n``, or non-finite features.

    Example:
        >>> mia_svc(sig_r, sig_te, sig_f)["mia_efficacy"]  # doctest: +SKIP
        0.12
    """
    feats = _check_features(features)
    if len(forget) == 0:
        raise DataError("the forget set is empty; the MIA non-member rate is undefined")
    if target_nonmembers is not None and len(target_nonmembers) == 0:
        raise DataError("target_nonmembers is empty; pass None or a non-empty set")
    idx_in, idx_out = shadow_indices(
        len(retain), len(test), n_shadow=n_shadow, sampling=sampling, seed=seed, cap=cap
    )
    # Subset first: the legacy m_entropy depends on the labels of the set actually evaluated.
    shadow_in = retain if len(idx_in) == len(retain) else retain.subset(idx_in)
    shadow_out = test if len(idx_out) == len(test) else test.subset(idx_out)

    out: dict[str, float] = {}
    for name in feats:
        clf = fit_svc_attack(
            _features(shadow_in, name, legacy_m_entropy),
            _features(shadow_out, name, legacy_m_entropy),
        )
        member_rate = float(np.mean(clf.predict(_features(forget, name, legacy_m_entropy))))
        out[f"mia_svc_{name}_nonmember_rate"] = 1.0 - member_rate
        if name == "conf":
            out["mia_efficacy"] = out["mia_svc_conf_nonmember_rate"]
        if target_nonmembers is not None:
            x_non = _features(target_nonmembers, name, legacy_m_entropy)
            tnr = 1.0 - float(np.mean(clf.predict(x_non)))
            out[f"mia_svc_{name}_balacc"] = 0.5 * (member_rate + tnr)
    return out


# --------------------------------------------------------------------------------------------
# 1.3 Entropy-LR member rate
# --------------------------------------------------------------------------------------------


def mia_lr_entropy(
    retain: SplitSignals,
    test: SplitSignals,
    forget: SplitSignals,
    *,
    cap: int | None = None,
    seed: int = 0,
    classifier: str = "lr",
) -> dict[str, float]:
    """Compute the Bad-Teacher/SSD/JiT/NatMU MIA: the fraction of ``D_f`` predicted *member*.

    Reference: Chundawat et al. (2023), "Can Bad Teaching Induce Forgetting?". Code:
    if-loops/selective-synaptic-dampening ``src/metrics.py`` (``get_membership_attack_prob``);
    ZhengbaoHe/NatMU ``sample-wise/utils/mia.py``.

    Members are all of ``D_r`` (label 1) and non-members all of ``D_te`` (label 0, including
    forgotten-class test images in ``class`` forgetting, as in [ref]); the single, label-free
    feature is the prediction entropy. The classifier is
    ``LogisticRegression(class_weight="balanced", solver="lbfgs", max_iter=1000)``; the
    reference's ``multi_class="multinomial"`` is irrelevant for two classes and not passed.

    Args:
        retain: signals on ``D_r``.
        test: signals on the whole ``D_te``.
        forget: signals on ``D_f``.
        cap: optional per-side cap; larger sides are subsampled with ``seed`` (retain first).
        seed: ``seed_attack`` for the cap subsample.
        classifier: ``"lr"`` (default) or ``"svc"``, ``SVC(C=3, gamma="auto", kernel="rbf")``,
            the original Bad-Teacher/Golatkar choice (slow on large sets; use ``cap``). The
            output key is the same; the option is part of the recorded metric options.

    Returns:
        ``{"mia_lr_entropy_member_rate": rate}``.

    Raises:
        ConfigError: on an unknown classifier or a bad ``cap``/``seed``.
        DataError: on an empty forget set, fewer than two samples on an attack side, or
            non-finite entropies.
    """
    seed = _check_seed(seed)
    cap = _check_positive_int(cap, "cap")
    if classifier not in ("lr", "svc"):
        raise ConfigError(f"unknown classifier {classifier!r}; use 'lr' or 'svc'")
    if len(forget) == 0:
        raise DataError("the forget set is empty; the MIA member rate is undefined")
    for name, s in (("retain", retain), ("test", test)):
        if len(s) < _MIN_SIDE:
            raise DataError(
                f"the entropy-LR attack needs >= {_MIN_SIDE} {name} samples; got {len(s)}"
            )
    rng = np.random.default_rng(seed)
    e_in = retain.entropy[_subsample(len(retain), cap, rng)]
    e_out = test.entropy[_subsample(len(test), cap, rng)]
    x = _check_finite(np.concatenate([e_in, e_out])[:, None], "the entropy feature")
    y = np.concatenate([np.ones(len(e_in)), np.zeros(len(e_out))])
    if classifier == "lr":
        clf = LogisticRegression(class_weight="balanced", solver="lbfgs", max_iter=1000)
    else:
        clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    x_f = _check_finite(forget.entropy[:, None], "the entropy feature")
    return {"mia_lr_entropy_member_rate": float(np.mean(clf.predict(x_f)))}


# --------------------------------------------------------------------------------------------
# 1.4 Loss-LR cross-validated attack accuracy
# --------------------------------------------------------------------------------------------


def indiscernibility(acc: float) -> float:
    """Return Deep Unlearn's indiscernibility ``1 - |acc - 0.5| / 0.5`` of an attack accuracy.

    Reference: xcadet/deepunlearn ``munl/evaluation/indiscernibility.py``. 1 means the attack is
    at chance, 0 that it is perfect (or perfectly wrong). NaN propagates.
    """
    return float(1.0 - abs(float(acc) - 0.5) / 0.5)


def _losses(x: SplitSignals | np.ndarray, what: str) -> np.ndarray:
    loss = x.loss if isinstance(x, SplitSignals) else np.asarray(x, dtype=np.float64)
    if loss.ndim != 1:
        raise DataError(f"{what} losses must be 1-D; got shape {loss.shape}")
    return _check_finite(loss, f"the {what} losses")


def mia_lr_loss_cv(
    forget: SplitSignals | np.ndarray,
    unseen: SplitSignals | np.ndarray,
    *,
    n_splits: int = 10,
    test_size: float = 0.1,
    cv_seed: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """Compute the cross-validated accuracy of a loss-threshold attack, ``D_f`` vs unseen data.

    Reference: NeurIPS-2023 unlearning challenge starting kit (``simple_mia``); meghdadk/SCRUB;
    xcadet/deepunlearn ``munl/evaluation/membership_inference_attack.py``.

    Both sides are shuffled with ``seed`` (forget first) and truncated to the smaller size; then
    ``LogisticRegression()`` on the 1-column loss is scored by accuracy over
    ``StratifiedShuffleSplit(n_splits, test_size=test_size, random_state=cv_seed)``. The loop is
    the same computation as ``cross_val_score(..., scoring="accuracy")`` without its overhead.

    Args:
        forget: signals on ``D_f`` (label 1), or its per-sample losses.
        unseen: signals on the unseen set (label 0): ``D_te`` in ``random`` forgetting,
            ``D_te^fgt`` in ``class``/``subclass``; or its per-sample losses.
        n_splits: number of CV splits (10 in the kit, 5 in SCRUB).
        test_size: test fraction (or count) of each split.
        cv_seed: ``random_state`` of the splitter (0 in the kit, 123 in Deep Unlearn).
        seed: ``seed_attack`` for the balancing shuffle.

    Returns:
        ``mia_lr_loss_cv_acc`` (mean split accuracy), ``mia_lr_loss_cv_acc_std`` (std over the
        splits, ddof=1 as every std of the library) and ``indiscernibility`` of the mean.

    Raises:
        ConfigError: on a bad ``n_splits`` or seed.
        DataError: if a side is empty, losses are non-finite, or the balanced set is too small
            for a stratified split (each of train and test needs one sample of each side).
    """
    seed = _check_seed(seed)
    cv_seed = _check_seed(cv_seed, "cv_seed")
    n_splits = _check_positive_int(n_splits, "n_splits")
    if n_splits is None:
        raise ConfigError("n_splits must be a positive integer")
    loss_f = _losses(forget, "forget")
    loss_u = _losses(unseen, "unseen")
    if loss_f.size == 0 or loss_u.size == 0:
        raise DataError(
            f"the loss attack needs forget and unseen samples; got {loss_f.size} and "
            f"{loss_u.size} (only one class would be present in the CV labels)"
        )
    rng = np.random.default_rng(seed)
    loss_f = loss_f[rng.permutation(loss_f.size)]
    loss_u = loss_u[rng.permutation(loss_u.size)]
    n = min(loss_f.size, loss_u.size)
    # Unseen first, then forget, as the starting kit concatenates; the stratified splitter draws
    # within each class, so this order does not change which samples a split holds.
    x = np.concatenate([loss_u[:n], loss_f[:n]])[:, None]
    y = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=cv_seed)
    try:
        splits = list(cv.split(x, y))
    except ValueError as err:
        raise DataError(
            f"too few samples for the loss-CV attack: {n} per side after balancing cannot be "
            f"split with test_size={test_size} ({err})"
        ) from err
    scores = np.empty(len(splits), dtype=np.float64)
    for i, (tr, te) in enumerate(splits):
        clf = LogisticRegression().fit(x[tr], y[tr])
        scores[i] = np.mean(clf.predict(x[te]) == y[te])
    acc = float(scores.mean())
    std = float(scores.std(ddof=1)) if scores.size > 1 else float("nan")
    return {
        "mia_lr_loss_cv_acc": acc,
        "mia_lr_loss_cv_acc_std": std,
        "indiscernibility": indiscernibility(acc),
    }
