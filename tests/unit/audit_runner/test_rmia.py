"""The RMIA-vs-Retrain audit: references, population, negatives, control."""

from __future__ import annotations

import pytest

from unlearnkit.audit import runner
from unlearnkit.errors import ConfigError

from ._tiny import FT, N


def test_method_and_retrain_control_are_both_reported(audited):
    _, results = audited
    res = results["rmia"]
    # References are the U-LiRA shadows (same pool, splits, seeds): already in the bank, as are
    # θ_o and θ_r from the epsilon audit; one unlearning run.
    assert res["trained"] == 0 and res["unlearning_runs"] == 1
    m, r = res["metrics"], res["retrain"]
    assert m["delta_auc"] == pytest.approx(m["auc"] - r["auc"])
    for side in (m, r):
        assert 0.0 <= side["auc"] <= 1.0
        for a in ("0.01", "0.001"):
            assert side[f"tpr_at_fpr_{a}_ci_lo"] <= side[f"tpr_at_fpr_{a}"]
            assert side[f"tpr_at_fpr_{a}"] <= side[f"tpr_at_fpr_{a}_ci_hi"]
        assert side["n_pos"] == 12  # D_f: 10 % of 120
        assert side["n_neg"] == 40  # H = D_val
        assert side["underpowered"] == 1.0
        assert side["n_models"] == N
        assert 0.0 <= side["a"] <= 1.0
    pool = res["record"]["pool"]
    assert pool["n_Z"] + pool["n_TA_reserved"] == 80  # Z and the TA half split D_te


def test_class_scenario_uses_forgotten_class_negatives(audited, copy_of, counts, tiny_spec):
    out, _ = audited
    res = runner.run_audit(
        method="finetune",
        kind="rmia",
        n_models=N,
        scenario="cls",
        spec=tiny_spec,
        out_dir=copy_of(out),
        config=FT,
    )
    assert counts["trained"] == 1  # only the class scenario's Retrain
    n_val_class_1 = int((_val_labels(tiny_spec) == 1).sum())
    assert res["metrics"]["n_neg"] == res["retrain"]["n_neg"] == n_val_class_1
    assert "forgotten classes only" in res["record"]["negatives"]


def _val_labels(spec):
    from unlearnkit.datasets import load

    return load(spec.dataset.name, **spec.dataset.options).val.y.numpy()


def test_one_pair_needs_a_given_coefficient(audited, copy_of, counts, tiny_spec):
    out, _ = audited
    with pytest.raises(ConfigError, match="one reference pair"):
        runner.run_audit(method="finetune", kind="rmia", n_models=2, spec=tiny_spec, out_dir=out)
    res = runner.run_audit(
        method="finetune",
        kind="rmia",
        n_models=2,
        spec=tiny_spec,
        out_dir=copy_of(out),
        config=FT,
        options={"a": 1.0},
    )
    assert counts["trained"] == 0  # banks nest: pair 0 of the 4-model bank
    assert res["metrics"]["a"] == 1.0 and res["metrics"]["n_models"] == 2


def test_rerun_reuses_the_stored_rows(audited, no_training, tiny_spec):
    out, results = audited
    again = runner.run_audit(
        method="finetune", kind="rmia", n_models=N, spec=tiny_spec, out_dir=out, config=FT
    )
    assert again["reused"] and again["metrics"] == results["rmia"]["metrics"]
