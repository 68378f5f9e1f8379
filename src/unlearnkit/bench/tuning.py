"""``unlearnkit tune``: one Optuna study per method and scenario, stored in ``OUT/tune.db``.

Every study searches one method's config on the validation protocol of one benchmark scenario
(:mod:`unlearnkit.bench.tune`) with Optuna's TPE sampler:

* **Storage.** SQLite (``OUT/tune.db``). A killed run resumes where it stopped, and several
  processes running the same command share the studies. A trial whose process died (no
  heartbeat for ``3 * heartbeat_s`` seconds) is marked failed and run again with the same
  values; an interrupted one (Ctrl-C) likewise.
* **Trial 0** of a new study is the configuration the benchmark runs now (enqueued).
* **Equal budgets.** Each study runs until it holds ``n_trials`` finished trials (completed or
  pruned) or, with ``budget_s``, until its trials have used that many seconds. Rerunning with a
  larger ``n_trials`` continues the stored studies; trial numbers continue.
* **Sampler.** TPE, seeded by ``seed`` and the trial number: one process reproduces its
  search, a resumed study does not replay its first draws, and processes sharing a study
  never draw the same values.
  Continuous values are rounded to 3 significant digits, so the stored config is the one run.
* **Pruning.** Optuna's median rule after each seed replicate but the last: a trial whose Avg.
  Gap so far is worse than the median of earlier trials at the same replicate stops there
  (never trial 0). The methods report no per-epoch scores, so a replicate always runs whole;
  with one replicate nothing can be pruned.
* **Identity.** Every study records the run's context (dataset, model, recipe, replicates,
  sampler seed, protocol) and its starting point and space. A run whose context, or whose
  starting point for a study ``OUT`` already holds, differs is refused before any work.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..datasets import load
from ..deletion.calibrate import optuna_distribution
from ..errors import ConfigError
from ..methods import get_method
from ..methods.base import Dist
from ..threads import limit_threads
from .spec import BenchSpec, ScenarioSpec
from .tune import Evaluation, ValidationSetup, find_scenario
from .tune_space import (
    conditional_dist,
    default_value,
    resolve_search_space,
    space_order,
    starting_point,
)
from .tune_store import (
    HEARTBEAT_S,
    StudyResult,
    check_folder,
    open_storage,
    plain,
    quiet_optuna,
    read_studies,
    retry_callback,
    study_identity,
    study_name,
    tuning_context,
)

__all__ = ["N_STARTUP", "run_tuning"]

log = logging.getLogger(__name__)

#: Trials before TPE models the space (random draws until then), and before pruning starts.
N_STARTUP = 5
_SIG_DIGITS = 3
_SEED_STRIDE = 7919

# ---------------------------------------------------------------------------------------------
# Running


def _progress(study: Any, budget_s: float | None) -> tuple[int, int, bool, bool]:
    """``(finished, running, waiting, out of time)`` of a stored study."""
    from optuna.trial import TrialState as st

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (st.COMPLETE, st.PRUNED)]
    used = sum(float(t.user_attrs.get("evaluation", {}).get("seconds", 0.0)) for t in done)
    running = sum(t.state == st.RUNNING for t in trials)
    waiting = any(t.state == st.WAITING for t in trials)
    return len(done), running, waiting, budget_s is not None and used >= budget_s


def _round(value: Any) -> Any:
    if isinstance(value, float) and value != 0.0 and math.isfinite(value):
        return float(f"{value:.{_SIG_DIGITS}g}")
    return value


def _suggest(trial: Any, name: str, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, log=dist.log)


class _Study:
    """One method's study on one scenario within a run."""

    def __init__(self, optuna, study, spec: BenchSpec, sc: ScenarioSpec, method, space, say):
        self.optuna, self.study, self.say = optuna, study, say
        self.method, self.space = method, dict(space)
        self.order = space_order(method, self.space)
        self.preset, self.base, config = starting_point(spec, sc, method, self.space)
        self.defaults = {k: default_value(config, k) for k in self.space}
        self.tag = f"[{method}/{sc.name}]"
        self.setup: ValidationSetup | None = None
        self.current: int | None = None
        self.seed = 0
        #: told the study's finished trials after each one (the run's progress display)
        self.on_trials: Callable[[int], None] = lambda done: None

    def _dist(self, key: str, drawn: dict[str, Any]) -> Any:
        dist = conditional_dist(self.method, key, drawn) or self.space[key]
        return optuna_distribution(dist)  # the documented range: trial 0 may lie outside it

    def enqueue_default(self) -> None:
        """Trial 0: the current config (again, when an earlier one was given up)."""
        states = ("COMPLETE", "RUNNING", "WAITING")
        if any(t.user_attrs.get("default") and t.state.name in states for t in self.trials()):
            return
        fixed, drawn = {}, {}
        for key in self.order:
            value = self.defaults[key]
            dist = self._dist(key, drawn)
            drawn[key] = value
            try:
                if value is not None and dist._contains(dist.to_internal_repr(value)):
                    fixed[key] = value
            except (ValueError, TypeError):  # a default the space cannot hold: sampled
                pass
        self.study.enqueue_trial(fixed, user_attrs={"default": True})

    def trials(self) -> list[Any]:
        return self.study.get_trials(deepcopy=False)

    def sampler(self, number: int) -> Any:
        """TPE seeded by the run's seed and the trial number: one process reproduces its
        search, and processes sharing a study never draw the same values."""
        return self.optuna.samplers.TPESampler(
            seed=self.seed + _SEED_STRIDE * number, n_startup_trials=N_STARTUP
        )

    def objective(self, trial: Any) -> float:
        self.current = trial.number
        trial.set_user_attr("started", trial.number)  # its heartbeat runs from here on
        self.study.sampler = self.sampler(trial.number)  # draws happen at the suggest calls
        is_default = bool(trial.user_attrs.get("default"))
        drawn: dict[str, Any] = {}
        for key in self.order:
            drawn[key] = _suggest(trial, key, self._dist(key, drawn))
        config = {**self.base, **({} if is_default else {k: _round(v) for k, v in drawn.items()})}
        trial.set_user_attr("config", config)
        complete = (self.optuna.trial.TrialState.COMPLETE,)
        done = self.study.get_trials(deepcopy=False, states=complete)
        same = [t for t in done if t.user_attrs.get("config") == plain(config)]
        if same:  # a repeated proposal: its stored scores, not a second run
            trial.set_user_attr("duplicate_of", same[0].number)
            stored = same[0].user_attrs.get("evaluation", {})
            trial.set_user_attr("evaluation", {**stored, "seconds": 0.0})
            self.say(f"{self.tag} trial {trial.number}: as trial {same[0].number} {config}")
            return float(same[0].value)

        def after_replicate(ev: Evaluation) -> None:
            step = len(ev.objective) - 1
            trial.report(ev.mean, step)
            if not is_default and trial.should_prune():
                trial.set_user_attr("evaluation", ev.to_dict())
                self.say(f"{self.tag} trial {trial.number}: pruned after replicate {step + 1}")
                raise self.optuna.TrialPruned()

        ev = self.setup.evaluate(self.method, self.preset, config, after_replicate=after_replicate)
        trial.set_user_attr("evaluation", ev.to_dict())
        err = f" ({ev.error})" if ev.error else ""
        label = "default" if is_default else "trial"
        self.say(
            f"{self.tag} {label} {trial.number}: Avg. Gap {ev.mean:.4f} ({ev.seconds:.1f} s) "
            f"{config}{err}"
        )
        return ev.mean

    def run(self, setup: ValidationSetup, n_trials: int, budget_s, seed: int, heartbeat_s: int):
        """Run trials until the study holds ``n_trials`` finished ones or used ``budget_s``."""
        optuna, self.setup, self.seed = self.optuna, setup, seed
        if not self.space and n_trials > 1:
            self.say(f"{self.tag} empty search space: only the default is evaluated")
            n_trials = 1
        self.enqueue_default()  # again, when an earlier one was given up
        waited = 0
        while True:
            done, running, waiting, out_of_time = _progress(self.study, budget_s)
            if done >= n_trials or out_of_time:
                self.on_trials(n_trials)  # finished: all of its share of the run is done
                return
            self.on_trials(done)
            if done + running >= n_trials and not waiting:
                # The last trials run in another process, or died with theirs: wait until they
                # finish or the heartbeat check marks them failed and queues them again.
                if waited >= 5 * heartbeat_s:
                    self.say(f"{self.tag} {running} trial(s) still running elsewhere; moving on")
                    self.on_trials(n_trials)
                    return
                time.sleep(heartbeat_s)
                waited += heartbeat_s
                optuna.storages.fail_stale_trials(self.study)
                self._fail_unstarted(3 * heartbeat_s)
                continue
            waited = 0
            self.study.sampler = self.sampler(len(self.trials()))
            try:
                self.study.optimize(self.objective, n_trials=1)
            except KeyboardInterrupt:
                self._requeue_interrupted()
                raise

    def _fail_unstarted(self, grace_s: float) -> None:
        """A trial whose process died between its creation and its first heartbeat has no
        heartbeat to go stale: one that never started its objective within ``grace_s`` is
        marked failed and queued again, like a stale one."""
        st = self.optuna.trial.TrialState
        now = datetime.datetime.now()
        for t in self.trials():
            if t.state != st.RUNNING or t.user_attrs.get("started") == t.number:
                continue
            if t.datetime_start is None or (now - t.datetime_start).total_seconds() < grace_s:
                continue
            try:
                self.study.tell(t.number, state=st.FAIL)
            except (RuntimeError, ValueError):  # another process finished or failed it first
                continue
            retry_callback()(self.study, t)

    def _requeue_interrupted(self) -> None:
        """The trial stopped by Ctrl-C runs again (same values) in the next session."""
        st = self.optuna.trial.TrialState
        for t in self.trials():
            if t.number == self.current and t.state == st.FAIL:
                retry_callback()(self.study, t)


# ---------------------------------------------------------------------------------------------
# The run and its results


def _check_request(n_trials: Any, budget_s: Any, replicates: Any, seed: Any, n_seeds: int) -> None:
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise ConfigError(f"--trials must be a whole number >= 1, got {n_trials!r}")
    if budget_s is not None and not (isinstance(budget_s, (int, float)) and budget_s > 0):
        raise ConfigError(f"--budget-s must be a number of seconds > 0, got {budget_s!r}")
    if replicates is not None and not (isinstance(replicates, int) and replicates >= 1):
        raise ConfigError(f"--seeds must be a number of replicates >= 1, got {replicates!r}")
    if replicates is not None and replicates > n_seeds:
        raise ConfigError(
            f"--seeds {replicates}: the spec lists only {n_seeds} seed(s); give at most "
            f"{n_seeds} or add seeds to the spec"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0, got {seed!r}")


def _methods(spec: BenchSpec, methods: list[str] | None) -> list[str]:
    if methods is None:
        names = [get_method(e.method).name for e in spec.method_entries()]
    else:
        if not methods:
            raise ConfigError(
                "--methods names no method; give a comma-separated list such as finetune,salun "
                "('unlearnkit methods' lists them)"
            )
        names = [get_method(m).name for m in methods]
    if "retrain" in names:
        raise ConfigError(
            "retrain is the reference every trial is scored against; it has "
            "nothing to tune: leave it out of --methods"
        )
    return list(dict.fromkeys(names))


def _plan(spec, methods, scenarios, say) -> list[tuple[ScenarioSpec, str]]:
    """The (scenario, method) pairs to tune, in the spec's scenario order."""
    chosen = [find_scenario(spec, s) for s in scenarios] if scenarios else list(spec.scenarios)
    plan = []
    for name in _methods(spec, methods):
        ok = [sc for sc in chosen if sc.scenario in get_method(name).access.scenarios]
        if not ok and methods is not None:
            raise ConfigError(
                f"method {name!r} supports none of the scenarios "
                f"{', '.join(sc.name for sc in chosen)}; leave it out of --methods"
            )
        for sc in chosen:
            if sc not in ok:
                say(f"[{name}/{sc.name}] skipped: the method does not support {sc.scenario!r}")
        plan += [(sc, name) for sc in ok]
    return sorted(plan, key=lambda p: (chosen.index(p[0]), p[1]))


def _open_study(optuna: Any, storage: Any, name: str, attrs: dict[str, Any]) -> Any:
    """The stored study ``name`` (created, with its context and identity, when new)."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="minimize",
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=N_STARTUP),
    )
    if "context" not in study.user_attrs:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
    return study


def run_tuning(
    spec: BenchSpec,
    out_dir: str | Path,
    *,
    methods: list[str] | None = None,
    scenarios: list[str] | None = None,
    n_trials: int = 16,
    budget_s: float | None = None,
    replicates: int | None = None,
    seed: int = 0,
    bank_dir: str | Path | None = None,
    echo: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
    heartbeat_s: int = HEARTBEAT_S,
    search_spaces: Mapping[str, Mapping[str, Dist]] | None = None,
    model_factory: Callable[[int], Any] | None = None,
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    progress: Any = None,
) -> list[StudyResult]:
    """Tune every method on every scenario (one study each) into ``out_dir/tune.db``.

    Args:
        spec: the benchmark spec (its current method configs are every study's trial 0).
        out_dir: where ``tune.db`` (and, by default, the model bank) live.
        methods: registry names or aliases; default every method the spec runs.
        scenarios: scenario names; default all of the spec's.
        n_trials: finished trials per study (the default included), the same for every method.
        budget_s: also stop each study once its trials have used this many seconds.
        replicates: seed replicates each trial averages: the spec's first ``replicates``
            seeds (default: all of them).
        seed: seed of the sampler.
        bank_dir: the oracle bank (default ``out_dir/bank``; the benchmark's ``OUT/bank``
            shares its original models).
        echo: progress callback.
        device: where to train and run.
        heartbeat_s: seconds between a running trial's signs of life.
        search_spaces: ``{method: {config key: Dist}}`` replacing the library's space of a
            method (:func:`~unlearnkit.bench.tune_space.resolve_search_space`).
        model_factory: a function ``seed -> freshly initialised nn.Module`` (or a
            :class:`~unlearnkit.models.ModelFactory`) replacing the spec's model; the spec's
            ``model.checkpoint``, if any, is still ``theta_o``.
        backend: ``"local"``, or ``"ray"``: ``workers`` Ray tasks (default: as many as the
            cluster at ``address`` runs at once) run the trials, sharing every study
            (:func:`unlearnkit.bench.ray_tune.tune_on_ray`).
        address: the Ray cluster (``auto``, ``HOST:PORT``; default: a new one on this machine).
        workers: Ray workers sharing the studies.
        progress: a :class:`unlearnkit.progress.Progress`, told the run's trials (every study's
            share: ``n_trials``, or 1 for an empty space) and each finished one. With Ray it is
            told once the workers are done.

    Returns:
        Every study stored in ``out_dir`` (:func:`read_studies`).

    Raises:
        ConfigError: unknown method or scenario, ``n_trials < 1``, a bad budget, a method
            that supports none of the scenarios, a bad model or checkpoint, or an ``out_dir``
            holding another run's studies (:class:`~unlearnkit.bench.identity.RunIdentityError`).
        DataError: the dataset has no validation split, or ``tune.db`` is not a study store.
    """
    call = dict(locals())  # this call's arguments (Ray workers run them: bench.ray_tune)
    del call["progress"]  # the driver's display: never sent to a worker
    if backend != "local" or address is not None or workers is not None:
        from .ray_tune import tune_on_ray

        return tune_on_ray(**{**call, "backend": backend, "address": address}, progress=progress)
    say = echo or log.info
    _check_request(n_trials, budget_s, replicates, seed, len(spec.seeds))
    seeds = tuple(spec.seeds[:replicates] if replicates else spec.seeds)
    plan = _plan(spec, methods, scenarios, say)
    bundle = load(spec.dataset.name, **spec.dataset.options)
    factory = spec.model.factory_for(bundle, model_factory)  # fails early on a bad model
    context = tuning_context(spec, bundle, factory, seeds, seed)
    given = {get_method(k).name: v for k, v in (search_spaces or {}).items()}
    spaces = {m: resolve_search_space(m, given.get(m))[0] for _, m in plan}
    identities = {
        study_name(m, sc.name): study_identity(spec, sc, m, given.get(m)) for sc, m in plan
    }
    out = Path(out_dir)
    bank = Path(bank_dir) if bank_dir is not None else out / "bank"
    attrs = {"context": context, "spec_name": spec.name}
    share = {study_name(m, sc.name): n_trials if spaces[m] else 1 for sc, m in plan}
    counted: dict[str, int] = {}

    def count(name: str, done: int, status: str = "") -> None:
        counted[name] = min(done, share[name])
        if progress is not None:
            progress.set(sum(counted.values()), status=status or None)

    if progress is not None:
        progress.start(sum(share.values()))
    with quiet_optuna() as optuna:
        storage = open_storage(out, heartbeat_s)
        check_folder(storage, out, context, identities)  # nothing written before this
        with limit_threads(spec.threads):  # torch, BLAS and OpenMP alike; restored after
            for sc_name in dict.fromkeys(sc.name for sc, _ in plan):
                todo = {}
                for sc, method in [(sc, m) for sc, m in plan if sc.name == sc_name]:
                    name = study_name(method, sc_name)
                    study = _open_study(
                        optuna, storage, name, {**attrs, "identity": identities[name]}
                    )
                    runner = _Study(optuna, study, spec, sc, method, spaces[method], say)
                    runner.enqueue_default()  # at once: a second process then sees it
                    done, _, _, out_of_time = _progress(study, budget_s)
                    if done >= share[name] or out_of_time:
                        say(f"[{method}/{sc_name}] done: {done} trials stored")
                        count(name, share[name])
                    else:
                        count(name, done)
                        runner.on_trials = lambda k, n=name, st=f"{method} on {sc_name}": count(
                            n, k, st
                        )
                        todo[method] = runner
                if not todo:
                    continue
                setup = ValidationSetup(
                    spec,
                    sc_name,
                    seeds=seeds,
                    bank_dir=bank,
                    echo=say,
                    device=device,
                    bundle=bundle,
                    factory=factory,
                )
                for runner in todo.values():
                    if "reference" not in runner.study.user_attrs:
                        runner.study.set_user_attr("task", plain(setup.task.describe()))
                        runner.study.set_user_attr("reference", setup.reference())
                        runner.study.set_user_attr("noop", setup.noop())
                    runner.run(setup, n_trials, budget_s, seed, heartbeat_s)
        return read_studies(out, spec, given, storage)
