"""Shared fixtures: a tiny synthetic spec and one audit of each kind, run once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from unlearnkit.audit import runner, session
from unlearnkit.bench.spec import spec_from_dict

from ._tiny import FT, TINY, ULIRA_OPTIONS, N


@pytest.fixture(scope="session")
def tiny_spec():
    return spec_from_dict(TINY)


@pytest.fixture(scope="session")
def audited(tmp_path_factory, tiny_spec):
    """``(out_dir, {kind: result})``: finetune audited by each kind in one run directory.

    Tests that change the directory work on a copy (see ``copy_of``).
    """
    out = tmp_path_factory.mktemp("audited")
    results = {
        "epsilon": runner.run_audit(
            method="finetune",
            kind="epsilon",
            n_models=N,
            spec=tiny_spec,
            out_dir=out,
            config=FT,
        ),
        "ulira": runner.run_audit(
            method="finetune",
            kind="ulira",
            n_models=N,
            spec=tiny_spec,
            out_dir=out,
            config=FT,
            options=ULIRA_OPTIONS,
        ),
        "rmia": runner.run_audit(
            method="finetune", kind="rmia", n_models=N, spec=tiny_spec, out_dir=out, config=FT
        ),
    }
    return out, results


@pytest.fixture
def copy_of(tmp_path):
    """Copy a run directory (so a test may corrupt or delete files in it)."""

    def _copy(src: Path, drop_store: bool = False) -> Path:
        dst = tmp_path / "run"
        shutil.copytree(src, dst)
        if drop_store:
            for name in ("results.db", "results.db-wal", "results.db-shm"):
                (dst / name).unlink(missing_ok=True)
        return dst

    return _copy


@pytest.fixture
def counts(monkeypatch):
    """Count (independently of the result's own counters) trainings and unlearning runs."""
    c = {"trained": 0, "unlearning_runs": 0}
    real_ens, real_train, real_unlearn = (
        session.train_ensemble,
        session.train,
        session.run_unlearning,
    )

    def ens(factory, datasets, *a, **kw):
        c["trained"] += len(datasets)
        return real_ens(factory, datasets, *a, **kw)

    def one(*a, **kw):
        c["trained"] += 1
        return real_train(*a, **kw)

    def unl(*a, **kw):
        c["unlearning_runs"] += 1
        return real_unlearn(*a, **kw)

    monkeypatch.setattr(session, "train_ensemble", ens)
    monkeypatch.setattr(session, "train", one)
    monkeypatch.setattr(session, "run_unlearning", unl)
    return c


@pytest.fixture
def no_training(monkeypatch):
    """Make any training or unlearning run fail the test."""

    def boom(*a, **kw):
        raise AssertionError("the audit trained or unlearned although everything was stored")

    for name in ("train_ensemble", "train", "run_unlearning"):
        monkeypatch.setattr(session, name, boom)
