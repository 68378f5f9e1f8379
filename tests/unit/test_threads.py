"""One thread setting reaches torch and every BLAS/OpenMP pool, and is undone afterwards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

import unlearnkit.audit.runner as audit_runner
import unlearnkit.bench.runner as bench_runner
from unlearnkit.audit.runner import run_audit
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.errors import ConfigError
from unlearnkit.threads import limit_threads

from .audit_runner._tiny import TINY


def _pools() -> list[int]:
    """Thread counts of every native pool loaded in the process (BLAS and OpenMP)."""
    return [p["num_threads"] for p in threadpool_info()]


def _settings() -> tuple[int, list[int]]:
    return torch.get_num_threads(), _pools()


@pytest.fixture
def two_threads():
    """Start from two threads everywhere, whatever the machine's default, so that limiting to
    one and restoring are both visible."""
    import scipy.linalg  # noqa: F401  (load SciPy's BLAS too)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    with threadpool_limits(limits=2):
        assert _pools() and set(_pools()) == {2}
        yield
    torch.set_num_threads(before)


def test_one_setting_reaches_torch_and_every_native_pool(two_threads) -> None:
    with limit_threads(1):
        torch_threads, pools = _settings()
        assert torch_threads == 1
        assert pools and set(pools) == {1}, threadpool_info()
        # scikit-learn's BLAS work runs on one thread inside the block
        a = np.random.default_rng(0).normal(size=(200, 200))
        assert np.isfinite(a @ a).all()
    assert _settings() == (2, [2] * len(_pools()))


def test_settings_are_restored_after_an_error(two_threads) -> None:
    with pytest.raises(RuntimeError, match="boom"), limit_threads(1):
        raise RuntimeError("boom")
    assert _settings() == (2, [2] * len(_pools()))


def test_none_changes_nothing(two_threads) -> None:
    with limit_threads(None):
        assert _settings() == (2, [2] * len(_pools()))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_thread_counts_are_config_errors(bad) -> None:
    with pytest.raises(ConfigError, match="threads must be a positive integer"):
        with limit_threads(bad):
            pass


def test_run_benchmark_applies_the_spec_threads_to_every_pool(
    two_threads, tmp_path: Path, monkeypatch
) -> None:
    seen = []

    def fake_run(*args, **kwargs):
        seen.append(_settings())
        return bench_runner.RunSummary()

    monkeypatch.setattr(bench_runner, "_run", fake_run)
    bench_runner.run_benchmark(spec_from_dict({**TINY, "threads": 1}), tmp_path)
    assert seen[0][0] == 1 and set(seen[0][1]) == {1}
    assert _settings() == (2, [2] * len(_pools()))


def test_run_audit_applies_its_threads_to_every_pool(
    two_threads, tmp_path: Path, monkeypatch
) -> None:
    seen = []

    def fake_run(audit, *rest):
        seen.append(_settings())
        return {}

    monkeypatch.setattr(audit_runner, "_run", fake_run)
    run_audit(
        method="finetune",
        kind="epsilon",
        n_models=2,
        spec=spec_from_dict(TINY),
        out_dir=tmp_path,
        threads=1,
    )
    assert seen[0][0] == 1 and set(seen[0][1]) == {1}
    assert _settings() == (2, [2] * len(_pools()))
