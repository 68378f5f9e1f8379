"""``unlearnkit forget`` end to end, as an engineer with a deletion request runs it.

The models are the user's own (modules the test copies into the working directory, trained with
plain PyTorch loops, saved as state dicts); the data are the user's files: a CSV with string IDs
and string labels, an NPZ, a folder of PNG images. Every run checks what the engineer relies on:
the exit code is the verdict recorded in the evidence, the output loads into the user's model
without unlearnkit, the deleted rows moved toward held-out behaviour, held-out accuracy held, and
the evidence identifies input, output and request by their hashes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import unlearnkit as uk

from .._helpers import run_cli
from .usermodels import images, tabular

N_TRAIN, N_HELD, N_FORGET = 800, 400, 80
METHOD = "neggrad_plus"


cli = run_cli


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
    forget = np.sort(np.random.default_rng(7).choice(N_TRAIN, N_FORGET, replace=False))
    (d / "forget.txt").write_text("id\n" + "\n".join(ids[i] for i in forget) + "\n")
    return {"dir": d, "x": x, "y": y, "xh": xh, "yh": yh, "forget": forget, "model": model}


def _users_model(path: Path, cls=tabular.TabNet) -> torch.nn.Module:
    """What the user does with the output: no unlearnkit involved."""
    net = cls()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def _check_outputs(out: Path, code: int, err: str) -> dict:
    assert code in (0, 3), err
    ev = json.loads((out / "evidence.json").read_text())
    assert (code == 0) == ev["verdict"]["passed"], err  # the exit code is the verdict
    last = err.strip().splitlines()[-1]
    assert last.startswith("PASSED" if code == 0 else "NOT PASSED"), err
    digest = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert ev["output"]["sha256"] == digest
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "<script" not in html
    assert ev["budget"]["calibration_s"] <= 1.1 * ev["budget"]["budget_s"] + 1.0
    return ev


def test_rows_from_a_csv_with_string_ids(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    out = d / "out-rows"
    code, err = cli(
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.csv", "--held-out", "held.csv", "--forget-ids", "forget.txt",
        "--method", METHOD, "--trials", "25", "--budget-s", "120", "--out", str(out), "--quiet",
    )  # fmt: skip
    ev = _check_outputs(out, code, err)
    new, old = _users_model(out / "model.safetensors"), user["model"]
    f, x, y = user["forget"], user["x"], user["y"]
    held_old = tabular.accuracy(old, user["xh"], user["yh"])
    # the deleted rows moved at least halfway from "remembered" toward held-out behaviour
    gap_old = tabular.accuracy(old, x[f], y[f]) - held_old
    gap_new = tabular.accuracy(new, x[f], y[f]) - tabular.accuracy(new, user["xh"], user["yh"])
    assert gap_old > 0.08 and abs(gap_new) <= 0.5 * gap_old, (gap_old, gap_new)
    assert abs(tabular.accuracy(new, user["xh"], user["yh"]) - held_old) <= 0.03
    assert ev["request"]["n_ids"] == N_FORGET and ev["request"]["ids_are"] == "IDs"
    wanted = sorted(f"cust-{i:05d}" for i in user["forget"])
    assert ev["request"]["ids_sha256"] == hashlib.sha256("\n".join(wanted).encode()).hexdigest()
    sha_in = hashlib.sha256((d / "model.pt").read_bytes()).hexdigest()
    assert ev["input"]["checkpoint_sha256"] == sha_in
    assert torch.equal(  # the input checkpoint is untouched
        torch.load(d / "model.pt", weights_only=True)["head.weight"],
        old.state_dict()["head.weight"],
    )


def test_auto_gives_every_candidate_the_same_trials(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    out = d / "out-auto"
    args = (
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.csv", "--held-out", "held.csv", "--forget-ids", "forget.txt",
        "--method", "auto", "--trials", "2", "--budget-s", "300", "--out", str(out), "--quiet",
    )  # fmt: skip
    code, err = cli(*args)
    ev = _check_outputs(out, code, err)
    rows = ev["calibration"]["rows"]
    assert len(rows) >= 10 and {r["trials"] for r in rows} == {2}
    assert ev["method"]["name"] == ev["calibration"]["best_method"]
    # the study is stored in the folder: the same request again resumes it, runs nothing new
    code, err = cli(*args)
    again = _check_outputs(out, code, err)
    assert {r["trials_run"] for r in again["calibration"]["rows"]} == {0}
    same = ("name", "config", "seed")
    assert {k: again["method"][k] for k in same} == {k: ev["method"][k] for k in same}


def test_a_class_from_an_npz(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    out = d / "out-class"
    code, err = cli(
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.npz", "--held-out", "held.npz", "--forget-class", "2",
        "--budget-s", "10", "--out", str(out), "--quiet",
    )  # fmt: skip
    ev = _check_outputs(out, code, err)
    new = _users_model(out / "model.safetensors")
    c, ch = user["y"] == 2, user["yh"] == 2
    assert tabular.accuracy(new, user["x"][c], user["y"][c]) <= 0.05
    assert tabular.accuracy(new, user["xh"][ch], user["yh"][ch]) <= 0.05
    other_before = tabular.accuracy(user["model"], user["xh"][~ch], user["yh"][~ch])
    assert tabular.accuracy(new, user["xh"][~ch], user["yh"][~ch]) >= other_before - 0.03
    assert ev["request"] == {"kind": "class", "classes": ["2"], "n_rows": int(c.sum())}


def test_an_image_folder(tmp_path, monkeypatch):
    shutil.copy(Path(images.__file__), tmp_path / "mycnn.py")
    images.write_folder(tmp_path / "train", 60, 0)
    images.write_folder(tmp_path / "held", 40, 1)
    model = images.train(*images.load_folder(tmp_path / "train"))
    save = {k: v.contiguous() for k, v in model.state_dict().items()}
    from safetensors.torch import save_file

    save_file(save, str(tmp_path / "cnn.safetensors"))
    doomed = [f"dogs/img_{i:03d}.png" for i in range(12)]
    (tmp_path / "forget.txt").write_text("\n".join(doomed) + "\n")
    monkeypatch.chdir(tmp_path)
    code, err = cli(
        "forget", "--model", "mycnn:TinyConv", "--checkpoint", "cnn.safetensors",
        "--data", "train", "--held-out", "held", "--forget-ids", "forget.txt",
        "--budget-s", "8", "--out", "out", "--quiet",
    )  # fmt: skip
    ev = _check_outputs(tmp_path / "out", code, err)
    assert ev["input"]["labels"] == list(images.CLASSES) and ev["request"]["n_ids"] == 12
    new = _users_model(tmp_path / "out" / "model.safetensors", images.TinyConv)
    xh, yh = images.load_folder(tmp_path / "held")
    assert float((new(xh).argmax(1) == yh).float().mean()) >= 0.9


def test_the_python_function(user):
    x, y, f = user["x"], user["y"], user["forget"]
    model = user["model"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = uk.forget(
        model, data=(x, y), held_out=(user["xh"], user["yh"]), forget_ids=f.tolist(),
        method="salun", budget_s=8, seed=0,
    )  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # untouched
    assert res.evidence["request"]["ids_are"] == "row positions"
    assert res.evidence["method"]["name"] == "salun"
    assert res.passed == all(res.evidence["verdict"]["criteria"].values())
    paths = res.save(user["dir"] / "out-api")
    assert {p.name for p in paths.values()} >= {"model.safetensors", "evidence.json"}
    # string IDs through ids=
    ids = [f"r{i}" for i in range(len(y))]
    res2 = uk.forget(
        model, data=(x, y), held_out=(user["xh"], user["yh"]), ids=ids,
        forget_ids=[ids[i] for i in f], method="salun", budget_s=4, seed=0,
    )  # fmt: skip
    assert res2.evidence["request"]["ids_sha256"] != res.evidence["request"]["ids_sha256"]


def test_reference_retrain_adds_the_retrain_referenced_gaps(user, monkeypatch):
    d = user["dir"]
    monkeypatch.chdir(d)
    (d / "recipe.yaml").write_text("epochs: 10\nlr: 0.01\nbatch_size: 32\n")
    code, err = cli(
        "forget", "--model", "mymodels:TabNet", "--checkpoint", "model.pt",
        "--data", "train.csv", "--held-out", "held.csv", "--forget-ids", "forget.txt",
        "--method", "finetune", "--trials", "2", "--budget-s", "120",
        "--reference", "retrain", "--recipe", "recipe.yaml", "--out", "out-ref", "--quiet",
    )  # fmt: skip
    ev = _check_outputs(d / "out-ref", code, err)
    ref = ev["reference"]
    assert {"ua", "acc_test", "avg_gap_salun"} <= set(ref)
    assert 0.0 <= ref["avg_gap_salun"] <= 1.0
    assert "Against a retrained model" in (d / "out-ref" / "report.md").read_text()


def test_sequential_requests_chain_their_evidence(user, monkeypatch):
    """A second request on the first one's output: the chain of hashes, the cumulative IDs,
    the earlier rows left out of training and checked for relapse, repeats refused."""
    d = user["dir"]
    monkeypatch.chdir(d)
    ids = [f"cust-{i:05d}" for i in range(N_TRAIN)]
    (d / "first.txt").write_text("\n".join(ids[:40]) + "\n")
    (d / "second.txt").write_text("\n".join(ids[40:70]) + "\n")
    common = (
        "--model", "mymodels:TabNet", "--data", "train.csv", "--held-out", "held.csv",
        "--method", "neggrad_plus", "--trials", "4", "--budget-s", "120", "--quiet",
    )  # fmt: skip
    code, err = cli("forget", *common, "--checkpoint", "model.pt", "--forget-ids", "first.txt",
                    "--out", "seq-1")  # fmt: skip
    first = _check_outputs(d / "seq-1", code, err)
    assert "chain" not in first and first["cumulative"]["n_ids"] == 40
    ckpt = str(d / "seq-1" / "model.safetensors")  # found beside its evidence: chained
    code, err = cli("forget", *common, "--checkpoint", ckpt, "--forget-ids", "second.txt",
                    "--out", "seq-2")  # fmt: skip
    second = _check_outputs(d / "seq-2", code, err)
    link = second["chain"]
    assert link["previous_output_sha256"] == first["output"]["sha256"]
    assert link["previous_cumulative_ids_sha256"] == first["cumulative"]["ids_sha256"]
    assert second["cumulative"]["n_ids"] == 70 and second["request"]["n_ids"] == 30
    assert (d / "seq-2" / "forget-ids.txt").read_text().split() == sorted(ids[:70])
    assert link["relapse"]["n_rows"] == 40 and "no_relapse" in second["verdict"]["criteria"]
    assert second["input"]["data"]["rows"] == N_TRAIN - 40  # the earlier rows were left out
    # an ID deleted before is refused; a checkpoint that is not the chain's output is refused
    code, err = cli("forget", *common, "--checkpoint", ckpt, "--forget-ids", "first.txt",
                    "--out", "seq-x")  # fmt: skip
    assert code == 2 and "already deleted" in err and not (d / "seq-x").exists()
    code, err = cli("forget", *common, "--checkpoint", "model.pt", "--previous", "seq-1",
                    "--forget-ids", "second.txt", "--out", "seq-y")  # fmt: skip
    assert code == 2 and "not the model" in err
    (d / "seq-1" / "forget-ids.txt").write_text("\n".join(ids[:39]) + "\n")  # tampered
    code, err = cli("forget", *common, "--checkpoint", ckpt, "--previous", "seq-1",
                    "--forget-ids", "second.txt", "--out", "seq-z")  # fmt: skip
    assert code == 2 and "altered" in err


def test_zero_shot_gets_only_forget_only_methods(user):
    """--data holding only the rows to delete: no retain data, so only forget-only methods
    (JiT, gradient ascent, the boundary methods) compete, and nothing grades retain data."""
    from unlearnkit.methods import get_method

    f = user["forget"]
    res = uk.forget(
        user["model"], data=(user["x"][f], user["y"][f]), held_out=(user["xh"], user["yh"]),
        forget_ids=list(range(len(f))), zero_shot=True, trials=2, budget_s=120, seed=0,
    )  # fmt: skip
    rows = res.evidence["calibration"]["rows"]
    assert rows and all(get_method(r["method"]).access.level == "forget_only" for r in rows)
    assert "jit" in {r["method"] for r in rows}
    assert "retain_acc" not in res.evidence["after"]["criteria"]


def _finished_trials(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:  # the schema is still being written
        return 0


def test_ctrl_c_keeps_the_calibration_and_the_same_command_resumes(user, monkeypatch):
    """A real process interrupted mid-calibration: exit 130 with a line saying how to resume;
    the study in DIR/calibration.db is kept, and running the command again finishes."""
    import os
    import signal
    import subprocess
    import time

    d = user["dir"]
    args = [
        sys.executable, "-c", "from unlearnkit.cli import main; main()", "forget",
        "--model", "mymodels:TabNet", "--checkpoint", "model.pt", "--data", "train.csv",
        "--held-out", "held.csv", "--forget-ids", "forget.txt", "--method", "neggrad_plus",
        "--budget-s", "60", "--out", "out-int", "--quiet",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(args, cwd=d, env=env, stderr=subprocess.PIPE, text=True)
    db = d / "out-int" / "calibration.db"
    deadline = time.time() + 60
    while _finished_trials(db) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)  # until a few trials are stored in the study
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err.strip().splitlines()[-1]
    assert db.exists() and not (d / "out-int" / "evidence.json").exists()
    monkeypatch.chdir(d)
    code, err = cli(*args[3:-5], "--trials", "6", "--budget-s", "60", "--out", "out-int", "--quiet")
    ev = _check_outputs(d / "out-int", code, err)
    row = ev["calibration"]["rows"][0]
    assert row["trials_run"] < row["trials"]  # the trials finished before Ctrl-C were kept
