"""``unlearnkit forget``'s bad inputs: exit 2, one line naming the problem, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from .test_forget_e2e import cli
from .test_run_identity import snapshot
from .usermodels import tabular


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    shutil.copy(Path(tabular.__file__), d / "mymodels.py")
    x, y = tabular.make_data(120, seed=0)
    xh, yh = tabular.make_data(60, seed=1)
    ids = [f"c{i}" for i in range(120)]
    tabular.write_csv(d / "train.csv", x, y, ids)
    tabular.write_csv(d / "held.csv", xh, yh, [f"h{i}" for i in range(60)])
    tabular.write_csv(d / "tiny-held.csv", xh[:8], yh[:8], [f"h{i}" for i in range(8)])
    lines = (d / "held.csv").read_text().splitlines()
    lines[1] = ",".join([*lines[1].split(",")[:-1], "diamond"])  # a class the model never had
    (d / "held-other.csv").write_text("\n".join(lines) + "\n")
    model = tabular.train(x, y, seed=0, epochs=2)
    torch.save(model.state_dict(), d / "model.pt")
    torch.save(model, d / "pickled.pt")  # a whole pickled module, not a state dict
    (d / "ids.txt").write_text("c1\nc2\nc3\n")
    (d / "unknown.txt").write_text("c1\nnope-7\nnope-9\n")
    (d / "empty.txt").write_text("")
    (d / "dups.txt").write_text("c1\nc1\nc2\n")
    (d / "all.txt").write_text("\n".join(ids) + "\n")
    (d / "afile").write_text("keep me")
    return d


BASE = {
    "--model": "mymodels:TabNet",
    "--checkpoint": "model.pt",
    "--data": "train.csv",
    "--held-out": "held.csv",
    "--forget-ids": "ids.txt",
    "--budget-s": "5",
    "--out": "out",
}


def _args(**changes: str | None) -> list[str]:
    opts = dict(BASE)
    for k, v in changes.items():
        key = "--" + k.replace("_", "-")
        if v is None:
            opts.pop(key, None)
        else:
            opts[key] = v
    flat = ["forget", "--quiet"]
    for k, v in opts.items():
        flat += [k] if v == "" else [k, v]
    return flat


ROWS = [
    ("unknown-ids", _args(forget_ids="unknown.txt"), "2 of 3"),
    ("empty-list", _args(forget_ids="empty.txt"), "empty"),
    ("duplicate-ids", _args(forget_ids="dups.txt"), "c1"),
    ("whole-set", _args(forget_ids="all.txt"), "whole"),
    ("ids-file-missing", _args(forget_ids="nothere.txt"), "nothere.txt"),
    ("module-missing", _args(model="nomodule:TabNet"), "nomodule"),
    ("attribute-missing", _args(model="mymodels:NoSuch"), "NoSuch"),
    ("no-colon", _args(model="mymodels.TabNet"), "MODULE:NAME"),
    ("kwargs-json", _args(model_kwargs="{width: 3"), "JSON"),
    ("keys-mismatch", _args(model_kwargs='{"width": 32}'), "shape"),
    ("pickled-module", _args(checkpoint="pickled.pt"), "state dict"),
    ("checkpoint-missing", _args(checkpoint="gone.pt"), "gone.pt"),
    ("checkpoint-not-a-checkpoint", _args(checkpoint="train.csv"), "checkpoint"),
    ("held-out-other-classes", _args(held_out="held-other.csv"), "diamond"),
    ("held-out-too-small", _args(held_out="tiny-held.csv"), "held-out"),
    ("data-missing", _args(data="nothing.csv"), "nothing.csv"),
    ("label-column", _args(label_column="label"), "label"),
    ("budget-zero", _args(budget_s="0"), "--budget-s"),
    ("budget-nan", _args(budget_s="nan"), "--budget-s"),
    ("trials-zero", [*_args(), "--trials", "0"], "--trials"),
    ("out-is-a-file", _args(out="afile"), "is a file"),
    ("ids-and-class", [*_args(), "--forget-class", "gold"], "one of them"),
    ("neither", _args(forget_ids=None), "one of them"),
    ("unknown-class", [*_args(forget_ids=None), "--forget-class", "diamond"], "diamond"),
    ("unknown-method", _args(method="nosuch"), "nosuch"),
    ("method-retrain", _args(method="retrain"), "reference"),
    ("reference-no-recipe", _args(reference="retrain"), "--recipe"),
    ("reference-bad", _args(reference="maybe"), "--reference"),
]


def test_the_table_has_at_least_fifteen_rows():
    assert len(ROWS) >= 15


@pytest.mark.parametrize(("name", "argv", "needle"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_exits_2_with_one_line(world, monkeypatch, name, argv, needle):
    monkeypatch.chdir(world)
    before = snapshot(world)
    code, err = cli(*argv)
    assert code == 2, f"{name}: exit {code}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{name}:\n{err}"
    assert needle in lines[0], f"{name}: {lines[0]!r} does not name {needle!r}"
    assert snapshot(world) == before, f"{name}: files changed"
    assert not (world / "out").exists()


def test_the_inputs_are_fine_otherwise(world, monkeypatch):
    """The base command itself is valid: every row above fails for its own reason."""
    monkeypatch.chdir(world)
    code, err = cli(*_args(out="good", trials="1"))
    assert code in (0, 3), err
    evidence = json.loads((world / "good" / "evidence.json").read_text())
    assert np.isfinite(float(evidence["budget"]["total_s"]))
    shutil.rmtree(world / "good")
