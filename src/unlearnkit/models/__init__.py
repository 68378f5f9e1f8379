"""Reference architectures (no torchvision) and the tools to re-initialise any model.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> model = uk.models.build("mlp", bundle, seed=0)

Vectors: ``mlp``. Images: ``cnn_small``, ``resnet18``, ``resnet50``, ``vgg16_bn``,
``wrn28_10``, ``vit_tiny``, ``vit_small``. Token ids: ``embedding_bag``, ``text_transformer``.
Every model returns ``(N, K)`` logits and its classifier head is its last ``nn.Linear``.
A user's own architecture (an import path or a function) and trained checkpoint go through
:mod:`unlearnkit.models.user`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..checks import check_seed
from ..errors import ConfigError
from ._common import positive_int, positive_ints
from .resnet import resnet18, resnet50
from .small import MLP, SmallCNN
from .text import build_embedding_bag, build_text_transformer
from .user import CallableFactory, CheckpointFactory, ImportedFactory
from .vgg import vgg16_bn
from .vit import vit_small, vit_tiny
from .wrn import wrn28_10

if TYPE_CHECKING:  # pragma: no cover
    from ..datasets import DatasetBundle

__all__ = [
    "MLP",
    "CallableFactory",
    "CheckpointFactory",
    "ImportedFactory",
    "ModelFactory",
    "SmallCNN",
    "available",
    "build",
    "input_kind",
    "reinit_",
    "reinit_factory",
]


def _image_shape(name: str, input_shape: tuple[int, ...], image_shape: Any) -> tuple[int, int, int]:
    shape = image_shape or (input_shape if len(input_shape) == 3 else None)
    if shape is None:
        raise ConfigError(
            f"{name} needs image inputs (C, H, W); this dataset has vector inputs and no "
            "image_shape: use 'mlp' or declare image_shape"
        )
    shape = positive_ints(shape, "image_shape", "image_shape=(3, 32, 32)")
    if len(shape) != 3 or math.prod(shape) != math.prod(input_shape):
        raise ConfigError(
            f"image_shape must be (C, H, W) holding the {math.prod(input_shape)} values of "
            f"input_shape {tuple(input_shape)}, got {shape}"
        )
    return shape  # type: ignore[return-value]


def _build_mlp(input_shape: tuple[int, ...], num_classes: int, image_shape: Any, **kw: Any):
    return MLP(math.prod(input_shape), num_classes, **kw)


def _build_cnn(input_shape: tuple[int, ...], num_classes: int, image_shape: Any, **kw: Any):
    return SmallCNN(_image_shape("cnn_small", input_shape, image_shape), num_classes, **kw)


def _image_arch(name: str, make: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def builder(input_shape: tuple[int, ...], num_classes: int, image_shape: Any, **kw: Any):
        return make(_image_shape(name, input_shape, image_shape), num_classes, **kw)

    return builder


def _text_arch(make: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    def builder(input_shape: tuple[int, ...], num_classes: int, image_shape: Any, **kw: Any):
        return make(input_shape, num_classes, **kw)

    return builder


_ARCHS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _build_mlp,
    "cnn_small": _build_cnn,
    "resnet18": _image_arch("resnet18", resnet18),
    "resnet50": _image_arch("resnet50", resnet50),
    "vgg16_bn": _image_arch("vgg16_bn", vgg16_bn),
    "wrn28_10": _image_arch("wrn28_10", wrn28_10),
    "vit_tiny": _image_arch("vit_tiny", vit_tiny),
    "vit_small": _image_arch("vit_small", vit_small),
    "embedding_bag": _text_arch(build_embedding_bag),
    "text_transformer": _text_arch(build_text_transformer),
}
_KINDS = {name: "image" for name in _ARCHS}
_KINDS.update(mlp="vector", embedding_bag="tokens", text_transformer="tokens")
_FITS = {
    "vector": "mlp",
    "image": "cnn_small, resnet18, resnet50, vgg16_bn, wrn28_10, vit_tiny or vit_small",
    "tokens": "embedding_bag or text_transformer",
}


def available() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(_ARCHS)


def input_kind(name: str) -> str:
    """What architecture ``name`` takes: ``"vector"`` (float features of any shape, flattened),
    ``"image"`` (float ``(N, C, H, W)``) or ``"tokens"`` (int64 ``(N, L)``, 0 = padding).

    Raises:
        ConfigError: unknown architecture.
    """
    if not isinstance(name, str) or name not in _KINDS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available())}")
    return _KINDS[name]


def _holds_tokens(bundle: DatasetBundle) -> bool:
    """Whether the bundle's inputs are integer ids (text, a vocabulary, or integer dtype)."""
    if getattr(bundle, "modality", None) == "text" or getattr(bundle, "vocab_size", None):
        return True
    return not bundle.train.x.is_floating_point()


def _check_data_kind(name: str, kind: str, bundle: DatasetBundle) -> None:
    tokens = _holds_tokens(bundle)
    if kind != "tokens" and tokens:
        raise ConfigError(
            f"model {name!r} takes float {'images' if kind == 'image' else 'features'}, but "
            f"dataset {bundle.name!r} holds integer token ids; use {_FITS['tokens']}"
        )
    if kind == "tokens" and not tokens:
        held = "images" if bundle.image_shape is not None else "float features"
        fits = _FITS["image"] if bundle.image_shape is not None else _FITS["vector"]
        raise ConfigError(
            f"model {name!r} takes integer token ids, but dataset {bundle.name!r} holds {held}; "
            f"use {fits}"
        )


def _vocab_size(
    name: str, kwargs: dict[str, Any], bundle: DatasetBundle | None, input_shape: tuple[int, ...]
) -> int:
    """The vocabulary of a text model: ``vocab_size=`` or the bundle's, checked."""
    vocab = kwargs.pop("vocab_size", None)
    if vocab is None and bundle is not None:
        vocab = getattr(bundle, "vocab_size", None)
    if vocab is None:
        raise ConfigError(
            f"model {name!r} needs vocab_size (the number of token ids, padding 0 included): "
            "pass vocab_size= to build(), or use a dataset bundle that declares vocab_size"
        )
    vocab = positive_int(vocab, f"{name} vocab_size", "vocab_size=20000")
    if vocab < 2:
        raise ConfigError(f"{name} vocab_size must be >= 2 (padding 0 and one token), got {vocab}")
    if len(input_shape) != 1:
        raise ConfigError(
            f"model {name!r} takes token ids of shape (L,) per sample, got input_shape "
            f"{tuple(input_shape)}; for images use {_FITS['image']}"
        )
    if bundle is not None and len(bundle.train):
        top = int(bundle.train.x.max())
        if top >= vocab:
            raise ConfigError(
                f"dataset {bundle.name!r} holds token id {top} but vocab_size is {vocab}; "
                f"pass vocab_size={top + 1} or more"
            )
    return vocab


def build(
    name: str,
    bundle: DatasetBundle | None = None,
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
    seed: int | None = 0,
    **kwargs: Any,
) -> nn.Module:
    """Build a reference architecture sized for ``bundle`` (or explicit shapes).

    Initialisation is seeded without disturbing the global RNG (``seed=None`` uses it).
    Architecture options go in ``kwargs`` (``width=``, ``stem=``, ``depth=``, ``patch=``...;
    see ``docs/models.md``). The text models also need ``vocab_size=``, taken from the bundle
    when it declares one.

    Raises:
        ConfigError: unknown architecture, missing shapes, sizes that are not positive
            integers (``hidden=[-4]``, ``num_classes="3"``), a seed that is not an integer, an
            image model for token data or a text model for float data, or a text model
            without a vocabulary size.
    """
    kind = input_kind(name)
    if seed is not None:
        seed = check_seed(seed)
    if bundle is not None:
        _check_data_kind(name, kind, bundle)
        input_shape = input_shape or bundle.input_shape
        num_classes = num_classes or bundle.num_classes
        image_shape = image_shape or bundle.image_shape
    if input_shape is None or num_classes is None:
        raise ConfigError("build() needs a bundle, or input_shape= and num_classes=")
    input_shape = positive_ints(input_shape, "input_shape", "input_shape=(1, 28, 28)")
    (num_classes,) = positive_ints((num_classes,), "num_classes", "num_classes=10")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2 for a classifier, got {num_classes}")
    kwargs = dict(kwargs)
    if kind == "tokens":
        kwargs["vocab_size"] = _vocab_size(name, kwargs, bundle, input_shape)
    elif "vocab_size" in kwargs:
        raise ConfigError(
            f"vocab_size is an option of the text models ({_FITS['tokens']}), not of {name!r}"
        )
    try:
        if seed is None:
            return _ARCHS[name](tuple(input_shape), int(num_classes), image_shape, **kwargs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _ARCHS[name](tuple(input_shape), int(num_classes), image_shape, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for model {name!r}: {exc}") from exc


@dataclass(frozen=True)
class ModelFactory:
    """``factory(seed)`` builds a freshly initialised model of one architecture."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    image_shape: tuple[int, int, int] | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_bundle(cls, name: str, bundle: DatasetBundle, **kwargs: Any) -> ModelFactory:
        """The factory of architecture ``name`` sized for ``bundle`` (its vocabulary included,
        for a text model on a bundle that declares one)."""
        vocab = getattr(bundle, "vocab_size", None)
        if _KINDS.get(name) == "tokens" and vocab is not None and "vocab_size" not in kwargs:
            kwargs = {**kwargs, "vocab_size": vocab}
        return cls(name, tuple(bundle.input_shape), bundle.num_classes, bundle.image_shape, kwargs)

    def __call__(self, seed: int) -> nn.Module:
        return build(
            self.name,
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            image_shape=self.image_shape,
            seed=seed,
            **self.kwargs,
        )

    def describe(self) -> dict[str, Any]:
        return {"arch": self.name, "kwargs": dict(sorted(self.kwargs.items()))}


def reinit_(model: nn.Module, *, seed: int | None = None) -> nn.Module:
    """Re-initialise every parameter and buffer of ``model`` in place, at every depth.

    Walks ``model.modules()`` recursively (not only top-level children, the known bug of
    reference code) and calls ``reset_parameters()`` and ``reset_running_stats()``.

    Raises:
        ConfigError: a parameter belongs to a module that defines no ``reset_parameters()``
            (class tokens, positional embeddings, bare ``nn.Parameter``s): a recursive reset
            cannot reach it, so pass a model factory instead.
    """
    unreachable = [
        f"{mod_name + '.' if mod_name else ''}{p_name}"
        for mod_name, mod in model.named_modules()
        for p_name, _ in mod.named_parameters(recurse=False)
        if not hasattr(mod, "reset_parameters")
    ]
    if unreachable:
        raise ConfigError(
            f"cannot re-initialise parameter(s) {unreachable[:5]}: their module defines no "
            "reset_parameters(); pass model_factory= (a function seed -> fresh model) instead"
        )
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for mod in model.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
            if hasattr(mod, "reset_running_stats"):
                mod.reset_running_stats()
    return model


def reinit_factory(model: nn.Module) -> Callable[[int], nn.Module]:
    """A model factory for a user's model: a deep copy, fully re-initialised with the seed."""
    reinit_(copy.deepcopy(model), seed=0)  # fail early if the model cannot be reset

    def factory(seed: int) -> nn.Module:
        return reinit_(copy.deepcopy(model), seed=seed)

    return factory
