"""A user's own architecture and trained checkpoint in a spec: bench, tune and audit end to end.

The user module is written into ``tmp_path`` and put on ``sys.path``; its model is trained with
a plain loop on the spec's dataset and saved as a state dict. The spec names it with
``model: {factory: ..., kwargs: ..., checkpoint: ...}``; every command must run from the
checkpoint (never training the original), name the factory in what it records, and keep
another checkpoint out of the same folder.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import unlearnkit as uk
from tests._helpers import one_line, run_cli
from unlearnkit.audit.runner import run_audit
from unlearnkit.bench.runner import run_benchmark
from unlearnkit.bench.spec import spec_from_dict
from unlearnkit.bench.store import open_existing
from unlearnkit.errors import ConfigError

DATASET = {
    "name": "synthetic",
    "n_train": 120,
    "n_val": 40,
    "n_test": 80,
    "num_classes": 3,
    "input_shape": [8],
    "label_noise": 0.1,
    "seed": 0,
}

USER_MODULE = '''
import torch
from torch import nn


class TinyNet(nn.Module):
    """A small classifier sized by the benchmark (input_shape, num_classes)."""

    def __init__(self, input_shape, num_classes, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def not_a_model(input_shape, num_classes):
    return "a string"
'''


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The user's module on sys.path, a trained checkpoint of it and a spec naming both."""
    name = f"usernet_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    bundle = uk.datasets.load(DATASET["name"], **{k: v for k, v in DATASET.items() if k != "name"})
    torch.manual_seed(7)
    model = module.TinyNet((8,), 3, hidden=12)
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    x, y = bundle.train.x, bundle.train.y
    for _ in range(40):  # a plain full-batch loop, nothing of unlearnkit
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    ckpt = tmp_path / "trained.pt"
    torch.save(model.state_dict(), ckpt)
    spec = {
        "name": "user-model",
        "dataset": DATASET,
        "model": {"factory": f"{name}:TinyNet", "kwargs": {"hidden": 12}, "checkpoint": str(ckpt)},
        "recipe": {"epochs": 3, "batch_size": 32, "lr": 0.1},
        "scenarios": [{"name": "rnd", "scenario": "random", "fraction": 0.1}],
        "methods": [{"method": "finetune", "config": {"epochs": 1}}],
        "seeds": [0],
        "threads": 1,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return {
        "name": name,
        "module": module,
        "ckpt": ckpt,
        "state": model.state_dict(),
        "spec": spec,
        "path": path,
        "tmp": tmp_path,
    }


def _originals(bank: Path) -> list[dict[str, torch.Tensor]]:
    """The state dicts of every original model in a bank folder."""
    out = []
    for meta_path in bank.glob("*.json"):
        meta = json.loads(meta_path.read_text())
        if meta.get("role") == "original":
            out.append(load_file(str(meta_path.with_suffix(".safetensors"))))
    return out


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _error_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bench_tune_and_audit_run_from_the_users_checkpoint(user: dict) -> None:
    target = f"{user['name']}:TinyNet"
    bench_out, tune_out, audit_out = (user["tmp"] / d for d in ("bench", "tune", "audit"))

    code, err = run_cli("bench", str(user["path"]), "--quick", "--out", str(bench_out))
    assert code == 0, err
    assert "training the original" not in err  # the checkpoint is the original
    (orig,) = _originals(bench_out / "bank")
    assert _equal(orig, user["state"])
    report = (bench_out / "report.md").read_text()
    assert target in report and "sha256" in report  # provenance names factory and checkpoint
    with open_existing(bench_out) as store:
        model = store.context()["model"]
        rows = list(store.rows())
    assert model["factory"] == target and model["kwargs"] == {"hidden": 12}
    assert len(model["checkpoint"]["sha256"]) == 64
    assert {r.method for r in rows} >= {"original", "retrain", "finetune"}
    assert all(r.record["arch"]["factory"] == target for r in rows)

    code, err = run_cli(
        "tune",
        str(user["path"]),
        "--quick",
        "--methods",
        "finetune",
        "--trials",
        "2",
        "--out",
        str(tune_out),
    )
    assert code == 0, err
    assert "training the original" not in err
    (orig,) = _originals(tune_out / "bank")
    assert _equal(orig, user["state"])
    assert (tune_out / "tuned.yaml").is_file()

    code, err = run_cli(
        "audit",
        "--method",
        "finetune",
        "--kind",
        "epsilon",
        "--models",
        "2",
        "--spec",
        str(user["path"]),
        "--out",
        str(audit_out),
        "--set",
        "epochs=1",
    )
    assert code == 0, err
    assert "training the original" not in err
    (orig,) = _originals(audit_out / "bank")
    assert _equal(orig, user["state"])
    with open_existing(audit_out) as store:
        audit_rows = list(store.rows("audit"))
    assert len(audit_rows) == 2  # the method and its Retrain control
    assert all(r.record["arch"]["factory"] == target for r in audit_rows)


def test_another_checkpoint_is_refused_in_the_same_folder(user: dict) -> None:
    out = user["tmp"] / "bench"
    code, err = run_cli("bench", str(user["path"]), "--quick", "--out", str(out))
    assert code == 0, err
    other = {k: v + 1.0 for k, v in user["state"].items()}
    torch.save(other, user["ckpt"])  # same path, other weights: another original
    line = _error_line(*run_cli("bench", str(user["path"]), "--quick", "--out", str(out)))
    assert "model.checkpoint.sha256" in line


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"factory": "no_such_module_xyz:Net"}, "no module named 'no_such_module_xyz'"),
        ({"factory": "{name}:Missing"}, "has no attribute 'Missing'"),
        ({"kwargs": {"hidden": 12, "depth": 3}}, "unexpected keyword argument 'depth'"),
        ({"factory": "{name}:not_a_model", "kwargs": {}}, "returned a str"),
        ({"kwargs": {"hidden": 5}}, "does not fit the model"),
        ({"checkpoint": "{tmp}/absent.pt"}, "no such file"),
        ({"arch": "mlp"}, "both arch and factory"),
        ({"factory": "no-colon"}, "MODULE:NAME"),
        ({"hidden": 3}, "under kwargs"),
    ],
)
def test_bad_factory_kwargs_or_checkpoint_exit_2_in_one_line(user, change, needle) -> None:
    spec = dict(user["spec"])
    fill = {"name": user["name"], "tmp": user["tmp"]}
    spec["model"] = {
        **spec["model"],
        **{k: v.format(**fill) if isinstance(v, str) else v for k, v in change.items()},
    }
    path = user["tmp"] / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = user["tmp"] / "out"
    line = _error_line(*run_cli("bench", str(path), "--quick", "--out", str(out)))
    assert needle in line, line
    assert not (out / "results.db").exists()  # refused before any work


def test_model_factory_argument_and_same_init(user: dict) -> None:
    module = user["module"]
    spec = spec_from_dict({**user["spec"], "model": {"arch": "mlp"}}).quick()

    def tiny_net(seed: int) -> torch.nn.Module:
        return module.TinyNet((8,), 3, hidden=6)

    summary = run_benchmark(spec, user["tmp"] / "fn", model_factory=tiny_net)
    assert not summary.failures and summary.trained == 3  # original, retrain, retrain-prime
    with open_existing(user["tmp"] / "fn") as store:
        model = store.context()["model"]
        assert store.get_meta("spec")["model"]["factory"] == model["factory"]
    assert model["factory"].endswith(":test_model_factory_argument_and_same_init.<locals>.tiny_net")

    msg = one_line(
        ConfigError, run_benchmark, spec, user["tmp"] / "x", model_factory=lambda s: "no model"
    )
    assert "not a torch.nn.Module" in msg
    msg = one_line(
        ConfigError,
        run_audit,
        method="finetune",
        kind="epsilon",
        n_models=2,
        spec=spec,
        out_dir=user["tmp"] / "x",
        model_factory=lambda: None,
    )
    assert "calling it with a seed" in msg
    from unlearnkit.bench.tuning import run_tuning

    msg = one_line(ConfigError, run_tuning, spec, user["tmp"] / "x", model_factory=lambda s: None)
    assert "returned a NoneType" in msg
    same_init = spec_from_dict({**user["spec"], "retrain_init": "same_init"})
    msg = one_line(ConfigError, run_benchmark, same_init, user["tmp"] / "y")
    assert "same_init" in msg and "checkpoint" in msg


def test_built_in_arch_from_a_safetensors_checkpoint(user: dict) -> None:
    from safetensors.torch import save_file

    bundle = uk.datasets.load(DATASET["name"], **{k: v for k, v in DATASET.items() if k != "name"})
    model = uk.models.build("mlp", bundle, hidden=[12], seed=3)
    path = user["tmp"] / "mlp.safetensors"
    save_file(model.state_dict(), str(path))
    spec = spec_from_dict(
        {**user["spec"], "model": {"arch": "mlp", "kwargs": {"hidden": [12]}, "checkpoint": path}}
    )
    assert spec.model.options == {"hidden": [12]} and spec.model.checkpoint == str(path)
    out = user["tmp"] / "mlp"
    summary = run_benchmark(spec.quick(), out)
    assert not summary.failures and summary.trained == 2  # Retrain and Retrain' only
    (orig,) = _originals(out / "bank")
    assert _equal(orig, model.state_dict())
    with open_existing(out) as store:
        assert store.context()["model"]["arch"] == "mlp"
        assert store.get_meta("spec")["model"]["checkpoint"]["path"] == str(path)
