"""Tabular files as dataset bundles: uk.datasets.load("table", ...), the forget reader's twin."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.errors import DataError


def _write(path, rows, header):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_csv_with_text_and_integer_columns_keeps_codes_and_splits_stratified(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        [f"r{i}", int(rng.integers(0, 5)), ["red", "blue", "green"][i % 3], ["no", "yes"][i % 2]]
        for i in range(200)
    ]
    _write(tmp_path / "t.csv", rows, ["id", "visits", "colour", "churn"])
    b = uk.datasets.load("table", path=tmp_path / "t.csv", label_column="churn", seed=3)
    assert b.train.x.dtype == torch.int64  # integers and category codes stay codes
    assert b.num_classes == 2 and (len(b.train), len(b.val), len(b.test)) == (140, 20, 40)
    info = b.split_info
    assert info["feature_names"] == ["visits", "colour"] and info["label_names"] == ["no", "yes"]
    assert info["categories"]["colour"] == ["blue", "green", "red"]
    for split in (b.train, b.val, b.test):  # stratified: both labels in every split
        assert set(split.y.tolist()) == {0, 1}
    again = uk.datasets.load("table", path=tmp_path / "t.csv", label_column="churn", seed=3)
    assert again.fingerprint == b.fingerprint


def test_parquet_and_a_separate_test_table(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    x = np.random.default_rng(1).normal(size=(120, 3))
    y = (x[:, 0] > 0).astype(int)
    table = pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})
    pq.write_table(table, tmp_path / "train.parquet")
    pq.write_table(table.slice(0, 40), tmp_path / "test.parquet")
    b = uk.datasets.load(
        "table", path=tmp_path / "train.parquet", test_path=tmp_path / "test.parquet"
    )
    assert b.train.x.dtype == torch.float32 and len(b.test) == 40 and len(b.val) == 12
    assert torch.allclose(b.test.x[:, 0], torch.as_tensor(x[:40, 0], dtype=torch.float32))


def test_bad_tables_are_one_line_errors(tmp_path):
    _write(tmp_path / "t.csv", [[1, 0], [2, 1]] * 20, ["f", "y"])
    for kw, match in (
        ({"path": tmp_path / "missing.csv"}, "missing.csv"),
        ({"path": tmp_path / "t.txt"}, "csv or .parquet"),
        ({"path": tmp_path / "t.csv", "label_column": "nope"}, "nope"),
        ({"path": tmp_path / "t.csv", "val_fraction": 0}, "val_fraction"),
        ({"path": tmp_path / "t.csv", "val_fraction": 0.5, "test_fraction": 0.5}, "sum < 1"),
    ):
        with pytest.raises(DataError, match=match) as info:
            uk.datasets.load("table", **kw)
        assert "\n" not in str(info.value)
