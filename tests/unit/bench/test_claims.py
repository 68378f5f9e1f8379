"""Known-answer tests of the report's claims and sweep sections, on a hand-built store."""

from __future__ import annotations

from pathlib import Path

import pytest

from unlearnkit.bench.claims import claims, claims_md, sweeps
from unlearnkit.bench.identity import digest, slot_of
from unlearnkit.bench.report import aggregate, memorisation, render
from unlearnkit.bench.store import CellRow, ResultStore


def _put(
    store, kind, method, seed, access="forget_and_retain", label=None, scenario="s", **metrics
):
    key = f"{scenario}-{kind}-{label or method}-{seed}"
    table = "sweep" if kind == "sweep" else "bench"
    row = CellRow(key, kind, scenario, label or method, method, access, seed, metrics, {})
    row.slot, row.context = slot_of(table, scenario, row.label), "ctx"
    row.identity = digest([table, scenario, row.label])  # one identity per row, as a run writes
    store.put(row)


@pytest.fixture()
def store(tmp_path: Path):
    s = ResultStore(tmp_path / "results.db")
    for seed, (ug, ga, ugp, ft, nat_fa, ga_fa, jit, best_ta) in enumerate(
        [
            (0.010, 0.050, 0.005, 0.030, -0.01, -0.20, 0.040, 0.95),
            (0.012, 0.060, 0.006, 0.031, 0.00, -0.25, 0.045, 0.96),
            (0.011, 0.055, 0.007, 0.032, -0.02, -0.22, 0.050, 0.94),
        ]
    ):
        _put(
            s,
            "original",
            "original",
            seed,
            access="-",
            label="Original",
            acc_test=0.97,
            avg_gap_salun=0.1,
            forget_conf_mean=0.99,
            forget_loss_mean=0.01,
        )
        _put(
            s,
            "retrain",
            "retrain",
            seed,
            label="Retrain",
            avg_gap_salun=0.0,
            forget_conf_mean=0.90,
            forget_loss_mean=0.2,
        )
        _put(
            s,
            "retrain_prime",
            "retrain",
            seed,
            label="Retrain′",
            avg_gap_salun=0.002,
            forget_conf_mean=0.905,
            forget_loss_mean=0.21,
        )
        _put(s, "method", "ugradsl", seed, avg_gap_salun=ug, rte_seconds=0.11, signed_fa=0.0)
        _put(
            s,
            "method",
            "gradient_ascent",
            seed,
            access="forget_only",
            avg_gap_salun=ga,
            rte_seconds=0.10,
            signed_fa=ga_fa,
        )
        _put(s, "method", "ugradsl_plus", seed, avg_gap_salun=ugp, rte_seconds=0.3)
        _put(s, "method", "finetune", seed, avg_gap_salun=ft, rte_seconds=0.2)
        _put(s, "method", "natmu", seed, avg_gap_salun=0.02, signed_fa=nat_fa)
        _put(s, "method", "jit", seed, access="forget_only", avg_gap_salun=jit, acc_test=best_ta)
        for i, lr in enumerate((0.1, 0.2, 0.3)):
            _put(
                s,
                "sweep",
                "natmu",
                seed,
                label=f"natmu[lr={lr}]",
                avg_gap_salun=(0.01, 0.02, 0.03)[i],
            )
            _put(
                s,
                "sweep",
                "gradient_ascent",
                seed,
                label=f"ga[lr={lr}]",
                access="forget_only",
                avg_gap_salun=(0.01, 0.2, 0.5)[i],
            )
    yield s
    s.close()


def _verdicts(store):
    return {r["claim"].split(":")[0].split(" (")[0]: r["verdict"] for r in claims(store)}


def test_claim_verdicts_follow_the_paired_differences(store) -> None:
    v = _verdicts(store)
    assert v["UGradSL"] == "holds"  # 4.4 pp better than GA at 1.1x its time
    assert v["UGradSL+"] == "holds"  # better than the best other member (ugradsl)
    assert v["NatMU over-forgets less than gradient_ascent"] == "holds"
    assert v["JiT"] == "holds"  # 3.3 pp from ugradsl+ < 5 pp
    assert v["NatMU less sensitive to its hyperparameters than gradient_ascent"] == "holds"


def test_ugradsl_claim_fails_when_it_is_too_slow(store) -> None:
    for seed in range(3):
        store._con.execute(
            "UPDATE cells SET metrics = json_set(metrics, '$.rte_seconds', 0.5) "
            "WHERE method = 'ugradsl' AND seed = ?",
            (seed,),
        )
    store._con.commit()
    assert _verdicts(store)["UGradSL"] == "does not hold"


def test_within_noise_is_inconclusive(tmp_path: Path) -> None:
    s = ResultStore(tmp_path / "r.db")
    for seed, (a, b) in enumerate([(0.010, 0.011), (0.012, 0.010), (0.011, 0.012)]):
        _put(s, "retrain_prime", "retrain", seed, label="R′", avg_gap_salun=0.005)
        _put(s, "method", "ugradsl", seed, avg_gap_salun=a, rte_seconds=0.1)
        _put(s, "method", "gradient_ascent", seed, avg_gap_salun=b, rte_seconds=0.1)
    assert _verdicts(s)["UGradSL"] == "inconclusive (within noise)"
    assert "stand-in" not in claims_md(s)


def test_sweep_statistics_and_report_sections(store) -> None:
    sw = {r["method"]: r for r in sweeps(store)}
    assert sw["natmu"]["median"] == pytest.approx(0.02)
    assert sw["gradient_ascent"]["worst"] == pytest.approx(0.5)
    assert sw["natmu"]["frac_within_tau"] == pytest.approx(2 / 3)
    md = render(store, "md")
    assert "## Paper claims" in md and "## Sensitivity sweeps" in md
    assert "stand-in: no relabelling method registered" in md


def test_memorisation_margin_against_the_floor(store) -> None:
    mem = {m["signal"]: m for m in memorisation(store)}
    assert mem["forget_conf_mean"]["margin"] == pytest.approx(0.09)
    assert mem["forget_conf_mean"]["floor"] == pytest.approx(0.005)
    assert mem["forget_conf_mean"]["ratio"] == pytest.approx(18.0)


def test_aggregate_orders_reference_rows_first(store) -> None:
    labels = [r["label"] for r in aggregate(store)]
    assert labels[:3] == ["Original", "Retrain", "Retrain′"]


def test_a_labelled_variant_of_a_method_never_stands_in_for_it(store):
    """A spec may run another config of a method under its own label: the claims read the
    method's own row, and the variant stays a row of its own in the tables."""
    before = claims(store)
    for seed in range(3):
        _put(store, "method", "ugradsl", seed, label="ugradsl-lr1", avg_gap_salun=0.9)
    assert claims(store) == before
    labels = {r["label"]: r for r in aggregate(store)}
    assert labels["ugradsl-lr1"]["n"] == 3 and labels["ugradsl"]["n"] == 3
    assert labels["ugradsl"]["metrics"]["avg_gap_salun"]["mean"] == pytest.approx(0.011)
