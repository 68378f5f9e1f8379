"""The one training engine: trains the original model and the retrained oracle.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> recipe = uk.TrainRecipe(epochs=2)
>>> model = uk.train(uk.models.build("mlp", bundle), bundle.train, recipe, seed=0)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_model, check_seed
from .data import BatchLoader, DataView
from .datasets import Split
from .errors import ConfigError, DataError
from .optim import (
    OptimizerSpec,
    SchedulerSpec,
    build_optimizer,
    build_scheduler,
    check_fields,
)

__all__ = ["TrainRecipe", "TrainingDiverged", "train"]

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The training loss became non-finite (the recipe's learning rate is too high)."""


@dataclass(frozen=True)
class TrainRecipe:
    """How the original model is trained; Retrain re-uses it on the retain set.

    Args:
        optimizer: ``sgd``, ``adam`` or ``adamw``.
        lr, momentum, weight_decay, nesterov: optimizer settings.
        epochs: full passes over the training data.
        batch_size: mini-batch size (the last short batch is kept).
        schedule: ``none``, ``cosine`` (per step, to 0) or ``multistep`` (per epoch).
        milestones, gamma: for ``multistep``.
        warmup_epochs: linear warm-up length.
        augment: apply the dataset's training augmentation, if it has one.
        seed: default seed when :func:`train` is called without one.
    """

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    epochs: int = 60
    batch_size: int = 64
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_epochs: int = 0
    augment: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        check_fields(self, "recipe.")
        if self.epochs < 0:
            raise ConfigError(f"recipe epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"recipe batch_size must be >= 1, got {self.batch_size}")
        self.optimizer_spec()
        self.scheduler_spec(1)

    def optimizer_spec(self) -> OptimizerSpec:
        return OptimizerSpec(
            name=self.optimizer,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
        )

    def scheduler_spec(self, steps_per_epoch: int) -> SchedulerSpec:
        per_step = self.schedule == "cosine"
        unit = steps_per_epoch if per_step else 1
        return SchedulerSpec(
            name=self.schedule,
            per_step=per_step,
            milestones=tuple(m * unit for m in self.milestones),
            gamma=self.gamma,
            warmup_steps=self.warmup_epochs * unit,
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    @property
    def hash(self) -> str:
        """Content hash of everything but the seed (seeds are recorded separately)."""
        d = self.to_dict()
        d.pop("seed")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _as_tensors(data: Split | DataView | tuple[torch.Tensor, torch.Tensor]):
    if isinstance(data, (Split, DataView)):
        x, y, aug = data.x, data.y, getattr(data, "augment", None)
    elif isinstance(data, tuple) and len(data) == 2:
        x, y, aug = data[0], data[1], None
    else:
        raise DataError("train() takes a Split, a DataView or an (x, y) pair of tensors")
    if y is None:
        raise DataError("train() needs labels; this view has them withheld")
    if len(x) == 0:
        raise DataError("cannot train on an empty set")
    return x, y, aug


def train(
    model: nn.Module,
    data: Split | DataView | tuple[torch.Tensor, torch.Tensor],
    recipe: TrainRecipe | None = None,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> nn.Module:
    """Train ``model`` in place with cross-entropy and return it in eval mode.

    The run is fully determined by ``seed``: batch order comes from a generator seeded with it
    and dropout-style randomness from a forked, seeded global RNG (the caller's RNG state is
    left untouched).

    Raises:
        DataError: no labels or empty data.
        ConfigError: a seed that is not a non-negative integer, an unavailable device, or a
            model that does not fit the data (see :func:`unlearnkit.checks.check_model`).
        TrainingDiverged: the loss became non-finite.
    """
    recipe = recipe or TrainRecipe()
    if not isinstance(recipe, TrainRecipe):
        raise ConfigError(f"recipe must be a TrainRecipe(...), got {type(recipe).__name__}")
    seed = check_seed(seed if seed is not None else (recipe.seed or 0))
    x, y, aug = _as_tensors(data)
    check_model(model, (x, y), device)  # shape, width and device, before any update
    if device is not None:
        model.to(device)
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    loader = BatchLoader(
        x,
        y,
        recipe.batch_size,
        shuffle=True,
        generator=gen,
        augment=aug if recipe.augment else None,
        device=dev if dev.type != "cpu" else None,
    )
    opt = build_optimizer(model.parameters(), recipe.optimizer_spec())
    sched_spec = recipe.scheduler_spec(len(loader))
    sched = build_scheduler(
        opt, sched_spec, recipe.epochs * len(loader) if sched_spec.per_step else recipe.epochs
    )
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(recipe.epochs):
            total = torch.zeros((), device=dev)
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.detach()
                if sched is not None and sched_spec.per_step:
                    sched.step()
            if sched is not None and not sched_spec.per_step:
                sched.step()
            # One host sync per epoch, not per step: the engine stays as fast as a bare loop.
            mean_loss = float(total) / max(len(loader), 1)
            if not math.isfinite(mean_loss):
                raise TrainingDiverged(
                    f"training loss became non-finite in epoch {epoch + 1}; lower the recipe's lr"
                )
            log.debug("epoch %d loss %.4f", epoch + 1, mean_loss)
    model.eval()
    return model
