"""Search spaces of method hyperparameters: one :class:`Dist` per tunable config field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Dist", "choice", "int_range", "loguniform", "uniform"]


@dataclass(frozen=True)
class Dist:
    """One dimension of a search space: ``loguniform``, ``uniform``, ``int`` or ``choice``."""

    kind: str
    args: tuple[Any, ...]

    def grid(self, n: int) -> list[Any]:
        """``n`` representative values (log-spaced, linear, integer or all choices)."""
        if self.kind == "choice":
            return list(self.args)
        lo, hi = self.args
        if self.kind == "loguniform":
            return [float(v) for v in np.geomspace(lo, hi, n)]
        if self.kind == "uniform":
            return [float(v) for v in np.linspace(lo, hi, n)]
        return sorted({int(round(v)) for v in np.linspace(lo, hi, n)})

    def sample(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return self.args[int(rng.integers(len(self.args)))]
        lo, hi = self.args
        if self.kind == "loguniform":
            return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        if self.kind == "uniform":
            return float(rng.uniform(lo, hi))
        return int(rng.integers(lo, hi + 1))

    def __str__(self) -> str:
        name = "int" if self.kind == "int" else self.kind
        if self.kind == "choice":
            return f"choice({list(self.args)})"
        return f"{name}({self.args[0]}, {self.args[1]})"


def loguniform(a: float, b: float) -> Dist:
    return Dist("loguniform", (a, b))


def uniform(a: float, b: float) -> Dist:
    return Dist("uniform", (a, b))


def int_range(a: int, b: int) -> Dist:
    return Dist("int", (a, b))


def choice(values: Sequence[Any]) -> Dist:
    return Dist("choice", tuple(values))
