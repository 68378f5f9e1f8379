"""Tabular data from CSV or Parquet files: ``uk.datasets.load("table", path=...)``.

The same reader as ``unlearnkit forget --data`` (:func:`unlearnkit.deletion.inputs.read_data`):
every column but the label and ID columns is a feature; text columns become category codes
(sorted categories); string labels map to class indices in sorted order. When every feature
is an integer or a category code the inputs stay ``int64`` (for models that look them up in
an ``nn.Embedding``); otherwise they are ``float32``.

>>> bundle = uk.datasets.load("table", path="customers.csv", label_column="churn")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._bundle import DatasetBundle, stratified_split
from .arrays import from_arrays

__all__ = ["load_table"]


def load_table(
    path: str | Path,
    *,
    test_path: str | Path | None = None,
    label_column: str = "y",
    id_column: str = "id",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str | None = None,
) -> DatasetBundle:
    """Read a CSV or Parquet table (and an optional test table) as a dataset bundle.

    Args:
        path: the training table (``.csv``, ``.parquet`` or ``.pq``).
        test_path: a test table with the same columns; without it the test split is carved
            from ``path`` (``test_fraction``, stratified, seeded).
        label_column, id_column: the label column and the (optional) ID column, which is
            not a feature.
        val_fraction: the validation split carved from the training rows (stratified).
        seed: seeds the carving.
        name: recorded with results (default: the file's stem).

    Returns:
        The bundle; its ``split_info`` holds the feature names, the label names and the
        category codes of every text column.

    Raises:
        DataError: a missing file or column, an unreadable table, NaN features, a test table
            whose columns or labels differ, or fractions outside (0, 1).
    """
    from ..deletion.inputs import read_data  # the one reader of the user's tables

    for what, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(f, (int, float)) and 0 < f < 1):
            raise DataError(f"{what} must lie in (0, 1), e.g. 0.1; got {f!r}")
    suffix = Path(path).suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise DataError(f"{path}: a table must be a .csv or .parquet file; got {suffix!r}")
    train = read_data(path, label_column=label_column, id_column=id_column, what="path")
    y = train.y.numpy()
    fractions = {"val": val_fraction}
    if test_path is None:
        fractions["test"] = test_fraction
    fractions["train"] = 1.0 - sum(fractions.values())
    if fractions["train"] <= 0:
        raise DataError("val_fraction + test_fraction must leave training rows (sum < 1)")
    parts = {k: np.sort(v) for k, v in stratified_split(y, fractions, seed).items()}
    x = train.x
    if test_path is not None:
        test = read_data(
            test_path, label_column=label_column, id_column=id_column, like=train, what="test_path"
        )
        x_test, y_test = test.x, test.y
    else:
        x_test, y_test = x[parts["test"]], train.y[parts["test"]]
    bundle = from_arrays(
        x[parts["train"]],
        train.y[parts["train"]],
        x_test,
        y_test,
        x_val=x[parts["val"]],
        y_val=train.y[parts["val"]],
        num_classes=len(train.label_names),
        name=name or Path(path).stem,
        keep_dtype=not x.is_floating_point(),
    )
    bundle.split_info.update(_describe(train, seed, fractions))
    return bundle


def _describe(train: Any, seed: int, fractions: dict[str, float]) -> dict[str, Any]:
    return {
        "source": train.source,
        "feature_names": list(train.feature_names or []),
        "label_names": list(train.label_names),
        "categories": {k: list(v) for k, v in train.categories.items()},
        "fractions": dict(fractions),
        "seed": int(seed),
    }
