"""The forget task of a benchmark scenario: one place that turns a :class:`ScenarioSpec` into a
:class:`~unlearnkit.tasks.ForgetTask` (the benchmark, its tuning and the audits all use it).

A ``hard`` scenario needs memorisation scores, which cost a few dozen trainings: they are
computed once per (dataset, model, recipe, model count, seed), kept for the process, and stored
in ``cache_dir``'s model bank when one is given (``memorisation-<key>.npy`` with a checksum
sidecar, written atomically like the models; a file that is missing its sidecar, fails its checksum,
cannot be read or has the wrong shape is discarded and recomputed, never trusted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..audit.bank import OracleBank, bank_key
from ..datasets import DatasetBundle
from ..memorisation import memorisation_scores
from ..models import ModelFactory
from ..tasks import ForgetTask, forget_task
from .spec import BenchSpec, ScenarioSpec

__all__ = ["hardness_scores", "scenario_task"]

log = logging.getLogger(__name__)

_SCORES: dict[str, np.ndarray] = {}


def _factory(spec: BenchSpec, bundle: DatasetBundle, factory: ModelFactory | None):
    if factory is not None:
        return factory
    return spec.model.factory_for(bundle)


def hardness_scores(
    spec: BenchSpec,
    scenario: ScenarioSpec,
    bundle: DatasetBundle,
    *,
    factory: ModelFactory | None = None,
    cache_dir: str | Path | None = None,
    device: Any = None,
    say: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Memorisation scores of ``bundle.train`` for a ``hard`` scenario (cached)."""
    factory = _factory(spec, bundle, factory)
    key = bank_key(
        role="memorisation",
        dataset=bundle.fingerprint,
        arch=factory.describe(),
        recipe=spec.recipe.hash,
        models=scenario.hard_models,
        seed=scenario.seed,
    )
    if key in _SCORES:
        return _SCORES[key]
    bank = OracleBank(cache_dir) if cache_dir is not None else None
    name = f"memorisation-{key}"
    scores = bank.get_array(name, shape=(len(bundle.train),)) if bank is not None else None
    if scores is not None and not np.isfinite(scores).all():
        log.warning("discarding memorisation scores %s: not all finite", name)
        scores = None
    if scores is None:
        (say or log.info)(
            f"  training {scenario.hard_models} models on halves of the training set "
            f"(memorisation scores for the hard scenario {scenario.name!r})"
        )
        scores = memorisation_scores(
            bundle,
            factory,
            spec.recipe,
            models=scenario.hard_models,
            seed=scenario.seed,
            device=device,
        )
        if bank is not None:
            bank.put_array(name, scores, {"role": "memorisation", "scenario": scenario.name})
    _SCORES[key] = scores
    return scores


def scenario_task(
    spec: BenchSpec,
    scenario: ScenarioSpec,
    bundle: DatasetBundle,
    *,
    factory: ModelFactory | None = None,
    cache_dir: str | Path | None = None,
    device: Any = None,
    say: Callable[[str], None] | None = None,
) -> ForgetTask:
    """The forget task of ``scenario`` on ``bundle`` (memorisation scores for ``hard``)."""
    kw = scenario.task_kwargs()
    if scenario.hard:
        kw["hardness"] = hardness_scores(
            spec, scenario, bundle, factory=factory, cache_dir=cache_dir, device=device, say=say
        )
    return forget_task(bundle, **kw)
