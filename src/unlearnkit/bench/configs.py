"""``unlearnkit bench --configs FILE``: run a spec with tuned method configs.

``FILE`` is the ``tuned.yaml`` that ``unlearnkit tune`` writes: a ``scenarios:`` block of the
same spec whose every scenario carries its ``method_config``. Each scenario of the file
replaces the ``method_config`` of the spec's scenario of the same name, which must be defined
the same way (same kind, forget set and seed); scenarios the file does not list keep theirs,
and scenarios the spec does not have are ignored (at least one must match).

A method the spec lists with its own ``config`` (which would win over ``method_config``) has
that config moved into every scenario's ``method_config`` first, so a tuned value is never
silently overridden.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..methods import get_method
from ..methods.config import build_dataclass
from .identity import describe_differences
from .spec import BenchSpec, ScenarioSpec, read_yaml

__all__ = ["BUILT_IN", "apply_tuned", "load_configs"]

#: The provenance label of a run with the spec's own configs.
BUILT_IN = "built-in"


def _definition(sc: ScenarioSpec) -> dict[str, Any]:
    d = dataclasses.asdict(sc)
    d.pop("method_config")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _push_down(spec: BenchSpec, given: dict[str, ScenarioSpec]) -> BenchSpec:
    """Move the own ``config`` of listed entries of tuned methods into the ``method_config``
    of every scenario the file does not set that method in (where that config had the last
    word anyway), leaving the entries without one: a tuned value then always applies."""
    tuned = {get_method(m).name for sc in given.values() for m in sc.method_config}
    if spec.methods == "all":
        return spec
    entries, moved = [], {}
    for e in spec.methods:
        name = get_method(e.method).name
        if name in tuned and e.config:
            if name in moved:
                raise ConfigError(
                    f"the spec lists {name} more than once with its own config; tuned configs "
                    "apply per method: keep one entry of it, or tune a spec per variant"
                )
            moved[name] = dict(e.config)
            e = dataclasses.replace(e, config={})
        entries.append(e)
    scenarios = []
    for sc in spec.scenarios:
        mc = {k: dict(v) for k, v in sc.method_config.items()}
        for name, cfg in moved.items():
            if sc.name not in given or name not in given[sc.name].method_config:
                mc[name] = {**mc.get(name, {}), **cfg}
        scenarios.append(dataclasses.replace(sc, method_config=mc))
    return dataclasses.replace(spec, methods=tuple(entries), scenarios=tuple(scenarios))


def apply_tuned(spec: BenchSpec, data: Any, source: str = "the tuned configs") -> BenchSpec:
    """``spec`` with the scenarios' ``method_config`` of a parsed ``tuned.yaml`` (``data``).

    Raises:
        ConfigError: ``data`` is not a ``scenarios:`` block, shares no scenario with the spec
            or defines one differently, or holds an invalid method config.
    """
    if not isinstance(data, dict) or set(data) != {"scenarios"}:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ConfigError(
            f"{source} must hold exactly one key, scenarios: (as 'unlearnkit tune' writes "
            f"tuned.yaml), got {keys}"
        )
    if not isinstance(data["scenarios"], list):
        raise ConfigError(f"{source}: scenarios must be a list")
    given = {}
    for i, item in enumerate(data["scenarios"]):
        sc = build_dataclass(ScenarioSpec, item, f"{source}: scenarios[{i}]")
        given[sc.name] = sc
    ours = {sc.name: sc for sc in spec.scenarios}
    if not set(given) & set(ours):
        raise ConfigError(
            f"{source} tunes scenarios {', '.join(given) or '(none)'}, none of which spec "
            f"{spec.name!r} has (its scenarios: {', '.join(ours)}); tune this spec"
        )
    given = {name: sc for name, sc in given.items() if name in ours}
    for name, sc in given.items():
        if _definition(sc) != _definition(ours[name]):
            diff = describe_differences(_definition(ours[name]), _definition(sc))
            raise ConfigError(
                f"{source} was tuned for another scenario {name!r} ({diff}); tune this spec"
            )
        for method in sc.method_config:
            get_method(method)
    scenarios = tuple(
        dataclasses.replace(sc, method_config=dict(given[sc.name].method_config))
        if sc.name in given
        else sc
        for sc in spec.scenarios
    )
    try:
        return _push_down(dataclasses.replace(spec, scenarios=scenarios), given).validate()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_configs(spec: BenchSpec, path: str | Path | None) -> tuple[BenchSpec, str]:
    """``(spec, provenance label)`` for ``bench --configs PATH``: the spec with the configs
    of ``PATH`` (a ``tuned.yaml``) and ``"tuned from PATH"``; without a path, the spec
    unchanged and ``"built-in"``.

    Raises:
        DataError: the file is missing or unreadable.
        ConfigError: it is not valid YAML, or not a tuned-configs file of this spec.
    """
    if path is None:
        return spec, BUILT_IN
    data = read_yaml(path, "--configs")
    return apply_tuned(spec, data, f"--configs {path}"), f"tuned from {path}"
