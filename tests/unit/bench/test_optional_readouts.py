"""Opt-in benchmark readouts: relearn time / AIN and the weight distance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unlearnkit.bench.identity import RunIdentityError
from unlearnkit.bench.report import aggregate, render
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.store import ResultStore
from unlearnkit.errors import ConfigError

from ..audit_runner._tiny import TINY

# The audit tests' tiny synthetic spec, cut to its random scenario and a one-epoch fine-tune.
SPEC = {
    **TINY,
    "name": "tiny-readouts",
    "scenarios": TINY["scenarios"][:1],
    "methods": [{"method": "finetune", "config": {"epochs": 1}}],
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


def test_turning_relearn_on_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    """Rows with and without the readouts are different runs: they are never averaged together
    (the folder is left as it was); re-running the plain spec reuses every cell."""
    run_benchmark(spec_from_dict(SPEC), tmp_path)
    again = run_benchmark(spec_from_dict(SPEC), tmp_path)
    assert again.computed == 0
    before = (tmp_path / "results.db").read_bytes()
    with pytest.raises(RunIdentityError, match=r"relearn false -> true.*another --out"):
        run_benchmark(spec_from_dict({**SPEC, "relearn": True}), tmp_path)
    assert (tmp_path / "results.db").read_bytes() == before
    on = run_benchmark(spec_from_dict({**SPEC, "relearn": True}), tmp_path / "with-relearn")
    assert on.computed == 4


def test_relearn_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match="relearn must be true or false"):
        spec_from_dict({**SPEC, "relearn": "yes"})


def test_same_init_retrain_adds_the_weight_distance(tmp_path: Path) -> None:
    """``retrain_init: same_init``: Retrain starts from θ_o's initial weights, so the weight
    distance to it means something and is reported; Retrain's own is 0."""
    spec = spec_from_dict({**SPEC, "retrain_init": "same_init"})
    run_benchmark(spec, tmp_path)
    rows = _rows(tmp_path)
    assert rows["Retrain"]["metrics"]["wdist_rel"]["mean"] == 0.0
    for label in ("Original", "Retrain′ (noise floor)", "finetune"):
        assert rows[label]["metrics"]["wdist_rel"]["mean"] > 0.0
    with ResultStore(tmp_path / "results.db") as store:
        assert "weight distance to Retrain (rel.)" in render(store)
    plain = tmp_path / "plain"
    run_benchmark(spec_from_dict(SPEC), plain)
    assert not any("wdist_rel" in r["metrics"] for r in _rows(plain).values())
    with pytest.raises(ConfigError, match="retrain_init must be"):
        spec_from_dict({**SPEC, "retrain_init": "same_as_original"})


def test_same_init_retrain_really_starts_from_the_original_initialisation() -> None:
    import unlearnkit as uk
    from unlearnkit.testing import TINY_RECIPE, tiny_factory, tiny_task

    task = tiny_task()
    factory = tiny_factory(task.bundle)
    original = uk.train(factory(0), task.bundle.train, TINY_RECIPE, seed=0)
    out = uk.unlearn(
        original,
        task,
        "retrain",
        {"init": "same_init"},
        seed=7,
        recipe=TINY_RECIPE,
        model_factory=factory,
        cache={"initial_state": factory(0).state_dict()},
    )
    want = uk.train(factory(0), task.retain, TINY_RECIPE, seed=7)
    for p, q in zip(out.parameters(), want.parameters()):
        assert torch.equal(p, q)
