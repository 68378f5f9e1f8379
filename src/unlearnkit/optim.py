"""Optimizer and scheduler specs shared by the training engine and every method."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .errors import ConfigError

__all__ = [
    "FIELD_MAX",
    "OptimizerSpec",
    "SchedulerSpec",
    "build_optimizer",
    "build_scheduler",
    "check_field_values",
    "check_fields",
]

# Upper bounds on the fields where a typo (``epochs: 1000000000``) would run for days. Keys are
# field names, or ``ClassName.field`` where one name means different things in different
# configs; a field's own ``metadata={"max": ...}`` takes precedence over this table.
FIELD_MAX: dict[str, int] = {
    "epochs": 10_000,
    "warmup_epochs": 10_000,
    "msteps": 10_000,
    "max_steps": 10_000_000,
    "hard_models": 1_000,
    "JiTConfig.n_samples": 10_000,
}

# Float fields where +inf is a meaningful setting (SSD's alpha = inf selects no weight, the
# method's identity setting). NaN is never valid.
FIELD_ALLOWS_INF: frozenset[str] = frozenset({"SSDConfig.selection_weighting"})


def _lookup(table: Mapping[str, Any] | frozenset[str], cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        key = f"{klass.__name__}.{name}"
        if key in table:
            return table[key] if isinstance(table, Mapping) else True
    if isinstance(table, Mapping):
        return table.get(name)
    return name in table


@functools.cache
def _field_rules(cls: type) -> dict[str, tuple[frozenset[type], type | None, Any, bool]]:
    """Per init field: (scalar types the hint allows, tuple element type, max, allows +inf)."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an annotation that cannot be resolved: no type rules
        hints = {}
    rules = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        allowed: set[type] = set()
        elem: type | None = None
        for arg in _flatten(hints.get(f.name, Any)):
            if arg in (int, float, bool):
                allowed.add(arg)
            elif typing.get_origin(arg) is tuple:
                targs = [a for a in typing.get_args(arg) if a is not Ellipsis]
                if targs and all(a is targs[0] for a in targs) and targs[0] in (int, float):
                    elem = targs[0]
        bound = f.metadata.get("max", _lookup(FIELD_MAX, cls, f.name))
        allow_inf = bool(f.metadata.get("allow_inf", _lookup(FIELD_ALLOWS_INF, cls, f.name)))
        rules[f.name] = (frozenset(allowed), elem, bound, allow_inf)
    return rules


def _flatten(hint: Any) -> list[Any]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(hint) for a in _flatten(arg)]
    return [hint]


def _check_number(value: Any, allowed: frozenset[type], name: str, allow_inf: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, bool) and bool not in allowed and allowed & {int, float}:
            kind = "a number" if float in allowed else "an integer"
            raise ConfigError(f"{name} must be {kind}, got {value!r}")
        return
    if isinstance(value, numbers.Integral):
        return
    if float in allowed:
        v = float(value)
        if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)):
            extra = " or inf" if allow_inf else ""
            raise ConfigError(f"{name} must be a finite number{extra}, got {v}")
    elif int in allowed:
        raise ConfigError(f"{name} must be an integer, got {value!r}")


def check_field_values(cls: type, values: Mapping[str, Any], prefix: str = "") -> None:
    """Reject NaN and +-inf in float fields, bools and fractions in integer fields, and values
    above a field's upper bound (:data:`FIELD_MAX`), naming ``prefix + field``.

    ``values`` maps field names of dataclass ``cls`` to values (unknown names are ignored);
    every config dataclass runs this on construction.

    Raises:
        ConfigError: the first bad value.
    """
    rules = _field_rules(cls)
    for key, value in values.items():
        if key not in rules or value is None:
            continue
        allowed, elem, bound, allow_inf = rules[key]
        name = prefix + key
        if elem is not None and isinstance(value, (tuple, list)):
            for v in value:
                _check_number(v, frozenset({elem}), name, False)
        else:
            _check_number(value, allowed, name, allow_inf)
        if bound is not None and isinstance(value, numbers.Real) and value > bound:
            raise ConfigError(
                f"{name} must be <= {bound}, got {value!r} (the bound guards against a typo "
                "that would run for days)"
            )


def check_fields(obj: Any, prefix: str = "") -> None:
    """:func:`check_field_values` on the fields of a dataclass instance."""
    cls = type(obj)
    check_field_values(cls, {k: getattr(obj, k) for k in _field_rules(cls)}, prefix)


_OPTIMIZERS = ("sgd", "adam", "adamw")
_SCHEDULERS = ("none", "constant", "cosine", "multistep")


@dataclass(frozen=True)
class OptimizerSpec:
    """Which optimizer to build (a fresh one for every call)."""

    name: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        check_fields(self, "optimizer.")
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
        check_fields(self, "scheduler.")
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
