"""Per-sample memorisation scores, for ``hard`` forget sets.

Random forget sets hide failures: most random samples are easy, and any model classifies them
whether it saw them or not. A *hard* forget set takes the samples a model only gets right when
it trained on them. Their memorisation score (Feldman and Zhang's estimator) is

    mem(i) = P[model correct on x_i | x_i in its training set]
           - P[model correct on x_i | x_i not in its training set],

estimated here with ``models`` models trained on complementary random halves of ``D_tr``: model
``2j`` trains on half ``A_j``, model ``2j + 1`` on the rest, so every sample is "in" for exactly
half of the models and "out" for the other half. Only ``D_tr`` is read (never ``D_val`` or
``D_te``). The models are trained with :func:`unlearnkit.audit.ensemble.train_ensemble` when the
architecture allows it (tens of digits MLPs take seconds), one at a time otherwise.

Data read from disk (the ``image_folder`` dataset) are never loaded whole: the halves are lists
of files, each model trains on its own (batch by batch, as :func:`unlearnkit.train` reads such
data), and correctness is scored in one pass over the images in which every decoded batch is
scored by all the models.

>>> scores = memorisation_scores(bundle, factory, recipe, models=32)
>>> task = uk.forget_task(bundle, "random", fraction=0.1, hardness=scores)   # the top 10 %
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import BatchLoader
from .datasets import DatasetBundle
from .datasets._lazy import LazyImages, is_lazy, take_rows
from .errors import ConfigError, DataError
from .training import TrainRecipe, train

__all__ = ["half_splits", "memorisation_from", "memorisation_scores"]

#: Training seeds of the memorisation models start here (apart from the benchmark's own).
SEED_BASE = 50_000
_SCORE_BATCH = 2048  # rows per batch of the correctness pass (in memory)

log = logging.getLogger(__name__)


def half_splits(n: int, models: int, seed: int) -> np.ndarray:
    """``(models, n)`` boolean membership: pairs of complementary random halves of ``n`` samples
    (row ``2j`` holds ``floor(n/2)`` samples, row ``2j + 1`` the rest)."""
    if isinstance(models, bool) or models < 2 or models % 2:
        raise ConfigError(f"memorisation needs an even number of models >= 2, got {models!r}")
    if n < 2:
        raise DataError(f"memorisation needs at least 2 training samples, got {n}")
    rng = np.random.default_rng(seed)
    member = np.zeros((models, n), dtype=bool)
    for j in range(models // 2):
        half = rng.permutation(n)[: n // 2]
        member[2 * j, half] = True
        member[2 * j + 1] = ~member[2 * j]
    return member


@torch.no_grad()
def _correct(
    models: list[nn.Module], x: torch.Tensor | LazyImages, y: torch.Tensor, dev: torch.device
) -> np.ndarray:
    """``(models, n)``: whether each model classifies each row right, in one pass over ``x``.

    Each batch is scored by every model before the next is taken, so inputs read from disk
    are decoded once (in batches of at most ``x.eval_batch_size`` rows), not once per model.
    In-memory inputs are cut into the same 2048-row slices as always.
    """
    step = min(_SCORE_BATCH, x.eval_batch_size) if is_lazy(x) else _SCORE_BATCH
    for model in models:
        model.eval()
    out: list[list[np.ndarray]] = [[] for _ in models]
    for xb, yb in BatchLoader(x, y, step, device=dev):
        for model, rows in zip(models, out):
            rows.append((model(xb).argmax(1) == yb).cpu().numpy())
    return np.stack([np.concatenate(rows) for rows in out])


def memorisation_scores(
    bundle: DatasetBundle,
    factory: Callable[[int], nn.Module],
    recipe: TrainRecipe,
    *,
    models: int = 32,
    seed: int = 0,
    device: Any = None,
    workers: int | None = None,
) -> np.ndarray:
    """Feldman–Zhang memorisation of every training sample of ``bundle`` (see module doc).

    Args:
        bundle: the dataset; only ``bundle.train`` is used.
        factory: ``seed -> fresh model`` (the benchmark's architecture).
        recipe: the training recipe of the original model.
        models: an even number of models (half "in", half "out" for every sample).
        seed: seed of the half splits; the models' training seeds derive from it.
        device: where to train (default CPU).
        workers: ensemble worker threads (default: every usable CPU).

    Returns:
        ``float64`` array of ``len(bundle.train)`` scores in ``[-1, 1]``; higher = more
        memorised.
    """
    from .audit.ensemble import (
        check_ensemble_compatible,
        check_in_memory,
        train_ensemble,
        usable_cpus,
    )

    x, y = bundle.train.x, bundle.train.y
    member = half_splits(len(y), models, seed)
    index = [torch.from_numpy(np.flatnonzero(row)) for row in member]
    datasets = [(take_rows(x, i), y[i]) for i in index]  # read from disk: files only, no read
    seeds = [SEED_BASE + seed * models + i for i in range(models)]
    try:
        check_in_memory(x)
        check_ensemble_compatible([factory(seeds[0])], x[:2], seeds[0])
        # the stacked trainer runs in fp32 only: mixed-precision recipes train one at a time
        stacked = recipe.precision == "fp32"
    except ConfigError as exc:  # e.g. BatchNorm: train one at a time
        log.info("memorisation models train one at a time: %s", exc)
        stacked = False
    if stacked:
        trained = train_ensemble(
            factory, datasets, recipe, seeds, device=device, workers=workers or usable_cpus()
        )
    else:
        trained = [
            train(factory(s), d, recipe, seed=s, device=device) for d, s in zip(datasets, seeds)
        ]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return memorisation_from(_correct(trained, x, y, dev), member)


def memorisation_from(correct: np.ndarray, member: np.ndarray) -> np.ndarray:
    """The estimator itself: per sample (column), the accuracy of the models that trained on it
    minus the accuracy of those that did not (``correct`` and ``member`` are ``(models, n)``
    booleans; every sample must be in and out of at least one model)."""
    correct, member = np.asarray(correct, dtype=bool), np.asarray(member, dtype=bool)
    if correct.shape != member.shape:
        raise DataError(f"correct {correct.shape} and member {member.shape} differ in shape")
    n_in, n_out = member.sum(0), (~member).sum(0)
    if (n_in == 0).any() or (n_out == 0).any():
        raise DataError("every sample needs at least one model with it and one without it")
    p_in = (correct & member).sum(0) / n_in
    p_out = (correct & ~member).sum(0) / n_out
    return (p_in - p_out).astype(np.float64)
