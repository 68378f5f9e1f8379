"""Small reference architectures (no torchvision) and the tools to re-initialise any model.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> model = uk.models.build("mlp", bundle, seed=0)
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..checks import check_seed
from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..datasets import DatasetBundle

__all__ = [
    "ModelFactory",
    "available",
    "build",
    "reinit_",
    "reinit_factory",
]


class MLP(nn.Module):
    """Flatten, then ``Linear -> ReLU`` blocks and a linear head."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (256, 256)):
        super().__init__()
        hidden = _positive_ints(hidden, "mlp hidden sizes", "hidden=(256, 256)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (16, 32 channels), 2x2 max-pooling, and a linear head."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, width: int = 16):
        super().__init__()
        (width,) = _positive_ints((width,), "cnn_small width", "width=16")
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width * (h // 2) * (w // 2), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # flattened images
            x = x.view(x.shape[0], *self.image_shape)
        return self.head(self.features(x))


def _positive_ints(values: Any, what: str, example: str) -> tuple[int, ...]:
    """``values`` as a tuple of positive ints, or a ConfigError naming ``what``."""
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = (values,)  # one hidden layer given as a bare width
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigError(f"{what} must be positive integers, e.g. {example}, got {values!r}")
    values = tuple(values)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Integral)]
    bad += [v for v in values if v not in bad and int(v) < 1]
    if bad:
        raise ConfigError(
            f"{what} must be positive integers, e.g. {example}, got {list(values)} (bad: {bad[:3]})"
        )
    return tuple(int(v) for v in values)


def _build_mlp(input_shape: tuple[int, ...], num_classes: int, image_shape: Any, **kw: Any):
    return MLP(math.prod(input_shape), num_classes, **kw)


def _build_cnn(input_shape: tuple[int, ...], num_classes: int, image_shape: Any, **kw: Any):
    shape = image_shape or (input_shape if len(input_shape) == 3 else None)
    if shape is None:
        raise ConfigError(
            "cnn_small needs image inputs (C, H, W); this dataset has vector inputs and no "
            "image_shape: use 'mlp' or declare image_shape"
        )
    return SmallCNN(tuple(shape), num_classes, **kw)


_ARCHS: dict[str, Callable[..., nn.Module]] = {"mlp": _build_mlp, "cnn_small": _build_cnn}


def available() -> list[str]:
    """Names accepted by :func:`build`."""
    return sorted(_ARCHS)


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

    Raises:
        ConfigError: unknown architecture, missing shapes, sizes that are not positive
            integers (``hidden=[-4]``, ``num_classes="3"``), or a seed that is not an integer.
    """
    if not isinstance(name, str) or name not in _ARCHS:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(available())}")
    if seed is not None:
        seed = check_seed(seed)
    if bundle is not None:
        input_shape = input_shape or bundle.input_shape
        num_classes = num_classes or bundle.num_classes
        image_shape = image_shape or bundle.image_shape
    if input_shape is None or num_classes is None:
        raise ConfigError("build() needs a bundle, or input_shape= and num_classes=")
    input_shape = _positive_ints(input_shape, "input_shape", "input_shape=(1, 28, 28)")
    (num_classes,) = _positive_ints((num_classes,), "num_classes", "num_classes=10")
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2 for a classifier, got {num_classes}")
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
