"""Bad audit requests fail early with actionable ConfigError/DataError, before any training."""

from __future__ import annotations

import dataclasses

import pytest

from unlearnkit.audit import runner, session
from unlearnkit.errors import ConfigError
from unlearnkit.methods import get_method


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "lira"}, "unknown audit kind 'lira'; use one of epsilon, ulira, rmia"),
        ({"n_models": 1}, "at least 2 models"),
        ({"n_models": 0}, "at least 2 models"),
        ({"n_models": 4.5}, "must be an integer"),
        ({"n_models": True}, "must be an integer"),
        ({"kind": "ulira", "n_models": 5}, "must be even; got 5, use 6"),
        ({"kind": "rmia", "n_models": 3}, "must be even"),
        ({"kind": "epsilon", "n_models": 1001}, "at most 1000"),
        ({"scenario": "nope"}, "unknown scenario 'nope'; the spec has: rnd, cls"),
        ({"kind": "ulira", "scenario": "cls"}, "U-LiRA audits random forget sets"),
        ({"method": "finetuen"}, "did you mean 'finetune'"),
        ({"config": {"learning_rate": 0.1}}, "learning_rate"),
        ({"config": {"epochs": -1}}, "epochs"),
        ({"preset": "imagenet"}, "no preset 'imagenet'"),
        ({"options": {"M": 3}}, "unknown audit option"),
        ({"kind": "ulira", "options": {"forget_fraction": 1.5}}, "forget_fraction"),
        ({"kind": "ulira", "options": {"forget_sets": 0}}, "forget_sets"),
        ({"kind": "rmia", "options": {"a": 2.0}}, "must lie in \\[0, 1\\]"),
        ({"kind": "rmia", "n_models": 2}, "one reference pair"),
        ({"threads": 0}, "threads must be a positive integer"),
    ],
)
def test_bad_requests_raise_before_training(tmp_path, tiny_spec, no_training, kwargs, match):
    args = {"method": "finetune", "kind": "epsilon", "n_models": 4, "spec": tiny_spec}
    args.update(kwargs)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=match):
        runner.run_audit(out_dir=out, **args)
    assert not out.exists()  # nothing was created or trained


def test_method_without_the_scenario_is_refused(tmp_path, tiny_spec, monkeypatch):
    spec = get_method("finetune")
    class_only = dataclasses.replace(
        spec, access=dataclasses.replace(spec.access, scenarios=("class",))
    )
    monkeypatch.setattr(session, "get_method", lambda name: class_only)
    with pytest.raises(ConfigError, match="does not support scenario 'random'"):
        runner.run_audit(
            method="finetune", kind="epsilon", n_models=2, spec=tiny_spec, out_dir=tmp_path / "x"
        )
