"""Every bad input to the Python API is one clear error: the documented type, one line, naming
the problem. One table drives the rows; each row is (id, call, expected type, message part).

Rows whose call needs files build them under the test's ``tmp_path`` (``c.tmp``). Every row
runs with gzip decompression capped in the IDX reader (see :class:`_CappedGzip`), so a row that
would inflate a decompression bomb fails fast instead of allocating hundreds of megabytes.
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit.checks import check_device, check_model
from unlearnkit.datasets import from_arrays, load
from unlearnkit.datasets import idx as idx_mod
from unlearnkit.errors import AccessError, ConfigError, DataError
from unlearnkit.metrics.suite import model_signals
from unlearnkit.testing import tiny_bundle, tiny_model, tiny_task

# --------------------------------------------------------------------------- tiny pieces

K, N_TRAIN, FEATURES = 4, 96, 36  # tiny_bundle(): 4 classes, 96 samples, 1x6x6 inputs


class _Linear(nn.Module):
    """Flatten, then one linear layer, with an output hook ``post``."""

    def __init__(self, n_in: int = FEATURES, n_out: int = K, post: Any = None):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)
        self.post = post

    def forward(self, x: torch.Tensor) -> Any:
        out = self.fc(x.flatten(1).float())
        return self.post(out) if self.post is not None else out


class _Echo(nn.Module):
    """Has a parameter but returns its input: an identity map in disguise."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Embed(nn.Module):
    """Looks categorical codes up in an embedding (integer features)."""

    def __init__(self, n_codes: int = 5, n_features: int = 3, k: int = 2):
        super().__init__()
        self.emb = nn.Embedding(n_codes, 4)
        self.head = nn.Linear(4 * n_features, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(x.long()).flatten(1))


def _categorical(keep_dtype: bool):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, size=(60, 3))
    y = x[:, 0] % 2
    return from_arrays(x[:40], y[:40], x[40:], y[40:], keep_dtype=keep_dtype)


def _arrays(**overrides: Any):
    """from_arrays on 8 train / 4 test samples of 3 features, 2 classes, with overrides."""
    kw: dict[str, Any] = {
        "x_train": np.zeros((8, 3)),
        "y_train": np.array([0, 1] * 4),
        "x_test": np.zeros((4, 3)),
        "y_test": np.array([0, 1] * 2),
    }
    kw.update(overrides)
    return from_arrays(**kw)


def _idx_header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">I{len(dims)}I", magic, *dims)


_MIB = 1 << 20
_ZEROS_MEMBER = gzip.compress(bytes(_MIB), compresslevel=9)  # ~1 KB that inflates to 1 MiB


def _bomb(path: Path, head: bytes, mib: int = 600) -> Path:
    """A ~0.6 MB ``.gz`` file: ``head`` then ``mib`` MiB of zeros once inflated (members)."""
    with open(path, "wb") as f:
        f.write(gzip.compress(head))
        for _ in range(mib):
            f.write(_ZEROS_MEMBER)
    return path


def _mnist_root_with_bomb(tmp: Path) -> Path:
    """Four official-looking files; the training images declare (and inflate to) 600 MiB."""
    root = tmp / "mnist"
    root.mkdir()
    n = (600 * _MIB) // (28 * 28)
    _bomb(root / "train-images-idx3-ubyte.gz", _idx_header(0x803, n, 28, 28))
    (root / "train-labels-idx1-ubyte").write_bytes(_idx_header(0x801, 2) + bytes(2))
    (root / "t10k-images-idx3-ubyte").write_bytes(_idx_header(0x803, 2, 28, 28) + bytes(1568))
    (root / "t10k-labels-idx1-ubyte").write_bytes(_idx_header(0x801, 2) + bytes(2))
    return root


def _write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


class _CappedGzip:
    """A gzip reader that refuses unbounded reads and more than 16 MiB in total."""

    LIMIT = 16 * _MIB

    def __init__(self, path: Any, mode: str = "rb"):
        self._f = gzip.GzipFile(path, mode)
        self.total = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("unbounded gzip read: the whole file would be inflated")
        if self.total + size > self.LIMIT:
            raise AssertionError(f"gzip read past {self.LIMIT} bytes: a bomb is being inflated")
        data = self._f.read(size)
        self.total += len(data)
        return data

    def __enter__(self) -> _CappedGzip:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._f.close()


# --------------------------------------------------------------------------- the table

_BAD_CUDA = "cuda:99"  # absent without CUDA, and beyond the devices of any CUDA machine
_NO_MPS = not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _unlearn(c, model=None, task=None, **kw):
    kw.setdefault("config", {"epochs": 1})
    return uk.unlearn(model if model is not None else c.model, task or c.task, "finetune", **kw)


# fmt: off
ROWS = [
    # ---- forget_task: one validation function for every argument
    ("fraction-str", lambda c: uk.forget_task(c.b, "random", fraction="abc"), DataError,
     "fraction must be a number"),
    ("fraction-negative", lambda c: uk.forget_task(c.b, "random", fraction=-0.1), DataError,
     "fraction must lie in (0, 1)"),
    ("fraction-above-1", lambda c: uk.forget_task(c.b, "random", fraction=1.5), DataError,
     "fraction must lie in (0, 1)"),
    ("fraction-nan", lambda c: uk.forget_task(c.b, "random", fraction=float("nan")), DataError,
     "fraction must lie in (0, 1)"),
    ("fraction-bool", lambda c: uk.forget_task(c.b, "random", fraction=True), DataError,
     "fraction must be a number"),
    ("count-float", lambda c: uk.forget_task(c.b, "random", count=1.5), DataError,
     "count must be a whole number"),
    ("count-str", lambda c: uk.forget_task(c.b, "random", count="3"), DataError,
     "count must be an integer"),
    ("count-zero", lambda c: uk.forget_task(c.b, "random", count=0), DataError, "empty"),
    ("count-everything", lambda c: uk.forget_task(c.b, "random", count=N_TRAIN), DataError,
     "cannot forget all"),
    ("fraction-and-count", lambda c: uk.forget_task(c.b, "random", fraction=0.1, count=3),
     DataError, "exactly one of fraction= or count="),
    ("classes-str", lambda c: uk.forget_task(c.b, "class", classes=["a"]), DataError,
     "each entry of classes must be an integer"),
    ("classes-float", lambda c: uk.forget_task(c.b, "class", classes=[1.5]), DataError,
     "each entry of classes must be a whole number"),
    ("classes-empty", lambda c: uk.forget_task(c.b, "class", classes=[]), DataError,
     "classes is empty"),
    ("classes-bare-int", lambda c: uk.forget_task(c.b, "class", classes=1), DataError,
     "classes must be a list of integers"),
    ("class-out-of-range", lambda c: uk.forget_task(c.b, "class", classes=[K]), DataError,
     "do not exist"),
    ("class-negative", lambda c: uk.forget_task(c.b, "class", classes=[-1]), DataError,
     "do not exist"),
    ("classes-wrong-scenario", lambda c: uk.forget_task(c.b, classes=[1]), DataError,
     "classes= applies to scenario 'class'"),
    ("fraction-wrong-scenario",
     lambda c: uk.forget_task(c.b, "class", classes=[1], fraction=0.1), DataError,
     "fraction= applies to scenario 'random'"),
    ("scenario-unknown", lambda c: uk.forget_task(c.b, "weird"), DataError, "unknown scenario"),
    ("task-seed-str", lambda c: uk.forget_task(c.b, "random", fraction=0.1, seed="x"),
     ConfigError, "seed must be an integer"),
    ("task-seed-negative", lambda c: uk.forget_task(c.b, "random", fraction=0.1, seed=-1),
     ConfigError, "non-negative"),
    ("stratified-str",
     lambda c: uk.forget_task(c.b, "random", fraction=0.1, stratified="yes"), DataError,
     "stratified must be True or False"),
    ("task-not-a-bundle", lambda c: uk.forget_task("digits", "random", fraction=0.1), DataError,
     "needs a dataset bundle"),
    ("indices-duplicate", lambda c: uk.forget_task(c.b, "indices", indices=[1, 1]), DataError,
     "duplicate"),
    ("indices-out-of-range", lambda c: uk.forget_task(c.b, "indices", indices=[N_TRAIN]),
     DataError, "out of range"),
    ("indices-negative", lambda c: uk.forget_task(c.b, "indices", indices=[-1]), DataError,
     "out of range"),
    ("indices-float", lambda c: uk.forget_task(c.b, "indices", indices=[1.5]), DataError,
     "whole numbers"),
    ("indices-nan", lambda c: uk.forget_task(c.b, "indices", indices=[1.0, float("nan")]),
     DataError, "whole numbers"),
    ("indices-inf", lambda c: uk.forget_task(c.b, "indices", indices=[1.0, float("inf")]),
     DataError, "whole numbers"),
    ("indices-2d", lambda c: uk.forget_task(c.b, "indices", indices=[[1, 2]]), DataError,
     "flat list"),
    ("indices-file-nan",
     lambda c: uk.forget_task(c.b, "indices", indices=_write(c.tmp, "i.txt", "1 2 nan")),
     DataError, "holds the index nan, not a whole number"),
    ("indices-file-inf",
     lambda c: uk.forget_task(c.b, "indices", indices=_write(c.tmp, "i.txt", "1, inf")),
     DataError, "holds the index inf, not a whole number"),
    ("indices-file-json-nan",
     lambda c: uk.forget_task(c.b, "indices", indices=_write(c.tmp, "i.json", "[1, NaN]")),
     DataError, "not a whole number"),
    ("indices-file-words",
     lambda c: uk.forget_task(c.b, "indices", indices=_write(c.tmp, "i.txt", "one two")),
     DataError, "cannot read indices"),
    ("indices-file-missing",
     lambda c: uk.forget_task(c.b, "indices", indices=c.tmp / "no.txt"), DataError,
     "not found"),
    ("subclass-without-fine", lambda c: uk.forget_task(c.b, "subclass", subclasses=[1]),
     DataError, "needs fine labels"),
    # ---- from_arrays and load
    ("num-classes-str", lambda c: _arrays(num_classes="3"), DataError,
     "num_classes must be an integer"),
    ("num-classes-float", lambda c: _arrays(num_classes=3.0), DataError,
     "num_classes must be an integer"),
    ("num-classes-below-labels",
     lambda c: _arrays(y_train=np.array([0, 1, 2, 0] * 2), num_classes=2), DataError,
     "labels go up to 2"),
    ("num-classes-one", lambda c: _arrays(y_train=np.zeros(8, int), y_test=np.zeros(4, int)),
     DataError, "at least 2 classes"),
    ("labels-str", lambda c: _arrays(y_train=np.array(["a", "b"] * 4)), DataError,
     "must hold integer class indices"),
    ("labels-fractional", lambda c: _arrays(y_train=np.array([0.5, 1.0] * 4)), DataError,
     "non-integer"),
    ("x-y-length-mismatch", lambda c: _arrays(y_train=np.array([0, 1] * 3)), DataError,
     "x_train has 8 rows but y_train has 6 labels"),
    ("features-nan", lambda c: _arrays(x_train=np.full((8, 3), np.nan)), DataError,
     "NaN or infinite"),
    ("features-str", lambda c: _arrays(x_train=np.full((8, 3), "a")), DataError,
     "must hold numbers"),
    ("features-1d", lambda c: _arrays(x_train=np.zeros(8)), DataError, "at least 2 dimensions"),
    ("val-without-labels", lambda c: _arrays(x_val=np.zeros((2, 3))), DataError,
     "give both x_val and y_val"),
    ("split-empty", lambda c: _arrays(x_test=np.zeros((0, 3)), y_test=np.zeros(0, int)),
     DataError, "the test split is empty"),
    ("image-shape-floats", lambda c: _arrays(image_shape=(1.5, 1, 2)), DataError,
     "image_shape must be (C, H, W) positive integers"),
    ("dataset-unknown", lambda c: load("mnits"), DataError, "unknown dataset 'mnits'"),
    ("dataset-bad-kwarg", lambda c: load("synthetic", n_trian=3), DataError,
     "bad arguments for dataset 'synthetic'"),
    # ---- models.build
    ("model-arch-unknown", lambda c: uk.models.build("resnet999", c.b), ConfigError,
     "unknown model 'resnet999'"),
    ("mlp-hidden-negative", lambda c: uk.models.build("mlp", c.b, hidden=[-4]), ConfigError,
     "hidden sizes must be positive integers"),
    ("mlp-hidden-str", lambda c: uk.models.build("mlp", c.b, hidden="wide"), ConfigError,
     "hidden sizes must be positive integers"),
    ("mlp-hidden-float", lambda c: uk.models.build("mlp", c.b, hidden=[3.5]), ConfigError,
     "hidden sizes must be positive integers"),
    ("cnn-width-zero", lambda c: uk.models.build("cnn_small", c.b, width=0), ConfigError,
     "cnn_small width must be positive integers"),
    ("build-seed-str", lambda c: uk.models.build("mlp", c.b, seed="x"), ConfigError,
     "seed must be an integer"),
    ("build-num-classes-str",
     lambda c: uk.models.build("mlp", input_shape=(3,), num_classes="3"), ConfigError,
     "num_classes must be positive integers"),
    ("cnn-on-vectors", lambda c: uk.models.build("cnn_small", c.bv), ConfigError,
     "cnn_small needs image inputs"),
    # ---- unlearn / run_unlearning: the model, device and seed at the front door
    ("model-narrower-than-k", lambda c: _unlearn(c, _Linear(n_out=3)), ConfigError,
     "outputs 3 scores per sample but the data have 4 classes"),
    ("model-wider-than-k", lambda c: _unlearn(c, _Linear(n_out=7)), ConfigError,
     "outputs 7 scores per sample but the data have 4 classes"),
    ("model-identity", lambda c: _unlearn(c, nn.Identity()), ConfigError, "has no parameters"),
    ("model-echo", lambda c: _unlearn(c, _Echo()), ConfigError, "returns its input unchanged"),
    ("model-input-size", lambda c: _unlearn(c, _Linear(n_in=20)), ConfigError,
     "fails on the data: a batch of shape (2, 1, 6, 6)"),
    ("model-tuple", lambda c: _unlearn(c, _Linear(post=lambda z: (z, z))), ConfigError,
     "returns a tuple of 2 items"),
    ("model-dict", lambda c: _unlearn(c, _Linear(post=lambda z: {"logits": z})), ConfigError,
     "returns a dict"),
    ("model-1d-output", lambda c: _unlearn(c, _Linear(post=lambda z: z.sum(1))), ConfigError,
     "returns shape (2,) for a batch of 2"),
    ("model-int-output", lambda c: _unlearn(c, _Linear(post=lambda z: z.long())), ConfigError,
     "floating-point logits"),
    ("model-not-a-module", lambda c: _unlearn(c, "mlp"), ConfigError,
     "model must be a torch nn.Module"),
    ("task-is-a-bundle", lambda c: _unlearn(c, task=c.b), ConfigError,
     "task must come from unlearnkit.forget_task"),
    ("device-cuda-absent", lambda c: _unlearn(c, device=_BAD_CUDA), ConfigError, "'cuda:99'"),
    pytest.param("device-mps-absent", lambda c: _unlearn(c, device="mps"), ConfigError,
                 "mps is not available", marks=pytest.mark.skipif(not _NO_MPS, reason="MPS")),
    ("device-malformed", lambda c: _unlearn(c, device="gpu0"), ConfigError,
     "not a device torch knows"),
    ("device-bool", lambda c: _unlearn(c, device=True), ConfigError, "device must be"),
    ("seed-str", lambda c: _unlearn(c, seed="x"), ConfigError, "seed must be an integer"),
    ("seed-bool", lambda c: _unlearn(c, seed=True), ConfigError, "seed must be an integer"),
    ("seed-float", lambda c: _unlearn(c, seed=1.0), ConfigError, "seed must be an integer"),
    ("method-unknown", lambda c: uk.unlearn(c.model, c.task, "finetun"), ConfigError,
     "did you mean 'finetune'"),
    ("config-key-typo", lambda c: _unlearn(c, config={"epoch": 1}), ConfigError,
     "did you mean 'epochs'"),
    ("config-bad-value", lambda c: _unlearn(c, config={"batch_size": 0}), ConfigError,
     "batch_size must be >= 1"),
    ("preset-unknown", lambda c: _unlearn(c, preset="nope"), ConfigError, "no preset 'nope'"),
    ("retain-method-forget-only", lambda c: _unlearn(c, task=c.task.forget_only()),
     AccessError, "needs the retain set"),
    # ---- JiT perturbs inputs: integer / categorical features are refused
    ("jit-integer-features",
     lambda c: uk.unlearn(_Embed(), uk.forget_task(_categorical(True), count=4), "jit"),
     DataError, "needs floating-point features"),
    ("jit-codes-cast-to-float",
     lambda c: uk.unlearn(_Embed(), uk.forget_task(_categorical(False), count=4), "jit",
                          {"clamp": "none"}),
     DataError, "JiT needs continuous inputs"),
    # ---- evaluate / model_signals
    ("evaluate-model-wider", lambda c: uk.evaluate(_Linear(n_out=7), c.task), ConfigError,
     "model outputs 7 scores"),
    ("evaluate-reference-narrower",
     lambda c: uk.evaluate(c.model, c.task, reference=_Linear(n_out=3)), ConfigError,
     "reference outputs 3 scores"),
    ("evaluate-device-malformed", lambda c: uk.evaluate(c.model, c.task, device="gpu0"),
     ConfigError, "not a device torch knows"),
    ("evaluate-seed-str", lambda c: uk.evaluate(c.model, c.task, seed_attack="x"), ConfigError,
     "seed_attack must be an integer"),
    ("evaluate-task-is-a-bundle", lambda c: uk.evaluate(c.model, c.b), ConfigError,
     "task must come from unlearnkit.forget_task"),
    ("signals-model-tuple", lambda c: model_signals(_Linear(post=lambda z: (z,)), c.task),
     ConfigError, "returns a tuple of 1 items"),
    # ---- train
    ("train-model-narrower", lambda c: uk.train(_Linear(n_out=3), c.b.train, c.recipe),
     ConfigError, "labels go up to 3"),
    ("train-input-size", lambda c: uk.train(_Linear(n_in=20), c.b.train, c.recipe),
     ConfigError, "fails on the data"),
    ("train-seed-str", lambda c: uk.train(c.model, c.b.train, c.recipe, seed="x"),
     ConfigError, "seed must be an integer"),
    ("train-recipe-dict", lambda c: uk.train(c.model, c.b.train, {"epochs": 1}), ConfigError,
     "recipe must be a TrainRecipe"),
    ("train-device-cuda-absent",
     lambda c: uk.train(c.model, c.b.train, c.recipe, device=_BAD_CUDA), ConfigError,
     "'cuda:99'"),
    # ---- MNIST IDX files
    ("idx-size-overflow",  # 2**64 elements: an int64 product wraps to 0 and "matches" no data
     lambda c: idx_mod.read_idx(_write_bytes(c.tmp / "o-idx3-ubyte",
                                             _idx_header(0x805, *[65536] * 4, 1))),
     DataError, "declares shape (65536, 65536, 65536, 65536, 1)"),
    ("idx-plain-size-mismatch",
     lambda c: idx_mod.read_idx(_write_bytes(c.tmp / "p-idx3-ubyte",
                                             _idx_header(0x803, 10, 28, 28) + bytes(9))),
     DataError, "is truncated: its header promises 7840 bytes"),
    ("idx-gz-trailing-bomb",  # 10 honest images, then 600 MiB of zeros
     lambda c: idx_mod.read_idx(_bomb(c.tmp / "a-idx3-ubyte.gz",
                                      _idx_header(0x803, 10, 28, 28) + bytes(7840))),
     DataError, "has trailing bytes"),
    ("idx-gz-declared-bomb",  # a header that declares (and would inflate to) 600 MiB
     lambda c: load("mnist", root=_mnist_root_with_bomb(c.tmp)), DataError,
     "more than the 67108864 bytes allowed"),
]
# fmt: on


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _row_id(row: Any) -> str:
    return row.values[0] if hasattr(row, "values") else row[0]


PARAMS = [
    pytest.param(*r.values, marks=r.marks, id=r.values[0])
    if hasattr(r, "values")
    else pytest.param(*r, id=r[0])
    for r in ROWS
]


@pytest.fixture(scope="module")
def shared():
    b = tiny_bundle()
    return SimpleNamespace(
        b=b,
        bv=tiny_bundle(image=False),
        task=tiny_task(b),
        model=tiny_model(b),
        recipe=uk.TrainRecipe(epochs=1, batch_size=32),
    )


def test_table_has_enough_rows() -> None:
    assert len(ROWS) >= 35
    ids = [_row_id(r) for r in ROWS]
    assert len(ids) == len(set(ids)), "row ids must be unique"


@pytest.mark.parametrize(("row_id", "call", "exc_type", "part"), PARAMS)
def test_bad_input_is_one_clear_error(shared, tmp_path, monkeypatch, row_id, call, exc_type, part):
    monkeypatch.setattr(idx_mod.gzip, "open", _CappedGzip)  # a bomb row fails instead of inflating
    c = SimpleNamespace(**vars(shared), tmp=tmp_path)
    with pytest.raises(exc_type) as info:
        call(c)
    message = str(info.value)
    assert type(info.value) is exc_type or issubclass(type(info.value), exc_type)
    assert "\n" not in message.strip(), f"{row_id}: the message is not one line: {message!r}"
    assert part in message, f"{row_id}: {part!r} not in {message!r}"
    assert "Traceback" not in message


# --------------------------------------------------------------------------- beyond the rows


def test_probe_leaves_the_model_as_it_was(shared) -> None:
    """The front-door probe changes no weights, buffers, modes or RNG state."""
    model = uk.testing.tiny_model(shared.b, bn=True)
    model.train()
    model.body[1].eval()  # a user's mixed modes must come back exactly
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    rng = torch.get_rng_state()
    check_model(model, shared.task)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert [m.training for m in model.modules()] == modes
    assert torch.equal(torch.get_rng_state(), rng)


def test_probe_reads_only_the_forget_set(shared) -> None:
    """A forget-only method's data promise holds for the probe too."""
    seen: list[torch.Tensor] = []
    model = _Linear(post=lambda z: z)
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    check_model(model, shared.task.forget_only())
    forget_x = shared.task.forget.x
    for x in seen:
        assert any(torch.equal(row, f) for row in x for f in forget_x)


def test_valid_inputs_still_pass(shared, tmp_path) -> None:
    """Whole-number floats, NumPy integers and a bare MLP width are accepted as before."""
    t = uk.forget_task(shared.b, "class", classes=np.array([1, 2]))
    assert t.forget_classes == (1, 2)
    assert uk.forget_task(shared.b, "class", classes=[2.0]).forget_classes == (2,)
    assert uk.forget_task(shared.b, "random", count=np.int64(5)).n_forget == 5
    assert uk.forget_task(shared.b, "random", fraction=np.float32(0.25)).n_forget == 24
    (tmp_path / "i.json").write_text(json.dumps([1, 5.0]))
    assert uk.forget_task(shared.b, "indices", indices=tmp_path / "i.json").n_forget == 2
    assert check_device("cpu") == torch.device("cpu") and check_device(None) is None
    assert uk.models.build("mlp", shared.b, hidden=8, seed=np.int64(1)).head.in_features == 8
    check_model(shared.model, shared.task)


def test_integer_features_kept_when_asked() -> None:
    """keep_dtype=True stores category codes exactly (int64); training and evaluation work."""
    kept, cast = _categorical(True), _categorical(False)
    assert kept.train.x.dtype == torch.int64 and cast.train.x.dtype == torch.float32
    assert torch.equal(kept.train.x.float(), cast.train.x)
    model = uk.train(_Embed(), kept.train, uk.TrainRecipe(epochs=1, batch_size=16), seed=0)
    sig = model_signals(model, uk.forget_task(kept, "random", count=4))
    assert sig.test.logits.shape == (len(kept.test), 2)


def test_gzip_bomb_is_not_inflated(tmp_path, monkeypatch) -> None:
    """The reader never asks gzip for more than the header's size plus one byte."""
    reads: list[int] = []

    class Counting(_CappedGzip):
        def read(self, size: int | None = -1) -> bytes:
            reads.append(-1 if size is None else size)
            return super().read(size)

    monkeypatch.setattr(idx_mod.gzip, "open", Counting)
    head = _idx_header(0x803, 10, 28, 28) + bytes(7840)
    with pytest.raises(DataError, match="trailing bytes"):
        idx_mod.read_idx(_bomb(tmp_path / "b-idx3-ubyte.gz", head))
    assert min(reads) >= 0 and sum(reads) <= 4 + 12 + 7840 + 1
