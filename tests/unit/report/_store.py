"""A hand-built results store with known numbers: every report section has data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unlearnkit.bench.identity import digest, slot_of
from unlearnkit.bench.store import CellRow, ResultStore

SEEDS = (0, 1, 2)
#: (kind, label, method, access) of the bench rows, per scenario.
ROWS = (
    ("original", "Original", "original", "-"),
    ("retrain", "Retrain", "retrain", "forget_and_retain"),
    ("retrain_prime", "Retrain′ (noise floor)", "retrain", "forget_and_retain"),
    ("method", "finetune", "finetune", "forget_and_retain"),
    ("method", "gradient_ascent", "gradient_ascent", "forget_only"),
)
KEYS = (
    "ua",
    "acc_retain",
    "acc_test",
    "mia_efficacy",
    "mia_svc_conf_nonmember_rate",
    "avg_gap_salun",
    "avg_gap_natmu",
    "zrf",
    "tow",
    "js_to_retrain_forget",
    "signed_fa",
    "gap_ua",
    "gap_acc_retain",
    "gap_acc_test",
    "gap_mia_efficacy",
    "forget_conf_mean",
)


def put(store, kind, scenario, label, method, access, seed, metrics, record=None):
    table = "sweep" if kind == "sweep" else ("audit" if kind == "audit" else "bench")
    row = CellRow(
        f"{scenario}-{kind}-{label}-{seed}",
        kind,
        scenario,
        label,
        method,
        access,
        seed,
        metrics,
        record or {},
    )
    row.slot, row.context = slot_of(table, scenario, label), "ctx"
    row.identity = digest([table, scenario, label])
    store.put(row)
    return row


def metrics_of(rng: np.random.Generator, kind: str, scenario: str) -> dict[str, float]:
    m = {k: float(rng.uniform(0.05, 0.95)) for k in KEYS}
    if kind == "retrain":
        m.update({k: 0.0 for k in KEYS if k.startswith(("gap_", "avg_gap"))})
    if kind != "original":
        m["rte_seconds"] = float(rng.uniform(0.05, 2.0))
    m["forget_conf_mean"] = {"original": 0.99, "retrain": 0.5}.get(kind, 0.5 + 1e-9 * rng.random())
    return m


def build(path: Path, *, diverged: bool = True, proxy: bool = True) -> Path:
    """Write ``path/results.db`` (and ``proxy-check.json``); returns the folder."""
    rng = np.random.default_rng(7)
    store = ResultStore(path / "results.db")
    store.set_meta("spec", {"name": "hand-built", "seeds": list(SEEDS), "seed_attack": 0})
    store.set_meta("provenance", {"machine": "test", "torch": "x"})
    store.set_meta("dataset", {"name": "synthetic", "n_train": 10})
    for sc in ("rnd", "cls"):
        for seed in SEEDS:
            for kind, label, method, access in ROWS:
                m = metrics_of(rng, kind, sc)
                if diverged and method == "gradient_ascent" and seed == 1:
                    m["diverged"] = 1.0
                elif kind == "method":
                    m["diverged"] = 0.0
                put(store, kind, sc, label, method, access, seed, m)
            for lr in (0.01, 0.1, 1.0):
                m = {"avg_gap_salun": float(rng.uniform(0.01, 0.2))}
                record = {"point": {"lr": lr}, "run": {"config": {"lr": lr, "epochs": 1}}}
                put(
                    store,
                    "sweep",
                    sc,
                    f"finetune[lr={lr}]",
                    "finetune",
                    "forget_and_retain",
                    seed,
                    m,
                    record,
                )
    levels = [
        {"alpha": a, "tpr": t, "tpr_ci": [t / 2, min(1.0, 2 * t)], "fpr": a}
        for a, t in ((0.01, 0.2), (0.001, 0.05))
    ]
    ctrl = put(
        store,
        "audit",
        "rnd",
        "Retrain (control)",
        "retrain",
        "forget_and_retain",
        0,
        {"auc": 0.52, "n_models": 4.0},
        {"audit": "rmia", "roc": {"levels": levels, "n_pos": 40, "n_neg": 400}},
    )
    put(
        store,
        "audit",
        "rnd",
        "finetune",
        "finetune",
        "forget_and_retain",
        0,
        {"auc": 0.7, "n_models": 4.0},
        {
            "audit": "rmia",
            "control_key": ctrl.key,
            "roc": {
                "levels": levels,
                "n_pos": 40,
                "n_neg": 400,
                "curve": {"fpr": [0.0, 0.01, 0.1, 1.0], "tpr": [0.05, 0.2, 0.5, 1.0]},
            },
        },
    )
    eps_ctrl = put(
        store,
        "audit",
        "rnd",
        "Retrain (control) ε",
        "retrain",
        "forget_and_retain",
        0,
        {"F": 0.4, "n_models": 4.0},
        {"audit": "epsilon", "eps": list(rng.uniform(0, 2, 30))},
    )
    put(
        store,
        "audit",
        "rnd",
        "finetune ε",
        "finetune",
        "forget_and_retain",
        0,
        {"F": 0.2, "n_models": 4.0},
        {"audit": "epsilon", "control_key": eps_ctrl.key, "eps": [*rng.uniform(1, 5, 29), None]},
    )
    store.close()
    if proxy:
        write_proxy(path)
    return path


#: The per-seed Avg. Gaps (points) of the proxy check: (scenario, method, kind) -> values.
PROXY_GAPS = {
    ("rnd", "finetune", "default"): (20.0, 22.0, 24.0),
    ("rnd", "finetune", "proxy"): (3.0, 4.0, 5.0),
    ("rnd", "finetune", "tuned"): (2.0, 2.5, 3.0),
}


def write_proxy(path: Path) -> None:
    rows = [
        {"scenario": sc, "seed": i, "method": m, "kind": k, "avg_gap_pp": v, "passed": v < 10}
        for (sc, m, k), vals in PROXY_GAPS.items()
        for i, v in enumerate(vals)
    ]
    data = {
        "rows": rows,
        "noise_floor": {"rnd": 4.5},
        "original_gap": {"rnd": 30.0},
        "settings": {"trials": 3, "budget_s": 60.0, "seeds": [0, 1, 2]},
    }
    (path / "proxy-check.json").write_text(json.dumps(data))
