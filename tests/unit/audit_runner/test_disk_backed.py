"""Audits of an image folder read from disk: the same rows as the same images held in memory,
and no image decoded but a batch at a time.

The folder (3 classes, 48 training and 16 test 8x8 images per class, a quarter of the training
images carved off as validation) is audited once from disk and once decoded into tensors. In
memory the bank trains stacked (``train_ensemble``); from disk one model at a time
(``train``). On one thread (the spec's ``threads: 1``) the stacked ``mlp`` trainer equals
``train`` bit for bit (see :mod:`unlearnkit.audit.ensemble`), and the loaders give the same
batches from disk as from memory, so the metrics are compared exactly.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from unlearnkit.audit import session
from unlearnkit.audit.runner import run_audit
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.datasets import load

from ..._image_folders import count_reads, in_memory, make_folder
from ._tiny import ULIRA_OPTIONS, N

#: Every batch an audit reads is at most this big: the recipe's 16, the method's 8, evaluation
#: batches of 16, and the divergence guard's probe of 64 training rows (the largest).
MAX_BATCH = 64
FT = {"epochs": 1, "batch_size": 8}
#: Store keys and content hashes name the data by their files (on disk) or their bytes (in
#: memory), and timings vary: every other field of the rows must be equal.
_IDENTITY = ("control_key", "pool_digest", "z_digest", "dataset", "id", "provenance")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("imgs"), n_train=48, n_test=16)


def _spec(root):
    return spec_from_dict(
        {
            "name": "disk-audit",
            "dataset": {
                "name": "image_folder",
                "root": str(root),
                "val_fraction": 0.25,
                "eval_batch_size": 16,
            },
            "model": {"arch": "mlp", "hidden": [16]},
            "recipe": {"epochs": 1, "batch_size": 16, "lr": 0.1},
            "scenarios": [
                # memorisation scores (4 models on halves of D_tr) pick the forget set
                {"name": "hard", "scenario": "random", "count": 9, "hard": True, "hard_models": 4},
                {"name": "cls", "scenario": "class", "classes": [1]},
            ],
            "methods": [{"method": "finetune"}],
            "seeds": [0],
            "threads": 1,
        }
    )


def _differences(a, b, path: str = "") -> list[str]:
    """Where two results differ, store identities and timings aside (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        keep = [k for k in a if k not in _IDENTITY and "seconds" not in k and k != "rte_mean"]
        return [d for k in keep for d in _differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if np.array_equal(np.asarray(a), np.asarray(b)) else [f"{path}: {a!r} != {b!r}"]


@pytest.mark.parametrize(
    "kind, scenario, options",
    [("epsilon", "hard", None), ("ulira", None, ULIRA_OPTIONS), ("rmia", "cls", None)],
)
def test_audit_from_disk_equals_in_memory(
    folder, tmp_path, monkeypatch, caplog, kind, scenario, options
) -> None:
    spec = _spec(folder)
    args = dict(
        method="finetune", kind=kind, n_models=N, scenario=scenario, config=FT, options=options
    )
    stacked: list[int] = []
    real_ensemble, real_load = session.train_ensemble, session.load

    def ensemble(factory, datasets, *a, **kw):
        stacked.append(len(datasets))
        return real_ensemble(factory, datasets, *a, **kw)

    monkeypatch.setattr(session, "train_ensemble", ensemble)
    bundle = load("image_folder", **spec.dataset.options)
    pool = {str(folder / f) for s in (bundle.train, bundle.val) for f in s.x.files}
    assert len(pool) == 144 and bundle.train.lazy

    reads = count_reads(monkeypatch)
    with caplog.at_level(logging.INFO, logger="unlearnkit.audit.runner"):
        disk = run_audit(spec=spec, out_dir=tmp_path / "disk", **args)
    assert not stacked and "training one at a time: the data are read from disk" in caplog.text
    # read batch by batch: no decode call comes near the pool (144) or D_tr (108)...
    assert reads.rows and reads.max_rows <= MAX_BATCH
    # ...and the models were trained and scored from the files themselves
    assert set(reads.files) <= pool | {str(folder / f) for f in bundle.test.x.files}
    assert len(set(reads.files) & pool) >= 100

    monkeypatch.setattr(session, "load", lambda name, **kw: in_memory(real_load(name, **kw)))
    memory = run_audit(spec=spec, out_dir=tmp_path / "memory", **args)
    assert stacked  # in memory, the bank was trained stacked
    assert disk["trained"] == memory["trained"] > 0
    assert disk["unlearning_runs"] == memory["unlearning_runs"] > 0
    for part in ("metrics", "retrain", "record", "retrain_record"):
        assert _differences(disk[part], memory[part]) == [], part
    if kind == "epsilon":  # the hard forget set, from memorisation scores on disk and in memory
        assert disk["record"]["forget_idx"] == memory["record"]["forget_idx"]
