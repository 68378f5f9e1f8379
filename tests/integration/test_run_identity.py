"""Run identity: one results folder never averages rows of different runs.

Each test reproduces a way the store used to mix runs (rows grouped by scenario and label alone)
and checks the rule that replaced it: a run whose context, or whose identity for a row the folder
already holds, differs is refused with exit code 2 and one line naming the difference and the
fix, and the folder is left byte for byte as it was.
"""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from unlearnkit.bench.identity import RunIdentityError
from unlearnkit.bench.lock import FolderBusyError, RunLock
from unlearnkit.bench.report import LEGACY_NOTE, aggregate, render
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.store import ResultStore, open_existing
from unlearnkit.cli import main

from .test_cli import TINY_SPEC


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the console entry point in-process: (exit code, stdout, stderr)."""
    argv = sys.argv
    sys.argv = ["unlearnkit", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def refused(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump({**TINY_SPEC, "seeds": [0]}))
    return p


def test_quick_then_full_into_one_folder_is_refused(tmp_path, capsys):
    """Before: `bench --quick` then `bench` reported '(2 replicates)' averaging 15- and
    80-epoch models. Now the second run is refused, naming the recipe difference."""
    out = tmp_path / "res"
    code, _, err = cli(capsys, "bench", "--quick", "--methods", "finetune", "--out", str(out))
    assert code == 0, err
    before = snapshot(out)
    code, _, err = cli(capsys, "bench", "--methods", "finetune", "--out", str(out))
    refused(code, err, "recipe.epochs 15 -> 80", "another --out")
    assert snapshot(out) == before


def test_set_override_into_one_folder_is_refused(tiny, tmp_path, capsys):
    """Before: `--set finetune.epochs=3` into the same folder showed finetune as '2 replicates'
    averaging two configurations."""
    out = tmp_path / "res"
    assert cli(capsys, "bench", str(tiny), "--methods", "finetune", "--out", str(out))[0] == 0
    before = snapshot(out)
    code, _, err = cli(
        capsys, "bench", str(tiny), "--methods", "finetune", "--set", "finetune.epochs=3",
        "--out", str(out),
    )  # fmt: skip
    refused(code, err, "'finetune'", "config.epochs 2 -> 3", "another --out")
    assert snapshot(out) == before
    # the same configuration again, and a new method, are fine: nothing is mixed
    code, _, err = cli(capsys, "bench", str(tiny), "--out", str(out))
    assert code == 0, err
    with open_existing(out) as store:
        recs = aggregate(store)
    assert {r["n"] for r in recs} == {1}


def test_another_dataset_with_the_same_scenario_name_is_refused(tiny, tmp_path, capsys):
    """Before: a user's spec with a scenario named like digits' was averaged with digits'."""
    out = tmp_path / "res"
    assert cli(capsys, "bench", str(tiny), "--methods", "finetune", "--out", str(out))[0] == 0
    other = dict(TINY_SPEC, seeds=[0])
    other["dataset"] = {**TINY_SPEC["dataset"], "seed": 7}
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    before = snapshot(out)
    code, _, err = cli(
        capsys, "bench", str(tmp_path / "other.yaml"), "--methods", "finetune", "--out", str(out)
    )
    refused(code, err, "dataset.fingerprint", "dataset.options.seed 0 -> 7")
    assert snapshot(out) == before


def test_a_changed_forget_set_under_the_same_name_is_refused(tmp_path):
    spec = spec_from_dict({**TINY_SPEC, "seeds": [0]})
    run_benchmark(spec, tmp_path)
    moved = {**TINY_SPEC, "seeds": [0]}
    moved["scenarios"] = [
        {"name": "random", "scenario": "random", "fraction": 0.2},
        TINY_SPEC["scenarios"][1],
    ]
    with pytest.raises(RunIdentityError, match=r"'Original' in scenario 'random'.*task"):
        run_benchmark(spec_from_dict(moved), tmp_path)


def test_threads_are_part_of_a_rows_identity(tmp_path):
    run_benchmark(spec_from_dict({**TINY_SPEC, "seeds": [0], "threads": 1}), tmp_path)
    with pytest.raises(RunIdentityError, match="threads 1 -> 2"):
        run_benchmark(spec_from_dict({**TINY_SPEC, "seeds": [0], "threads": 2}), tmp_path)


def test_more_replicates_and_methods_join_the_same_rows(tmp_path):
    run_benchmark(spec_from_dict({**TINY_SPEC, "seeds": [0]}), tmp_path)
    s = run_benchmark(spec_from_dict({**TINY_SPEC, "seeds": [0, 1]}), tmp_path)
    assert s.reused > 0 and s.computed > 0
    with ResultStore(tmp_path / "results.db") as store:
        recs = aggregate(store)
        rows = list(store.rows())
    assert {r["n"] for r in recs} == {2}
    assert all(r.slot and r.identity and r.context for r in rows)
    # the replicates of one row share its identity; different rows have different ones
    by_slot: dict[str, set[str]] = {}
    for r in rows:
        by_slot.setdefault(r.slot, set()).add(r.identity)
    assert all(len(v) == 1 for v in by_slot.values())
    assert len({next(iter(v)) for v in by_slot.values()}) == len(by_slot)


def test_a_failed_run_writes_no_metadata(tiny, tmp_path, capsys):
    """Before: a spec with `classes: [99]` overwrote the stored spec, so the report showed the
    failed spec's title over the old rows."""
    out = tmp_path / "res"
    assert cli(capsys, "bench", str(tiny), "--methods", "finetune", "--out", str(out))[0] == 0
    bad = {**TINY_SPEC, "name": "broken", "seeds": [0]}
    bad["scenarios"] = [*TINY_SPEC["scenarios"], {"name": "c99", "scenario": "class",
                                                  "classes": [99]}]  # fmt: skip
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    before = snapshot(out)
    code, _, err = cli(capsys, "bench", str(tmp_path / "bad.yaml"), "--out", str(out))
    refused(code, err, "99")
    assert snapshot(out) == before
    with open_existing(out) as store:
        assert "tiny" in render(store).splitlines()[0] and "broken" not in render(store)


def _legacy_store(path: Path) -> None:
    con = sqlite3.connect(path)
    con.executescript(
        """CREATE TABLE cells (key TEXT PRIMARY KEY, kind TEXT NOT NULL, scenario TEXT NOT NULL,
        label TEXT NOT NULL, method TEXT NOT NULL, access TEXT NOT NULL, seed INTEGER NOT NULL,
        metrics TEXT NOT NULL, record TEXT NOT NULL, created REAL NOT NULL);
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"""
    )
    for seed, epochs in enumerate((15, 80)):
        m = json.dumps({"acc_test": 0.9, "avg_gap_salun": 0.01 * (seed + 1)})
        con.execute(
            "INSERT INTO cells VALUES (?,?,?,?,?,?,?,?,?,?)",
            (f"k{seed}", "method", "random-10pct", "finetune", "finetune", "forget_and_retain",
             seed, m, json.dumps({"recipe": {"epochs": epochs}}), float(seed)),
        )  # fmt: skip
    con.execute("INSERT INTO meta VALUES ('spec', ?)", (json.dumps({"name": "old"}),))
    con.commit()
    con.close()


def test_a_store_from_before_run_identity_is_read_and_says_so(tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    _legacy_store(out / "results.db")
    before = snapshot(out)
    code, text, err = cli(capsys, "report", str(out))
    assert code == 0, err
    assert "predates run identity" in err and LEGACY_NOTE in text and "finetune" in text
    code, _, err = cli(capsys, "bench", "--methods", "finetune", "--out", str(out))
    refused(code, err, "earlier unlearnkit", "another --out")
    assert snapshot(out) == before


def _hold(folder: str, ready, release) -> None:
    with RunLock(Path(folder), "bench"):
        ready.set()
        release.wait(30)


def test_a_second_process_on_one_folder_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "res"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        code, _, err = cli(capsys, "bench", str(tiny), "--out", str(out))
        refused(code, err, "in use by unlearnkit bench (pid", "another --out")
        with pytest.raises(FolderBusyError):
            RunLock(out, "audit").__enter__()
    finally:
        release.set()
        holder.join(30)
    t0 = time.time()
    with RunLock(out, "bench"):  # released when the holder exits
        pass
    assert time.time() - t0 < 5
    assert not (out / ".lock").exists()  # the folder looks the same afterwards


def test_tampered_or_empty_memorisation_scores_are_recomputed(tmp_path, capsys):
    """Before: overwriting 8 floats of bank/memorisation-*.npy silently changed the hard forget
    set; a 0-byte file made every later command print only 'Aborted.' (exit 1)."""
    spec = {
        **TINY_SPEC,
        "seeds": [0],
        "methods": [TINY_SPEC["methods"][0]],
        "scenarios": [{"name": "hard", "fraction": 0.1, "hard": True, "hard_models": 4}],
    }
    (tmp_path / "hard.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "res"
    args = ("bench", str(tmp_path / "hard.yaml"), "--out", str(out))
    assert cli(capsys, *args)[0] == 0
    (npy,) = list((out / "bank").glob("memorisation-*.npy"))
    good = np.load(npy)
    assert (out / "bank" / f"{npy.name}.json").is_file()  # the checksum sidecar
    from unlearnkit.bench import scenarios

    tampered = good.copy()
    tampered[:8] = 1.0  # the same shape, all finite: only the checksum can tell
    np.save(npy, tampered)
    scenarios._SCORES.clear()
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    assert np.array_equal(np.load(npy), good)  # recomputed, not trusted
    npy.write_bytes(b"")
    scenarios._SCORES.clear()
    code, _, err = cli(capsys, *args)
    assert code == 0 and "Aborted" not in err, err
    assert np.array_equal(np.load(npy), good)


def test_audits_follow_the_same_rule(tmp_path):
    """An audit into a folder of another run is refused before it trains anything; an audit of
    the same slot with another identity (here: threads) is refused too."""
    from unlearnkit.audit.runner import run_audit

    from ..unit.audit_runner._tiny import TINY

    spec = spec_from_dict(TINY)
    run_benchmark(spec, tmp_path)
    other = spec_from_dict({**TINY, "dataset": {**TINY["dataset"], "seed": 3}})
    before = snapshot(tmp_path)
    with pytest.raises(RunIdentityError, match=r"dataset\.options\.seed 0 -> 3"):
        run_audit(
            method="finetune", kind="epsilon", n_models=2, config={"epochs": 1}, spec=other,
            out_dir=tmp_path,
        )  # fmt: skip
    assert snapshot(tmp_path) == before
    args = dict(
        method="finetune", kind="epsilon", n_models=2, config={"epochs": 1}, spec=spec,
        out_dir=tmp_path,
    )  # fmt: skip
    first = run_audit(threads=1, **args)
    assert not first["reused"]
    assert run_audit(threads=1, **args)["reused"]
    with pytest.raises(RunIdentityError, match="threads 1 -> 2"):
        run_audit(threads=2, **args)
