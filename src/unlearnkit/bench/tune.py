"""The validation protocol of ``unlearnkit tune``: how a method config is scored without ever
reading the test split. The Optuna study that searches configs with it is
:mod:`unlearnkit.bench.tuning`.

* **Validation view.** The bundle's test split is replaced by its validation split, so test
  accuracy and the non-member side of every attack read ``D_val`` only.
* **Validation forget split.** A forget set that differs from the benchmark's (see
  :func:`validation_task` for the rule), so the search is not fitted to the very samples the
  benchmark later scores.
* **References.** ``theta_o`` is the benchmark's original model (same recipe, model and seed,
  trained on the full training split and shared with the benchmark through the
  :class:`~unlearnkit.audit.bank.OracleBank`); ``theta_r`` is retrained with the same recipe on
  the validation task's retain set.
* **Objective.** The paired Avg. Gap (preset ``salun``: UA, RA, TA, MIA-Efficacy) of the
  unlearned model to ``theta_r``, averaged over the seed replicates; ties are broken by the
  ``natmu``-preset Avg. Gap; a run that diverges or fails scores ``+inf``.
* **Starting point.** The configuration the benchmark runs now (the method's ``digits`` preset
  plus the spec's overrides); searched values are laid over it
  (:mod:`unlearnkit.bench.tune_space`).

Example::

    from unlearnkit.bench.spec import default_spec
    setup = ValidationSetup(default_spec(), "class-3", seeds=(0, 1), bank_dir="runs/bank")
    setup.evaluate("finetune", "digits", {"epochs": 5}).mean  # validation Avg. Gap
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..api import run_unlearning
from ..audit.bank import OracleBank
from ..datasets import DatasetBundle, load
from ..errors import ConfigError, DataError, UnlearnKitError
from ..methods import get_method
from ..metrics.functional.gaps import AVG_GAP_PRESETS, avg_gap
from ..metrics.suite import model_signals, tier_a
from ..models import ModelFactory
from ..tasks import ForgetTask, forget_task
from .refs import _Refs, seeds_for
from .runner import RunSummary
from .scenarios import hardness_scores, scenario_task
from .spec import BenchSpec, ScenarioSpec
from .tune_space import current_config  # re-exported: scripts import it from here

__all__ = [
    "OBJECTIVE",
    "PROTOCOL_VERSION",
    "TIEBREAK",
    "VAL_CLASS_SHIFT",
    "VAL_SPLIT_SEED_OFFSET",
    "Evaluation",
    "ValidationSetup",
    "current_config",
    "find_scenario",
    "validation_bundle",
    "validation_task",
]

log = logging.getLogger(__name__)

#: The random scenario's validation forget set uses the benchmark's split seed plus this.
VAL_SPLIT_SEED_OFFSET = 100
#: The class scenario's validation class is the benchmark's class plus this (mod K), skipping
#: classes the benchmark forgets.
VAL_CLASS_SHIFT = 1
#: The Avg. Gap preset minimised, and the one that breaks ties.
OBJECTIVE = "salun"
TIEBREAK = "natmu"
#: Bumped when the protocol's meaning changes (stored studies of another version are refused).
PROTOCOL_VERSION = 2

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


def find_scenario(spec: BenchSpec, scenario: ScenarioSpec | str) -> ScenarioSpec:
    """The scenario of ``spec`` named ``scenario`` (ConfigError naming the valid ones)."""
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
    factory: ModelFactory | None = None,
    cache_dir: str | Path | None = None,
    device: Any = None,
    say: Callable[[str], None] | None = None,
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
        factory, cache_dir, device, say: for a ``hard`` scenario's memorisation scores (kept
            in ``cache_dir``'s model bank when given; see
            :func:`~unlearnkit.bench.scenarios.hardness_scores`).

    Raises:
        DataError: no validation split, or no different forget set exists.
        ConfigError: unknown scenario name.
    """
    sc = find_scenario(spec, scenario)
    if bundle is None:
        bundle = load(spec.dataset.name, **spec.dataset.options)
    hard = {"factory": factory, "cache_dir": cache_dir, "device": device, "say": say}
    bench = scenario_task(spec, sc, bundle, **hard)
    vb = validation_bundle(bundle)
    kw = sc.task_kwargs()
    if sc.hard:
        # the next most memorised samples: the benchmark's own forget set ranked last
        h = hardness_scores(spec, sc, bundle, **hard).copy()
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
# Scoring


_KEYS = tuple(sorted({k for ks in AVG_GAP_PRESETS.values() for k in ks}))


def _metrics(model, task: ForgetTask, spec: BenchSpec, device) -> dict[str, float]:
    return tier_a(model_signals(model, task, device=device), seed_attack=spec.seed_attack)


def _score(m_u: dict[str, float], m_r: dict[str, float]) -> tuple[float, float, dict]:
    obj = avg_gap(m_u, m_r, OBJECTIVE)
    tie = avg_gap(m_u, m_r, TIEBREAK)
    detail = {}
    for k in _KEYS:
        detail[k] = float(m_u[k])
        detail[f"gap_{k}"] = abs(float(m_u[k]) - float(m_r[k]))
    return obj, tie, detail


def _finite_or_inf(vals: list[float]) -> list[float]:
    return [v if not math.isnan(v) else math.inf for v in vals]


@dataclass
class Evaluation:
    """One config scored on the validation task.

    Attributes:
        objective: the ``salun`` Avg. Gap per seed replicate (``inf``: diverged or failed).
        tiebreak: the ``natmu`` Avg. Gap per seed replicate.
        metrics: per replicate, the unlearned model's values and gaps of the preset metrics.
        error: the first failure message, if a run failed or diverged.
        seconds: wall time (unlearning and evaluation).
    """

    objective: list[float] = field(default_factory=list)
    tiebreak: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    @property
    def mean(self) -> float:
        vals = _finite_or_inf(self.objective)
        return float(np.mean(vals)) if vals else math.inf

    @property
    def std(self) -> float:
        vals = self.objective
        if len(vals) < 2 or not all(math.isfinite(v) for v in vals):
            return math.nan
        return float(np.std(vals, ddof=1))

    @property
    def mean_tiebreak(self) -> float:
        vals = _finite_or_inf(self.tiebreak)
        return float(np.mean(vals)) if vals else math.inf

    def summary(self) -> dict[str, float]:
        """Means over replicates: both Avg. Gaps and every component gap."""
        out = {
            f"avg_gap_{OBJECTIVE}": self.mean,
            f"avg_gap_{OBJECTIVE}_std": self.std,
            f"avg_gap_{TIEBREAK}": self.mean_tiebreak,
        }
        for k in sorted({k for m in self.metrics for k in m}):
            vals = [m[k] for m in self.metrics if k in m]
            out[k] = float(np.mean(vals)) if vals else math.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evaluation:
        return cls(
            objective=[float(v) for v in d.get("objective", [])],
            tiebreak=[float(v) for v in d.get("tiebreak", [])],
            metrics=[{k: float(v) for k, v in m.items()} for m in d.get("metrics", [])],
            error=d.get("error"),
            seconds=float(d.get("seconds", 0.0)),
        )


class _ValidationRefs(_Refs):
    """Retrain on the validation task, from the benchmark's own original model."""

    def __init__(self, bench_refs: _Refs, task: ForgetTask) -> None:
        r = bench_refs
        super().__init__(r.spec, task, r.rep, r.factory, r.bank, r.summary, r.say, r.device)
        self._bench = bench_refs

    def original(self):
        return self._bench.original()


class ValidationSetup:
    """The validation side of one benchmark scenario: the validation task, and ``theta_o`` and
    ``theta_r`` of every seed replicate (trained once, then read from the bank).

    Args:
        spec: the benchmark spec (dataset, model, recipe, scenarios).
        scenario: a scenario of ``spec`` or its name.
        seeds: the seed replicates each evaluation averages (``seeds_for(rep)`` seeds).
        bank_dir: the oracle bank (the benchmark's ``OUT/bank`` shares its ``theta_o``).
        echo: progress callback.
        device: where to train and run.
        bundle: the spec's dataset, when already loaded.
        factory: the model factory, when already built (default: the spec's,
            :meth:`~unlearnkit.bench.spec.ModelSpec.factory_for`; its checkpoint, if any, is
            ``theta_o``).

    Raises:
        ConfigError: unknown scenario, no seeds, a bad model or checkpoint.
        DataError: the dataset has no validation split, or no other forget set exists.
    """

    def __init__(
        self,
        spec: BenchSpec,
        scenario: ScenarioSpec | str,
        *,
        seeds: tuple[int, ...],
        bank_dir: str | Path,
        echo: Callable[[str], None] | None = None,
        device: torch.device | str | None = None,
        bundle: DatasetBundle | None = None,
        factory: Callable[[int], Any] | None = None,
    ) -> None:
        if not seeds:
            raise ConfigError("seeds must list at least one replicate")
        self.spec, self.scenario = spec, find_scenario(spec, scenario)
        self.seeds = tuple(int(s) for s in seeds)
        self.device = device
        say = echo or log.info
        if bundle is None:
            bundle = load(spec.dataset.name, **spec.dataset.options)
        self.factory = factory if factory is not None else spec.model.factory_for(bundle)
        hard = {"factory": self.factory, "cache_dir": bank_dir, "device": device, "say": say}
        self.task = validation_task(spec, self.scenario, bundle=bundle, **hard)
        bench_task = scenario_task(spec, self.scenario, bundle, **hard)
        bank, summary = OracleBank(bank_dir), RunSummary()
        self._refs = []
        for rep in self.seeds:
            b = _Refs(spec, bench_task, rep, self.factory, bank, summary, say, device)
            theta_r = _ValidationRefs(b, self.task).retrain("retrain")[0]
            self._refs.append((rep, b, _metrics(theta_r, self.task, spec, device)))
        self._caches: dict[int, dict[str, Any]] = {rep: {} for rep in self.seeds}
        self.trained = summary.trained

    def reference(self) -> list[dict[str, float]]:
        """Per replicate, ``theta_r``'s validation values of the preset metrics."""
        return [{k: float(m_r[k]) for k in _KEYS} for _, _, m_r in self._refs]

    def noop(self) -> list[dict[str, float]]:
        """The "no unlearning" point: ``theta_o`` scored like a trial.

        Per replicate, ``theta_o``'s validation values of the preset metrics, their gaps to
        ``theta_r`` and both Avg. Gaps. A trial near these values changed (almost) nothing.
        """
        out = []
        for _, b, m_r in self._refs:
            obj, tie, detail = _score(_metrics(b.original()[0], self.task, self.spec, None), m_r)
            out.append({f"avg_gap_{OBJECTIVE}": obj, f"avg_gap_{TIEBREAK}": tie, **detail})
        return out

    def evaluate(
        self,
        method: str,
        preset: str | None,
        overrides: Mapping[str, Any],
        *,
        after_replicate: Callable[[Evaluation], None] | None = None,
    ) -> Evaluation:
        """Run ``method`` (``overrides`` over ``preset``) on every replicate and score it.

        A failed or diverged replicate scores ``+inf`` and the remaining ones are not run.
        ``after_replicate(evaluation so far)`` is called after every replicate but the last (a
        search stops a hopeless trial there by raising).
        """
        t0 = time.perf_counter()
        ev = Evaluation()
        mspec = get_method(method)
        try:
            cfg = mspec.make_config(dict(overrides), preset=preset, scenario=self.task.scenario)
        except ConfigError as exc:
            ev.error = f"ConfigError: {exc}"
            ev.objective = ev.tiebreak = [math.inf] * len(self._refs)
            return ev
        for i, (rep, b, m_r) in enumerate(self._refs):
            try:
                outcome = run_unlearning(
                    b.original()[0],
                    self.task,
                    mspec.name,
                    cfg,
                    seed=seeds_for(rep)["seed_unlearn"],
                    recipe=self.spec.recipe,
                    model_factory=self.factory,
                    cache=self._caches[rep],
                    device=self.device,
                )
                if outcome.diverged:
                    why = outcome.info.get("diverged_reason", outcome.stop_reason)
                    raise RuntimeError(f"diverged: {why}")
                obj, tie, detail = _score(
                    _metrics(outcome.model, self.task, self.spec, self.device), m_r
                )
            except (UnlearnKitError, RuntimeError, ValueError) as exc:
                ev.error = f"{type(exc).__name__}: {exc}"
                missing = len(self._refs) - len(ev.objective)
                ev.objective = ev.objective + [math.inf] * missing
                ev.tiebreak = ev.tiebreak + [math.inf] * missing
                break
            ev.objective.append(float(obj))
            ev.tiebreak.append(float(tie))
            ev.metrics.append(detail)
            ev.seconds = time.perf_counter() - t0
            if after_replicate is not None and i + 1 < len(self._refs):
                after_replicate(ev)
        ev.seconds = time.perf_counter() - t0
        return ev
