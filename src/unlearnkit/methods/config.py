"""Method configs: :class:`BaseConfig` and the machinery that builds dataclasses from mappings.

Every method's config is a frozen dataclass extending :class:`BaseConfig`.
:meth:`BaseConfig.from_dict` (and :func:`build_dataclass`, for other dataclasses such as specs
and recipes) turns a mapping into a validated instance: values are coerced to the annotated
types, and unknown keys or bad values raise a :class:`ConfigError` that names them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError
from ..optim import OptimizerSpec, SchedulerSpec, check_field_values, check_fields

__all__ = ["RECORD_IF_SET", "BaseConfig", "build_dataclass"]

#: Field metadata key (``metadata={RECORD_IF_SET: True}``) of a config field added after
#: results were first stored: :meth:`BaseConfig.to_dict` leaves the field out while it holds
#: its default, so the records and identity hashes of configs written before it existed do not
#: change. Such a field's default must reproduce the behaviour from before the field existed.
RECORD_IF_SET = "record_if_set"

_OPT_SHORTCUTS = ("lr", "momentum", "weight_decay", "nesterov", "betas")


def _type_name(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Convert ``value`` to the annotated type ``hint`` or raise a ConfigError naming ``name``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        # The string "none" means None only where "none" cannot be a legal string value.
        if (
            isinstance(value, str)
            and value.lower() in ("none", "null")
            and type(None) in args
            and str not in args
        ):
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, name)
            except ConfigError as exc:
                errors.append(str(exc))
        if len(errors) == 1 and ", got " in errors[0]:  # ``X | None``: X's own message
            head, tail = errors[0].rsplit(", got ", 1)
            raise ConfigError(f"{head} or null, got {tail}")
        raise ConfigError(f"{name}: {value!r} is not a valid {_type_name(hint)}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{name} must be one of {list(args)}, got {value!r}")
    if origin in (tuple, Sequence) or hint is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        if args and args[-1] is Ellipsis:
            return tuple(_coerce(v, args[0], name) for v in value)
        if args:
            if len(args) != len(value):
                raise ConfigError(f"{name} must have {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, name) for v, a in zip(value, args))
        return tuple(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}")
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if isinstance(value, dict):
            return _build_dataclass(hint, value, prefix=f"{name}.")
        raise ConfigError(f"{name} must be a mapping of {hint.__name__} fields, got {value!r}")
    return value


def _build_dataclass(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, val in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {prefix}{close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown config key {prefix}{key!r} for {cls.__name__}{hint} "
                f"(valid keys: {', '.join(names)})"
            )
        kwargs[key] = _coerce(val, hints[key], prefix + key)
    check_field_values(cls, kwargs, prefix)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}: {exc}") from exc


@dataclass(frozen=True)
class BaseConfig:
    """Fields shared by every method config.

    Subclasses are frozen dataclasses that add their own fields and validate them in
    ``__post_init__`` (calling ``super().__post_init__()``).
    """

    batch_size: int = 64
    epochs: int = 5
    optimizer: OptimizerSpec = OptimizerSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    max_grad_norm: float | None = None
    freeze_bn_stats: bool = False
    augment_retain: bool = True
    max_steps: int | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be >= 0, got {self.epochs}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError(f"max_steps must be >= 0 or null, got {self.max_steps}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, *, base: BaseConfig | None = None):
        """Build a validated config from a flat mapping.

        Keys are field names; ``optimizer.lr``-style dotted keys reach nested specs, and the
        shortcuts ``lr``, ``momentum``, ``weight_decay``, ``nesterov``, ``betas`` set the
        optimizer's fields when the config has no field of that name. Unknown keys raise a
        :class:`ConfigError` that lists the valid ones.
        """
        start = dataclasses.asdict(base) if base is not None else {}
        merged: dict[str, Any] = {k: v for k, v in start.items()}
        nested: dict[str, dict[str, Any]] = {}
        own = cls.field_names()
        for key, val in (values or {}).items():
            if not isinstance(key, str):
                raise ConfigError(f"config keys must be strings, got {key!r}")
            if "." in key:
                head, tail = key.split(".", 1)
                nested.setdefault(head, {})[tail] = val
            elif key in _OPT_SHORTCUTS and key not in own and "optimizer" in own:
                nested.setdefault("optimizer", {})[key] = val
            elif isinstance(val, dict) and key in own:
                nested.setdefault(key, {}).update(val)
            else:
                merged[key] = val
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        for head, sub in nested.items():
            if head not in own:
                raise ConfigError(f"unknown config key {head!r} for {cls.__name__}")
            current = merged.get(head)
            if current is None:
                # Start from *this class's* default (e.g. AdamW), not the spec's generic one.
                f = defaults[head]
                current = f.default if f.default is not dataclasses.MISSING else None
                if current is None and f.default_factory is not dataclasses.MISSING:
                    current = f.default_factory()
            if current is None:
                current = {}
            elif dataclasses.is_dataclass(current):
                current = dataclasses.asdict(current)
            merged[head] = {**current, **sub}
        return _build_dataclass(cls, merged)

    def replace(self, **changes: Any):
        """A validated copy with some fields changed (same key rules as :meth:`from_dict`)."""
        return type(self).from_dict(changes, base=self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able nested dict of every field (stored with every result); a field marked
        :data:`RECORD_IF_SET` appears only when it differs from its default."""

        def clean(v: Any) -> Any:
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)
            return v

        out = clean(dataclasses.asdict(self))
        for f in dataclasses.fields(self):
            if f.metadata.get(RECORD_IF_SET) and getattr(self, f.name) == _default(f):
                out.pop(f.name, None)
        return out

    @classmethod
    def describe_fields(cls) -> list[dict[str, Any]]:
        """Name, type, default and help of every field (for ``unlearnkit describe``)."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            default = _default(f)
            if dataclasses.is_dataclass(default):
                default = dataclasses.asdict(default)
            out.append(
                {
                    "name": f.name,
                    "type": _type_name(hints[f.name]),
                    "default": default,
                    "help": f.metadata.get("help", ""),
                }
            )
        return out


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def build_dataclass(cls: type, values: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping: unknown keys and bad values raise ConfigError."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__} must be a mapping, got {type(values).__name__}")
    return _build_dataclass(cls, values, prefix=f"{where}." if where else "")
