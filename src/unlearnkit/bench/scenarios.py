"""The forget task of a benchmark scenario: one place that turns a :class:`ScenarioSpec` into a
:class:`~unlearnkit.tasks.ForgetTask` (the benchmark, its tuning and the audits all use it).

A ``hard`` scenario needs memorisation scores, which cost a few dozen trainings: they are
computed once per (dataset, model, recipe, model count, seed), kept for the process, and stored
as ``memorisation-<key>.npy`` in ``cache_dir`` when one is given (written atomically; an
unreadable or mismatched file is recomputed).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..audit.bank import bank_key
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
    return ModelFactory.for_bundle(spec.model.arch, bundle, **spec.model.options)


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
    path = Path(cache_dir) / f"memorisation-{key}.npy" if cache_dir is not None else None
    scores = None
    if path is not None and path.is_file():
        try:
            scores = np.load(path, allow_pickle=False)
            if scores.shape != (len(bundle.train),) or not np.isfinite(scores).all():
                raise ValueError(f"shape {scores.shape}")
        except (OSError, ValueError) as exc:
            log.warning("discarding unreadable memorisation scores %s (%s)", path, exc)
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
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.save(f, scores)
            os.replace(tmp, path)
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
