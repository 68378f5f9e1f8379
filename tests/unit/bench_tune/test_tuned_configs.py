"""``tuned.yaml`` into ``unlearnkit bench --configs`` (bench/configs.py, bench/tune_report.py):
the tuned configs run, the run says where its configs came from, and tuned and built-in runs
never share a results folder."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from unlearnkit.bench.configs import BUILT_IN, apply_tuned, load_configs
from unlearnkit.bench.identity import RunIdentityError
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.store import ResultStore
from unlearnkit.bench.tune_report import summary_table, tuned_yaml, write_outputs
from unlearnkit.bench.tuning import run_tuning
from unlearnkit.errors import ConfigError
from unlearnkit.methods.base import choice

from ..._helpers import one_line
from ._specs import tiny_spec

FT = [{"method": "finetune", "preset": "digits"}]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A study whose default (max_steps = 0: theta_o unchanged) loses to fine-tuning."""
    out = tmp_path_factory.mktemp("tune")
    spec = tiny_spec(methods=FT, method_config={"finetune": {"max_steps": 0}})
    results = run_tuning(
        spec,
        out,
        scenarios=["cls"],
        n_trials=2,
        search_spaces={"finetune": {"max_steps": choice([1000])}},
        heartbeat_s=1,
    )
    md, ym = write_outputs(out, spec, results, "unlearnkit tune SPEC")
    return spec, results, md, ym


def test_tuned_yaml_reads_back_into_the_spec(tuned):
    spec, (r,), md, ym = tuned
    assert r.best.number == 1 and r.best.config == {"max_steps": 1000}
    data = yaml.safe_load(ym.read_text())
    assert [s["name"] for s in data["scenarios"]] == ["rnd", "cls"]
    assert data["scenarios"][1]["method_config"] == {"finetune": {"max_steps": 1000}}
    assert data["scenarios"][1]["classes"] == [3]
    new, label = load_configs(spec, ym)
    assert label == f"tuned from {ym}"
    (entry,) = new.method_entries(new.scenarios[1])
    assert entry.config == {"max_steps": 1000}
    assert new.scenarios[0] == spec.scenarios[0]  # not tuned: unchanged
    assert load_configs(spec, None) == (spec, BUILT_IN)
    text = md.read_text()
    assert "| finetune | cls | 2 | 0 | 0 |" in text and "`max_steps=1000`" in text
    assert "Pruning: none (one seed replicate" in text
    assert summary_table([r]) in text


def test_bench_runs_the_tuned_configs_and_never_mixes_them_with_built_in_ones(tuned, tmp_path):
    spec, _, _, ym = tuned
    spec = dataclasses.replace(spec, scenarios=spec.scenarios[1:])  # the class scenario only
    tuned_spec, label = load_configs(spec, ym)
    run_benchmark(tuned_spec, tmp_path, configs=label)
    with ResultStore(tmp_path / "results.db", readonly=True) as store:
        assert store.get_meta("configs") == label
        (row,) = [r for r in store.rows() if r.kind == "method"]
        assert row.record["run"]["config"]["max_steps"] == 1000
    msg = one_line(RunIdentityError, run_benchmark, spec, tmp_path)
    assert "'finetune' in scenario 'cls'" in msg and "max_steps 1000 -> 0" in msg


def test_configs_of_another_spec_are_refused_in_one_line(tuned):
    spec, _, _, ym = tuned
    data = yaml.safe_load(ym.read_text())
    other = {"scenarios": [{**data["scenarios"][1], "classes": [2]}]}
    msg = one_line(ConfigError, apply_tuned, spec, other, match="another scenario 'cls'")
    assert "classes" in msg
    unknown = {"scenarios": [{**data["scenarios"][1], "name": "elsewhere"}]}
    one_line(ConfigError, apply_tuned, spec, unknown, match="none of which spec 'tiny' has")
    one_line(ConfigError, apply_tuned, spec, {"methods": []}, match="exactly one key")
    bad = {"scenarios": [{**data["scenarios"][1], "method_config": {"finetune": {"lr": -1}}}]}
    one_line(ConfigError, apply_tuned, spec, bad)


def test_a_listed_method_config_no_longer_overrides_a_tuned_value(tuned):
    spec, _, _, ym = tuned
    listed = tiny_spec(methods=[{**FT[0], "config": {"max_steps": 0, "epochs": 2}}])
    new = apply_tuned(listed, yaml.safe_load(ym.read_text()))
    rnd, cls = (new.method_entries(sc)[0].config for sc in new.scenarios)
    assert cls == {"max_steps": 1000}  # the tuned overrides, whole
    assert rnd == {"max_steps": 0, "epochs": 2}  # untuned scenario: what the spec ran
    assert tuned_yaml(spec, [])  # no study yet: the spec's own configs, still a valid fragment
