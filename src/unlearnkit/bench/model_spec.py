"""The model of a benchmark spec (its ``model:`` mapping): a built-in architecture or a user's
factory, optionally with a checkpoint holding the trained original.

Also the small spec readers it shares with :func:`unlearnkit.bench.spec.spec_from_dict`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

__all__ = ["ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """The model of a benchmark, from a spec's ``model:`` mapping.

    * A built-in architecture: ``{arch: resnet18, width: 16}`` (options beside ``arch``, or
      under ``kwargs:``).
    * A user's own: ``{factory: "pkg.mod:Net", kwargs: {width: 16}}``: the class or function
      at that import path, called with the dataset's ``input_shape=``, ``num_classes=``,
      ``image_shape=`` and ``vocab_size=`` when its signature names them, plus ``kwargs``
      (kept in ``options``); ``arch`` is then ``None``.
    * Either, plus ``checkpoint: PATH``: a state-dict file (``.safetensors``, or a
      ``torch.save(model.state_dict())`` file read with ``weights_only=True``) holding the
      trained original, which is then loaded instead of trained (a relative path is read from
      the current folder). Retrain and every reference model still train from the recipe.

    Only the form is checked here; the import, the call and the checkpoint are checked when a
    run starts (:meth:`factory_for`), before any work.
    """

    arch: str | None = "mlp"
    options: dict[str, Any] = field(default_factory=dict)
    factory: str | None = None
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        if (self.arch is None) == (self.factory is None):
            raise ConfigError(
                "spec model needs exactly one of arch (a built-in architecture, e.g. "
                "{arch: resnet18}) and factory (your own, e.g. {factory: 'mymodels:Net'})"
            )
        if self.arch is not None and (not isinstance(self.arch, str) or not self.arch):
            raise ConfigError(f"spec model.arch must be a non-empty string, got {self.arch!r}")
        if self.factory is not None:
            target = self.factory
            parts = target.split(":") if isinstance(target, str) else []
            if len(parts) != 2 or not all(p.strip() for p in parts):
                raise ConfigError(
                    f"spec model.factory must be an import path MODULE:NAME (e.g. "
                    f"mymodels:Net), got {target!r}"
                )
        if not isinstance(self.options, dict) or not all(isinstance(k, str) for k in self.options):
            raise ConfigError(
                f"spec model options must be a mapping of names to values, got {self.options!r}"
            )
        if self.checkpoint is not None and (
            not isinstance(self.checkpoint, str) or not self.checkpoint
        ):
            raise ConfigError(
                f"spec model.checkpoint must be the path of a state-dict file, got "
                f"{self.checkpoint!r}"
            )

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        """A spec's ``model:`` mapping (ConfigError naming what is wrong)."""
        d = _mapping(data, "model", "{arch: mlp} or {factory: 'mymodels:Net'}")
        checkpoint = d.pop("checkpoint", None)
        if isinstance(checkpoint, os.PathLike):
            checkpoint = os.fspath(checkpoint)
        kwargs = d.pop("kwargs", {})
        if not isinstance(kwargs, dict):
            raise ConfigError(
                f"spec model.kwargs must be a mapping such as {{width: 64}}, got {kwargs!r}"
            )
        if "factory" in d:
            if "arch" in d:
                raise ConfigError(
                    "spec model names both arch and factory; give arch for a built-in "
                    "architecture or factory for your own, not both"
                )
            factory = d.pop("factory")
            if d:
                raise ConfigError(
                    f"spec model: unknown key(s) {sorted(d)} beside factory; put your "
                    f"model's arguments under kwargs: {{factory: ..., kwargs: {{...}}}}"
                )
            return cls(arch=None, options=kwargs, factory=factory, checkpoint=checkpoint)
        arch = _name(d.pop("arch", "mlp"), "model.arch")
        return cls(arch=arch, options={**kwargs, **d}, checkpoint=checkpoint)

    def record(self) -> dict[str, Any]:
        """What a report shows of the model: arch and options, or factory and kwargs, and the
        checkpoint file when there is one."""
        if self.factory is not None:
            out: dict[str, Any] = {"factory": self.factory, "kwargs": dict(self.options)}
        else:
            out = {"arch": self.arch, "options": dict(self.options)}
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint
        return out

    def factory_for(self, bundle: Any, model_factory: Any = None) -> Any:
        """``factory(seed) -> fresh model`` for ``bundle``, built and checked once.

        ``model_factory`` (a function ``seed -> nn.Module`` or a described factory such as a
        :class:`~unlearnkit.models.ModelFactory`) replaces the spec's arch or factory; the
        spec's checkpoint, if any, is loaded into it either way.

        Raises:
            ConfigError: bad options or kwargs, a bad import path, a factory that does not
                return an ``nn.Module``, a checkpoint that is missing or does not fit.
        """
        from ..models import ModelFactory
        from ..models.user import CheckpointFactory, ImportedFactory, as_factory

        if model_factory is not None:
            factory = as_factory(model_factory)
        elif self.factory is not None:
            factory = ImportedFactory.for_bundle(self.factory, bundle, self.options)
        else:
            factory = ModelFactory.for_bundle(self.arch, bundle, **self.options)
        factory(0)  # fails early on bad options, bad kwargs or a factory returning no model
        factory.describe()
        if self.checkpoint is not None:
            factory = CheckpointFactory(factory, self.checkpoint)
        return factory


def _mapping(v: Any, where: str, example: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise ConfigError(f"spec {where} must be a mapping such as {example}, got {v!r}")
    return dict(v)


def _name(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v:
        raise ConfigError(f"spec {where} must be a non-empty string, got {v!r}")
    return v
