"""The spec's opt-in ``relearn: true`` (METRICS.md 2.9) in the benchmark and its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearnkit.bench.report import aggregate, render
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.store import ResultStore
from unlearnkit.errors import ConfigError

SPEC = {
    "name": "tiny-relearn",
    "dataset": {
        "name": "synthetic",
        "n_train": 120,
        "n_val": 40,
        "n_test": 80,
        "num_classes": 3,
        "input_shape": [8],
        "label_noise": 0.1,
        "seed": 0,
    },
    "model": {"arch": "mlp", "hidden": [16]},
    "recipe": {"epochs": 5, "batch_size": 32, "lr": 0.1},
    "scenarios": [{"name": "rnd", "scenario": "random", "fraction": 0.1}],
    "methods": [{"method": "finetune", "config": {"epochs": 1}}],
    "seeds": [0],
}


def _rows(out: Path) -> dict[str, dict]:
    with ResultStore(out / "results.db") as store:
        return {r["label"]: r for r in aggregate(store)}


def test_relearn_readouts_are_opt_in_and_in_the_detail_table(tmp_path: Path) -> None:
    plain, with_relearn = tmp_path / "plain", tmp_path / "relearn"
    run_benchmark(spec_from_dict(SPEC), plain)
    assert not any("relearn_steps" in r["metrics"] for r in _rows(plain).values())
    with ResultStore(plain / "results.db") as store:
        assert "relearn steps" not in render(store)

    summary = run_benchmark(spec_from_dict({**SPEC, "relearn": True}), with_relearn)
    assert summary.computed == 4  # Original, Retrain, Retrain', finetune
    rows = _rows(with_relearn)
    for row in rows.values():
        assert {"relearn_steps", "relearn_censored", "ain", "ain_rt_u"} <= set(row["metrics"])
    # 4.11(b): the original model is already at its own forget loss and accuracy.
    assert rows["Original"]["metrics"]["relearn_steps"]["mean"] == 0
    assert rows["Original"]["metrics"]["ain_rt_u"]["mean"] == 0
    with ResultStore(with_relearn / "results.db") as store:
        md = render(store)
    assert "relearn steps (→ Retrain; cap 100)" in md and "AIN (→ 1)" in md


def test_turning_relearn_on_recomputes_and_off_reuses(tmp_path: Path) -> None:
    """The option is part of a cell's key only when on: the plain cells keep their keys."""
    run_benchmark(spec_from_dict(SPEC), tmp_path)
    again = run_benchmark(spec_from_dict(SPEC), tmp_path)
    assert again.computed == 0
    on = run_benchmark(spec_from_dict({**SPEC, "relearn": True}), tmp_path)
    assert on.computed == 4


def test_relearn_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="relearn must be true or false"):
        spec_from_dict({**SPEC, "relearn": "yes"})
