"""Benchmark specs: YAML (or dicts) to validated dataclasses, and the built-in digits spec."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, DataError
from ..methods import get_method, list_methods
from ..methods.base import build_dataclass
from ..training import TrainRecipe

__all__ = [
    "BenchSpec",
    "MethodEntry",
    "ScenarioSpec",
    "default_spec",
    "load_spec",
]


@dataclass(frozen=True)
class ScenarioSpec:
    """One forget scenario of a benchmark (arguments of ``forget_task``).

    ``hard: true`` (``random`` only) forgets the most memorised samples instead of a random
    draw: memorisation scores from ``hard_models`` models trained on halves of ``D_tr`` (see
    :mod:`unlearnkit.memorisation` and :func:`unlearnkit.bench.scenarios.scenario_task`).
    """

    name: str
    scenario: str = "random"
    fraction: float | None = None
    count: int | None = None
    classes: tuple[int, ...] | None = None
    indices: tuple[int, ...] | None = None
    subclasses: tuple[int, ...] | None = None
    stratified: bool = False
    seed: int = 0
    method_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    hard: bool = False
    hard_models: int = 32

    def __post_init__(self) -> None:
        if not isinstance(self.hard, bool):
            raise ConfigError(f"scenario {self.name!r}: hard must be true or false")
        if self.hard and self.scenario != "random":
            raise ConfigError(
                f"scenario {self.name!r}: hard (the most memorised samples) applies to "
                f"scenario 'random', not {self.scenario!r}"
            )
        if isinstance(self.hard_models, bool) or self.hard_models < 2 or self.hard_models % 2:
            raise ConfigError(
                f"scenario {self.name!r}: hard_models must be an even number >= 2, "
                f"got {self.hard_models!r}"
            )

    def task_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"scenario": self.scenario, "seed": self.seed}
        for key in ("fraction", "count", "classes", "indices", "subclasses"):
            if getattr(self, key) is not None:
                kw[key] = (
                    list(getattr(self, key))
                    if key in ("classes", "indices", "subclasses")
                    else getattr(self, key)
                )
        if self.stratified:
            kw["stratified"] = True
        return kw


@dataclass(frozen=True)
class MethodEntry:
    """A method in a benchmark: registry name, optional preset and config overrides."""

    method: str
    label: str | None = None
    preset: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.label or self.method


@dataclass(frozen=True)
class ModelSpec:
    arch: str = "mlp"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    name: str = "digits"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepSpec:
    """A sensitivity sweep: one method over the Cartesian product of ``grid`` values."""

    method: str
    grid: dict[str, list[Any]] = field(default_factory=dict)
    preset: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    scenarios: tuple[str, ...] | None = None
    tau: float = 0.02


@dataclass(frozen=True)
class BenchSpec:
    """Everything that determines a benchmark run.

    ``methods`` may be the string ``"all"`` (every registered method but Retrain, which is the
    reference row, each with its ``digits`` preset when it has one) or a list of entries;
    ``method_config`` overrides per method name apply either way (tuned defaults live there).
    """

    name: str = "digits-default"
    dataset: DatasetSpec = DatasetSpec()
    model: ModelSpec = ModelSpec()
    recipe: TrainRecipe = TrainRecipe()
    scenarios: tuple[ScenarioSpec, ...] = ()
    methods: Any = "all"
    method_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_preset: str | None = "digits"
    seeds: tuple[int, ...] = (0, 1, 2)
    seed_attack: int = 0
    zrf_teacher_seed: int = 12345
    sweeps: tuple[SweepSpec, ...] = ()
    threads: int | None = None
    relearn: bool = False
    retrain_init: str = "fresh_seed"

    def method_entries(self, scenario: ScenarioSpec | None = None) -> list[MethodEntry]:
        """The resolved list of methods (Retrain excluded: it is the reference row).

        Config precedence: preset < ``method_config`` < the scenario's ``method_config`` <
        the entry's own ``config``.
        """
        if self.methods == "all":
            entries = []
            for name in list_methods():
                if name == "retrain":
                    continue
                spec = get_method(name)
                preset = self.default_preset if self.default_preset in spec.presets else None
                entries.append(MethodEntry(name, preset=preset))
        else:
            entries = list(self.methods)
        out = []
        for e in entries:
            extra = dict(self.method_config.get(e.method, {}))
            if scenario is not None:
                extra.update(scenario.method_config.get(e.method, {}))
            out.append(dataclasses.replace(e, config={**extra, **e.config}) if extra else e)
        return out

    def validate(self) -> BenchSpec:
        """Check that every method, preset and config resolves (raises ConfigError)."""
        if not self.scenarios:
            raise ConfigError("the spec lists no scenarios")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or null, got {self.threads}")
        if not isinstance(self.relearn, bool):
            raise ConfigError(f"relearn must be true or false, got {self.relearn!r}")
        if self.retrain_init not in ("fresh_seed", "same_init"):
            raise ConfigError(
                f"retrain_init must be 'fresh_seed' (a new initialisation) or 'same_init' "
                f"(theta_o's initial weights; enables the weight distance), got "
                f"{self.retrain_init!r}"
            )
        if not self.seeds:
            raise ConfigError("the spec lists no seeds")
        labels = [s.name for s in self.scenarios]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"scenario names must be unique, got {labels}")
        for sc in (None, *self.scenarios):
            for e in self.method_entries(sc):
                if e.method == "retrain":
                    raise ConfigError(
                        "'retrain' is the reference row of every table; do not list it"
                    )
                get_method(e.method).make_config(e.config, preset=e.preset)
            for name in sc.method_config if sc is not None else ():
                get_method(name)
        for name in self.method_config:
            get_method(name)
        for sw in self.sweeps:
            spec = get_method(sw.method)
            for key in sw.grid:
                spec.make_config({**sw.config, key: sw.grid[key][0]}, preset=sw.preset)
        return self

    def quick(self) -> BenchSpec:
        """A smoke version: one seed and a short recipe."""
        recipe = dataclasses.replace(self.recipe, epochs=max(1, min(self.recipe.epochs, 15)))
        return dataclasses.replace(
            self, name=f"{self.name}-quick", seeds=self.seeds[:1], recipe=recipe, sweeps=()
        )


def _tuple_of(cls: type, items: Any, where: str) -> tuple:
    if not isinstance(items, list):
        raise ConfigError(f"{where} must be a list")
    return tuple(build_dataclass(cls, it, f"{where}[{i}]") for i, it in enumerate(items))


def spec_from_dict(data: dict[str, Any]) -> BenchSpec:
    """Build a :class:`BenchSpec` from a mapping; unknown keys raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError("a benchmark spec must be a mapping at the top level")
    data = dict(data)
    kw: dict[str, Any] = {}
    allowed = {f.name for f in dataclasses.fields(BenchSpec)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown spec key(s) {unknown}; valid keys: {', '.join(sorted(allowed))}"
        )
    if "dataset" in data:
        d = dict(data.pop("dataset"))
        kw["dataset"] = DatasetSpec(name=str(d.pop("name", "digits")), options=d)
    if "model" in data:
        d = dict(data.pop("model"))
        kw["model"] = ModelSpec(arch=str(d.pop("arch", "mlp")), options=d)
    if "recipe" in data:
        kw["recipe"] = build_dataclass(TrainRecipe, data.pop("recipe"), "recipe")
    if "scenarios" in data:
        kw["scenarios"] = _tuple_of(ScenarioSpec, data.pop("scenarios"), "scenarios")
    if "methods" in data:
        m = data.pop("methods")
        kw["methods"] = m if m == "all" else _tuple_of(MethodEntry, m, "methods")
    if "sweeps" in data:
        kw["sweeps"] = _tuple_of(SweepSpec, data.pop("sweeps"), "sweeps")
    if "seeds" in data:
        s = data.pop("seeds")
        kw["seeds"] = tuple(range(s)) if isinstance(s, int) else tuple(int(v) for v in s)
    kw.update(data)
    try:
        return BenchSpec(**kw).validate()
    except TypeError as exc:
        raise ConfigError(f"invalid spec: {exc}") from exc


def load_spec(path: str | Path) -> BenchSpec:
    """Read a YAML benchmark spec."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"spec file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from exc
    return spec_from_dict(data or {})


_BUILTIN = Path(__file__).with_name("digits.yaml")


def default_spec() -> BenchSpec:
    """The built-in digits benchmark (``bench/digits.yaml``)."""
    return load_spec(_BUILTIN)
