"""The epsilon audit (NeurIPS-2023 score): stored, reused, never trains twice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unlearnkit.audit import bank as bank_module
from unlearnkit.audit import epsilon as epsilon_audit
from unlearnkit.audit import runner
from unlearnkit.audit.bank import OracleBank
from unlearnkit.bench.store import ResultStore
from unlearnkit.datasets import load
from unlearnkit.metrics.functional.epsilon import neurips23_score
from unlearnkit.metrics.functional.phi import logit_scaled_confidence
from unlearnkit.metrics.signals import compute_signals
from unlearnkit.models import ModelFactory
from unlearnkit.tasks import forget_task

from ._tiny import FT, N

KEYS = (
    "F",
    "final",
    "eps_q50",
    "eps_q90",
    "eps_q99",
    "eps_mean",
    "attack_acc",
    "ra_mean",
    "ta_mean",
)


def test_method_and_retrain_control_are_both_reported(audited):
    out, results = audited
    res = results["epsilon"]
    assert res["kind"] == "epsilon" and res["method"] == "finetune"
    assert res["n_models"] == N and not res["reused"]
    # 1 original + N Retrains + N Retrain′ trained; N unlearning runs.
    assert res["trained"] == 1 + 2 * N and res["unlearning_runs"] == N
    for side in (res["metrics"], res["retrain"]):
        for key in KEYS:
            assert np.isfinite(side[key]), key
        assert 0.0 <= side["F"] <= 1.0
        assert side["eps_q50"] <= side["eps_q90"] <= side["eps_q99"] <= 50.0
        assert 0.5 <= side["attack_acc"] <= 1.0
        assert side["n_models"] == N
    n_forget = len(res["record"]["forget_idx"])
    assert len(res["record"]["eps"]) == n_forget == res["metrics"]["n_examples"]
    assert len(res["retrain_record"]["eps"]) == n_forget
    assert res["record"]["control_key"] == res["control_key"]
    with ResultStore(out / "results.db") as store:
        rows = {r.key: r for r in store.rows("audit")}
    assert rows[res["control_key"]].method == "retrain"
    assert rows[res["control_key"]].label == "Retrain (control)"
    assert rows[res["key"]].method == "finetune"


def _phi_ra_ta(model, task):
    f = compute_signals(model, task.forget.x, task.forget.y)
    r = compute_signals(model, task.retain.x, task.retain.y)
    t = compute_signals(model, task.test.x, task.test.y)
    return logit_scaled_confidence(f.logits, f.labels), r.corr.mean(), t.corr.mean()


def test_control_is_retrain_prime_scored_against_retrain(audited, tiny_spec):
    """Recompute the ceiling from the banked models: N Retrain′ (2000+k) vs N Retrain (1000+k)."""
    out, results = audited
    bundle = load(tiny_spec.dataset.name, **tiny_spec.dataset.options)
    factory = ModelFactory.for_bundle(tiny_spec.model.arch, bundle, **tiny_spec.model.options)
    task = forget_task(bundle, **tiny_spec.scenarios[0].task_kwargs())
    bank = OracleBank(out / "bank")
    by_seed = {}
    for key in bank.keys():
        meta = bank.load_meta(key)
        if meta["role"] in ("retrain", "retrain_prime"):
            by_seed[(meta["role"], meta["seed"])] = bank.get(key, lambda: factory(0))[0]
    sides = []
    for role, base in (("retrain_prime", 2000), ("retrain", 1000)):
        vals = [_phi_ra_ta(by_seed[(role, base + k)], task) for k in range(N)]
        sides.append([np.stack([v[i] for v in vals]) for i in range(3)])
    (p_phi, ra_p, ta_p), (r_phi, ra_r, ta_r) = sides
    want = neurips23_score(p_phi, r_phi, ra_p, ra_r, ta_p, ta_r)
    got = results["epsilon"]
    assert got["retrain"]["F"] == pytest.approx(want["F"])
    assert got["retrain"]["final"] == pytest.approx(want["final"])
    np.testing.assert_allclose(got["retrain_record"]["eps"], want["eps"])
    assert got["retrain"]["ra_mean"] == pytest.approx(float(np.mean(ra_p)))


def test_rerun_reuses_the_stored_rows_without_training(audited, no_training, tiny_spec):
    out, results = audited
    again = runner.run_audit(
        method="finetune", kind="epsilon", n_models=N, spec=tiny_spec, out_dir=out, config=FT
    )
    assert again["reused"] and again["trained"] == 0 and again["unlearning_runs"] == 0
    assert again["metrics"] == results["epsilon"]["metrics"]
    assert again["retrain"] == results["epsilon"]["retrain"]


def test_thread_setting_is_restored(audited, no_training, tiny_spec):
    out, _ = audited
    before = torch.get_num_threads()
    seen = []
    real_find = runner._Audit._find

    def spy(self, key):
        seen.append(torch.get_num_threads())
        return real_find(self, key)

    try:
        torch.set_num_threads(2)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runner._Audit, "_find", spy)
            runner.run_audit(
                method="finetune",
                kind="epsilon",
                n_models=N,
                spec=tiny_spec,
                out_dir=out,
                config=FT,
                threads=1,
            )
        assert seen and set(seen) == {1}  # the audit ran with one thread
        assert torch.get_num_threads() == 2  # and the caller's setting is back
    finally:
        torch.set_num_threads(before)


def test_without_the_store_the_bank_is_reused(audited, copy_of, counts, tiny_spec):
    out, results = audited
    run = copy_of(out, drop_store=True)
    again = runner.run_audit(
        method="finetune", kind="epsilon", n_models=N, spec=tiny_spec, out_dir=run, config=FT
    )
    assert counts["trained"] == again["trained"] == 0
    assert counts["unlearning_runs"] == again["unlearning_runs"] == N
    assert again["metrics"]["F"] == results["epsilon"]["metrics"]["F"]
    np.testing.assert_allclose(again["record"]["eps"], results["epsilon"]["record"]["eps"])


def test_corrupt_bank_files_are_discarded_and_retrained(
    audited, copy_of, counts, monkeypatch, tiny_spec
):
    out, results = audited
    run = copy_of(out, drop_store=True)
    bank = OracleBank(run / "bank")
    retrains = sorted(k for k in bank.keys() if bank.load_meta(k)["role"] == "retrain")
    flipped, truncated = (run / "bank" / f"{k}.safetensors" for k in retrains[:2])
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF
    flipped.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:100])

    loaded = []
    real_load = bank_module.load_file

    def spy(path, *a, **kw):
        loaded.append(path)
        return real_load(path, *a, **kw)

    monkeypatch.setattr(bank_module, "load_file", spy)
    again = runner.run_audit(
        method="finetune", kind="epsilon", n_models=N, spec=tiny_spec, out_dir=run, config=FT
    )
    assert counts["trained"] == again["trained"] == 2  # exactly the two broken entries
    assert str(flipped) not in loaded and str(truncated) not in loaded  # never loaded
    bundle = load(tiny_spec.dataset.name, **tiny_spec.dataset.options)
    factory = ModelFactory.for_bundle(tiny_spec.model.arch, bundle, **tiny_spec.model.options)
    for key in retrains[:2]:  # stored again, whole and loadable
        assert bank.get(key, lambda: factory(0)) is not None
    np.testing.assert_allclose(
        again["retrain_record"]["eps"], results["epsilon"]["retrain_record"]["eps"], atol=1e-4
    )


def test_attack_accuracy_is_half_plus_half_ks():
    u = np.array([[0.0, 0.0, 5.0], [1.0, 1.0, 6.0], [2.0, 2.0, 7.0], [3.0, 3.0, 8.0]])
    r = np.array([[2.0, 0.0, 0.0], [3.0, 1.0, 1.0], [4.0, 2.0, 2.0], [5.0, 3.0, 3.0]])
    # shifted by 2 of 4 -> KS 0.5; identical -> 0; disjoint -> 1.
    np.testing.assert_allclose(epsilon_audit._ks_balanced_accuracy(u, r), [0.75, 0.5, 1.0])


def test_degenerate_example_gets_zero_epsilon_and_is_counted():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(8, 3))
    r = rng.normal(size=(8, 3))
    u[:, 1] = r[:, 1] = 4.0  # both constant and equal: no rule survives
    res = epsilon_audit._neurips_tolerant(u, r, 1.0, 1.0, 1.0, 1.0)
    assert res["n_degenerate"] == 1 and res["eps"][1] == 0.0
    ok = neurips23_score(u[:, [0, 2]], r[:, [0, 2]], 1.0, 1.0, 1.0, 1.0)
    np.testing.assert_allclose(res["eps"][[0, 2]], ok["eps"])
