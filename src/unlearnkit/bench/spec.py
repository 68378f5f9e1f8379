"""Benchmark specs: YAML (or dicts) to validated dataclasses, and the built-in digits spec.

The model's part, :class:`ModelSpec`, lives in :mod:`unlearnkit.bench.model_spec` and is
imported from here as before.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import ConfigError, DataError
from ..methods import get_method, list_methods
from ..methods.config import build_dataclass
from ..tasks import check_task_args
from ..training import TrainRecipe
from .model_spec import ModelSpec, _mapping, _name  # ModelSpec: re-exported

__all__ = [
    "BenchSpec",
    "MethodEntry",
    "ResourceSpec",
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
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"a scenario needs a name (a non-empty string), got {self.name!r}")
        kw = self.task_kwargs()
        try:
            check_task_args(kw.pop("scenario"), **kw)
        except (DataError, ConfigError) as exc:
            raise ConfigError(f"scenario {self.name!r}: {exc}") from None
        if not isinstance(self.hard, bool):
            raise ConfigError(f"scenario {self.name!r}: hard must be true or false")
        if self.hard and self.scenario != "random":
            raise ConfigError(
                f"scenario {self.name!r}: hard (the most memorised samples) applies to "
                f"scenario 'random', not {self.scenario!r}"
            )
        hm = self.hard_models
        if isinstance(hm, bool) or not isinstance(hm, int) or hm < 2 or hm % 2:
            raise ConfigError(
                f"scenario {self.name!r}: hard_models must be an even number >= 2, got {hm!r}"
            )
        if hm > MAX_HARD_MODELS:
            raise ConfigError(
                f"scenario {self.name!r}: hard_models must be at most {MAX_HARD_MODELS}, got {hm}"
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
class ProxyCheckSpec:
    """The retrain-free calibration check a run adds to its report
    (:func:`unlearnkit.bench.proxy_check.run_proxy_check`): each method's defaults, its
    retrain-free calibration (``trials`` trials, at most ``budget_s`` seconds) and the run's own
    config, scored against Retrain on the first ``replicates`` seeds."""

    methods: tuple[str, ...] = ("natmu", "salun")
    trials: int = 6
    budget_s: float = 60.0
    replicates: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.methods, str) or not self.methods:
            raise ConfigError(
                f"proxy_check.methods must be a non-empty list of method names, e.g. "
                f"[natmu, salun]; got {self.methods!r}"
            )
        object.__setattr__(self, "methods", tuple(get_method(m).name for m in self.methods))
        _int(self.trials, "proxy_check.trials", 1, 10_000)
        _int(self.replicates, "proxy_check.replicates", 1, MAX_REPLICATES)
        b = self.budget_s
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not 0 < b < float("inf"):
            raise ConfigError(f"proxy_check.budget_s must be a positive number, got {b!r}")


@dataclass(frozen=True)
class ResourceSpec:
    """What one task asks of a Ray cluster (``--backend ray``): ``cpus`` and ``gpus`` per task
    (fractions share a device, e.g. ``gpus: 0.25`` runs four tasks per GPU). A local run
    ignores it, and it is no part of a result's identity."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        for name, lo in (("cpus", 0.0), ("gpus", 0.0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v < 1e6:
                raise ConfigError(
                    f"spec resources.{name} must be a number >= 0 (e.g. {{cpus: 1, gpus: "
                    f"0.25}}), got {v!r}"
                )
        if self.cpus <= 0 and self.gpus <= 0:
            raise ConfigError("spec resources must ask for some cpus or gpus, got neither")


@dataclass(frozen=True)
class BenchSpec:
    """Everything that determines a benchmark run.

    ``methods`` may be the string ``"all"`` (every registered method but Retrain, which is the
    reference row, each with its ``digits`` preset when it has one) or a list of entries;
    ``method_config`` overrides per method name apply either way (tuned defaults live there).

    ``device``: where models are trained and run (``auto``: CUDA, then MPS, then the CPU;
    ``null``, the default: where the model factory builds them, the CPU). A spec's top-level
    ``precision:`` (``fp32``, ``bf16``, ``fp16``) is the recipe's (``recipe.precision``): it
    is part of the recipe's hash, so results of another precision never mix with these.
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
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str | None = None
    proxy_check: ProxyCheckSpec | None = None
    resources: ResourceSpec = ResourceSpec()

    @property
    def precision(self) -> str:
        """The run's precision: the recipe's."""
        return self.recipe.precision

    def method_entries(self, scenario: ScenarioSpec | None = None) -> list[MethodEntry]:
        """The resolved list of methods (Retrain excluded: it is the reference row).

        Config precedence: preset < ``method_config`` < the scenario's ``method_config`` <
        the entry's own ``config`` < ``overrides`` (the command line's ``--set``, which wins
        everywhere it names a method).
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
            last = self.overrides.get(get_method(e.method).name, {}) if self.overrides else {}
            if extra or last:
                e = dataclasses.replace(e, config={**extra, **e.config, **last})
            out.append(e)
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
        check_spec_device(self.device)
        if not self.seeds:
            raise ConfigError("the spec lists no seeds")
        if len(self.seeds) > MAX_REPLICATES:
            raise ConfigError(f"seeds: at most {MAX_REPLICATES} replicates, got {len(self.seeds)}")
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
        for name in (*self.method_config, *self.overrides):
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
            self,
            name=f"{self.name}-quick",
            seeds=self.seeds[:1],
            recipe=recipe,
            sweeps=(),
            proxy_check=None,
        )


#: Upper bounds where a typo would otherwise run for days (the error names field and bound).
MAX_REPLICATES = 100
MAX_SEED = 2**31 - 1
MAX_THREADS = 1024
MAX_HARD_MODELS = 1024


def check_spec_device(device: Any) -> None:
    """A spec's ``device``: ``null``, ``auto`` or a name torch reads (``cpu``, ``cuda:1``...).

    Only the form is checked here; whether this machine has the device is checked when a run
    starts (a spec may be written on one machine and run on another).
    """
    if device is None:
        return
    if not isinstance(device, str) or not device:
        raise ConfigError(f"spec device must be a device name such as auto or cuda, got {device!r}")
    if device.strip().lower() == "auto":
        return
    try:
        torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"spec device {device!r} is not a device name ({exc}); use auto, cpu, cuda, "
            "cuda:0 or mps"
        ) from None


def with_run_settings(
    spec: BenchSpec, *, device: str | None = None, precision: str | None = None
) -> BenchSpec:
    """``spec`` with its ``device`` and/or recipe ``precision`` replaced (``None``: kept)."""
    if device is not None:
        check_spec_device(device)
        spec = dataclasses.replace(spec, device=device)
    if precision is not None:
        spec = dataclasses.replace(
            spec, recipe=dataclasses.replace(spec.recipe, precision=precision)
        )
    return spec


def _int(v: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"{where} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise ConfigError(f"{where} must lie in [{lo}, {hi}], got {v}")
    return v


def _seeds(v: Any) -> tuple[int, ...]:
    """``seeds: 3`` (replicates 0, 1, 2) or ``seeds: [0, 4]``."""
    if isinstance(v, list):
        seeds = tuple(_int(x, "seeds[]", 0, MAX_SEED) for x in v)
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must not repeat, got {list(seeds)}")
        if len(seeds) > MAX_REPLICATES:
            raise ConfigError(f"seeds: at most {MAX_REPLICATES} replicates, got {len(seeds)}")
        return seeds
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(
            f"seeds must be a number of replicates (e.g. 3) or a list of seeds, got {v!r}"
        )
    return tuple(range(_int(v, "seeds (replicates)", 1, MAX_REPLICATES)))


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
    allowed = {f.name for f in dataclasses.fields(BenchSpec)} | {"precision"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown spec key(s) {unknown}; valid keys: {', '.join(sorted(allowed))}"
        )
    if "dataset" in data:
        d = _mapping(data.pop("dataset"), "dataset", "{name: digits}")
        kw["dataset"] = DatasetSpec(name=_name(d.pop("name", "digits"), "dataset.name"), options=d)
    if "model" in data:
        kw["model"] = ModelSpec.from_dict(data.pop("model"))
    if "recipe" in data:
        kw["recipe"] = build_dataclass(TrainRecipe, data.pop("recipe"), "recipe")
    if "precision" in data:  # shorthand for recipe.precision
        precision = data.pop("precision")
        recipe = kw.get("recipe", TrainRecipe())
        if recipe.precision not in ("fp32", precision):
            raise ConfigError(
                f"spec precision {precision!r} and recipe.precision {recipe.precision!r} "
                "disagree; give it once"
            )
        kw["recipe"] = dataclasses.replace(recipe, precision=precision)
    if "scenarios" in data:
        kw["scenarios"] = _tuple_of(ScenarioSpec, data.pop("scenarios"), "scenarios")
    if "methods" in data:
        m = data.pop("methods")
        kw["methods"] = m if m == "all" else _tuple_of(MethodEntry, m, "methods")
    if "sweeps" in data:
        kw["sweeps"] = _tuple_of(SweepSpec, data.pop("sweeps"), "sweeps")
    if "seeds" in data:
        kw["seeds"] = _seeds(data.pop("seeds"))
    if data.get("resources") is not None:  # how much of a Ray cluster each task asks for
        d = _mapping(data.pop("resources"), "resources", "{cpus: 1, gpus: 0.25}")
        kw["resources"] = build_dataclass(ResourceSpec, d, "resources")
    data.pop("resources", None)
    if data.get("proxy_check") is not None:
        d = _mapping(data.pop("proxy_check"), "proxy_check", "{methods: [natmu, salun]}")
        kw["proxy_check"] = build_dataclass(ProxyCheckSpec, d, "proxy_check")
    for key in ("name", "default_preset"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise ConfigError(f"spec {key} must be a string, got {data[key]!r}")
    for key in ("seed_attack", "zrf_teacher_seed"):
        if key in data:
            _int(data[key], key, 0, MAX_SEED)
    if data.get("threads") is not None:
        _int(data["threads"], "threads", 1, MAX_THREADS)
    kw.update(data)
    try:
        return BenchSpec(**kw).validate()
    except TypeError as exc:
        raise ConfigError(f"invalid spec: {exc}") from exc


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: where and what (PyYAML's own message spans 5-8 lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(exc, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")


def read_yaml(path: str | Path, what: str = "spec") -> Any:
    """A user's YAML file: DataError when it is missing or unreadable, ConfigError when it is
    not UTF-8 YAML text, every message one line naming ``what`` and the file."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{what} {p} is a folder; give the path of a YAML file")
    if not p.is_file():
        raise DataError(f"{what} file not found: {p}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {p} is not UTF-8 text (byte {exc.start}); save it as a UTF-8 YAML file"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read {what} {p}: {exc.strerror}") from None
    if "\x00" in text:
        raise ConfigError(f"{what} {p} is a binary file, not YAML text")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {yaml_error_line(exc)}") from None


def load_spec(path: str | Path) -> BenchSpec:
    """Read a YAML benchmark spec."""
    data = read_yaml(path, "spec")
    return spec_from_dict({} if data is None else data)


_BUILTIN = Path(__file__).with_name("digits.yaml")


def default_spec() -> BenchSpec:
    """The built-in digits benchmark (``bench/digits.yaml``)."""
    return load_spec(_BUILTIN)
