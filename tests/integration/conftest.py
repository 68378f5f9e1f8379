"""Fixtures shared by the ``unlearnkit forget`` tests: a user's world of files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from .usermodels import tabular

N_TRAIN, N_HELD, N_FORGET = 800, 400, 80


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """The user's world: their model module, checkpoint, CSV/NPZ files and forget list."""
    d = tmp_path_factory.mktemp("user")
    shutil.copy(Path(tabular.__file__), d / "mymodels.py")
    x, y = tabular.make_data(N_TRAIN, seed=0)
    xh, yh = tabular.make_data(N_HELD, seed=1)
    ids = [f"cust-{i:05d}" for i in range(N_TRAIN)]
    tabular.write_csv(d / "train.csv", x, y, ids)
    tabular.write_csv(d / "held.csv", xh, yh, [f"h-{i}" for i in range(N_HELD)])
    np.savez(d / "train.npz", x=x, y=y, ids=np.array(ids))
    np.savez(d / "held.npz", x=xh, y=yh)
    model = tabular.train(x, y, seed=0)
    torch.save(model.state_dict(), d / "model.pt")
    forget = np.sort(np.random.default_rng(8).choice(N_TRAIN, N_FORGET, replace=False))
    (d / "forget.txt").write_text("id\n" + "\n".join(ids[i] for i in forget) + "\n")
    return {"dir": d, "x": x, "y": y, "xh": xh, "yh": yh, "forget": forget, "model": model}
