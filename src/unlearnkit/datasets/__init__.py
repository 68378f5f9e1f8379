"""Dataset bundles: the embedded digits, seeded synthetic data, and a user's own data.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> bundle.num_classes, bundle.input_shape
(10, (1, 8, 8))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DataError
from ._bundle import DatasetBundle, Normalization, Split
from .arrays import from_arrays, from_npz, from_torch
from .digits import load_digits
from .synthetic import load_synthetic

__all__ = [
    "DatasetBundle",
    "Normalization",
    "Split",
    "available",
    "from_arrays",
    "from_npz",
    "from_torch",
    "load",
]

_LOADERS: dict[str, Callable[..., DatasetBundle]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "npz": from_npz,
}


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_LOADERS)


def load(name: str, **kwargs: Any) -> DatasetBundle:
    """Load a dataset bundle by name (``digits``, ``synthetic``, ``npz`` with ``path=``).

    Raises:
        DataError: unknown name or bad arguments.
    """
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(available())}") from None
    try:
        return loader(**kwargs)
    except TypeError as exc:
        raise DataError(f"bad arguments for dataset {name!r}: {exc}") from exc
