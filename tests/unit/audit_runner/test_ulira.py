"""The U-LiRA audit: shadow splits, forget sets, method and Retrain control."""

from __future__ import annotations

import numpy as np

from unlearnkit.audit import plan, runner

from ._tiny import FT, ULIRA_OPTIONS, N

KEYS = (
    "ulira_acc",
    "auc",
    "tpr_at_fpr_0.01",
    "tpr_at_fpr_0.001",
    "vulnerability_q50",
    "vulnerability_q90",
    "vulnerability_q99",
)


def test_method_and_retrain_control_are_both_reported(audited):
    _, results = audited
    res = results["ulira"]
    m_sets = ULIRA_OPTIONS["forget_sets"]
    # N shadows + N·M Retrain-control models; N·M unlearning runs.
    assert res["trained"] == N + N * m_sets and res["unlearning_runs"] == N * m_sets
    for side in (res["metrics"], res["retrain"]):
        for key in KEYS:
            assert 0.0 <= side[key] <= 1.0, key
        assert side["ulira_acc_ci_lo"] <= side["ulira_acc"] <= side["ulira_acc_ci_hi"]
        for a in ("0.01", "0.001"):
            assert side[f"tpr_at_fpr_{a}_ci_lo"] <= side[f"tpr_at_fpr_{a}"]
            assert side[f"tpr_at_fpr_{a}"] <= side[f"tpr_at_fpr_{a}_ci_hi"]
        assert side["n_pos"] == side["n_neg"] > 0  # negatives subsampled to the positives
        assert side["underpowered"] == 1.0  # far fewer than 1000 negatives
        assert side["n_models"] == N
    rec = res["record"]
    assert rec["forget_sets"] == m_sets and rec["forget_fraction"] == 0.2
    assert rec["fixed_variance"] is True  # (N-1)·M·f/2 = 0.6 expected observations < 32
    assert rec["pool"]["n_pool"] == 120 + 40  # P = D_tr ∪ H with H = D_val
    assert len(rec["vulnerability"]) == 160


def test_rerun_reuses_the_stored_rows(audited, no_training, tiny_spec):
    out, results = audited
    again = runner.run_audit(
        method="finetune",
        kind="ulira",
        n_models=N,
        spec=tiny_spec,
        out_dir=out,
        config=FT,
        options=ULIRA_OPTIONS,
    )
    assert again["reused"] and again["trained"] == 0
    assert again["metrics"] == results["ulira"]["metrics"]


def test_another_method_reuses_shadows_and_the_control(audited, copy_of, counts, tiny_spec):
    out, results = audited
    run = copy_of(out)
    res = runner.run_audit(
        method="gradient_ascent",
        kind="ulira",
        n_models=N,
        spec=tiny_spec,
        out_dir=run,
        config={"epochs": 1},
        options=ULIRA_OPTIONS,
    )
    assert counts["trained"] == 0  # shadows from the bank, the control row from the store
    assert counts["unlearning_runs"] == N * ULIRA_OPTIONS["forget_sets"]
    assert res["control_key"] == results["ulira"]["control_key"]
    assert res["retrain"] == results["ulira"]["retrain"]


def test_splits_are_complementary_pairs_and_nest():
    four = plan._split_members(11, 4, seed_attack=0)
    two = plan._split_members(11, 2, seed_attack=0)
    for k in (0, 2):
        assert not np.intersect1d(four[k], four[k + 1]).size
        np.testing.assert_array_equal(np.union1d(four[k], four[k + 1]), np.arange(11))
    for a, b in zip(two, four[:2]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(four[0], four[2])
