"""The search loop of :func:`unlearnkit.deletion.calibrate.calibrate`: one method's Optuna
study, its trials and its leaderboard row.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch import nn

from ..api import run_unlearning
from ..errors import ConfigError, DataError
from ..methods import get_method
from .calibrate import log, optuna_distribution
from .scoring import proxy_score

_MAX_ERRORS = 3  # consecutive exceptions after which a method's search stops
_MAX_INFEASIBLE = 12  # consecutive infeasible points before a method's search stops
_MAX_DUPLICATES = 20  # consecutive repeated proposals: the space is exhausted
_SIG_DIGITS = 3


def _fits(dist: Any, value: Any) -> bool:
    """Whether an Optuna distribution can hold ``value``."""
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _default_value(cfg: Any, key: str) -> Any:
    if hasattr(cfg, key):
        return getattr(cfg, key)
    return getattr(getattr(cfg, "optimizer", None), key, None)


def _round(value: Any) -> Any:
    if isinstance(value, float) and value != 0.0 and math.isfinite(value):
        return float(f"{value:.{_SIG_DIGITS}g}")
    return value.item() if isinstance(value, np.generic) else value


def _sort_key(t: Any) -> tuple[float, float, int]:
    value = t.value if t.value is not None and not math.isnan(t.value) else math.inf
    return (value, float(t.user_attrs.get("closeness", math.inf)), t.number)


def _search(
    name,
    model,
    task,
    *,
    study_name,
    url,
    seed,
    deadline,
    score_s,
    stats,
    run_kw,
    progress,
    clock,
    optuna,
    trials=None,
) -> tuple[dict[str, Any], nn.Module | None]:
    """One method's study: run trials until its deadline; return its row and best model."""
    t_start = time.perf_counter()
    spec = get_method(name)
    cfg = spec.make_config(None, scenario=task.scenario)
    defaults = {k: _default_value(cfg, k) for k in spec.search_space}
    space = {k: optuna_distribution(d, defaults[k]) for k, d in spec.search_space.items()}
    study = optuna.create_study(
        study_name=study_name, storage=url, direction="minimize", load_if_exists=True
    )
    state = optuna.trial.TrialState
    for t in study.get_trials(deepcopy=False, states=(state.RUNNING,)):
        study.tell(t.number, state=state.FAIL)  # left by an interrupted call
    past = study.get_trials(deepcopy=False)
    # A fresh seed per session: a resumed study must not replay the first session's draws.
    study.sampler = optuna.samplers.TPESampler(seed=seed + 7919 * len(past), n_startup_trials=5)
    if not past:
        # a default the space cannot hold (0 on a log scale) is left for the sampler to fill;
        # trial 0 runs the default config either way
        fixed = {k: v for k, v in defaults.items() if v is not None and _fits(space[k], v)}
        study.enqueue_trial(fixed, user_attrs={"default": True})
    seen = {
        json.dumps(t.user_attrs["config"], sort_keys=True): t.number
        for t in past
        if t.state == state.COMPLETE and "config" in t.user_attrs
    }
    finished = [t for t in past if t.state == state.COMPLETE]
    best_key = min((_sort_key(t) for t in finished), default=(math.inf, math.inf, -1))
    best_model, best_run = None, None
    errors = duplicates = ran = infeasible_run = duplicates_total = 0
    cache: dict[str, Any] = {}
    min_trial_s = max(3.0 * score_s, 0.1)
    while True:
        remaining = deadline - time.perf_counter()
        if remaining < min_trial_s and (finished or ran):  # a new study runs trial 0 anyway
            break
        if trials is not None and len(past) + ran + duplicates_total >= trials:
            break
        trial = study.ask(space)
        is_default = bool(trial.user_attrs.get("default"))
        overrides = {} if is_default else {k: _round(v) for k, v in trial.params.items()}
        sig = json.dumps(overrides, sort_keys=True)
        if sig in seen:
            trial.set_user_attr("duplicate_of", seen[sig])
            study.tell(trial, state=state.PRUNED)
            duplicates += 1
            duplicates_total += 1
            if duplicates >= _MAX_DUPLICATES:
                break
            continue
        duplicates = 0
        t_trial = time.perf_counter()
        cap = max(0.05, deadline - t_trial - 1.5 * score_s)
        value, attrs, unlearned = _run_trial(
            name, model, task, overrides, seed, cap, stats, run_kw, cache
        )
        ran += 1
        attrs["seconds"] = time.perf_counter() - t_trial
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if value is None:
            study.tell(trial, state=state.FAIL)
            # a point the data cannot run (ConfigError: e.g. a clamp that needs normalization
            # metadata) is infeasible, not broken: only repeated other errors stop the search
            infeasible = attrs.get("error", "").startswith("ConfigError")
            errors += 1 if not infeasible else 0
            infeasible_run = infeasible_run + 1 if infeasible else 0
            if infeasible_run >= _MAX_INFEASIBLE:
                log.info("%s: %d infeasible points in a row; search stops", name, infeasible_run)
                break
        else:
            infeasible_run = 0
            errors = 0
            study.tell(trial, value)
            seen[sig] = trial.number
            tkey = (value, attrs.get("closeness", math.inf), trial.number)
            if tkey < best_key and math.isfinite(value):
                best_key, best_model, best_run = tkey, unlearned, trial.number
        if progress is not None:
            elapsed = time.perf_counter() - clock[0]
            progress(
                {
                    "method": name,
                    "trial": trial.number,
                    "objective": math.inf if value is None else value,
                    "best_objective": best_key[0],
                    "elapsed_s": elapsed,
                    "remaining_s": max(0.0, clock[1] - elapsed),
                    "budget_s": clock[1],
                    "state": "failed" if value is None or not math.isfinite(value) else "ok",
                }
            )
        if errors >= _MAX_ERRORS:
            log.warning("%s: %d runs in a row raised; its search stops", name, errors)
            break
    return _row(name, study, state, ran, time.perf_counter() - t_start), (
        best_model if best_run is not None and best_run == best_key[2] else None
    )


def _run_trial(name, model, task, overrides, seed, cap, stats, run_kw, cache):
    """Run one config and score it: ``(objective or None if it raised, attrs, model)``."""
    attrs: dict[str, Any] = {"config": dict(overrides)}
    try:
        out = run_unlearning(
            model, task, name, overrides, seed=seed, time_budget_s=cap, cache=cache, **run_kw
        )
    except ConfigError as exc:  # an infeasible point of the space for this data
        log.info("%s %s is infeasible here: %s", name, overrides, exc)
        attrs["error"] = f"ConfigError: {exc}"[:500]
        return None, attrs, None
    except Exception as exc:  # noqa: BLE001 - one broken config must not end the search
        log.warning("%s %s failed: %s", name, overrides, exc)
        attrs["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return None, attrs, None
    attrs.update(
        steps=int(out.steps), stop_reason=out.stop_reason, rte_seconds=float(out.rte_seconds)
    )
    if out.stop_reason == "time_budget":  # rerunning with max_steps reproduces this model
        attrs["config"] = {**overrides, "max_steps": int(out.steps)}
    if out.diverged:
        attrs["failed"] = "diverged"
        return math.inf, attrs, None
    try:
        score = proxy_score(out.model, task, original_stats=stats, seed=seed)
    except DataError as exc:  # non-finite outputs the guard did not catch
        attrs["failed"] = f"scoring: {exc}"[:500]
        return math.inf, attrs, None
    attrs["criteria"] = score["criteria"]
    attrs["passed"] = score["passed"]
    attrs["closeness"] = float(sum(c["ratio"] for c in score["criteria"].values()))
    return float(score["objective"]), attrs, out.model


def _row(name: str, study: Any, state: Any, ran: int, seconds: float) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == state.COMPLETE]
    failed = [t for t in trials if t.state == state.FAIL] + [
        t for t in done if t.value is None or not math.isfinite(t.value)
    ]
    best = min(done, key=_sort_key, default=None)
    ua = best.user_attrs if best is not None else {}
    return {
        "method": name,
        "study": study.study_name,
        "trials": len(done),
        "trials_run": ran,
        "pruned": sum(t.state == state.PRUNED for t in trials),
        "failed": len(failed),
        "seconds": seconds,
        "seconds_total": float(sum(t.user_attrs.get("seconds", 0.0) for t in trials)),
        "best_trial": None if best is None else best.number,
        "best_objective": math.inf if best is None or best.value is None else float(best.value),
        "best_passed": bool(ua.get("passed", False)),
        "best_config": copy.deepcopy(ua.get("config", {})),
        "best_criteria": copy.deepcopy(ua.get("criteria", {})),
        "best_is_default": bool(ua.get("default", False)),
        "closeness": float(ua.get("closeness", math.inf)),
    }


def _merge_rows(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A method's row after another round: the study's totals, this call's counts summed."""
    if old is None:
        return new
    return {**new, "trials_run": old["trials_run"] + new["trials_run"],
            "seconds": old["seconds"] + new["seconds"]}  # fmt: skip


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
