"""Calibration without a retrained model: search each method's hyperparameters so that the
unlearned model treats its forget set like data it never saw.

:func:`original_stats` measures the original model once; :func:`proxy_score` scores any model
against it with the retrain-free criteria of :mod:`unlearnkit.metrics.functional.proxy`;
:func:`calibrate` runs one seeded Optuna TPE study per candidate method (trial 0 = the method's
default config), within a wall-clock budget split equally between the methods, and returns the
:class:`Leaderboard`. The search reads the training data (forget and retain sets) and the
task's ``val`` split (the calibration half of the held-out data) only, never ``task.test``.
The scoring (:func:`original_stats`, :func:`proxy_score`, :data:`SEARCH_LEVEL`,
:data:`VERDICT_LEVEL`) lives in :mod:`unlearnkit.deletion.scoring` and is re-exported here.
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

from ..errors import ConfigError
from ..methods import get_method, list_methods
from ..methods._space import Dist
from ..tasks import ForgetTask
from ..training import TrainRecipe
from .scoring import SEARCH_LEVEL as SEARCH_LEVEL
from .scoring import VERDICT_LEVEL as VERDICT_LEVEL
from .scoring import _retain_positions as _retain_positions
from .scoring import original_stats, proxy_score

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

    # imported here: the search imports from this module
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
