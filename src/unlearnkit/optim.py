"""Optimizer and scheduler specs shared by the training engine and every method."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .errors import ConfigError

__all__ = ["OptimizerSpec", "SchedulerSpec", "build_optimizer", "build_scheduler"]

_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULERS = ("none", "constant", "cosine", "multistep")


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer to build (a fresh one for every call; METHODS.md section 0.5)."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.name not in _OPTIMIZERS:
            raise ConfigError(f"optimizer.name must be one of {_OPTIMIZERS}, got {self.name!r}")
        if not (math.isfinite(self.lr) and self.lr >= 0):
            raise ConfigError(f"optimizer.lr must be a finite number >= 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optimizer.momentum must lie in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"optimizer.weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optimizer.betas must be two values in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class SchedulerSpec:
    """Learning-rate schedule: ``none``/``constant``, ``cosine`` (to 0) or ``multistep``.

    ``per_step`` schedules over optimizer steps instead of epochs; ``milestones`` are in the
    same unit.
    """

    name: str = "none"
    per_step: bool = False
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.name not in _SCHEDULERS:
            raise ConfigError(f"scheduler.name must be one of {_SCHEDULERS}, got {self.name!r}")
        if self.warmup_steps < 0:
            raise ConfigError("scheduler.warmup_steps must be >= 0")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], spec: OptimizerSpec
) -> torch.optim.Optimizer:
    """Build a fresh optimizer from ``spec``."""
    params = list(params)
    if spec.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=spec.lr,
            momentum=spec.momentum,
            weight_decay=spec.weight_decay,
            nesterov=spec.nesterov and spec.momentum > 0,
        )
    cls = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
    return cls(params, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)


def build_scheduler(
    optimizer: torch.optim.Optimizer, spec: SchedulerSpec, total: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Build the scheduler; ``total`` is the number of epochs (or steps when ``per_step``)."""
    if spec.name in ("none", "constant"):
        return None
    warm = spec.warmup_steps
    total = max(int(total), 1)
    if spec.name == "cosine":

        def factor(t: int) -> float:
            if t < warm:
                return (t + 1) / warm
            span = max(total - warm, 1)
            return 0.5 * (1.0 + math.cos(math.pi * min(t - warm, span) / span))

    else:
        milestones = sorted(spec.milestones)

        def factor(t: int) -> float:
            if t < warm:
                return (t + 1) / warm
            return spec.gamma ** sum(t >= m for m in milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
