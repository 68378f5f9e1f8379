"""A diverged method is a stored, marked row: never a failure that recurs on every rerun, and
never a normal-looking row.

Before: `bench --methods gradient_ascent --set gradient_ascent.lr=1e6` detected the divergence
but "restored" weights of 1e16-1e34 whose logits were inf/NaN, so every cell failed, and failed
again on rerun.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from unlearnkit.bench.report import aggregate, render
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.store import open_existing

from ..audit_runner._tiny import TINY

SPEC = {
    **TINY,
    "methods": [
        {"method": "gradient_ascent", "config": {"lr": 1e6, "epochs": 3, "batch_size": 4}},
        {"method": "finetune", "config": {"epochs": 1}},
    ],
}


def test_a_diverged_cell_is_stored_marked_and_reused(tmp_path: Path) -> None:
    first = run_benchmark(spec_from_dict(SPEC), tmp_path)
    assert not first.failures and first.computed == 2 * 5
    with open_existing(tmp_path) as store:
        recs = {(r["scenario"], r["label"]): r for r in aggregate(store)}
        md, js, cs = (render(store, f) for f in ("md", "json", "csv"))
    ga, ft = recs[("rnd", "gradient_ascent")], recs[("rnd", "finetune")]
    assert ga["diverged"] == 1 and ft["diverged"] == 0
    # the kept model is usable: every metric it reports is a finite number
    assert all(math.isfinite(s["mean"]) for k, s in ga["metrics"].items() if s["n"])
    assert "gradient_ascent ⚠ diverged in 1/1" in md and "finetune ⚠" not in md
    assert "Rows marked ⚠ diverged" in md
    by_label = {(o["scenario"], o["method"]): o for o in json.loads(js)}
    assert by_label[("rnd", "gradient_ascent")]["diverged"] == 1
    assert by_label[("rnd", "finetune")]["diverged"] == 0
    rows = list(csv.DictReader(io.StringIO(cs)))
    assert {r["method"]: r["diverged"] for r in rows if r["scenario"] == "cls"} == {
        "Original": "0",
        "Retrain": "0",
        "Retrain′ (noise floor)": "0",
        "gradient_ascent": "1",
        "finetune": "0",
    }
    again = run_benchmark(spec_from_dict(SPEC), tmp_path)
    assert again.computed == 0 and not again.failures
