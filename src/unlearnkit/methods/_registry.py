"""The method registry: ``register_method`` / ``get_method`` / ``list_methods``, with aliases.

Registering a name (or alias) that already exists is an error, so two methods can never shadow
each other.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ConfigError
from .base import AccessSpec, Dist
from .config import BaseConfig

__all__ = [
    "MethodSpec",
    "describe_method",
    "get_method",
    "list_methods",
    "register_method",
    "unregister_method",
]

MethodFn = Callable[..., Any]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function, config class, access level and metadata.

    Attributes:
        identity_config: config overrides under which the method makes no change at all (the
            conformance suite's "zero steps => unchanged" check); ``None`` when no such setting
            exists (Retrain).
        scenario_defaults: per-scenario config overrides applied before the user's.
        access_rule: ``config -> {AccessSpec field: value}`` for methods whose data needs
            depend on their config (JiT's optional safety guard reads ``D_val``); see
            :meth:`access_for`.
    """

    name: str
    fn: MethodFn
    config_cls: type[BaseConfig]
    access: AccessSpec
    aliases: tuple[str, ...] = ()
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    preset_help: dict[str, str] = field(default_factory=dict)
    search_space: dict[str, Dist] = field(default_factory=dict)
    identity_config: dict[str, Any] | None = field(default_factory=lambda: {"max_steps": 0})
    scenario_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_rule: Callable[[BaseConfig], dict[str, Any]] | None = None

    def access_for(self, config: BaseConfig | None = None) -> AccessSpec:
        """The access a run with ``config`` needs: :attr:`access`, changed by the method's
        ``access_rule`` where the config asks for more data."""
        if config is None or self.access_rule is None:
            return self.access
        changes = self.access_rule(config)
        return dataclasses.replace(self.access, **changes) if changes else self.access

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.fn) or ""
        return doc.splitlines()[0] if doc else ""

    def make_config(
        self,
        config: BaseConfig | dict[str, Any] | None = None,
        *,
        preset: str | None = None,
        scenario: str | None = None,
    ) -> BaseConfig:
        """Resolve defaults < scenario defaults < preset < user values into a validated config."""
        if isinstance(config, BaseConfig):
            if not isinstance(config, self.config_cls):
                raise ConfigError(
                    f"method {self.name!r} takes a {self.config_cls.__name__}, "
                    f"got {type(config).__name__}"
                )
            return config
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"config must be a dict or a {self.config_cls.__name__}")
        values: dict[str, Any] = {}
        if scenario is not None:
            values.update(self.scenario_defaults.get(scenario, {}))
        if preset is not None:
            if preset not in self.presets:
                raise ConfigError(
                    f"method {self.name!r} has no preset {preset!r}; "
                    f"available: {', '.join(sorted(self.presets)) or 'none'}"
                )
            values.update(self.presets[preset])
        values.update(config or {})
        try:
            return self.config_cls.from_dict(values)
        except ConfigError as exc:  # name the method: "finetune.lr must be ..."
            msg = str(exc)
            if msg.startswith(f"{self.name}."):
                raise
            raise ConfigError(f"{self.name}.{msg}" if _names_a_field(msg) else msg) from None

    def describe(self) -> dict[str, Any]:
        doc = inspect.getdoc(self.fn) or ""
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "summary": self.summary,
            "doc": doc,
            "access": self.access.to_dict(),
            "config": self.config_cls.__name__,
            "fields": self.config_cls.describe_fields(),
            "presets": self.presets,
            "preset_help": {k: self.preset_help.get(k, "") for k in self.presets},
            "search_space": {k: str(v) for k, v in self.search_space.items()},
            "scenario_defaults": self.scenario_defaults,
        }


_REGISTRY: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def _names_a_field(msg: str) -> bool:
    """Whether a config error starts with the field it is about (``lr must be ...``)."""
    return re.match(r"[A-Za-z_][\w.]* (must|is|has|cannot|should) ", msg) is not None


def register_method(
    name: str,
    *,
    config: type[BaseConfig],
    access: AccessSpec,
    aliases: tuple[str, ...] = (),
    presets: dict[str, dict[str, Any]] | None = None,
    preset_help: dict[str, str] | None = None,
    search_space: dict[str, Dist] | None = None,
    identity_config: dict[str, Any] | None = None,
    no_identity: bool = False,
    scenario_defaults: dict[str, dict[str, Any]] | None = None,
    access_rule: Callable[[BaseConfig], dict[str, Any]] | None = None,
) -> Callable[[MethodFn], MethodFn]:
    """Register ``fn(model, data, config, *, ctx)`` under ``name`` (and ``aliases``).

    Raises:
        ValueError: the name or an alias is already registered.
    """

    def deco(fn: MethodFn) -> MethodFn:
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"method name {key!r} is already registered")
        for preset_name, values in (presets or {}).items():
            try:
                config.from_dict(values)
            except ConfigError as exc:  # a broken preset is a programming error
                raise ValueError(f"preset {preset_name!r} of {name!r} is invalid: {exc}") from exc
        spec = MethodSpec(
            name=name,
            fn=fn,
            config_cls=config,
            access=access,
            aliases=tuple(aliases),
            presets=dict(presets or {}),
            preset_help={k: v for k, v in (preset_help or {}).items() if k in (presets or {})},
            search_space=dict(search_space or {}),
            identity_config=None if no_identity else (identity_config or {"max_steps": 0}),
            scenario_defaults=dict(scenario_defaults or {}),
            access_rule=access_rule,
        )
        _REGISTRY[name] = spec
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return deco


def get_method(name: str) -> MethodSpec:
    """Look a method up by name or alias.

    Raises:
        ConfigError: unknown name (with the closest match and the list of methods).
    """
    if not isinstance(name, str):
        raise ConfigError(f"method must be a name, got {type(name).__name__}")
    key = _ALIASES.get(name, name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    known = sorted([*_REGISTRY, *_ALIASES])
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown method {name!r}{hint} (run 'unlearnkit methods' to list them: "
        f"{', '.join(_REGISTRY)})"
    )


def list_methods() -> list[str]:
    """Canonical names of the registered methods, in registration order."""
    return list(_REGISTRY)


def describe_method(name: str) -> dict[str, Any]:
    """Access level, config fields with defaults, presets and search space of a method."""
    return get_method(name).describe()


def _is_module(obj: Any) -> bool:  # used by the front door
    return isinstance(obj, nn.Module)


def unregister_method(name: str) -> None:
    """Remove a method and its aliases (for tests and interactive plugin development)."""
    spec = _REGISTRY.pop(name)
    for alias in spec.aliases:
        _ALIASES.pop(alias, None)
