"""Devices: ``device="auto"``, pinned host-to-GPU batches, and the device/precision settings of
benchmark specs and of the ``bench`` and ``audit`` commands."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import unlearnkit as uk
import unlearnkit.checks as checks
from tests._helpers import one_line, run_cli
from unlearnkit.bench.spec import default_spec, spec_from_dict, with_run_settings
from unlearnkit.checks import auto_device, check_device
from unlearnkit.data import BatchLoader
from unlearnkit.errors import ConfigError
from unlearnkit.testing import TINY_RECIPE, tiny_bundle, tiny_model, tiny_task

ROOT = Path(__file__).resolve().parents[2]


def _pretend(monkeypatch, *present: str) -> None:
    monkeypatch.setattr(checks, "_available", lambda kind: kind in present)


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch) -> None:
    _pretend(monkeypatch, "cuda", "mps")
    assert auto_device() == torch.device("cuda")
    _pretend(monkeypatch, "mps")
    assert auto_device() == torch.device("mps")
    assert check_device("auto") == torch.device("mps")
    _pretend(monkeypatch)
    assert check_device("auto") == torch.device("cpu")
    assert check_device(" Auto ") == torch.device("cpu")


def test_auto_on_this_machine_and_unavailable_devices() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and getattr(torch.backends, "mps", None) is not None:
        expected = "mps" if torch.backends.mps.is_available() else "cpu"
    assert check_device("auto").type == expected
    if not torch.cuda.is_available():
        msg = one_line(ConfigError, check_device, "cuda")
        assert "device='auto'" in msg
    one_line(ConfigError, check_device, "autox", match="'auto'")


def test_train_and_unlearn_take_auto() -> None:
    b = tiny_bundle()
    m = uk.train(tiny_model(b), b.train, TINY_RECIPE, seed=0, device="auto")
    dev = auto_device()
    assert next(m.parameters()).device.type == dev.type
    out = uk.run_unlearning(m, tiny_task(b), "finetune", {"epochs": 1}, device="auto")
    assert next(out.model.parameters()).device.type == dev.type
    m_cpu = uk.train(tiny_model(b), b.train, TINY_RECIPE, seed=0)
    if dev.type == "cpu":  # auto on a CPU-only machine is the run it always was
        assert all(torch.equal(p, q) for p, q in zip(m.parameters(), m_cpu.parameters()))


def test_batch_loader_pins_only_for_cuda_targets() -> None:
    x, y = torch.arange(20.0).view(10, 2), torch.arange(10)
    assert BatchLoader(x, y, 4, device="cuda").pinned
    assert BatchLoader(x, y, 4, device=torch.device("cuda", 0)).pinned
    assert not BatchLoader(x, y, 4, device="cpu").pinned
    assert not BatchLoader(x, y, 4).pinned
    gen = torch.Generator().manual_seed(3)
    batches = list(BatchLoader(x, y, 4, shuffle=True, generator=gen, device="cpu"))
    order = torch.randperm(10, generator=torch.Generator().manual_seed(3))
    for i, (xb, yb) in enumerate(batches):  # a CPU target sees the plain batches
        idx = order[4 * i : 4 * i + 4]
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])


def test_spec_device_and_precision_keys() -> None:
    base = {"scenarios": [{"name": "r", "scenario": "random", "fraction": 0.1}]}
    plain = spec_from_dict(base)
    assert plain.device is None and plain.precision == "fp32"
    spec = spec_from_dict({**base, "device": "auto", "precision": "bf16"})
    assert spec.device == "auto" and spec.recipe.precision == "bf16"
    assert spec.recipe.hash != plain.recipe.hash  # bf16 results never mix with fp32 ones
    same = spec_from_dict({**base, "recipe": {"precision": "bf16"}, "precision": "bf16"})
    assert same.recipe == spec.recipe
    assert spec.quick().precision == "bf16" and spec.quick().device == "auto"
    for bad, match in (
        ({"device": 3}, "device"),
        ({"device": "gpu"}, "not a device name"),
        ({"precision": "half"}, "precision"),
        ({"recipe": {"precision": "fp16"}, "precision": "bf16"}, "disagree"),
        ({"recipe": {"precision": "x"}}, "precision"),
    ):
        one_line(ConfigError, spec_from_dict, {**base, **bad}, match=match)


def test_with_run_settings_keeps_everything_else() -> None:
    spec = default_spec()
    changed = with_run_settings(spec, device="cpu", precision="bf16")
    assert changed.device == "cpu" and changed.recipe.precision == "bf16"
    assert changed.recipe.epochs == spec.recipe.epochs and changed.scenarios == spec.scenarios
    assert with_run_settings(spec) == spec
    one_line(ConfigError, with_run_settings, spec, device="nope:x")


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["bench", "--quick", "--precision", "fp16"], "bf16"),
        (["bench", "--quick", "--precision", "fp64"], "precision"),
        (["bench", "--quick", "--device", "gpu"], "device"),
        (["audit", "--method", "finetune", "--precision", "fp16"], "bf16"),
        (["audit", "--method", "finetune", "--device", "gpu"], "device"),
    ],
)
def test_cli_refuses_bad_device_or_precision_before_any_work(argv, match, tmp_path) -> None:
    code, err = run_cli(*argv, "--out", str(tmp_path / "run"))
    assert code == 2, err
    assert err.startswith("error:") and match in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU machine")
def test_cli_refuses_cuda_on_a_cpu_machine(tmp_path) -> None:
    code, err = run_cli("bench", "--quick", "--device", "cuda", "--out", str(tmp_path / "r"))
    assert code == 2 and "not available" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA path of the GPU check")
def test_gpu_check_says_there_is_no_cuda_and_exits_0(monkeypatch, capsys) -> None:
    path = ROOT / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py"])
    assert mod.main() == 0
    assert "no CUDA device" in capsys.readouterr().out
