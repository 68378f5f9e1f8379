"""Choose a benchmark's method defaults by a seeded random search on the validation split.

The search never reads the test split, so model selection cannot leak it:

* **Validation view.** The bundle's test split is replaced by its validation split, so test
  accuracy and the non-member side of every attack read ``D_val`` only.
* **Validation forget split.** A forget set that differs from the benchmark's (see
  :func:`validation_task` for the rule), so the search is not fitted to the very samples the
  benchmark later scores.
* **References.** ``theta_o`` is the benchmark's original model (same recipe, model and seed,
  trained on the full training split and shared with the benchmark through the
  :class:`~unlearnkit.audit.bank.OracleBank`); ``theta_r`` is retrained with the same recipe on
  the validation task's retain set.
* **Objective.** The paired Avg. Gap (preset ``salun``: UA, RA, TA,
  MIA-Efficacy) of the unlearned model to ``theta_r``, averaged over the seed replicates; ties
  are broken by the ``natmu``-preset Avg. Gap; a run that diverges or fails scores ``+inf``.
* **Search.** Trial 0 is the configuration the benchmark runs now (the method's ``digits``
  preset plus the spec's overrides); trials ``1..n-1`` are seeded random draws from the search
  space (:data:`DIGITS_SEARCH_SPACES`, else the method's registered ``search_space``) laid
  over that base configuration.

>>> from unlearnkit.bench.spec import default_spec
>>> from unlearnkit.bench.tune import tune_method
>>> res = tune_method(default_spec(), "finetune", "class-3", n_trials=8)  # doctest: +SKIP
>>> res.best_overrides, res.comparison()["tuned"]["avg_gap_salun"]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..api import run_unlearning
from ..audit.bank import OracleBank
from ..datasets import DatasetBundle, load
from ..errors import ConfigError, DataError, UnlearnKitError
from ..methods import get_method
from ..methods.base import Dist, choice, int_range, loguniform, uniform
from ..metrics.functional.gaps import AVG_GAP_PRESETS, avg_gap
from ..metrics.suite import model_signals, tier_a
from ..models import ModelFactory
from ..tasks import ForgetTask, forget_task
from .runner import RunSummary, _Refs, seeds_for
from .scenarios import hardness_scores, scenario_task
from .spec import BenchSpec, ScenarioSpec

__all__ = [
    "DIGITS_SEARCH_SPACES",
    "VAL_CLASS_SHIFT",
    "VAL_SPLIT_SEED_OFFSET",
    "TuneResult",
    "TuneTrial",
    "current_config",
    "draw_configs",
    "original_gap",
    "resolve_search_space",
    "tune_method",
    "validation_bundle",
    "validation_task",
]

log = logging.getLogger(__name__)

#: The random scenario's validation forget set uses the benchmark's split seed plus this.
VAL_SPLIT_SEED_OFFSET = 100
#: The class scenario's validation class is the benchmark's class plus this (mod K), skipping
#: classes the benchmark forgets.
VAL_CLASS_SHIFT = 1

#: The library's digits search spaces, keyed by registry name, with config keys.
#: SCRUB's ``msteps`` is ``int(1, epochs)``: the table holds its widest range and the draw is
#: redone in ``[1, epochs]`` once ``epochs`` is drawn (:data:`_CONDITIONAL`).
DIGITS_SEARCH_SPACES: dict[str, dict[str, Dist]] = {
    "finetune": {"lr": loguniform(1e-3, 1e-1), "epochs": int_range(1, 30)},
    "gradient_ascent": {"lr": loguniform(1e-5, 5e-2), "epochs": int_range(1, 20)},
    "neggrad_plus": {
        "beta": uniform(0.5, 0.999),
        "lr": loguniform(1e-4, 1e-1),
        "epochs": int_range(1, 20),
    },
    "random_labels": {
        "lr": loguniform(1e-4, 1e-1),
        "epochs": int_range(1, 20),
        "exclude_true_label": choice([False, True]),
    },
    "l1_sparse": {
        "gamma": loguniform(1e-6, 1e-2),
        "lr": loguniform(1e-3, 1e-1),
        "epochs": int_range(1, 30),
    },
    "salun": {
        "threshold": uniform(0.1, 0.9),
        "lr": loguniform(1e-4, 1e-1),
        "epochs": int_range(1, 20),
    },
    "boundary_shrink": {
        "bound": choice([0.05, 0.1, 0.2]),
        "lr": loguniform(1e-5, 1e-1),
        "epochs": int_range(1, 20),
    },
    "boundary_expanding": {"lr": loguniform(1e-5, 1e-1), "epochs": int_range(1, 20)},
    "scrub": {
        "lr": loguniform(1e-4, 5e-2),
        "ce_weight": uniform(0.0, 1.0),
        "kl_weight": uniform(0.0, 1.0),
        "temperature": uniform(1.0, 5.0),
        "msteps": int_range(1, 10),
        "epochs": int_range(2, 10),
    },
    "ssd": {
        "selection_weighting": loguniform(1.0, 100.0),
        "dampening_constant": loguniform(0.05, 5.0),
    },
    "bad_teacher": {
        "lr": loguniform(1e-5, 1e-2),
        "temperature": uniform(0.5, 5.0),
        "epochs": int_range(1, 20),
        "retain_fraction": uniform(0.1, 1.0),
    },
    "fisher": {"alpha": loguniform(1e-9, 1e-4)},
    "influence": {"alpha": loguniform(0.05, 50.0)},
    "ugradsl": {
        "alpha": uniform(-1.5, -0.05),
        "p": uniform(0.2, 0.95),
        "lr": loguniform(1e-4, 5e-2),
        "epochs": int_range(1, 30),
    },
    "ugradsl_plus": {
        "alpha": uniform(-1.5, -0.05),
        "p": uniform(0.3, 0.95),
        "lr": loguniform(1e-3, 1e-1),
        "epochs": int_range(1, 20),
    },
    "natmu": {
        "lr": loguniform(1e-4, 1e-2),
        "weight_decay": uniform(0.0, 1e-3),
        "delta": uniform(-0.15, 0.15),
        "epochs": int_range(2, 15),
    },
    "jit": {
        "sigma": loguniform(0.01, 1.0),
        "lr": loguniform(1e-5, 1e-1),
        "n_samples": choice([10, 25, 50]),
        "mode": choice(["original", "robust"]),
        "epochs": choice([1, 2, 3]),
    },
}
DIGITS_SEARCH_SPACES["scrub_r"] = dict(DIGITS_SEARCH_SPACES["scrub"])
DIGITS_SEARCH_SPACES["lfssd"] = dict(DIGITS_SEARCH_SPACES["ssd"])

#: Dimensions whose range depends on another drawn value: ``key -> (depends_on, make_dist)``.
_CONDITIONAL: dict[str, dict[str, tuple[str, Callable[[Any], Dist]]]] = {
    "scrub": {"msteps": ("epochs", lambda e: int_range(1, int(e)))},
    "scrub_r": {"msteps": ("epochs", lambda e: int_range(1, int(e)))},
}
_CONDITIONAL_NOTES = {
    "scrub": {"msteps": "int(1, epochs)"},
    "scrub_r": {"msteps": "int(1, epochs)"},
}

_OBJECTIVE = "salun"
_TIEBREAK = "natmu"
_SIG_DIGITS = 3


# ---------------------------------------------------------------------------------------------
# The validation protocol


def validation_bundle(bundle: DatasetBundle) -> DatasetBundle:
    """The bundle with its test split replaced by the validation split.

    Every metric that reads "the test set" (TA, the attacks' non-member side) then reads
    ``D_val``. The validation split stays available as ``val`` (SCRUB+R's rewind reads it).

    Raises:
        DataError: the bundle has no (or an empty) validation split.
    """
    if bundle.val is None or len(bundle.val) == 0:
        raise DataError(
            f"dataset {bundle.name!r} has no validation split; tuning needs one "
            "(digits: val_fraction > 0; synthetic: n_val > 0)"
        )
    return dataclasses.replace(
        bundle,
        test=bundle.val,
        split_info={**bundle.split_info, "view": "validation (test split := val split)"},
    )


def _scenario(spec: BenchSpec, scenario: ScenarioSpec | str) -> ScenarioSpec:
    if isinstance(scenario, ScenarioSpec):
        return scenario
    for sc in spec.scenarios:
        if sc.name == scenario:
            return sc
    names = ", ".join(s.name for s in spec.scenarios)
    raise ConfigError(f"spec {spec.name!r} has no scenario {scenario!r}; its scenarios: {names}")


def _validation_classes(classes: tuple[int, ...], bundle: DatasetBundle) -> list[int]:
    """Each forgotten class ``c`` -> the first class ``c + VAL_CLASS_SHIFT, c + 2, ...`` (mod K)
    that the benchmark does not forget, that is not taken yet and that has training samples."""
    k = bundle.num_classes
    present = set(np.unique(bundle.train.y.numpy()).tolist())
    out: list[int] = []
    for c in sorted(classes):
        for step in range(VAL_CLASS_SHIFT, VAL_CLASS_SHIFT + k):
            cand = (c + step) % k
            if cand not in classes and cand not in out and cand in present:
                out.append(cand)
                break
        else:
            raise DataError(
                f"no class is left for a validation forget set: the benchmark forgets {classes} "
                f"of {k} classes"
            )
    return sorted(out)


def _validation_subclasses(subclasses: tuple[int, ...], bundle: DatasetBundle) -> list[int]:
    """Each forgotten fine class -> the next fine class (by index, wrapping) of the same
    super-class that the benchmark does not forget and that is not taken yet."""
    fine, coarse = bundle.train.fine.numpy(), bundle.train.y.numpy()
    present = sorted(np.unique(fine).tolist())
    parent = {f: int(np.bincount(coarse[fine == f]).argmax()) for f in present}
    out: list[int] = []
    for f in sorted(subclasses):
        later = [c for c in present if c > f] + [c for c in present if c < f]
        for cand in later:
            if parent[cand] == parent[f] and cand not in subclasses and cand not in out:
                out.append(cand)
                break
        else:
            raise DataError(
                f"no fine class is left for a validation forget set: super-class {parent[f]} "
                f"has no fine class besides the forgotten {sorted(subclasses)}"
            )
    return sorted(out)


def validation_task(
    spec: BenchSpec,
    scenario: ScenarioSpec | str,
    *,
    bundle: DatasetBundle | None = None,
) -> ForgetTask:
    """The validation forget task of one benchmark scenario.

    Its bundle is :func:`validation_bundle` (test split := validation split). Its forget set
    differs from the benchmark's:

    * ``random`` with ``hard``: the next most memorised samples (the benchmark's forget set
      excluded, same count and stratification);
    * ``random``: the same fraction or count (and stratification) drawn with split seed
      ``seed + VAL_SPLIT_SEED_OFFSET`` (the seed is raised further in the unlikely case that
      this reproduces the benchmark's forget set);
    * ``class``: each forgotten class ``c`` is replaced by ``(c + VAL_CLASS_SHIFT) mod K``,
      moving on to ``c + 2, ...`` past classes the benchmark forgets (digits' class 3 -> 4);
    * ``subclass``: each forgotten fine class is replaced by the next fine class of the same
      super-class that the benchmark keeps (by fine index, wrapping around);
    * ``indices``: as many positions as the benchmark forgets, drawn at random (seed
      ``seed + VAL_SPLIT_SEED_OFFSET``) among the positions the benchmark retains.

    Args:
        spec: the benchmark spec.
        scenario: a scenario of ``spec`` or its name.
        bundle: the spec's dataset, when already loaded.

    Raises:
        DataError: no validation split, or no different forget set exists.
        ConfigError: unknown scenario name.
    """
    sc = _scenario(spec, scenario)
    if bundle is None:
        bundle = load(spec.dataset.name, **spec.dataset.options)
    bench = scenario_task(spec, sc, bundle)
    vb = validation_bundle(bundle)
    kw = sc.task_kwargs()
    if sc.hard:
        # the next most memorised samples: the benchmark's own forget set ranked last
        h = hardness_scores(spec, sc, bundle).copy()
        h[bench.forget_idx] = h.min() - 1.0
        kw["hardness"] = h
        task = forget_task(vb, **kw)
    elif sc.scenario == "class":
        kw["classes"] = _validation_classes(bench.forget_classes, bundle)
        task = forget_task(vb, **kw)
    elif sc.scenario == "subclass":
        kw["subclasses"] = _validation_subclasses(bench.forget_subclasses, bundle)
        task = forget_task(vb, **kw)
    elif sc.scenario == "indices":
        rng = np.random.default_rng(sc.seed + VAL_SPLIT_SEED_OFFSET)
        picks = rng.choice(bench.retain_idx, size=bench.n_forget, replace=False)
        kw["indices"] = sorted(int(i) for i in picks)
        kw["seed"] = sc.seed + VAL_SPLIT_SEED_OFFSET
        task = forget_task(vb, **kw)
    else:
        for extra in range(16):
            kw["seed"] = sc.seed + VAL_SPLIT_SEED_OFFSET + extra
            task = forget_task(vb, **kw)
            if not np.array_equal(task.forget_idx, bench.forget_idx):
                break
    if np.array_equal(task.forget_idx, bench.forget_idx):
        raise DataError(f"scenario {sc.name!r}: no validation forget set differs from the bench's")
    return task


# ---------------------------------------------------------------------------------------------
# Search space and draws


def resolve_search_space(
    method: str, search_space: Mapping[str, Dist] | None = None
) -> tuple[dict[str, Dist], str]:
    """The space a search uses and where it comes from.

    Returns:
        ``(space, source)`` with ``source`` one of ``"given"``, ``"digits search space"``
        (:data:`DIGITS_SEARCH_SPACES`) or ``"registered"`` (the method's ``search_space``).
    """
    mspec = get_method(method)
    if search_space is not None:
        space, source = dict(search_space), "given"
    elif mspec.name in DIGITS_SEARCH_SPACES:
        space, source = dict(DIGITS_SEARCH_SPACES[mspec.name]), "digits search space"
    else:
        space, source = dict(mspec.search_space), "registered"
    for key, dist in space.items():
        if not isinstance(dist, Dist):
            raise ConfigError(
                f"search space of {mspec.name!r}: {key!r} must be a Dist "
                "(loguniform/uniform/int_range/choice from unlearnkit.methods.base)"
            )
    return space, source


def _round(value: Any, dist: Dist) -> Any:
    """Continuous draws to 3 significant digits, so the stored config is the evaluated one."""
    if dist.kind in ("loguniform", "uniform") and isinstance(value, float) and value != 0.0:
        return float(f"{value:.{_SIG_DIGITS}g}")
    if isinstance(value, np.generic):
        return value.item()
    return value


def draw_configs(method: str, space: Mapping[str, Dist], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` seeded random draws from ``space`` (keys in sorted order, one generator).

    Draws for ``n`` are a prefix of the draws for ``n + 1``: a search can be extended.
    """
    rng = np.random.default_rng(seed)
    cond = _CONDITIONAL.get(get_method(method).name, {})
    out = []
    for _ in range(n):
        draw = {k: _round(space[k].sample(rng), space[k]) for k in sorted(space)}
        for key, (dep, make) in cond.items():
            if key in draw and dep in draw:
                dist = make(draw[dep])
                draw[key] = _round(dist.sample(rng), dist)
        out.append(draw)
    return out


def _space_text(method: str, space: Mapping[str, Dist]) -> dict[str, str]:
    notes = _CONDITIONAL_NOTES.get(get_method(method).name, {})
    return {k: notes.get(k, str(v)) for k, v in space.items()}


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class TuneTrial:
    """One point of the search.

    Attributes:
        index: 0 for the current default, then the draws in order.
        overrides: the flat config overrides laid over the preset (what a spec's
            ``method_config`` holds).
        objective: the ``salun`` Avg. Gap per seed replicate (``inf``: diverged or failed).
        tiebreak: the ``natmu`` Avg. Gap per seed replicate.
        metrics: per replicate, the unlearned model's values and gaps of the preset metrics.
        error: the first failure message, if a run failed or diverged.
        seconds: wall time of the trial (unlearning and evaluation).
    """

    index: int
    overrides: dict[str, Any]
    objective: list[float] = field(default_factory=list)
    tiebreak: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        vals = [v if not math.isnan(v) else math.inf for v in self.objective]
        return float(np.mean(vals)) if vals else math.inf

    @property
    def std(self) -> float:
        vals = self.objective
        if len(vals) < 2 or not all(math.isfinite(v) for v in vals):
            return math.nan
        return float(np.std(vals, ddof=1))

    @property
    def mean_tiebreak(self) -> float:
        vals = [v if not math.isnan(v) else math.inf for v in self.tiebreak]
        return float(np.mean(vals)) if vals else math.inf

    def sort_key(self) -> tuple[float, float, int]:
        return (round(self.mean, 12), round(self.mean_tiebreak, 12), self.index)

    def summary(self) -> dict[str, float]:
        """Means over replicates: both Avg. Gaps and every component gap."""
        out = {
            f"avg_gap_{_OBJECTIVE}": self.mean,
            f"avg_gap_{_OBJECTIVE}_std": self.std,
            f"avg_gap_{_TIEBREAK}": self.mean_tiebreak,
        }
        keys = sorted({k for m in self.metrics for k in m})
        for k in keys:
            vals = [m[k] for m in self.metrics if k in m]
            out[k] = float(np.mean(vals)) if vals else math.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "overrides": self.overrides,
            "objective": self.objective,
            "tiebreak": self.tiebreak,
            "mean": self.mean,
            "mean_tiebreak": self.mean_tiebreak,
            "metrics": self.metrics,
            "error": self.error,
            "seconds": self.seconds,
        }


@dataclass
class TuneResult:
    """The outcome of :func:`tune_method`.

    Attributes:
        method, scenario: what was tuned (canonical method name, scenario name).
        preset: the preset the benchmark applies (``"digits"``) or ``None``.
        base_overrides: the spec's current overrides for this method and scenario.
        search_space: the space, as text (``"loguniform(0.001, 0.1)"``).
        space_source: ``"given"``, ``"digits search space"`` or ``"registered"``.
        seeds: the seed replicates averaged (``seeds_for(rep)`` of the benchmark runner).
        seed: the seed of the random draws.
        trials: every trial; ``trials[0]`` is the current default.
        best_index: the index of the chosen trial.
        task: ``describe()`` of the validation task.
        reference: per replicate, the validation metrics of ``theta_r``.
        seconds: wall time of the whole search.
    """

    method: str
    scenario: str
    preset: str | None
    base_overrides: dict[str, Any]
    search_space: dict[str, str]
    space_source: str
    seeds: tuple[int, ...]
    seed: int
    trials: list[TuneTrial]
    best_index: int
    task: dict[str, Any] = field(default_factory=dict)
    reference: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def default(self) -> TuneTrial:
        return self.trials[0]

    @property
    def best(self) -> TuneTrial:
        return self.trials[self.best_index]

    @property
    def best_overrides(self) -> dict[str, Any]:
        """The chosen config as flat overrides over the preset (a spec's ``method_config``)."""
        return dict(self.best.overrides)

    @property
    def improved(self) -> bool:
        return self.best_index != 0

    def comparison(self) -> dict[str, dict[str, float]]:
        """Default vs tuned, side by side: validation means over the seed replicates."""
        d, t = self.default.summary(), self.best.summary()
        return {
            "default": d,
            "tuned": t,
            "improvement": {k: d[k] - t[k] for k in d if k in t and not k.endswith("_std")},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "scenario": self.scenario,
            "preset": self.preset,
            "base_overrides": self.base_overrides,
            "search_space": self.search_space,
            "space_source": self.space_source,
            "seeds": list(self.seeds),
            "seed": self.seed,
            "best_index": self.best_index,
            "best_overrides": self.best_overrides,
            "comparison": self.comparison(),
            "task": self.task,
            "reference": self.reference,
            "seconds": self.seconds,
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TuneResult:
        trials = [
            TuneTrial(
                index=int(t["index"]),
                overrides=dict(t["overrides"]),
                objective=[float(v) for v in t["objective"]],
                tiebreak=[float(v) for v in t["tiebreak"]],
                metrics=[dict(m) for m in t["metrics"]],
                error=t.get("error"),
                seconds=float(t.get("seconds", 0.0)),
            )
            for t in d["trials"]
        ]
        return cls(
            method=d["method"],
            scenario=d["scenario"],
            preset=d.get("preset"),
            base_overrides=dict(d.get("base_overrides", {})),
            search_space=dict(d["search_space"]),
            space_source=d["space_source"],
            seeds=tuple(int(s) for s in d["seeds"]),
            seed=int(d["seed"]),
            trials=trials,
            best_index=int(d["best_index"]),
            task=dict(d.get("task", {})),
            reference=[dict(r) for r in d.get("reference", [])],
            seconds=float(d.get("seconds", 0.0)),
        )


# ---------------------------------------------------------------------------------------------
# The search


class _ValidationRefs(_Refs):
    """Retrain on the validation task, from the benchmark's own original model."""

    def __init__(self, bench_refs: _Refs, task: ForgetTask) -> None:
        r = bench_refs
        super().__init__(r.spec, task, r.rep, r.factory, r.bank, r.summary, r.say, r.device)
        self._bench = bench_refs

    def original(self):
        return self._bench.original()


_KEYS = tuple(sorted({k for ks in AVG_GAP_PRESETS.values() for k in ks}))


def _metrics(model, task: ForgetTask, spec: BenchSpec, device) -> dict[str, float]:
    return tier_a(model_signals(model, task, device=device), seed_attack=spec.seed_attack)


def _score(m_u: dict[str, float], m_r: dict[str, float]) -> tuple[float, float, dict]:
    obj = avg_gap(m_u, m_r, _OBJECTIVE)
    tie = avg_gap(m_u, m_r, _TIEBREAK)
    detail = {}
    for k in _KEYS:
        detail[k] = float(m_u[k])
        detail[f"gap_{k}"] = abs(float(m_u[k]) - float(m_r[k]))
    return obj, tie, detail


def current_config(spec: BenchSpec, sc: ScenarioSpec, method: str) -> tuple[str | None, dict]:
    """The preset and the overrides the benchmark runs for ``method`` in ``sc`` now.

    Config precedence as in :meth:`BenchSpec.method_entries`: preset < the spec's
    ``method_config`` < the scenario's ``method_config`` < a listed entry's own ``config``.
    """
    mspec = get_method(method)
    for e in spec.method_entries(sc):
        if get_method(e.method).name == mspec.name:
            return e.preset, dict(e.config)
    preset = spec.default_preset if spec.default_preset in mspec.presets else None
    extra = {**spec.method_config.get(mspec.name, {}), **sc.method_config.get(mspec.name, {})}
    return preset, extra


def original_gap(
    spec: BenchSpec,
    scenario_name: str,
    *,
    seeds: tuple[int, ...] = (0, 1),
    bank_dir: str | None = None,
    echo: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
) -> list[dict[str, float]]:
    """The "no unlearning" point: ``theta_o`` scored by the search's objective.

    Returns, per seed replicate, ``theta_o``'s validation values of the preset metrics, their
    gaps to ``theta_r`` and both Avg. Gaps (``avg_gap_salun``, ``avg_gap_natmu``). A trial
    near these values changed (almost) nothing.
    """
    say = echo or (lambda msg: log.info(msg))
    sc = _scenario(spec, scenario_name)
    bundle = load(spec.dataset.name, **spec.dataset.options)
    factory = ModelFactory.for_bundle(spec.model.arch, bundle, **spec.model.options)
    vtask = validation_task(spec, sc, bundle=bundle)
    btask = scenario_task(spec, sc, bundle, factory=factory)
    out = []
    with tempfile.TemporaryDirectory(prefix="unlearnkit-tune-") as tmp:
        bank = OracleBank(bank_dir if bank_dir is not None else tmp)
        for rep in seeds:
            b = _Refs(spec, btask, rep, factory, bank, RunSummary(), say, device)
            m_r = _metrics(_ValidationRefs(b, vtask).retrain("retrain")[0], vtask, spec, device)
            m_o = _metrics(b.original()[0], vtask, spec, device)
            obj, tie, detail = _score(m_o, m_r)
            out.append({f"avg_gap_{_OBJECTIVE}": obj, f"avg_gap_{_TIEBREAK}": tie, **detail})
    return out


def tune_method(
    spec: BenchSpec,
    method: str,
    scenario_name: str,
    *,
    n_trials: int = 16,
    seeds: tuple[int, ...] = (0, 1),
    search_space: Mapping[str, Dist] | None = None,
    seed: int = 0,
    bank_dir: str | None = None,
    echo: Callable[[str], None] | None = None,
    device: torch.device | str | None = None,
) -> TuneResult:
    """Search a method's config on the validation protocol of one benchmark scenario.

    Args:
        spec: the benchmark spec (dataset, model, recipe, scenarios, current overrides).
        method: registry name or alias.
        scenario_name: a scenario of ``spec``.
        n_trials: trials in all, the current default included (>= 1).
        seeds: seed replicates averaged by the objective (``seeds_for(rep)`` seeds).
        search_space: ``{config key: Dist}``; default :data:`DIGITS_SEARCH_SPACES`, else the
            method's registered ``search_space``.
        seed: seed of the random draws.
        bank_dir: directory of the oracle bank (reuse the benchmark's ``out/bank`` to share
            ``theta_o``); default a temporary directory.
        echo: progress callback.
        device: where to train and run.

    Returns:
        A :class:`TuneResult`; ``best_overrides`` is the chosen config.

    Raises:
        ConfigError: unknown method or scenario, unsupported scenario, bad search space.
        DataError: the dataset has no validation split.

    Example:
        >>> res = tune_method(spec, "finetune", "class-3", n_trials=8, bank_dir="runs/bank")
        >>> res.best_overrides
        {'epochs': 7, 'lr': 0.0312}
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials must be >= 1, got {n_trials}")
    if not seeds:
        raise ConfigError("seeds must list at least one replicate")
    say = echo or (lambda msg: log.info(msg))
    t_start = time.perf_counter()
    mspec = get_method(method)
    sc = _scenario(spec, scenario_name)
    if sc.scenario not in mspec.access.scenarios:
        raise ConfigError(f"method {mspec.name!r} does not support scenario {sc.scenario!r}")
    preset, base = current_config(spec, sc, mspec.name)
    space, source = resolve_search_space(mspec.name, search_space)
    for key, dist in space.items():  # fail early on a key the config does not have
        try:
            mspec.make_config({**base, key: dist.grid(2)[0]}, preset=preset, scenario=sc.scenario)
        except ConfigError as exc:
            raise ConfigError(f"search space of {mspec.name!r}, key {key!r}: {exc}") from exc
    draws = draw_configs(mspec.name, space, n_trials - 1, seed) if space else []
    if not space and n_trials > 1:
        say(f"[{mspec.name}/{sc.name}] empty search space: only the default is evaluated")
    trials = [TuneTrial(0, dict(base))] + [
        TuneTrial(i + 1, {**base, **d}) for i, d in enumerate(draws)
    ]

    bundle = load(spec.dataset.name, **spec.dataset.options)
    factory = ModelFactory.for_bundle(spec.model.arch, bundle, **spec.model.options)
    vtask = validation_task(spec, sc, bundle=bundle)
    btask = scenario_task(spec, sc, bundle, factory=factory)
    with tempfile.TemporaryDirectory(prefix="unlearnkit-tune-") as tmp:
        bank = OracleBank(bank_dir if bank_dir is not None else tmp)
        summary = RunSummary()
        refs = []
        for rep in seeds:
            b = _Refs(spec, btask, rep, factory, bank, summary, say, device)
            v = _ValidationRefs(b, vtask)
            m_r = _metrics(v.retrain("retrain")[0], vtask, spec, device)
            refs.append((rep, b, m_r))
        caches: dict[int, dict[str, Any]] = {rep: {} for rep, _, _ in refs}
        for trial in trials:
            _run_trial(spec, mspec.name, preset, sc, vtask, factory, refs, caches, trial, device)
            tag = "default" if trial.index == 0 else f"trial {trial.index}"
            err = f" ({trial.error})" if trial.error else ""
            say(
                f"[{mspec.name}/{sc.name}] {tag}: Avg. Gap {trial.mean:.4f} "
                f"({trial.seconds:.1f} s) {trial.overrides}{err}"
            )
    best = min(trials, key=TuneTrial.sort_key)
    return TuneResult(
        method=mspec.name,
        scenario=sc.name,
        preset=preset,
        base_overrides=dict(base),
        search_space=_space_text(mspec.name, space),
        space_source=source,
        seeds=tuple(int(s) for s in seeds),
        seed=seed,
        trials=trials,
        best_index=best.index,
        task=vtask.describe(),
        reference=[{k: float(m_r[k]) for k in _KEYS} for _, _, m_r in refs],
        seconds=time.perf_counter() - t_start,
    )


def _run_trial(spec, method, preset, sc, vtask, factory, refs, caches, trial, device) -> None:
    t0 = time.perf_counter()
    try:
        cfg = get_method(method).make_config(trial.overrides, preset=preset, scenario=sc.scenario)
    except ConfigError as exc:
        trial.error = f"ConfigError: {exc}"
        trial.objective = [math.inf] * len(refs)
        trial.tiebreak = [math.inf] * len(refs)
        return
    for rep, b, m_r in refs:
        try:
            orig, _ = b.original()
            outcome = run_unlearning(
                orig,
                vtask,
                method,
                cfg,
                seed=seeds_for(rep)["seed_unlearn"],
                recipe=spec.recipe,
                model_factory=factory,
                cache=caches[rep],
                device=device,
            )
            if outcome.diverged:
                raise RuntimeError(
                    f"diverged: {outcome.info.get('diverged_reason', outcome.stop_reason)}"
                )
            m_u = _metrics(outcome.model, vtask, spec, device)
            obj, tie, detail = _score(m_u, m_r)
        except (UnlearnKitError, RuntimeError, ValueError) as exc:
            trial.error = trial.error or f"{type(exc).__name__}: {exc}"
            # One failed replicate makes the mean +inf: the other replicates are not run.
            missing = len(refs) - len(trial.objective)
            trial.objective += [math.inf] * missing
            trial.tiebreak += [math.inf] * missing
            break
        trial.objective.append(float(obj))
        trial.tiebreak.append(float(tie))
        trial.metrics.append(detail)
    trial.seconds = time.perf_counter() - t0
