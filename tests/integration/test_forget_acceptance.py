"""The deletion request an engineer runs: ``--method auto --budget-s 60``, judged against a retrain.

Each test is one request on a user's own model (a module copied into the working directory,
trained with a plain PyTorch loop, saved as a state dict) and the user's own data: a CSV with
string IDs and string labels, a class-level request from an NPZ, a folder of PNG images, and
the Python function. Every run must

* exit 0 (the verdict passed) and write a checkpoint that loads into the user's model with no
  unlearnkit import;
* leave the deleted rows' accuracy inside the 95 % interval of a model the test retrains
  itself without those rows (the gold standard the calibration never saw);
* keep held-out accuracy within 3 points of the original's.

Every run is the issue's form, ``--method auto --budget-s 60``: a wall-clock budget, so how many
trials each candidate gets depends on the machine's speed and load. On this 2-core machine the
screening round still runs 5-60 trials per candidate and the finalists 80-200, so the choice
is far from starved; ``benchmarks/forget_acceptance.py`` measures the rate over many forget
sets, and ``--trials N`` (tested in ``test_forget_e2e.py``) makes a run repeatable.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import torch

import unlearnkit as uk

from .._helpers import run_cli
from ._forget_checks import check_outputs, users_model, wilson
from .conftest import N_TRAIN
from .usermodels import images, tabular

BUDGET = "60"


def _within_3_points(acc_new: float, acc_before: float) -> None:
    """Held-out accuracy moved by at most 3 points (12 of 400 rows is exactly 3: allowed)."""
    assert round(abs(acc_new - acc_before), 9) <= 0.03, f"{acc_before:.4f} -> {acc_new:.4f}"


def _inside_retrains_interval(acc_new: float, acc_retrain: float, n: int) -> None:
    lo, hi = wilson(acc_retrain, n)
    assert lo <= acc_new <= hi, f"forget accuracy {acc_new:.3f} outside [{lo:.3f}, {hi:.3f}]"


def test_rows_from_a_csv_with_string_ids(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    out = d / "acc-rows"
    code, err = run_cli(
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.csv", "--held-out", "held.csv", "--forget-ids", "forget.txt",
        "--method", "auto", "--budget-s", BUDGET, "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    ev = check_outputs(out, code, err)
    new, old = users_model(out / "model.safetensors"), user["model"]
    f, x, y, xh, yh = user["forget"], user["x"], user["y"], user["xh"], user["yh"]
    keep = np.setdiff1d(np.arange(N_TRAIN), f)
    retrained = tabular.train(x[keep], y[keep], seed=1)
    _inside_retrains_interval(
        tabular.accuracy(new, x[f], y[f]), tabular.accuracy(retrained, x[f], y[f]), len(f)
    )
    _within_3_points(tabular.accuracy(new, xh, yh), tabular.accuracy(old, xh, yh))
    # the evidence identifies the request, the input and the output by their hashes
    assert ev["request"]["n_ids"] == len(f) and ev["request"]["ids_are"] == "IDs"
    wanted = sorted(f"cust-{i:05d}" for i in f)
    assert ev["request"]["ids_sha256"] == hashlib.sha256("\n".join(wanted).encode()).hexdigest()
    sha_in = hashlib.sha256((d / "model.pt").read_bytes()).hexdigest()
    assert ev["input"]["checkpoint_sha256"] == sha_in
    assert ev["calibration"]["best_method"] == ev["method"]["name"]
    assert len(ev["calibration"]["rows"]) >= 10  # every candidate is on the leaderboard
    assert torch.equal(  # the input checkpoint is untouched
        torch.load(d / "model.pt", weights_only=True)["head.weight"],
        old.state_dict()["head.weight"],
    )


def test_a_class_from_an_npz(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    out = d / "acc-class"
    code, err = run_cli(
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.npz", "--held-out", "held.npz", "--forget-class", "2",
        "--method", "auto", "--budget-s", BUDGET, "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    ev = check_outputs(out, code, err)
    new, old = users_model(out / "model.safetensors"), user["model"]
    x, y, xh, yh = user["x"], user["y"], user["xh"], user["yh"]
    c, ch = y == 2, yh == 2
    retrained = tabular.train(x[~c], y[~c], seed=1)  # it never saw class 2
    _inside_retrains_interval(
        tabular.accuracy(new, x[c], y[c]), tabular.accuracy(retrained, x[c], y[c]), int(c.sum())
    )
    assert tabular.accuracy(new, xh[ch], yh[ch]) <= 0.05  # its unseen samples too
    # the other classes keep their accuracy; they may gain (their rows are no longer taken by
    # class 2, as for the retrained model), but may not lose more than 3 points
    other_before = tabular.accuracy(old, xh[~ch], yh[~ch])
    assert round(tabular.accuracy(new, xh[~ch], yh[~ch]) - other_before, 9) >= -0.03
    assert ev["request"] == {"kind": "class", "classes": ["2"], "n_rows": int(c.sum())}


def test_an_image_folder(tmp_path, monkeypatch):
    shutil.copy(Path(images.__file__), tmp_path / "mycnn.py")
    images.write_folder(tmp_path / "train", 60, 0)
    images.write_folder(tmp_path / "held", 40, 1)
    x, y = images.load_folder(tmp_path / "train")
    model = images.train(x, y)
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors")
    )
    doomed = [f"dogs/img_{i:03d}.png" for i in range(12)]  # rows 60..71 of the sorted folder
    (tmp_path / "forget.txt").write_text("\n".join(doomed) + "\n")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(
        "forget", "--model", "mycnn:TinyConv", "--checkpoint", "m.safetensors",
        "--data", "train", "--held-out", "held", "--forget-ids", "forget.txt",
        "--method", "auto", "--budget-s", BUDGET, "--out", "out", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    ev = check_outputs(tmp_path / "out", code, err)
    assert ev["input"]["labels"] == list(images.CLASSES) and ev["request"]["n_ids"] == 12
    new = users_model(tmp_path / "out" / "model.safetensors", images.TinyConv)
    f = np.arange(60, 72)
    keep = torch.as_tensor(np.setdiff1d(np.arange(len(y)), f))
    retrained = images.train(x[keep], y[keep], seed=1)
    acc = {m: float((m(x[f]).argmax(1) == y[f]).float().mean()) for m in (new, retrained)}
    _inside_retrains_interval(acc[new], acc[retrained], len(f))
    xh, yh = images.load_folder(tmp_path / "held")
    held = {m: float((m(xh).argmax(1) == yh).float().mean()) for m in (new, model)}
    _within_3_points(held[new], held[model])


def test_the_python_function(user):
    x, y, xh, yh, model = user["x"], user["y"], user["xh"], user["yh"], user["model"]
    f = user["forget"]  # the CSV test's request, through the Python function
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = uk.forget(
        model, data=(x, y), held_out=(xh, yh), forget_ids=f.tolist(), method="auto",
        budget_s=float(BUDGET), seed=0,
    )  # fmt: skip
    assert res.passed, res.evidence["verdict"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert res.evidence["request"]["ids_are"] == "row positions"
    assert res.evidence["budget"]["calibration_s"] <= 1.1 * float(BUDGET)
    keep = np.setdiff1d(np.arange(N_TRAIN), f)
    retrained = tabular.train(x[keep], y[keep], seed=1)
    _inside_retrains_interval(
        tabular.accuracy(res.model, x[f], y[f]), tabular.accuracy(retrained, x[f], y[f]), len(f)
    )
    _within_3_points(tabular.accuracy(res.model, xh, yh), tabular.accuracy(model, xh, yh))
    paths = res.save(user["dir"] / "acc-api")
    assert {p.name for p in paths.values()} >= {"model.safetensors", "evidence.json"}
    assert users_model(paths["model"]).state_dict().keys() == model.state_dict().keys()
