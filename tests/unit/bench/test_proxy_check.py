"""The retrain-free calibration checked against the benchmark's Retrain (bench/proxy_check.py).

Three configs per (scenario, method): the method's defaults, the retrain-free calibration's
choice and the benchmark's tuned config, each scored by Avg. Gap to the real Retrain (points)
beside the noise floor; the trained models come from the benchmark folder's bank.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearnkit.bench import proxy_check as pc
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.errors import ConfigError

from ..audit_runner._tiny import TINY


def test_scores_three_configs_per_method_and_reuses_the_benchmarks_models(tmp_path: Path):
    spec = spec_from_dict(TINY)
    bench = run_benchmark(spec, tmp_path)
    assert bench.trained > 0
    lines: list[str] = []
    check = pc.run_proxy_check(
        spec, tmp_path, methods=["gradient_ascent"], trials=3, budget_s=60, say=lines.append
    )
    assert not any("training" in m or "retraining" in m for m in lines)  # all from the bank
    rows = check["rows"]
    assert {(r["scenario"], r["kind"]) for r in rows} == {
        (s, k) for s in ("rnd", "cls") for k in pc.KINDS
    }
    assert all(r["avg_gap_pp"] is not None and 0.0 <= r["avg_gap_pp"] <= 100.0 for r in rows)
    assert all(r["trials"] == 3 for r in rows if r["kind"] == "proxy")
    assert all(isinstance(r["passed"], bool) for r in rows)
    assert set(check["noise_floor"]) == {"rnd", "cls"}
    stored = json.loads((tmp_path / pc.FILE).read_text())
    assert stored["rows"] == rows and not (tmp_path / ".lock").exists()
    md = pc.markdown(stored)
    assert md.count("| gradient_ascent |") == 2 and "calibrated (no retrain)" in md
    # the same settings again: the stored result, nothing recomputed
    again = pc.run_proxy_check(
        spec, tmp_path, methods=["gradient_ascent"], trials=3, budget_s=60, say=lines.append
    )
    assert again["rows"] == rows and "reusing" in lines[-1]


def test_bad_settings_are_refused_in_one_line(tmp_path: Path):
    spec = spec_from_dict(TINY)
    for kw, match in (
        ({"methods": []}, "non-empty"),
        ({"methods": ["retrain"]}, "reference"),
        ({"methods": ["finetune"], "trials": 0}, "positive integer"),
        ({"methods": ["finetune"], "budget_s": 0}, "positive number"),
        ({"methods": ["finetune"], "scenarios": ["nope"]}, "unknown scenario"),
    ):
        with pytest.raises(ConfigError, match=match):
            pc.run_proxy_check(spec, tmp_path, **kw)
    assert not (tmp_path / pc.FILE).exists()
