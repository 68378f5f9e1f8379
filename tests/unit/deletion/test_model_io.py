"""Model import, checkpoint loading (strict, never unpickling objects) and saving."""

from __future__ import annotations

import hashlib
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from unlearnkit.deletion.model_io import (
    build_model,
    import_object,
    load_checkpoint,
    save_model,
    sha256_file,
    sha256_ids,
)
from unlearnkit.errors import ConfigError, DataError

from ..._helpers import one_line


def net(width: int = 4) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 2))


def same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- import

MODEL_MODULE = """
import torch
from torch import nn

SOMETHING = 3


class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.fc = nn.Linear(3, width)

    def forward(self, x):
        return self.fc(x)


def make(width=4, depth=1):
    if depth < 1:
        raise ValueError("depth must be\\n>= 1")
    return Net(width)


def not_a_model():
    return "a string"
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module ``ukmodel_<n>`` in a fresh folder that is the current directory."""
    name = f"ukmodel_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODEL_MODULE)
    (tmp_path / f"{name}_boom.py").write_text("raise RuntimeError('import-time\\nfailure')\n")
    (tmp_path / f"{name}_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    for mod in (name, f"{name}_boom", f"{name}_dep"):
        sys.modules.pop(mod, None)


def test_import_object_finds_a_module_in_the_current_directory(user_module):
    cls = import_object(f"{user_module}:Net")
    assert cls.__name__ == "Net"
    assert import_object("collections:OrderedDict.fromkeys") is not None  # dotted attribute


def test_build_model_passes_kwargs(user_module):
    m = build_model(f"{user_module}:make", {"width": 7})
    assert isinstance(m, nn.Module) and m.fc.out_features == 7
    assert build_model(f"{user_module}:Net").fc.out_features == 4


@pytest.mark.parametrize(
    ("suffix", "kwargs", "match"),
    [
        ("no colon here", None, "must be an import path MODULE:NAME"),
        ("a:b:c", None, "must be an import path"),
        (":make", None, "must be an import path"),
        ("nosuchpkg_xyz.models:Net", None, "no module named 'nosuchpkg_xyz'; run from the folder"),
        ("{m}_dep:x", None, "imports 'no_such_dependency_xyz', which is not installed"),
        ("{m}_boom:x", None, "raised RuntimeError: import-time failure"),
        ("{m}:Nte", None, r"has no attribute 'Nte' \(it has: Net, make, not_a_model\)"),
        ("{m}:SOMETHING", None, "'SOMETHING' is a int, not a class or function"),
        ("{m}:make", {"depth": 0}, r"raised ValueError: depth must be >= 1"),
        ("{m}:make", {"colour": 1}, r"raised TypeError: .*unexpected keyword argument 'colour'"),
        ("{m}:not_a_model", None, "returned a str, not a torch.nn.Module"),
        ("{m}:make", [1, 2], "must be a JSON object"),
    ],
)
def test_model_import_errors(user_module, suffix, kwargs, match):
    one_line(ConfigError, build_model, suffix.format(m=user_module), kwargs, match=match)


# ----------------------------------------------------------------------------- checkpoints


def test_round_trip_safetensors_and_pt(tmp_path):
    src = net()
    sha = save_model(src, tmp_path / "m.safetensors")
    assert sha == hashlib.sha256((tmp_path / "m.safetensors").read_bytes()).hexdigest()
    assert sha == sha256_file(tmp_path / "m.safetensors")
    torch.manual_seed(99)
    dst = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    assert not same(src, dst)
    assert load_checkpoint(dst, tmp_path / "m.safetensors") is dst  # in place
    assert same(src, dst)
    torch.save(src.state_dict(), tmp_path / "m.pt")
    other = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    assert same(load_checkpoint(other, tmp_path / "m.pt"), src)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model_state_dict": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"model": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # nn.DataParallel
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},  # torch.compile
    ],
)
def test_wrapped_state_dicts_are_unwrapped(tmp_path, wrap):
    src = net()
    torch.save(wrap(src.state_dict()), tmp_path / "w.pt")
    dst = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    assert same(load_checkpoint(dst, tmp_path / "w.pt"), src)


def test_key_mismatch_names_the_first_keys(tmp_path):
    sd = net().state_dict()
    sd.pop("0.weight")
    sd["extra.a"] = sd["extra.b"] = sd["extra.c"] = sd["extra.d"] = torch.zeros(1)
    torch.save(sd, tmp_path / "k.pt")
    msg = one_line(DataError, load_checkpoint, net(), tmp_path / "k.pt", match="does not fit")
    assert "1 missing key(s) ('0.weight')" in msg
    assert "4 unexpected key(s) ('extra.a', 'extra.b', 'extra.c', ...)" in msg


def test_shape_mismatch_names_the_shapes(tmp_path):
    save_file(net(8).state_dict(), str(tmp_path / "s.safetensors"))
    msg = one_line(DataError, load_checkpoint, net(4), tmp_path / "s.safetensors")
    assert "0.weight: checkpoint (8, 3) vs model (4, 3)" in msg and "shape mismatch" in msg


def test_pickled_module_is_refused_not_unpickled(tmp_path):
    torch.save(net(), tmp_path / "whole.pt")
    one_line(
        DataError,
        load_checkpoint,
        net(),
        tmp_path / "whole.pt",
        match=r"not a plain state dict \(a pickled object\); save model.state_dict\(\)",
    )


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("notes.pt", b"hello, this is text\n", "is not a PyTorch checkpoint"),
        ("empty.pt", b"", "is not a PyTorch checkpoint"),
        ("bad.safetensors", b"hello, this is text\n", "not a readable safetensors file"),
    ],
)
def test_files_that_are_not_checkpoints(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    one_line(DataError, load_checkpoint, net(), tmp_path / name, match=match)


def test_other_checkpoint_errors(tmp_path):
    one_line(DataError, load_checkpoint, net(), tmp_path / "absent.pt", match="no such file")
    torch.save(torch.zeros(3), tmp_path / "t.pt")
    one_line(DataError, load_checkpoint, net(), tmp_path / "t.pt", match="holds a Tensor")
    torch.save({"weights": [1, 2], "lr": 0.1}, tmp_path / "d.pt")
    one_line(
        DataError, load_checkpoint, net(), tmp_path / "d.pt", match=r"2 entr\(ies\) hold no tensor"
    )
    torch.save({}, tmp_path / "e.pt")
    one_line(DataError, load_checkpoint, net(), tmp_path / "e.pt", match="empty state dict")


# ----------------------------------------------------------------------------- saving


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.emb.weight  # tied: one storage, two state-dict keys
        self.register_buffer("view", torch.arange(12.0).reshape(3, 4)[:, 1:3])  # non-contiguous


def test_save_model_handles_shared_and_non_contiguous_tensors(tmp_path):
    m = Tied()
    path = tmp_path / "sub" / "tied.safetensors"
    save_model(m, path, metadata={"format": "pt"})
    assert not list(path.parent.glob("*.part"))
    loaded = load_file(str(path))  # plain safetensors, no unlearnkit needed
    assert loaded.keys() == m.state_dict().keys()
    assert torch.equal(loaded["out.weight"], m.emb.weight.detach())
    assert torch.equal(loaded["view"], m.view)
    fresh = Tied()
    fresh.load_state_dict(loaded)
    assert same(fresh, m)
    assert m.out.weight is m.emb.weight  # the model itself is untouched


def test_save_model_refuses_an_unwritable_path(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line(
        DataError, save_model, net(), tmp_path / "file" / "m.safetensors", match="cannot write"
    )


def test_sha256_ids_is_of_the_sorted_newline_joined_ids():
    expected = hashlib.sha256(b"a\nb\nc").hexdigest()
    assert sha256_ids(["c", "a", "b"]) == expected
    assert sha256_ids([2, 10]) == hashlib.sha256(b"10\n2").hexdigest()  # sorted as text
