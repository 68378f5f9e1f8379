"""Data readers, the held-out mapping (``like=``), and forget-ID resolution."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from unlearnkit.deletion.inputs import LoadedData, read_data, read_ids, resolve_ids
from unlearnkit.errors import DataError

from ..._helpers import one_line


def write(path, text: str):
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- CSV


def test_csv_string_ids_and_string_labels(tmp_path):
    f = write(
        tmp_path / "train.csv",
        """
        id,height,weight,y
        u-7,1.5,60,dog
        u-1,1.75,72,cat
        u-3,2,80,dog
        """,
    )
    d = read_data(f)
    assert d.kind == "csv" and d.source == str(f.resolve())
    assert d.ids == ["u-7", "u-1", "u-3"] and d.id_source == "column:id"
    assert d.label_names == ["cat", "dog"]
    assert d.y.tolist() == [1, 0, 1] and d.y.dtype == torch.int64
    assert d.feature_names == ["height", "weight"] and d.categories == {}
    assert d.x.dtype == torch.float32  # one float column makes the tensor float
    assert d.x.tolist() == [[1.5, 60.0], [1.75, 72.0], [2.0, 80.0]]
    assert len(d) == 3


def test_csv_integer_labels_and_a_categorical_column(tmp_path):
    f = write(
        tmp_path / "t.csv",
        """
        colour,count,label,key
        red,3,2,a
        blue,-1,0,b
        red,7,3,c
        green,0,0,d
        """,
    )
    d = read_data(f, label_column="label", id_column="key")
    assert d.y.tolist() == [2, 0, 3, 0]  # integer labels are their own indices
    assert d.label_names == ["0", "1", "2", "3"]
    assert d.categories == {"colour": ["blue", "green", "red"]}
    assert d.x.dtype == torch.int64  # integer + categorical only: kept exact
    assert d.x.tolist() == [[2, 3], [0, -1], [2, 7], [1, 0]]
    assert d.ids == ["a", "b", "c", "d"]


def test_csv_without_id_column_uses_row_positions(tmp_path):
    f = write(tmp_path / "t.csv", "a,y\n1,0\n2,1\n\n3,1\n")  # a blank line is skipped
    d = read_data(f)
    assert d.ids == ["0", "1", "2"] and d.id_source == "positions"
    assert d.x.shape == (3, 1)


def test_csv_mostly_numeric_column_with_text_is_categorical_and_logged(tmp_path, caplog):
    rows = "\n".join(f"{i},{i % 2}" for i in range(19))
    f = write(tmp_path / "t.csv", f"a,y\n{rows}\n?,1\n")
    with caplog.at_level("WARNING"):
        d = read_data(f)
    assert "a" in d.categories and "'?'" in caplog.text


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("id,a,label\n1,2,0\n", r"no label column 'y' \(columns: 'id', 'a', 'label'\)"),
        ("id,a,y\n1,2,0\n2,,1\n", r"line 3, column 'a' is empty"),
        ("id,a,y\n1,2,0\n2,nan,1\n", r"line 3, column 'a': 'nan' is not a number"),
        ("id,a,y\n1,2.5,0\n2,inf,1\n", r"line 3, column 'a': 'inf' is not a number"),
        ("id,a,y\n1,2,0\n,3,1\n", r"line 3, column 'id' is empty"),
        ("id,a,y\nx,2,0\nx,3,1\nz,1,0\nz,1,0\n", r"2 ID\(s\) appear more than once \('x', 'z'\)"),
        ("id,a,y\n1,2,0\n2,3\n", r"line 3 has 2 fields but the header has 3"),
        (",a,y\n0,2,0\n", r"column 1 has no name"),
        ("a,a,y\n1,2,0\n", r"duplicate column name"),
        ("id,a,y\n1,2,0.5\n", r"label 0.5 \(row 0\) is not a class"),
        ("id,a,y\n1,2,-1\n", r"must be >= 0"),
        ("id,y\n1,0\n", r"no feature columns"),
        ("id,a,y\n", r"no rows"),
        ("", r"the file is empty"),
        ("a;b;y\n1;2;0\n", r"comma-separated"),
    ],
)
def test_csv_errors(tmp_path, text, match):
    f = tmp_path / "bad.csv"
    f.write_text(text, encoding="utf-8")
    one_line(DataError, read_data, f, match=match)


def test_path_errors(tmp_path):
    one_line(DataError, read_data, tmp_path / "nope.csv", match="no such file or folder")
    (tmp_path / "x.txt").write_text("1\n")
    one_line(DataError, read_data, tmp_path / "x.txt", match=r"unknown file type \.txt")
    one_line(DataError, read_data, {"x": 1}, match="cannot read a dict")
    (tmp_path / "latin.csv").write_bytes("a,y\n\xe9,0\n".encode("latin-1"))
    one_line(DataError, read_data, tmp_path / "latin.csv", match="not UTF-8")


# ----------------------------------------------------------------------------- Parquet


def test_parquet_typed_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "id": pa.array([10, 11, 12], pa.int64()),
            "f": pa.array([0.5, 1.0, 2.0], pa.float64()),
            "n": pa.array([1, 2, 3], pa.int32()),
            "s": pa.array(["b", "a", "b"]),
            "flag": pa.array([True, False, True]),
            "y": pa.array(["no", "yes", "no"]),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    d = read_data(tmp_path / "t.parquet")
    assert d.kind == "parquet" and d.ids == ["10", "11", "12"]
    assert d.feature_names == ["f", "n", "s", "flag"]
    assert d.categories == {"s": ["a", "b"]}
    assert d.x.dtype == torch.float32
    assert d.x.tolist() == [[0.5, 1, 1, 1], [1.0, 2, 0, 0], [2.0, 3, 1, 1]]
    assert d.label_names == ["no", "yes"] and d.y.tolist() == [0, 1, 0]


def test_parquet_missing_value_names_row_and_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"a": [1.0, None, 3.0], "y": [0, 1, 0]}), tmp_path / "t.pq")
    one_line(DataError, read_data, tmp_path / "t.pq", match=r"row 2, column 'a' is empty")
    pq.write_table(pa.table({"a": [1.0, float("nan")], "y": [0, 1]}), tmp_path / "n.pq")
    one_line(DataError, read_data, tmp_path / "n.pq", match=r"row 2, column 'a' is empty")


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    one_line(
        DataError,
        read_data,
        tmp_path / "t.parquet",
        match=r"install pyarrow \(pip install 'unlearnkit\[parquet\]'\)",
    )


def test_not_a_parquet_file(tmp_path):
    pytest.importorskip("pyarrow")
    (tmp_path / "t.parquet").write_text("hello")
    one_line(DataError, read_data, tmp_path / "t.parquet", match="not a readable Parquet file")


# ----------------------------------------------------------------------------- NPZ


def test_npz_with_string_ids(tmp_path):
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.savez(tmp_path / "d.npz", x=x, y=np.array([1, 0, 1, 2]), ids=np.array(["d", "c", "b", "a"]))
    d = read_data(tmp_path / "d.npz")
    assert d.kind == "npz" and d.id_source == "npz:ids"
    assert d.ids == ["d", "c", "b", "a"] and d.label_names == ["0", "1", "2"]
    assert d.x.dtype == torch.float32 and torch.equal(d.x, torch.tensor(x, dtype=torch.float32))


def test_npz_without_ids_and_integer_inputs(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.ones((3, 2, 4, 4), np.uint8), y=np.array(["b", "a", "b"]))
    d = read_data(tmp_path / "d.npz")
    assert d.ids == ["0", "1", "2"] and d.id_source == "positions"
    assert d.x.dtype == torch.int64 and d.image_shape == (2, 4, 4)
    assert d.label_names == ["a", "b"] and d.y.tolist() == [1, 0, 1]
    np.savez(tmp_path / "i.npz", x=np.ones((2, 1)), y=[0, 1], ids=np.array([7, 9]))
    assert read_data(tmp_path / "i.npz").ids == ["7", "9"]


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.ones((2, 1)))
    one_line(DataError, read_data, tmp_path / "a.npz", match=r"no array 'y' \(it has x\)")
    np.savez(tmp_path / "b.npz", x=np.array([{"a": 1}, {}], dtype=object), y=[0, 1])
    one_line(DataError, read_data, tmp_path / "b.npz", match="pickled")
    np.savez(tmp_path / "c.npz", x=np.ones((3, 1)), y=[0, 1, 0], ids=np.array(["a", "b"]))
    one_line(DataError, read_data, tmp_path / "c.npz", match="one ID per row")
    np.savez(tmp_path / "d.npz", x=np.ones((2, 1)), y=[0, 1], ids=np.array(["a", "a"]))
    one_line(DataError, read_data, tmp_path / "d.npz", match=r"1 ID\(s\) appear more than once")
    np.savez(tmp_path / "e.npz", x=np.array([[1.0], [np.nan]]), y=[0, 1])
    one_line(DataError, read_data, tmp_path / "e.npz", match="row 1 of the inputs holds NaN")
    np.savez(tmp_path / "f.npz", x=np.ones((2, 1)), y=[0, 1, 1])
    one_line(DataError, read_data, tmp_path / "f.npz", match="x has 2 rows but y has 3")
    (tmp_path / "g.npz").write_text("not a zip")
    one_line(DataError, read_data, tmp_path / "g.npz", match="not a readable .npz")


# ----------------------------------------------------------------------------- images


def png(path, size=(4, 3), color=(255, 0, 0), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_image_folder_two_classes(tmp_path):
    root = tmp_path / "imgs"
    png(root / "dog" / "b.png", color=(0, 255, 51))
    png(root / "cat" / "a.PNG", color=(255, 0, 0))  # extensions are case-insensitive
    png(root / "cat" / "sub" / "c.bmp", color=(0, 0, 255))  # nested folders are walked
    (root / "cat" / ".DS_Store").write_bytes(b"junk")  # hidden files are ignored
    png(root / "cat" / ".hidden.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()  # hidden folders are not classes
    d = read_data(root)
    assert d.kind == "image_folder" and d.id_source == "paths"
    assert d.ids == ["cat/a.PNG", "cat/sub/c.bmp", "dog/b.png"]
    assert d.label_names == ["cat", "dog"] and d.y.tolist() == [0, 0, 1]
    assert d.x.shape == (3, 3, 3, 4) and d.x.dtype == torch.float32
    assert d.image_shape == (3, 3, 4)
    assert d.x[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert d.x[2, :, 1, 2].tolist() == pytest.approx([0.0, 1.0, 0.2])


def test_image_folder_grayscale_stays_one_channel_mixed_becomes_rgb(tmp_path):
    root = tmp_path / "g"
    png(root / "a" / "1.png", color=51, mode="L")
    png(root / "b" / "2.jpg", color=255, mode="L")
    d = read_data(root)
    assert d.x.shape == (2, 1, 3, 4) and d.x[0, 0, 0, 0].item() == pytest.approx(0.2)
    png(root / "b" / "3.gif", color=(0, 0, 255))
    d = read_data(root)
    assert d.x.shape == (3, 3, 3, 4)
    assert d.x[0, :, 0, 0].tolist() == pytest.approx([0.2, 0.2, 0.2])  # gray replicated


def test_image_folder_errors(tmp_path):
    root = tmp_path / "r"
    png(root / "a" / "small.png", size=(4, 3))
    png(root / "b" / "big.png", size=(8, 8))
    msg = one_line(DataError, read_data, root, match=r"images differ in size: 4x3 .* 8x8")
    assert "small.png" in msg and "big.png" in msg
    (root / "b" / "big.png").unlink()
    one_line(DataError, read_data, root, match="class folder 'b' holds no images")
    (root / "b" / "broken.png").write_bytes(b"not a png")
    one_line(DataError, read_data, root, match=r"cannot read image .*broken\.png")
    flat = tmp_path / "flat"
    png(flat / "x.png")
    one_line(DataError, read_data, flat, match="no class sub-folders")


# ----------------------------------------------------------------------------- Dataset / arrays

DATASET_MODULE = """
import torch
from torch.utils.data import Dataset


class Pairs(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def good():
    return Pairs([(torch.full((2, 2), float(i)), torch.tensor(i % 3)) for i in range(4)])


def ints():
    return Pairs([(torch.tensor([i, i + 1]), i % 2) for i in range(3)])


def ragged():
    return Pairs([(torch.zeros(2), 0), (torch.zeros(3), 1)])


def onehot():
    return Pairs([(torch.zeros(2), torch.tensor([0.0, 1.0]))])


def broken():
    raise RuntimeError("no data\\nhere")


def not_a_dataset():
    return 42
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module ``ukdata_<n>`` in a fresh folder that is the current directory."""
    name = f"ukdata_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(DATASET_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def test_import_path_to_a_dataset_function(user_module):
    d = read_data(f"{user_module}:good")
    assert d.kind == "dataset" and d.source == f"{user_module}:good"
    assert d.x.shape == (4, 2, 2) and d.x.dtype == torch.float32
    assert d.y.tolist() == [0, 1, 2, 0] and d.label_names == ["0", "1", "2"]
    assert d.ids == ["0", "1", "2", "3"] and d.id_source == "positions"
    i = read_data(f"{user_module}:ints")
    assert i.x.dtype == torch.int64 and i.x.tolist() == [[0, 1], [1, 2], [2, 3]]


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        ("ragged", r"inputs differ in shape: \(2,\) \(item 0\) and \(3,\) \(item 1\)"),
        ("onehot", "not a one-hot vector"),
        ("broken", "calling it raised RuntimeError: no data here"),
        ("not_a_dataset", "returned a int, not a torch Dataset"),
        ("missing", "has no attribute 'missing'"),
    ],
)
def test_import_path_errors(user_module, fn, match):
    one_line(DataError, read_data, f"{user_module}:{fn}", match=match)


def test_import_path_to_a_missing_module_is_a_data_error(user_module):
    one_line(
        DataError, read_data, "no_such_mod_xyz:make", match="no module named 'no_such_mod_xyz'"
    )


def test_torch_dataset_and_tuple_arrays():
    ds = torch.utils.data.TensorDataset(torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))
    d = read_data(ds)
    assert d.kind == "dataset" and d.x.shape == (5, 3) and d.ids == ["0", "1", "2", "3", "4"]
    a = read_data((np.zeros((3, 2), np.float64), np.array(["z", "x", "z"])))
    assert a.kind == "arrays" and a.x.dtype == torch.float32
    assert a.label_names == ["x", "z"] and a.y.tolist() == [1, 0, 1]
    t = read_data((torch.zeros(2, 1, dtype=torch.int32), torch.tensor([1, 0])))
    assert t.x.dtype == torch.int64


def test_tuple_errors():
    one_line(DataError, read_data, (np.zeros(3), np.zeros(3)), match="reshape single features")
    one_line(DataError, read_data, (np.zeros((3, 1)), [0, 1]), match="x has 3 rows but y has 2")
    one_line(DataError, read_data, (np.zeros((3, 1)),), match=r"must be \(x, y\)")
    one_line(DataError, read_data, (np.array([["a"]]), [0]), match="inputs must be numbers")


# ----------------------------------------------------------------------------- like=


@pytest.fixture
def train_csv(tmp_path) -> LoadedData:
    f = write(
        tmp_path / "train.csv",
        """
        id,size,kind,y
        a,1,big,cat
        b,2,small,dog
        c,3,big,fox
        """,
    )
    return read_data(f)


def test_like_uses_the_training_mapping(tmp_path, train_csv):
    f = write(tmp_path / "held.csv", "id,size,kind,y\nh1,5,small,fox\nh2,6,big,cat\n")
    h = read_data(f, like=train_csv, what="--held-out")
    assert h.label_names == ["cat", "dog", "fox"] and h.y.tolist() == [2, 0]
    assert h.categories == {"kind": ["big", "small"]} and h.x.tolist() == [[5, 1], [6, 0]]
    assert h.x.dtype == train_csv.x.dtype == torch.int64
    # integer labels: held-out 0 and 2 map by the label's text
    tr = read_data((np.zeros((3, 1)), np.array([0, 1, 2])))
    held = read_data((np.ones((2, 1)), np.array([2, 0])), like=tr)
    assert held.y.tolist() == [2, 0] and held.label_names == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "id,size,kind,y\nh,1,big,owl\nh2,1,big,emu\n",
            r"other classes: 2 label\(s\).*'owl', 'emu'",
        ),
        ("id,size,y\nh,1,cat\n", r"missing 'kind'"),
        ("id,size,kind,extra,y\nh,1,big,0,cat\n", r"extra 'extra'"),
        ("id,kind,size,y\nh,big,1,cat\n", "the same columns in another order"),
        ("id,size,kind,y\nh,1,huge,cat\n", r"column 'kind' has 1 categor.*'huge'"),
        ("id,size,kind,y\nh,x,big,cat\n", "column 'size' holds text"),
        ("id,size,kind,y\nh,1.5,big,cat\n", "column 'size' holds non-integer numbers"),
    ],
)
def test_like_errors(tmp_path, train_csv, text, match):
    f = tmp_path / "held.csv"
    f.write_text(text)
    one_line(DataError, read_data, f, like=train_csv, what="--held-out", match=match)


def test_like_shape_and_image_checks(tmp_path):
    tr = read_data((np.zeros((2, 3), np.float32), [0, 1]))
    one_line(DataError, read_data, (np.zeros((2, 4)), [0, 1]), like=tr, match=r"shape \(4,\)")
    ints = read_data((np.zeros((2, 3), np.int64), [0, 1]))
    one_line(DataError, read_data, (np.zeros((2, 3)), [0, 1]), like=ints, match="are floats")
    root = tmp_path / "train"
    png(root / "a" / "1.png")
    png(root / "b" / "2.png")
    images = read_data(root)
    held = tmp_path / "held"
    png(held / "b" / "3.png")
    assert read_data(held, like=images).y.tolist() == [1]
    png(held / "c" / "4.png")
    one_line(DataError, read_data, held, like=images, match=r"other classes: 1 class.*'c'")
    other = tmp_path / "other"
    png(other / "a" / "5.png", size=(5, 5))
    one_line(DataError, read_data, other, like=images, match=r"shape \(3, 5, 5\)")


# ----------------------------------------------------------------------------- IDs


def test_read_ids_text_and_csv(tmp_path):
    f = write(tmp_path / "ids.txt", "id\nu-1\n\n  u-2  \nu-3\n")
    assert read_ids(f) == ["u-1", "u-2", "u-3"]
    (tmp_path / "bom.txt").write_bytes("\ufeffa\nb\n".encode())
    assert read_ids(tmp_path / "bom.txt") == ["a", "b"]
    c = write(tmp_path / "ids.csv", 'reason,id\ngdpr,"x,1"\nmistake,y\n')
    assert read_ids(c) == ["x,1", "y"]
    s = write(tmp_path / "s.csv", "sample_id\n4\n5\n")
    assert read_ids(s, id_column="sample_id") == ["4", "5"]
    assert read_ids(write(tmp_path / "e.txt", "\n\n")) == []


def test_read_ids_errors(tmp_path):
    one_line(DataError, read_ids, tmp_path / "none.txt", match="no such file")
    c = write(tmp_path / "two.csv", "a,b\nc,d\n")
    one_line(DataError, read_ids, c, match="several fields")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00a")
    one_line(DataError, read_ids, tmp_path / "bin.txt", match="not UTF-8")


def test_resolve_ids_positions_sorted():
    pos = resolve_ids(["c", "a"], ["a", "b", "c", "d"])
    assert pos.dtype == np.int64 and pos.tolist() == [0, 2]
    assert resolve_ids([1, 3], ["0", "1", "2", "3"]).tolist() == [1, 3]  # compared as text
    assert resolve_ids(["a", "b"], ["a", "b"], allow_all=True).tolist() == [0, 1]


@pytest.mark.parametrize(
    ("requested", "ids", "match"),
    [
        ([], ["a", "b"], "the forget-ID list is empty"),
        (["a", "a", "b", "b", "c"], list("abcd"), r"2 ID\(s\) appear more than once .*'a', 'b'"),
        (["a", "x", "y"], list("abcd"), r"2 of 3 forget IDs are not in the training data \('x'"),
        (["a", "b"], ["a", "b"], r"covers the whole training set \(2 rows\)"),
        (["u1"], ["0", "1", "2"], r"IDs are row positions 0\.\.2"),
        ("abc", ["a", "b", "c"], "not one string"),
        (["a"], ["a", "a", "b"], r"the data's IDs: 1 ID\(s\) appear more than once"),
    ],
)
def test_resolve_ids_errors(requested, ids, match):
    one_line(DataError, resolve_ids, requested, ids, match=match)
