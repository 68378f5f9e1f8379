"""Dataset bundles: the embedded digits, seeded synthetic data, public datasets, a user's own data.

>>> import unlearnkit as uk
>>> bundle = uk.datasets.load("digits")
>>> bundle.num_classes, bundle.input_shape
(10, (1, 8, 8))

Names accepted by :func:`load`:

- ``digits``: scikit-learn's embedded 8x8 digits (:func:`~.digits.load_digits`).
- ``synthetic``: seeded Gaussian clusters of any size and shape
  (:func:`~.synthetic.load_synthetic`).
- ``table``: a CSV or Parquet table (``path=``, ``label_column=``; :func:`~.table.load_table`).
- ``npz``: a user's ``.npz`` file (``path=``; :func:`~.arrays.from_npz`).
- ``mnist``, ``fashion_mnist``: the official IDX files (plain or ``.gz``) in ``root=``, directly
  or in torchvision's ``root/MNIST/raw`` / ``root/FashionMNIST/raw``
  (:func:`~.idx.load_mnist`, :func:`~.idx.load_fashion_mnist`).
- ``cifar10``, ``cifar100``: the official python batches in ``root/cifar-10-batches-py`` /
  ``root/cifar-100-python``, or the official ``.tar.gz`` archive in ``root``
  (:func:`~.cifar.load_cifar10`, :func:`~.cifar.load_cifar100`; ``labels="coarse"`` gives the
  20 super-classes with the fine labels kept in ``Split.fine``).
- ``svhn``: the official ``train_32x32.mat``/``test_32x32.mat`` (and ``extra_32x32.mat`` with
  ``extra=True``) in ``root=`` (:func:`~.svhn.load_svhn`).
- ``text_csv``: a CSV file of (text, label) rows (``path=``; :func:`~.text.load_text_csv`).
- ``20newsgroups``: the 20 Newsgroups posts from the extracted or packed official archive, or
  scikit-learn's cache, in ``root=`` (:func:`~.newsgroups.load_20newsgroups`).
- ``image_folder``: images in ``root/train/<class>/``, ``root/test/<class>/`` (optional
  ``root/val/<class>/``), or the Tiny-ImageNet and CelebA layouts (``layout=``), read lazily
  from disk batch by batch, never all in memory (:func:`~.image_folder.load_image_folder`).

Text bundles hold fixed-length int64 token ids (``modality="text"``, ``vocab_size``, and the
``vocabulary`` built from the training split only; :mod:`~.text`).

The public datasets never touch the network unless given ``download=True``, which fetches the
official files into ``root`` and checks their published checksums (20 Newsgroups: through
scikit-learn's downloader). Their validation split is carved (stratified, seeded by ``seed=``)
from the official training set, ``val_fraction=`` (default 0.1) of it; the official test set is
the test split. For the image datasets ``limit_train=``/``limit_test=`` keep only the first N
samples of each official split.

>>> cifar = uk.datasets.load("cifar10", root="~/data", download=True)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import DataError
from ._bundle import DatasetBundle, Normalization, Split
from .arrays import from_arrays, from_npz, from_torch
from .cifar import load_cifar10, load_cifar100
from .digits import load_digits
from .idx import load_fashion_mnist, load_mnist
from .image_folder import load_image_folder
from .newsgroups import load_20newsgroups
from .svhn import load_svhn
from .synthetic import load_synthetic
from .table import load_table
from .text import Vocabulary, encode_like, from_texts, load_text_csv

__all__ = [
    "DatasetBundle",
    "Normalization",
    "Split",
    "Vocabulary",
    "available",
    "encode_like",
    "from_arrays",
    "from_npz",
    "from_texts",
    "from_torch",
    "load",
]

_LOADERS: dict[str, Callable[..., DatasetBundle]] = {
    "digits": load_digits,
    "synthetic": load_synthetic,
    "npz": from_npz,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
    "text_csv": load_text_csv,
    "table": load_table,
    "20newsgroups": load_20newsgroups,
    "image_folder": load_image_folder,
}


def available() -> list[str]:
    """Names accepted by :func:`load`."""
    return sorted(_LOADERS)


def load(name: str, **kwargs: Any) -> DatasetBundle:
    """Load a dataset bundle by name (``digits``, ``synthetic``, ``npz`` or ``text_csv`` with
    ``path=``, or ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``,
    ``20newsgroups``, ``image_folder`` with ``root=``).

    Raises:
        DataError: unknown name or bad arguments.
    """
    try:
        loader = _LOADERS[name]
    except KeyError:
        # registration order: the built-in data first, then the public datasets
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(_LOADERS)}") from None
    if "seed" in kwargs:
        from ..checks import check_seed

        check_seed(kwargs["seed"])
    try:
        return loader(**kwargs)
    except TypeError as exc:
        raise DataError(f"bad arguments for dataset {name!r}: {exc}") from exc
