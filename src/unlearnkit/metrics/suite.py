"""Metric tiers A and B and the :func:`evaluate` front door.

Signals are computed once per (model, split) by :func:`model_signals`; every metric after that
is a pure function of signals (:mod:`unlearnkit.metrics.functional`). Every key, its formula,
unit and source: docs/metrics.md.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checks import check_device, check_model, check_seed
from ..errors import ConfigError
from ..tasks import ForgetTask
from .functional.accuracy import accuracy_metrics, accuracy_on_classes, neighbour_classes
from .functional.distances import output_distances
from .functional.gaps import (
    avg_gap,
    gaps,
    noise_floor,
    retention,
    rte_ratio,
    signed_gaps,
    tow,
    tow_mia,
)
from .functional.mia import mia_lr_entropy, mia_lr_loss_cv, mia_svc
from .functional.zrf import zrf
from .relearn import anamnesis_index, mean_loss, relearn_time
from .signals import SplitSignals, compute_signals

__all__ = [
    "METRIC_INFO",
    "REFERENCE_CACHE_BYTES",
    "REFERENCE_CACHE_SIZE",
    "TIER_A_KEYS",
    "ModelSignals",
    "clear_reference_cache",
    "collateral",
    "evaluate",
    "model_signals",
    "tier_a",
    "tier_b",
]

#: Direction and anchor of the headline keys (tables read their arrows from here).
METRIC_INFO: dict[str, dict[str, Any]] = {
    "acc_forget": {"label": "FA", "kind": "rate", "better": "→ Retrain"},
    "ua": {"label": "UA", "kind": "rate", "better": "→ Retrain"},
    "acc_retain": {"label": "RA", "kind": "rate", "better": "→ Retrain"},
    "acc_test": {"label": "TA", "kind": "rate", "better": "→ Retrain"},
    "acc_forget_test": {"label": "FTA", "kind": "rate", "better": "→ Retrain"},
    "mia_svc_conf_nonmember_rate": {
        "label": "MIA-Eff (non-member)",
        "kind": "rate",
        "better": "→ Retrain",
    },
    "mia_lr_entropy_member_rate": {
        "label": "MIA-LR (member)",
        "kind": "rate",
        "better": "→ Retrain",
    },
    "mia_lr_loss_cv_acc": {"label": "MIA-CV acc", "kind": "rate", "better": "→ Retrain"},
    "zrf": {"label": "ZRF", "kind": "score", "better": "→ Retrain"},
    "avg_gap_salun": {"label": "Avg. Gap", "kind": "gap", "better": "↓"},
    "avg_gap_natmu": {"label": "Avg. Gap (NatMU)", "kind": "gap", "better": "↓"},
    "tow": {"label": "ToW", "kind": "score", "better": "↑"},
    "tow_mia": {"label": "ToW-MIA", "kind": "score", "better": "↑"},
    "signed_fa": {"label": "signed FA", "kind": "gap", "better": "→ 0 (<0 over-forgets)"},
    "js_to_retrain_forget": {"label": "JS(f)", "kind": "score", "better": "→ floor"},
    "rte_seconds": {"label": "RTE (s)", "kind": "seconds", "better": "↓"},
    "rte_ratio": {"label": "RTE ratio", "kind": "score", "better": "↑"},
}

TIER_A_KEYS = (
    "acc_forget",
    "ua",
    "acc_retain",
    "acc_test",
    "acc_test_full",
    "acc_forget_test",
    "acc_val",
    "mia_svc_conf_nonmember_rate",
    "mia_efficacy",
    "mia_lr_entropy_member_rate",
    "mia_lr_loss_cv_acc",
    "mia_lr_loss_cv_acc_std",
    "indiscernibility",
    "zrf",
    "zrf_forget_test",
)


@dataclass
class ModelSignals:
    """One model's signals on every split of a task (computed once, read by every metric)."""

    forget: SplitSignals
    retain: SplitSignals | None
    test: SplitSignals
    test_full: SplitSignals
    forget_test: SplitSignals | None = None
    val: SplitSignals | None = None


def _sig(model: nn.Module, view: Any, device: Any) -> SplitSignals | None:
    if view is None or len(view) == 0:
        return None
    if view.y is None:
        raise ValueError(f"the {view.name} view has no labels; metrics need labels")
    return compute_signals(model, view.x, view.y, device=device)


def model_signals(
    model: nn.Module,
    task: ForgetTask,
    *,
    device: torch.device | str | None = None,
    retain_eval_cap: int | None = None,
    seed: int = 0,
) -> ModelSignals:
    """Run ``model`` once over each split of ``task`` (eval mode, no grad, in order).

    ``retain_eval_cap`` evaluates a fixed, seeded subsample of ``D_r`` on large sets.

    Raises:
        ConfigError: a model that does not fit the task (one probe forward checks its output
            is one ``(batch, K)`` tensor), an unavailable device, or a bad seed.
    """
    _check_task(task)
    check_seed(seed)
    device = check_device(device)
    check_model(model, task, device)
    return _signals(model, task, device=device, retain_eval_cap=retain_eval_cap, seed=seed)


def _check_task(task: Any) -> None:
    if not isinstance(task, ForgetTask):
        raise ConfigError(
            f"task must come from unlearnkit.forget_task(...), got {type(task).__name__}"
        )


def _signals(
    model: nn.Module,
    task: ForgetTask,
    *,
    device: torch.device | str | None = None,
    retain_eval_cap: int | None = None,
    seed: int = 0,
) -> ModelSignals:
    """:func:`model_signals` without the front-door checks (the caller made them)."""
    retain = task.retain if task.retain is not None else None
    if retain is not None and retain_eval_cap is not None and len(retain) > retain_eval_cap:
        pos = np.sort(np.random.default_rng(seed).choice(len(retain), retain_eval_cap, False))
        retain = retain.subset(pos)
    return ModelSignals(
        forget=_sig(model, task.forget, device),
        retain=_sig(model, retain, device),
        test=_sig(model, task.test, device),
        test_full=_sig(model, task.test_full, device),
        forget_test=_sig(model, task.forget_test, device),
        val=_sig(model, task.val, device),
    )


def tier_a(
    sig: ModelSignals,
    *,
    teacher: ModelSignals | None = None,
    seed_attack: int = 0,
) -> dict[str, float]:
    """Tier-A metrics of one model from its signals.

    Args:
        sig: the model's signals.
        teacher: signals of a freshly initialised twin (ZRF); ZRF is skipped without it.
        seed_attack: seed of shadow sampling and CV splits.
    """
    out: dict[str, float] = {}
    retain = sig.retain
    out.update(
        accuracy_metrics(
            forget=sig.forget,
            retain=retain if retain is not None else sig.test,
            test=sig.test,
            test_full=sig.test_full,
            forget_test=sig.forget_test,
            val=sig.val,
        )
    )
    if retain is None:  # forget-only request: RA and the retain-based attacks are undefined
        out["acc_retain"] = float("nan")
    else:
        out.update(mia_svc(retain, sig.test, sig.forget, seed=seed_attack))
        out.update(mia_lr_entropy(retain, sig.test_full, sig.forget, seed=seed_attack))
    unseen = sig.forget_test if sig.forget_test is not None else sig.test_full
    if unseen is not None and len(unseen) >= 2 and len(sig.forget) >= 2:
        out.update(mia_lr_loss_cv(sig.forget, unseen, seed=seed_attack))
    if teacher is not None:
        out["zrf"] = zrf(sig.forget, teacher.forget)
        if sig.forget_test is not None and teacher.forget_test is not None:
            out["zrf_forget_test"] = zrf(sig.forget_test, teacher.forget_test)
    return out


def collateral(sig: ModelSignals, sig_o: ModelSignals, k: int = 2) -> dict[str, float]:
    """Class-wise scenarios: accuracy on the ``k`` test classes that ``θ_o``
    most confuses with the forgotten class(es) (:func:`neighbour_classes`), ``acc_neighbours``,
    and its change from ``θ_o``, ``collateral_acc_neighbours`` (negative: collateral damage).
    Empty for sample-wise scenarios."""
    if sig_o.forget_test is None or len(sig_o.forget_test) == 0:
        return {}
    classes = neighbour_classes(sig_o.forget_test, k)
    acc = accuracy_on_classes(sig.test, classes)
    return {
        "acc_neighbours": acc,
        "collateral_acc_neighbours": acc - accuracy_on_classes(sig_o.test, classes),
    }


def tier_b(
    m_u: dict[str, float],
    m_r: dict[str, float],
    sig_u: ModelSignals,
    sig_r: ModelSignals,
) -> dict[str, float]:
    """Tier-B comparisons of a model with its paired Retrain."""
    out: dict[str, float] = {}
    out.update(gaps(m_u, m_r, [k for k in TIER_A_KEYS if k in m_u and k in m_r]))
    for preset in ("salun", "natmu"):
        try:
            out[f"avg_gap_{preset}"] = avg_gap(m_u, m_r, preset)
        except ValueError:  # the preset's keys are missing (e.g. no retain set)
            out[f"avg_gap_{preset}"] = float("nan")
    out.update(signed_gaps(m_u, m_r))
    for name, fn in (("tow", tow), ("tow_mia", tow_mia)):
        try:
            out[name] = fn(m_u, m_r)
        except ValueError:
            out[name] = float("nan")
    out.update(retention(m_u, m_r))
    out.update(output_distances(sig_u.forget, sig_r.forget, "forget"))
    out.update(output_distances(sig_u.test, sig_r.test, "test"))
    if sig_u.retain is not None and sig_r.retain is not None:
        out.update(output_distances(sig_u.retain, sig_r.retain, "retain"))
    if "zrf" in m_u and "zrf" in m_r:
        out["gap_zrf"] = abs(m_u["zrf"] - m_r["zrf"])
    if "rte_seconds" in m_u and "rte_seconds" in m_r:
        out["rte_ratio"] = rte_ratio(m_r["rte_seconds"], m_u["rte_seconds"])
    return out


#: How many reference models :func:`evaluate` remembers (signals and Tier-A metrics, the least
#: recently used dropped first); 0 turns the cache off.
REFERENCE_CACHE_SIZE = 4

#: The most bytes of signals the remembered references may hold together (a reference whose
#: signals alone are larger is not remembered).
REFERENCE_CACHE_BYTES = 512 * 2**20

_REFERENCE_CACHE: OrderedDict[tuple, tuple[ModelSignals, dict[str, float], int]] = OrderedDict()


def clear_reference_cache() -> None:
    """Forget every reference model :func:`evaluate` remembers (frees their signals)."""
    _REFERENCE_CACHE.clear()


def _nbytes(sig: ModelSignals) -> int:
    """Bytes held by a model's signals (logits, labels and the derived arrays computed)."""
    total = 0
    for s in (sig.forget, sig.retain, sig.test, sig.test_full, sig.forget_test, sig.val):
        if s is not None:
            arrays = [s.logits, s.labels, *s._cache.values()]
            total += sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
    return total


def _model_digest(model: nn.Module) -> str | None:
    """Content hash of a model: its class, module structure, parameters and buffers (all of
    them, persistent or not); ``None`` when a tensor cannot be read as bytes."""
    h = hashlib.blake2b(digest_size=20)
    h.update(f"{type(model).__module__}.{type(model).__qualname__}\n{model!r}".encode())
    tensors = [*model.named_parameters(), *model.named_buffers()]
    try:
        with torch.no_grad():
            for name, t in tensors:
                h.update(f"{name}:{t.dtype}:{tuple(t.shape)}:{t.device}".encode())
                flat = t.detach().to("cpu").contiguous().reshape(-1)
                h.update(flat.view(torch.uint8).numpy().tobytes())
    except (RuntimeError, TypeError):  # e.g. quantized or sparse tensors: no caching
        return None
    return h.hexdigest()


def _reference(
    model: nn.Module,
    task: ForgetTask,
    teacher: nn.Module | None,
    teacher_sig: ModelSignals | None,
    seed_attack: int,
    device: Any,
) -> tuple[ModelSignals, dict[str, float]]:
    """A reference model's signals and Tier-A metrics, from the cache when the same reference
    (same weights and structure) was evaluated on the same task, attack seed, ZRF teacher and
    device before."""
    key = None
    if REFERENCE_CACHE_SIZE > 0:
        digest = _model_digest(model)
        teacher_digest = _model_digest(teacher) if teacher is not None else "-"
        if digest is not None and teacher_digest is not None:
            key = (digest, task.id, task.retain_available, seed_attack, teacher_digest, str(device))
    if key is not None and key in _REFERENCE_CACHE:
        _REFERENCE_CACHE.move_to_end(key)
        sig, metrics, _ = _REFERENCE_CACHE[key]
        return sig, dict(metrics)
    sig = _signals(model, task, device=device)
    metrics = tier_a(sig, teacher=teacher_sig, seed_attack=seed_attack)
    size = _nbytes(sig)
    if key is not None and size <= REFERENCE_CACHE_BYTES:
        _REFERENCE_CACHE[key] = (sig, dict(metrics), size)
        while len(_REFERENCE_CACHE) > REFERENCE_CACHE_SIZE or (
            sum(e[2] for e in _REFERENCE_CACHE.values()) > REFERENCE_CACHE_BYTES
        ):
            _REFERENCE_CACHE.popitem(last=False)
    return sig, metrics


def evaluate(
    model: nn.Module,
    task: ForgetTask,
    *,
    reference: nn.Module | None = None,
    reference_prime: nn.Module | None = None,
    rte_seconds: float | None = None,
    reference_rte_seconds: float | None = None,
    model_factory: Callable[[int], nn.Module] | None = None,
    zrf_teacher_seed: int = 0,
    seed_attack: int = 0,
    device: torch.device | str | None = None,
    original: nn.Module | None = None,
    relearn: bool = False,
    relearn_seed: int = 0,
) -> dict[str, float]:
    """Evaluate an (unlearned) model on a task: Tier A, and Tier B against ``reference``.

    Args:
        model: the model to evaluate (theta_u).
        task: the forget task.
        reference: the retrained model theta_r; enables gaps, Avg. Gap, ToW, distances. Its
            signals and Tier-A metrics (attacks included) are computed once and remembered
            (:data:`REFERENCE_CACHE_SIZE` references, at most :data:`REFERENCE_CACHE_BYTES` of
            signals, keyed by a content hash of the model with the task, ``seed_attack``, the
            ZRF teacher and the device), so evaluating several models against the same
            Retrain does not recompute the Retrain's attacks.
        reference_prime: a second Retrain (another seed); adds the noise floor ``floor_*``.
        rte_seconds, reference_rte_seconds: run-times of the unlearning and of Retrain.
        model_factory: ``seed -> fresh model`` for ZRF's random teacher (default: a recursive
            re-initialisation of a copy of ``model``; ZRF is skipped if that is impossible).
        zrf_teacher_seed: seed of the ZRF teacher.
        seed_attack: seed of shadow sampling and CV splits.
        original: the original model theta_o; adds, in class-wise scenarios, the collateral
            accuracy on the classes it most confuses with the forgotten one
            (``acc_neighbours``, ``collateral_acc_neighbours``); needed by ``relearn``.
        relearn: add the optional relearn readouts (each costs short fine-tunes):
            ``relearn_steps`` / ``relearn_censored`` (and Retrain's, ``ref_``-prefixed) and,
            with ``reference``, the Anamnesis Index ``ain`` with its ``ain_*`` details. See
            :mod:`unlearnkit.metrics.relearn`.
        relearn_seed: the batch-drawing seed of those fine-tunes (the same for every model).

    Returns:
        A flat dict of floats. Rates, gaps and the Avg. Gaps (``avg_gap_salun``,
        ``avg_gap_natmu``, ``floor_avg_gap_*``) are fractions of 1: an ``avg_gap_salun`` of
        0.05 is 5 percentage points, shown as 5.0 in the benchmark report's "Avg. Gap (pp)"
        column, while ``results.db`` and ``unlearnkit report --format csv|json|parquet`` keep
        these names and units. Keys of Retrain's own values are prefixed ``ref_``.

    Example:
        >>> report = uk.evaluate(new, task, reference=retrained)
        >>> report["avg_gap_salun"]  # a fraction: 100 * it is the report's Avg. Gap in pp
    """
    from ..models import reinit_factory

    _check_task(task)
    device = check_device(device)
    for name, value in (
        ("zrf_teacher_seed", zrf_teacher_seed),
        ("seed_attack", seed_attack),
        ("relearn_seed", relearn_seed),
    ):
        check_seed(value, name)
    for name, m in (
        ("model", model),
        ("reference", reference),
        ("reference_prime", reference_prime),
        ("original", original),
    ):
        if m is not None:
            check_model(m, task, what=name)
    if relearn:
        if original is None:
            raise ConfigError("relearn=True needs the original model: pass original=")
        if task.train_full is None:
            raise ConfigError(
                "relearn=True fine-tunes on the whole training set, which this forget-only "
                "task withholds; evaluate on the full task"
            )
        target_loss = mean_loss(original, task.forget, device=device)

        def relearn_keys(m: nn.Module) -> dict[str, float]:
            res = relearn_time(
                m, task.train_full, task.forget, target_loss, seed=relearn_seed, device=device
            )
            return {"relearn_steps": float(res.steps), "relearn_censored": float(res.censored)}

    teacher, teacher_sig = None, None
    if model_factory is None:
        try:
            model_factory = reinit_factory(model)
        except ConfigError:
            model_factory = None
    if model_factory is not None:
        teacher = model_factory(zrf_teacher_seed)
        check_model(teacher, task, what="the ZRF teacher from model_factory")
        teacher_sig = _signals(teacher, task, device=device)
    sig_u = _signals(model, task, device=device)
    m_u = tier_a(sig_u, teacher=teacher_sig, seed_attack=seed_attack)
    sig_o = _signals(original, task, device=device) if original is not None else None
    if sig_o is not None:
        m_u.update(collateral(sig_u, sig_o))
    if rte_seconds is not None:
        m_u["rte_seconds"] = float(rte_seconds)
    if relearn:
        m_u.update(relearn_keys(model))
    if reference is None:
        return m_u
    sig_r, m_r = _reference(reference, task, teacher, teacher_sig, seed_attack, device)
    if reference_rte_seconds is not None:
        m_r["rte_seconds"] = float(reference_rte_seconds)
    if relearn:
        m_r.update(relearn_keys(reference))
    if sig_o is not None:
        m_r.update(collateral(sig_r, sig_o))
    out = dict(m_u)
    out.update(tier_b(m_u, m_r, sig_u, sig_r))
    if relearn:
        out.update(anamnesis_index(model, reference, original, task.forget, seed=relearn_seed))
    out.update({f"ref_{k}": v for k, v in m_r.items()})
    if reference_prime is not None:
        sig_r2, m_r2 = _reference(reference_prime, task, teacher, teacher_sig, seed_attack, device)
        out.update(noise_floor(m_r2, m_r))
        fb = tier_b(m_r2, m_r, sig_r2, sig_r)
        for key in ("avg_gap_salun", "avg_gap_natmu", "tow", "tow_mia", "js_to_retrain_forget"):
            if key in fb:
                out[f"floor_{key}"] = fb[key]
    return out
