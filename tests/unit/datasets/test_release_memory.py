"""Evaluation passes over disk-backed inputs hand the heap's freed pages back between batches.

Without it, glibc keeps the freed batch buffers resident and the process's memory creeps up
with the number of batches (``benchmarks/image_folder_memory.py`` measures the peak); the call
is made once per batch, only for disk-backed inputs, and ``UNLEARNKIT_MALLOC_TRIM=0`` turns it
off.
"""

from __future__ import annotations

import sys

import pytest
import torch

from unlearnkit.datasets import _lazy, load
from unlearnkit.metrics.signals import compute_signals

from ..._image_folders import make_folder


@pytest.fixture
def trims(monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(_lazy, "_malloc_trim", lambda: calls.append)
    return calls


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = make_folder(tmp_path_factory.mktemp("imgs"), n_train=10, n_test=2)
    return load("image_folder", root=str(root), eval_batch_size=8)


def _model(bundle) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3))


def test_one_release_per_batch_of_a_disk_backed_pass(bundle, trims) -> None:
    x, y = bundle.train.x, bundle.train.y
    out = compute_signals(_model(bundle), x, y)
    assert len(y) > 16 and trims == [0] * -(-len(y) // 8)  # once per batch of 8 rows
    assert torch.equal(
        torch.from_numpy(out.logits),
        torch.from_numpy(compute_signals(_model(bundle), x[:], y).logits),
    )


def test_in_memory_inputs_and_the_switch_leave_the_heap_alone(bundle, trims, monkeypatch) -> None:
    compute_signals(_model(bundle), bundle.train.x[:], bundle.train.y)
    assert trims == []
    monkeypatch.setenv("UNLEARNKIT_MALLOC_TRIM", "0")
    compute_signals(_model(bundle), bundle.train.x, bundle.train.y)
    assert trims == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_the_real_call_runs() -> None:
    _lazy._malloc_trim.cache_clear()
    _lazy.release_freed_memory()  # glibc: malloc_trim(0); another libc: nothing
