"""Calibration without a retrained model: search each method's hyperparameters so that the
unlearned model treats its forget set like data it never saw.

:func:`original_stats` measures the original model once; :func:`proxy_score` scores any model
against it with the retrain-free criteria of :mod:`unlearnkit.metrics.functional.proxy`;
:func:`calibrate` runs one seeded Optuna TPE study per candidate method (trial 0 = the method's
default config), within a wall-clock budget split equally between the methods, and returns the
:class:`Leaderboard`. The search reads the training data (forget and retain sets) and the
task's ``val`` split (the calibration half of the held-out data) only, never ``task.test``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..methods import get_method, list_methods
from ..methods._space import Dist
from ..metrics.functional.accuracy import accuracy
from ..metrics.functional.proxy import proxy_criteria, proxy_objective
from ..metrics.signals import SplitSignals, compute_signals
from ..tasks import ForgetTask
from ..training import TrainRecipe

__all__ = [
    "EXPENSIVE_METHODS",
    "Leaderboard",
    "calibrate",
    "candidates",
    "optuna_distribution",
    "original_stats",
    "proxy_score",
]

log = logging.getLogger(__name__)

#: Methods left out of ``candidates`` unless asked for: their per-trial cost (a Fisher or
#: influence estimate over the retain set) would eat a shared budget on real data.
EXPENSIVE_METHODS = ("fisher", "influence")
# Methods that perturb inputs continuously and refuse integer (categorical) features.
_CONTINUOUS_ONLY = ("jit", "boundary_shrink", "natmu")
_RETAIN_CAP = 2000
#: Confidence level of each statistical criterion while searching (calibration half).
SEARCH_LEVEL = 0.95
#: The sample-level verdict runs three tests (attack AUC, accuracy gap, loss KS) on the same
#: rows; each runs at ``1 - 0.05 / 3`` (Bonferroni) so that a model that really treats the
#: forget set as unseen (a retrain without it) fails the verdict at most 5 % of the time,
#: not up to 15 %. The search keeps the stricter per-test 95 % band and so aims inside it.
VERDICT_LEVEL = 1.0 - 0.05 / 3
_STUDY_VERSION = "proxy-v1"
#: With a time budget only (no trial cap), ``auto`` screens every candidate with an equal
#: share of this fraction of the budget, then the best sixth of them (at least 2, the
#: *finalists*) share the rest equally, continuing their studies.
SCREEN_SHARE = 0.4
_MIN_FOR_FINALS = 4


def _finalists(n: int) -> int:
    """How many of ``n`` screened methods continue: a sixth of them, at least two."""
    return max(2, math.ceil(n / 6))


# ---------------------------------------------------------------------------------------------
# The target


def _heldout(task: ForgetTask, split: str) -> Any:
    if split == "val":
        if task.val is None:
            raise DataError(
                "the task has no calibration split (val); build it with x_val/y_val, the "
                "held-out rows the search may read"
            )
        return task.val
    if split == "test":
        return task.test_full
    raise ConfigError(
        f"split must be 'val' (calibration half) or 'test' (report half); got {split!r}"
    )


def _retain_positions(task: ForgetTask, cap: int, seed: int) -> np.ndarray | None:
    """Positions in ``task.retain_idx`` of the fixed, seeded retain sample (None: no retain)."""
    if not task.retain_available or len(task.retain_idx) == 0:
        return None
    n = len(task.retain_idx)
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def _signals(
    model: nn.Module, task: ForgetTask, split: str, seed: int, cap: int, device: Any
) -> tuple[SplitSignals, SplitSignals, SplitSignals | None]:
    if task.scenario not in ("random", "indices", "class"):
        raise ConfigError(
            f"retrain-free calibration covers sample-level ('random', 'indices') and 'class' "
            f"requests; got {task.scenario!r}"
        )
    f = task.forget
    sf = compute_signals(model, f.x, f.y, device=device)
    h = _heldout(task, split)
    sh = compute_signals(model, h.x, h.y, device=device)
    pos = _retain_positions(task, cap, seed)
    sr = None
    if pos is not None:
        rows = torch.as_tensor(task.retain_idx[pos])
        train = task.bundle.train
        sr = compute_signals(model, train.x[rows], train.y[rows], device=device)
    return sf, sh, sr


def original_stats(
    model: nn.Module,
    task: ForgetTask,
    *,
    split: str = "val",
    seed: int = 0,
    tol: float = 0.03,
    level: float | None = None,
    retain_cap: int = _RETAIN_CAP,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Measure the original model on the rows :func:`proxy_score` compares against.

    Args:
        model: the original model (not modified).
        task: the forget task; ``split="val"`` reads ``task.val`` (the calibration half),
            ``"test"`` the report half (``task.test_full``).
        seed: seed of the retain sample (at most ``retain_cap`` rows) and of the attack folds.
        tol: allowed change of held-out and retain accuracy.
        level: confidence level of each statistical criterion; default
            :data:`SEARCH_LEVEL` on the calibration half, :data:`VERDICT_LEVEL` on the report
            half (the verdict).

    Returns:
        A JSON-able dict: the split, scenario, seed, tol, sizes, the original's accuracies
        (``acc_forget``, ``acc_heldout``, ``acc_retain``; class level also
        ``acc_heldout_other`` / ``acc_heldout_forgotten``), and its own ``criteria`` and
        ``objective`` (the "before" figures).
    """
    t0 = time.perf_counter()
    sf, sh, sr = _signals(model, task, split, seed, retain_cap, device)
    stats: dict[str, Any] = {
        "split": split,
        "scenario": task.scenario,
        "seed": int(seed),
        "tol": float(tol),
        "level": float(level if level is not None else _default_level(split)),
        "retain_cap": int(retain_cap),
        "n_forget": len(sf),
        "n_heldout": len(sh),
        "n_retain_sample": 0 if sr is None else len(sr),
        "acc_forget": accuracy(sf),
        "acc_heldout": accuracy(sh),
        "acc_retain": float("nan") if sr is None else accuracy(sr),
        "loss_forget_mean": float(sf.loss.mean()),
        "loss_heldout_mean": float(sh.loss.mean()),
    }
    if task.scenario == "class":
        in_fgt = np.isin(sh.labels, np.asarray(task.forget_classes))
        stats["forget_classes"] = [int(c) for c in task.forget_classes]
        stats["acc_heldout_other"] = accuracy(sh.corr[~in_fgt])
        stats["acc_heldout_forgotten"] = accuracy(sh.corr[in_fgt])
    crit = _criteria(sf, sh, sr, stats, task, seed)
    stats["criteria"] = crit
    stats["objective"] = proxy_objective(crit)
    stats["seconds"] = time.perf_counter() - t0
    return stats


def _default_level(split: str) -> float:
    """The search's per-test level on the calibration half, the verdict's on the report half."""
    return VERDICT_LEVEL if split == "test" else SEARCH_LEVEL


def _criteria(sf, sh, sr, stats, task, seed) -> dict[str, dict[str, Any]]:
    return proxy_criteria(
        sf,
        sh,
        sr,
        stats,
        scenario=task.scenario,
        tol=stats["tol"],
        forget_classes=task.forget_classes or None,
        seed=seed,
        level=stats.get("level", SEARCH_LEVEL),
    )


def proxy_score(
    model: nn.Module,
    task: ForgetTask,
    *,
    original_stats: dict[str, Any],
    split: str = "val",
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Score a model with the retrain-free criteria against the original's figures.

    Returns:
        ``objective`` (smaller better, 0 = every criterion holds with margin), ``passed``
        (every criterion holds), ``criteria`` (``{name: {"label", "value", "target",
        "passed", "ratio", ...}}``), the accuracies and sizes, and ``losses`` (per-sample
        forget and held-out losses as NumPy arrays, for plots; not JSON).

    Raises:
        ConfigError: ``original_stats`` measured on another split or scenario.
    """
    stats = original_stats
    if stats.get("split") != split or stats.get("scenario") != task.scenario:
        raise ConfigError(
            f"original_stats were measured on split {stats.get('split')!r} of a "
            f"{stats.get('scenario')!r} task; compute them with original_stats(model, task, "
            f"split={split!r})"
        )
    sf, sh, sr = _signals(model, task, split, stats["seed"], stats["retain_cap"], device)
    crit = _criteria(sf, sh, sr, stats, task, seed)
    return {
        "objective": proxy_objective(crit),
        "passed": all(c["passed"] for c in crit.values()),
        "criteria": crit,
        "split": split,
        "n_forget": len(sf),
        "n_heldout": len(sh),
        "n_retain_sample": 0 if sr is None else len(sr),
        "acc_forget": accuracy(sf),
        "acc_heldout": accuracy(sh),
        "acc_retain": float("nan") if sr is None else accuracy(sr),
        "skipped": [] if sr is not None else ["retain_acc (no retain data)"],
        "losses": {"forget": sf.loss, "heldout": sh.loss},
    }


# ---------------------------------------------------------------------------------------------
# Candidates


def candidates(
    task: ForgetTask,
    *,
    zero_shot: bool = False,
    recipe: TrainRecipe | None = None,
    include_expensive: bool = False,
) -> list[str]:
    """The registered methods the request's data permit, in registration order.

    Retrain is never a candidate. A zero-shot (forget-only) request, or a task without retain
    data, keeps only ``forget_only`` methods; a method needing the training recipe only when
    ``recipe`` is given; one needing ``D_val`` only when the task has it; methods that perturb
    inputs continuously only for floating-point features; :data:`EXPENSIVE_METHODS` only with
    ``include_expensive=True``.
    """
    forget_only = zero_shot or not task.retain_available
    float_inputs = task.bundle.train.x.is_floating_point()
    out = []
    for name in list_methods():
        spec = get_method(name)
        if name == "retrain" or (name in EXPENSIVE_METHODS and not include_expensive):
            continue
        acc = spec.access_for(spec.make_config(None, scenario=task.scenario))
        if task.scenario not in acc.scenarios:
            continue
        if forget_only and acc.level != "forget_only":
            continue
        if (acc.needs_recipe and recipe is None) or (acc.needs_val and task.val is None):
            continue
        if name in _CONTINUOUS_ONLY and not float_inputs:
            continue
        out.append(name)
    return out


# ---------------------------------------------------------------------------------------------
# The search


def optuna_distribution(dist: Dist, default: Any = None) -> Any:
    """The Optuna distribution of a search-space :class:`Dist`, widened to hold ``default``.

    ``loguniform`` -> ``FloatDistribution(log=True)``, ``uniform`` -> ``FloatDistribution``,
    ``int`` -> ``IntDistribution``, ``choice`` -> ``CategoricalDistribution``. A method's
    default value outside its space (trial 0 runs it) extends the range or the choices, so
    the sampler records trial 0 where it really is.
    """
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if dist.kind == "choice":
        choices = tuple(dist.args)
        if isinstance(default, (bool, int, float, str)) and default not in choices:
            choices += (default,)
        return CategoricalDistribution(choices)
    lo, hi = dist.args
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if numeric and math.isfinite(default) and (dist.kind != "loguniform" or default > 0):
        lo, hi = min(lo, default), max(hi, default)
    if dist.kind == "loguniform":
        return FloatDistribution(float(lo), float(hi), log=True)
    if dist.kind == "uniform":
        return FloatDistribution(float(lo), float(hi))
    if dist.kind == "int":
        return IntDistribution(int(math.floor(lo)), int(math.ceil(hi)))
    raise ConfigError(f"unknown search-space kind {dist.kind!r}; use loguniform/uniform/int/choice")


@dataclass
class Leaderboard:
    """The calibration's result: one row per method and the overall choice.

    Attributes:
        rows: per method: ``method``, ``trials`` (finished, all sessions), ``trials_run``
            (this call), ``pruned`` (repeated proposals, not rerun), ``failed`` (diverged,
            raised or interrupted), ``seconds`` (this call), ``seconds_total`` (all sessions),
            ``best_objective``, ``best_passed``, ``best_trial``, ``best_config`` (flat
            overrides; ``max_steps`` added when the budget cut that trial short, so rerunning
            the config reproduces it), ``best_criteria``, ``study``.
            ``finalist`` (whether it took part in the second round).
        best_method, best_config: the overall choice (lowest objective, then closest to the
            targets); ``""``/``{}`` when no trial finished.
        budget_s, seconds: the budget and the wall-clock time of the call.
        original: :func:`original_stats` of the input model on the calibration split.
        best_model: the chosen trial's model when it ran in this call, else None (rerun
            ``best_config`` with the same seed).
    """

    rows: list[dict[str, Any]]
    best_method: str
    best_config: dict[str, Any]
    budget_s: float
    seconds: float
    original: dict[str, Any] = field(default_factory=dict)
    best_model: nn.Module | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the model left out)."""
        return {
            "rows": self.rows,
            "best_method": self.best_method,
            "best_config": self.best_config,
            "budget_s": self.budget_s,
            "seconds": self.seconds,
            "original": self.original,
        }


def _fingerprint(model: nn.Module, task: ForgetTask, seed: int, tol: float) -> str:
    """What the studies depend on (never ``task.test``): the request, the model, the seed."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(task.forget_idx, dtype=np.int64).tobytes())
    meta = [task.scenario, list(task.forget_classes), len(task.bundle.train), seed, tol]
    meta += [0 if task.val is None else len(task.val), task.retain_available, _STUDY_VERSION]
    h.update(json.dumps(meta).encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _storage_url(storage: Path | str | None) -> str | None:
    if storage is None:
        return None
    p = Path(storage)
    if p.is_dir():
        raise ConfigError(f"storage {p} is a folder; give a file path such as {p / 'study.db'}")
    if not p.parent.is_dir():
        raise ConfigError(f"the folder of storage {p} does not exist; create it first")
    return f"sqlite:///{p.resolve()}"


def _check_args(methods: Sequence[str], budget_s: float, seed: int) -> list[str]:
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ConfigError("methods must be a non-empty list of method names (see candidates())")
    names = [get_method(m).name for m in methods]
    if len(set(names)) != len(names):
        raise ConfigError(f"methods lists a method twice: {list(methods)}")
    if "retrain" in names:
        raise ConfigError("retrain is the reference, not a calibration candidate; remove it")
    if isinstance(budget_s, bool) or not isinstance(budget_s, (int, float)) or not budget_s > 0:
        raise ConfigError(f"budget_s must be a positive number of seconds; got {budget_s!r}")
    if not math.isfinite(budget_s):
        raise ConfigError("budget_s must be finite")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    return names


def calibrate(
    model: nn.Module,
    task: ForgetTask,
    *,
    methods: list[str],
    budget_s: float,
    seed: int = 0,
    storage: Path | None = None,
    recipe: TrainRecipe | None = None,
    model_factory: Callable[[int], nn.Module] | None = None,
    progress: Callable[[dict], None] | None = None,
    tol: float = 0.03,
    device: torch.device | str | None = None,
    stats: dict[str, Any] | None = None,
    trials: int | None = None,
    precision: str | None = None,
) -> Leaderboard:
    """Search each method's registered space for the config that best meets the target.

    One Optuna study per method (TPE sampler seeded with ``seed``; stored in the SQLite file
    ``storage`` when given, so that calling again with the same arguments continues the
    studies: earlier trials are kept and counted once). Trial 0 of a new study is the
    method's default config. With ``trials`` given, the budget is split equally between the
    methods (time a method leaves unused goes to the ones after it). With a time budget only
    and at least four methods, the search runs in two rounds: every method is screened with an
    equal share of :data:`SCREEN_SHARE` of the budget, then the best sixth (at least two,
    the finalists) continue their studies with equal shares of the rest. Each trial's
    unlearning run gets the method's remaining time as ``time_budget_s``, less the time of
    one scoring. A diverged run scores ``inf`` and counts as failed, as does a run that
    raises; three raising runs in a row end that method's search.

    Args:
        model: the original model (never modified).
        task: the request; the search reads ``forget``/``retain``/``train_full``/``val`` only.
        methods: candidate method names (:func:`candidates`).
        budget_s: wall-clock budget of the whole call, in seconds.
        trials: also stop each method's study once it holds this many trials (an equal trial
            budget, and a search that does not depend on the machine's speed when the time
            budget is ample).
        seed: the unlearning seed of every trial, the sampler seed and the attack seed.
        storage: SQLite file of the studies (resumable), or None (in memory).
        recipe, model_factory: passed to the methods that need them.
        progress: called after every trial with a dict (``method``, ``trial``, ``objective``,
            ``best_objective``, ``elapsed_s``, ``remaining_s``, ``budget_s``, ``state``).
        tol: allowed change of held-out and retain accuracy.
        device: where to run (default: the model's device).
        precision: ``fp32``/``bf16``/``fp16`` of every trial's run (default: the recipe's).
        stats: :func:`original_stats` of ``model`` on ``val``, if already computed.

    Returns:
        The :class:`Leaderboard`.

    Raises:
        ConfigError: bad methods, budget, seed or storage path.
        DataError: a task without a calibration split.
    """
    import optuna

    # imported here: the search uses this module's scoring
    from ._search import _merge_rows, _quiet_optuna, _search

    t0 = time.perf_counter()
    names = _check_args(methods, budget_s, seed)
    url = _storage_url(storage)
    deadline = t0 + float(budget_s)
    if stats is None:
        stats = original_stats(model, task, split="val", seed=seed, tol=tol, device=device)
    t_score = time.perf_counter()
    proxy_score(model, task, original_stats=stats, seed=seed, device=device)
    score_s = time.perf_counter() - t_score
    key = _fingerprint(model, task, seed, tol)
    rows: dict[str, dict[str, Any]] = {}
    models: dict[str, nn.Module] = {}

    def run_round(group: list[str], until: float) -> None:
        for i, name in enumerate(group):
            per = max(0.0, (until - time.perf_counter()) / (len(group) - i))
            row, best = _search(
                name,
                model,
                task,
                study_name=f"{name}-{key}",
                url=url,
                seed=seed,
                deadline=time.perf_counter() + per,
                score_s=score_s,
                stats=stats,
                run_kw={
                    "recipe": recipe,
                    "model_factory": model_factory,
                    "device": device,
                    "precision": precision,
                },
                progress=progress,
                clock=(t0, float(budget_s)),
                optuna=optuna,
                trials=trials,
            )
            rows[name] = _merge_rows(rows.get(name), row)
            if best is not None:  # else the round found nothing better: the earlier one holds
                models[name] = best

    two_rounds = trials is None and len(names) >= _MIN_FOR_FINALS
    screen_until = t0 + float(budget_s) * (SCREEN_SHARE if two_rounds else 1.0)
    finals = names
    with _quiet_optuna():
        run_round(names, min(deadline, screen_until))
        if two_rounds:
            ranked = sorted(
                (r for r in rows.values() if r["best_trial"] is not None),
                key=lambda r: (r["best_objective"], r["closeness"]),
            )
            finals = [r["method"] for r in ranked[: _finalists(len(names))]]
            run_round(finals, deadline)
    for name, r in rows.items():
        r["finalist"] = name in finals
    rows = [rows[n] for n in names]
    done = [r for r in rows if r["best_trial"] is not None]
    choice = min(done, key=lambda r: (r["best_objective"], r["closeness"]), default=None)
    return Leaderboard(
        rows=rows,
        best_method="" if choice is None else choice["method"],
        best_config={} if choice is None else dict(choice["best_config"]),
        budget_s=float(budget_s),
        seconds=time.perf_counter() - t0,
        original={k: v for k, v in stats.items()},
        best_model=None if choice is None else models.get(choice["method"]),
    )
