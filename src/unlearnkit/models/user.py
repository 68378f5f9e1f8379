"""A user's own architecture and trained weights wherever a benchmark names a model.

Three factories, each a ``factory(seed) -> freshly initialised nn.Module`` with a
``describe()`` that becomes part of a results folder's identity:

* :class:`ImportedFactory`: the callable at an import path (``"pkg.mod:Net"``, a spec's
  ``model: {factory: ..., kwargs: ...}``), called with the dataset's ``input_shape=``,
  ``num_classes=``, ``image_shape=`` and ``vocab_size=`` when its signature names them, plus
  the kwargs;
* :class:`CallableFactory`: a Python function ``seed -> nn.Module`` (``model_factory=`` of
  ``run_benchmark``, ``run_tuning`` and ``run_audit``);
* :class:`CheckpointFactory`: any factory plus a state-dict file holding the trained original
  (a spec's ``model: {checkpoint: ...}``): fresh models still come from the factory (Retrain
  and the reference models train from the spec's recipe), the original is the checkpoint.

Every call is seeded without disturbing the global random state, so ``factory(s)`` gives the
same weights each time. The description names the import path (or the function's qualified
name), the kwargs, a digest of the parameter names, shapes and dtypes, and the checkpoint's
SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..checks import check_seed
from ..errors import ConfigError, DataError

if TYPE_CHECKING:  # pragma: no cover
    from ..datasets import DatasetBundle

__all__ = [
    "CallableFactory",
    "CheckpointFactory",
    "ImportedFactory",
    "architecture_digest",
    "as_factory",
]

#: Dataset facts handed to an imported factory whose signature names them.
_SHAPE_ARGS = ("input_shape", "num_classes", "image_shape", "vocab_size")


def architecture_digest(model: nn.Module) -> str:
    """16 hex digits naming a model's state-dict layout: entry names, shapes and dtypes (not
    the values), so two builds of one architecture agree and a changed layer does not."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        shape = tuple(t.shape) if isinstance(t, torch.Tensor) else ()
        dtype = str(t.dtype) if isinstance(t, torch.Tensor) else type(t).__name__
        h.update(f"{name}:{shape}:{dtype};".encode())
    return h.hexdigest()[:16]


def _seeded(seed: Any, build: Callable[[], Any]) -> Any:
    seed = check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _jsonable(value: Any) -> Any:
    """Kwargs as JSON-able values for the description (tuples as lists, others as text)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class _Described:
    """Shared by the user factories: the architecture digest of ``factory(0)``, built once."""

    _digest: str | None = None

    def architecture(self) -> str:
        """:func:`architecture_digest` of ``self(0)`` (the subclass builds it), once."""
        if self._digest is None:
            self._digest = architecture_digest(self(0))
        return self._digest


class ImportedFactory(_Described):
    """The model class or function at ``target`` (``"pkg.mod:Net"``), sized for a dataset.

    Args:
        target: ``MODULE:NAME`` (imported with the ``forget`` command's importer, so the
            current folder is importable).
        kwargs: keyword arguments of every call.
        input_shape, num_classes, image_shape, vocab_size: the dataset's; each is passed when
            the callable's signature has a parameter of that name (``kwargs`` win).

    Raises:
        ConfigError: a bad import path, a module that fails to import, ``kwargs`` that are not
            a mapping of names; later, when called: the call raising (bad kwargs) or returning
            something that is not an ``nn.Module``.
    """

    def __init__(
        self,
        target: str,
        kwargs: Mapping[str, Any] | None = None,
        *,
        input_shape: tuple[int, ...],
        num_classes: int,
        image_shape: tuple[int, int, int] | None = None,
        vocab_size: int | None = None,
    ) -> None:
        from ..deletion.model_io import import_object

        kwargs = {} if kwargs is None else kwargs
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise ConfigError(
                f"model.kwargs must be a mapping of argument names to values (e.g. "
                f"{{width: 64}}), got {kwargs!r}"
            )
        self.target, self.kwargs = target, dict(kwargs)
        self._fn = import_object(target, "model.factory")
        facts = {
            "input_shape": tuple(input_shape),
            "num_classes": int(num_classes),
            "image_shape": tuple(image_shape) if image_shape is not None else None,
            "vocab_size": vocab_size,
        }
        try:
            params = inspect.signature(self._fn).parameters
        except (TypeError, ValueError):  # a builtin without a signature: nothing is passed
            params = {}
        self._call_kwargs = {
            k: v for k, v in facts.items() if k in params and v is not None and k not in kwargs
        }
        self._call_kwargs.update(self.kwargs)

    @classmethod
    def for_bundle(
        cls, target: str, bundle: DatasetBundle, kwargs: Mapping[str, Any] | None = None
    ) -> ImportedFactory:
        """The factory at ``target`` sized for ``bundle``."""
        return cls(
            target,
            kwargs,
            input_shape=tuple(bundle.input_shape),
            num_classes=bundle.num_classes,
            image_shape=bundle.image_shape,
            vocab_size=getattr(bundle, "vocab_size", None),
        )

    def __call__(self, seed: int) -> nn.Module:
        from ..deletion.model_io import one_line

        def build() -> Any:
            try:
                return self._fn(**self._call_kwargs)
            except Exception as exc:
                args = ", ".join(f"{k}={v!r}" for k, v in self._call_kwargs.items())
                raise ConfigError(
                    f"model.factory {self.target}: calling it with ({args}) raised "
                    f"{one_line(exc)}; check model.factory and model.kwargs"
                ) from exc

        model = _seeded(seed, build)
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"model.factory {self.target} returned a {type(model).__name__}, not a "
                "torch.nn.Module; point it at the model class or a function returning the model"
            )
        return model

    def describe(self) -> dict[str, Any]:
        return {
            "factory": self.target,
            "kwargs": _jsonable(self.kwargs),
            "architecture": self.architecture(),
        }


def _callable_name(fn: Any) -> tuple[str, dict[str, Any]]:
    """``("module:qualname", partial keywords)`` of a function, partial or callable object."""
    keywords: dict[str, Any] = {}
    while isinstance(fn, functools.partial):
        keywords = {**fn.keywords, **keywords}
        if fn.args:
            keywords["*args"] = list(fn.args)
        fn = fn.func
    target = fn if inspect.isfunction(fn) or inspect.isclass(fn) else type(fn)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or type(target).__name__
    return f"{module}:{qualname}", keywords


class CallableFactory(_Described):
    """A Python function ``seed -> freshly initialised nn.Module``, checked and described.

    Each call runs under ``torch.manual_seed(seed)`` (the global random state is restored
    afterwards). The description names the function (module and qualified name, a
    ``functools.partial``'s keywords) and the architecture digest: a closure's captured values
    are not visible, so give such functions distinct names.

    Raises:
        ConfigError: (when called) the function does not take the seed, or returns something
            that is not an ``nn.Module``.
    """

    def __init__(self, fn: Callable[[int], nn.Module]) -> None:
        if not callable(fn):
            raise ConfigError(
                f"model_factory must be a function seed -> nn.Module (or a ModelFactory), "
                f"got {type(fn).__name__}"
            )
        self.fn = fn
        self.name, self.keywords = _callable_name(fn)

    def __call__(self, seed: int) -> nn.Module:
        seed = check_seed(seed)

        def build() -> Any:
            try:
                return self.fn(seed)
            except TypeError as exc:
                raise ConfigError(
                    f"model_factory {self.name}: calling it with a seed raised TypeError: "
                    f"{' '.join(str(exc).split())}; give a function seed -> nn.Module"
                ) from exc

        model = _seeded(seed, build)
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"model_factory {self.name} returned a {type(model).__name__}, not a "
                "torch.nn.Module; give a function seed -> freshly initialised model"
            )
        return model

    def describe(self) -> dict[str, Any]:
        return {
            "factory": self.name,
            "kwargs": _jsonable(self.keywords),
            "architecture": self.architecture(),
        }


class CheckpointFactory:
    """A factory whose trained original comes from a state-dict file.

    ``factory(seed)`` still builds fresh models (Retrain, teachers, reference models train
    from the recipe); :meth:`original` builds ``factory(0)`` and loads the checkpoint into it.
    The file is read as a plain state dict (``.safetensors``, or ``torch.load`` with
    ``weights_only=True``) and checked against the model at construction, so a wrong file
    fails before any work.

    Raises:
        ConfigError: a missing or unreadable file, a pickled object instead of a state dict,
            missing or unexpected keys, shape mismatches (one line each).
    """

    def __init__(self, inner: Callable[[int], nn.Module], path: str | Path) -> None:
        from ..deletion.model_io import sha256_file

        self.inner, self.path = inner, Path(path).expanduser().absolute()
        self.original()  # the file exists and fits the model
        self.sha256 = sha256_file(self.path)

    def __call__(self, seed: int) -> nn.Module:
        return self.inner(seed)

    def original(self) -> nn.Module:
        """``factory(0)`` with the checkpoint's weights, in eval mode."""
        from ..deletion.model_io import load_checkpoint

        model = self.inner(0)
        try:
            load_checkpoint(model, self.path, what="model.checkpoint")
        except DataError as exc:
            msg = str(exc).replace(
                "--model and --model-kwargs", "the spec's model (arch or factory, with options)"
            )
            raise ConfigError(msg) from exc
        return model.eval()

    def describe(self) -> dict[str, Any]:
        desc = self.inner.describe() if hasattr(self.inner, "describe") else {}
        return {**desc, "checkpoint": {"sha256": self.sha256}}


def as_factory(model_factory: Any) -> Callable[[int], nn.Module]:
    """``model_factory=`` as a described factory: an object that already describes itself
    (a :class:`~unlearnkit.models.ModelFactory`, one of this module's) is used as it is, a
    plain callable is wrapped in :class:`CallableFactory`."""
    if callable(model_factory) and callable(getattr(model_factory, "describe", None)):
        return model_factory
    return CallableFactory(model_factory)
