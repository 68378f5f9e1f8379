"""The paper-setting specs in ``specs/``: the full ones validate and state the papers' recipes,
each smoke spec mirrors its full spec, and each smoke spec runs end to end through
``unlearnkit bench`` on generated files in the official CIFAR on-disk format (no download).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests._helpers import run_cli
from unlearnkit.bench.spec import load_spec
from unlearnkit.bench.store import open_existing

SPECS = Path(__file__).resolve().parents[2] / "specs"
PAIRS = {"cifar10-resnet18": "cifar10", "cifar100-vgg16": "cifar100"}


def _images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3072)`` uint8 rows (red, green, blue planes), noise plus a label-dependent red
    level, so a model can learn something."""
    n = len(labels)
    x = rng.integers(0, 128, size=(n, 3, 32, 32), dtype=np.uint8)
    x[:, 0] += ((labels * 37) % 128).astype(np.uint8)[:, None, None]
    return x.reshape(n, 3072)


def _write(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))  # dicts with bytes keys, as the originals


def write_cifar10(root: Path, per_batch: int = 100, n_test: int = 200) -> None:
    """``root/cifar-10-batches-py``: five training batches, the test batch and the meta file."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(5):
        y = (np.arange(per_batch) + b) % 10
        _write(folder / f"data_batch_{b + 1}", {b"data": _images(y, rng), b"labels": y.tolist()})
    y = np.arange(n_test) % 10
    _write(folder / "test_batch", {b"data": _images(y, rng), b"labels": y.tolist()})
    _write(folder / "batches.meta", {b"label_names": [f"class{i}".encode() for i in range(10)]})


def write_cifar100(root: Path, n_train: int = 2000, n_test: int = 2000) -> None:
    """``root/cifar-100-python``: ``train``, ``test`` (fine and coarse labels) and ``meta``."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("test", n_test)):
        fine = np.arange(n) % 100
        _write(
            folder / split,
            {
                b"data": _images(fine, rng),
                b"fine_labels": fine.tolist(),
                b"coarse_labels": (fine // 5).tolist(),
            },
        )
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    _write(folder / "meta", meta)


def test_full_specs_validate_and_state_the_papers_recipes() -> None:
    c10 = load_spec(SPECS / "cifar10-resnet18.yaml")
    assert (c10.dataset.name, c10.model.arch, c10.model.options) == ("cifar10", "resnet18", {})
    r = c10.recipe
    assert (r.optimizer, r.lr, r.momentum, r.weight_decay, r.batch_size) == (
        "sgd",
        0.1,
        0.9,
        5e-4,
        256,
    )
    assert (r.epochs, r.schedule, r.milestones, r.gamma) == (182, "multistep", (91, 136), 0.1)
    assert [(s.scenario, s.fraction, s.classes) for s in c10.scenarios] == [
        ("random", 0.1, None),
        ("class", None, (0,)),
    ]
    methods = {e.method: e.preset for e in c10.method_entries()}
    assert methods["salun"] == "salun_cifar10_random" and "ugradsl" in methods

    c100 = load_spec(SPECS / "cifar100-vgg16.yaml")
    assert (c100.dataset.name, c100.dataset.options["labels"], c100.model.arch) == (
        "cifar100",
        "fine",
        "vgg16_bn",
    )
    r = c100.recipe
    assert (r.lr, r.momentum, r.weight_decay, r.batch_size, r.epochs) == (0.1, 0.9, 5e-4, 128, 100)
    assert (r.schedule, r.milestones, r.gamma, r.warmup_epochs) == ("multistep", (60, 80), 0.1, 2)
    random10, rocket = c100.scenarios
    assert (random10.fraction, random10.stratified, rocket.classes) == (0.1, True, (69,))
    natmu = {e.method: e for e in c100.method_entries(rocket)}["natmu"]
    assert natmu.preset == "cifar100_random" and natmu.config["label_rule"] == "topk"
    for spec in (c10, c100):
        assert spec.device == "auto" and len(spec.seeds) == 3


@pytest.mark.parametrize("full", sorted(PAIRS))
def test_smoke_spec_mirrors_its_full_spec(full: str) -> None:
    big, smoke = load_spec(SPECS / f"{full}.yaml"), load_spec(SPECS / f"{full}-smoke.yaml")
    assert smoke.dataset.name == big.dataset.name and smoke.model.arch == big.model.arch
    assert [s.task_kwargs() for s in smoke.scenarios] == [s.task_kwargs() for s in big.scenarios]
    assert [s.name for s in smoke.scenarios] == [s.name for s in big.scenarios]
    for sc_small, sc_big in zip(smoke.scenarios, big.scenarios):
        small = [(e.method, e.preset) for e in smoke.method_entries(sc_small)]
        assert small == [(e.method, e.preset) for e in big.method_entries(sc_big)]
    assert (smoke.recipe.optimizer, smoke.recipe.lr) == (big.recipe.optimizer, big.recipe.lr)
    assert smoke.dataset.options["limit_train"] <= 2000 and smoke.model.options["width"] <= 8


@pytest.mark.slow
@pytest.mark.parametrize("full", sorted(PAIRS))
def test_smoke_spec_runs_on_generated_cifar_files(tmp_path: Path, full: str) -> None:
    (write_cifar10 if PAIRS[full] == "cifar10" else write_cifar100)(tmp_path / "data")
    data = yaml.safe_load((SPECS / f"{full}-smoke.yaml").read_text())
    data["dataset"]["root"] = str(tmp_path / "data")
    spec_path = tmp_path / "smoke.yaml"
    spec_path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    code, err = run_cli("bench", str(spec_path), "--out", str(out))
    assert code == 0, err
    spec = load_spec(spec_path)
    with open_existing(out) as store:
        rows = list(store.rows())
    expected = {
        (sc.name, label)
        for sc in spec.scenarios
        for label in ["Original", "Retrain", *(e.name for e in spec.method_entries(sc))]
    }
    assert expected <= {(r.scenario, r.label) for r in rows}
    assert all(r.metrics for r in rows)
