"""Registered unlearning methods. Importing this package registers every built-in method.

Each method's procedure, loss, config, presets and sources: docs/methods.md.
"""

from __future__ import annotations

from . import (  # noqa: F401  (registration side effects, in table order)
    bad_teacher,
    boundary_expanding,
    boundary_shrink,
    finetune,
    fisher,
    gradient_ascent,
    influence,
    jit,
    l1_sparse,
    natmu,
    neggrad_plus,
    random_labels,
    retrain,
    salun,
    scrub,
    ssd,
    ugradsl,
)
from ._registry import MethodSpec, describe_method, get_method, list_methods, register_method
from .base import (
    ACCESS_LEVELS,
    AccessSpec,
    Dist,
    MethodResult,
    RunContext,
    choice,
    int_range,
    loguniform,
    uniform,
)
from .config import BaseConfig

__all__ = [
    "ACCESS_LEVELS",
    "AccessSpec",
    "BaseConfig",
    "Dist",
    "MethodResult",
    "MethodSpec",
    "RunContext",
    "choice",
    "describe_method",
    "get_method",
    "int_range",
    "list_methods",
    "loguniform",
    "register_method",
    "uniform",
]
